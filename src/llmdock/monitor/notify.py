"""Sending alert notifications: a webhook (JSON), a Slack-compatible webhook (``{"text": …}``), e-mail (SMTP).

Firings of one evaluation round that go to the same channel are grouped into one message. A channel that fails
is retried with exponential backoff (``retries``, ``backoff_s``) and then given up, logged; delivery runs in
background tasks of the alert loop, never on a request's path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import smtplib
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from typing import Any

import httpx

from llmdock.config.monitor_settings import AlertChannel

log = logging.getLogger("llmdock.alerts")


@dataclass(frozen=True, slots=True)
class Notice:
    """One firing as notifications show it."""

    id: int
    rule: str
    model: str
    metric: str
    condition: str
    value: float
    expected: str
    message: str
    fired_at: str  # ISO 8601, UTC
    repeat: bool  # still firing since an earlier notice


def summary(notices: list[Notice]) -> str:
    head = f"[llmdock] {len(notices)} alert{'s' if len(notices) != 1 else ''} firing"
    return head + "".join(f"\n- {n.message}" for n in notices)


async def deliver(name: str, channel: AlertChannel, notices: list[Notice]) -> str:
    """Send ``notices`` to one channel, retrying with backoff: ``sent`` or ``failed: <last error>``."""
    delay = channel.backoff_s
    error = ""
    for attempt in range(channel.retries + 1):
        try:
            await _send(channel, notices)
            return "sent"
        except (httpx.HTTPError, OSError, smtplib.SMTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
            if attempt < channel.retries:
                log.warning(
                    "alert channel %s: attempt %d failed (%s); retrying in %.1f s",
                    name,
                    attempt + 1,
                    error,
                    delay,
                )
                await asyncio.sleep(delay)
                delay *= 2
    log.error("alert channel %s: giving up after %d attempts: %s", name, channel.retries + 1, error)
    return f"failed: {error}"


async def _send(channel: AlertChannel, notices: list[Notice]) -> None:
    if channel.type == "email":
        await asyncio.to_thread(_send_mail, channel, notices)
        return
    body: dict[str, Any] = (
        {"text": summary(notices)}
        if channel.type == "slack"
        else {"source": "llmdock", "alerts": [asdict(n) for n in notices]}
    )
    async with httpx.AsyncClient(timeout=channel.timeout_s) as client:
        resp = await client.post(channel.url, json=body)
        resp.raise_for_status()


def _send_mail(channel: AlertChannel, notices: list[Notice]) -> None:
    msg = EmailMessage()
    first = notices[0]
    more = f" and {len(notices) - 1} more" if len(notices) > 1 else ""
    msg["Subject"] = f"[llmdock] {first.rule} on {first.model or 'all models'}{more}"
    msg["From"] = channel.sender
    msg["To"] = ", ".join(channel.to)
    msg.set_content(summary(notices) + "\n\nList them with: llmdock alerts list\n")
    with smtplib.SMTP(channel.smtp_host, channel.smtp_port, timeout=channel.timeout_s) as smtp:
        if channel.starttls:
            smtp.starttls()
        if channel.username:
            smtp.login(channel.username, os.environ.get(channel.password_env, ""))
        smtp.send_message(msg)
