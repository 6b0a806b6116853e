"""Shared by the bench scripts: wait until a freshly started ``llmdock serve`` answers a chat completion."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx


def wait_until_answering(proc: subprocess.Popen[bytes], url: str, body: str, timeout_s: float) -> None:
    """Poll ``url`` with ``body`` until it answers 200; exit the bench if the server dies or never does."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.post(
                url, content=body, headers={"content-type": "application/json"}, timeout=30
            ).is_success:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"llmdock did not start answering {url} (exit code {proc.poll()})")
        time.sleep(0.2)
