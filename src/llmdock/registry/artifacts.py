"""Content-addressed artifact files under ``<home>/artifacts/<sha256>``.

A file is hashed while it is copied to a temporary name in the same directory, flushed to disk, then renamed
into place: a crash leaves either no artifact or a complete one, never a torn file under a valid address.
The same content registered twice is stored once. Large copies show a progress bar.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from llmdock.errors import InvalidRequest, NotFound

CHUNK = 4 * 1024 * 1024
SHOW_PROGRESS_ABOVE = 64 * 1024 * 1024


def artifacts_dir(home: Path) -> Path:
    return Path(home).expanduser() / "artifacts"


def artifact_path(home: Path, sha256: str) -> Path:
    return artifacts_dir(home) / sha256


def put(home: Path, source: Path, *, progress: bool = True) -> tuple[str, int]:
    """Store a copy of ``source``; returns (sha256, size). Idempotent for the same content."""
    source = Path(source).expanduser()
    if source.is_dir():
        raise InvalidRequest(f"{source} is a directory: register a single file (e.g. a GGUF)", param="path")
    try:
        size = source.stat().st_size
    except FileNotFoundError:
        raise NotFound(f"no file {str(source)!r}", param="path") from None
    root = artifacts_dir(home)
    root.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src, _bar(source.name, size, progress) as bar:
            task = bar.add_task("copy", total=size)
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                bar.advance(task, len(chunk))
            out.flush()
            os.fsync(out.fileno())
        sha = digest.hexdigest()
        target = root / sha
        if target.exists() and target.stat().st_size == size:
            return sha, size
        os.chmod(tmp, 0o444)  # artifacts are immutable
        os.replace(tmp, target)
        fsync_dir(root)
        return sha, size
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def verify(home: Path, sha256: str) -> bool:
    """Whether the stored file still hashes to its address."""
    path = artifact_path(home, sha256)
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest() == sha256


def _bar(name: str, size: int, show: bool) -> Progress:
    return Progress(
        TextColumn(f"storing {name}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        disable=not show or size < SHOW_PROGRESS_ABOVE,
        transient=True,
        console=Console(stderr=True),  # stdout carries the command's answer
    )


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
