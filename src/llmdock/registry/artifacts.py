"""Content-addressed artifacts under ``<home>/artifacts/<sha256>``: single files, or directories (adapters).

A file is hashed while it is copied to a temporary name in the same directory, flushed to disk, then renamed
into place: a crash leaves either no artifact or a complete one, never a torn file under a valid address.
A directory is copied the same way, file by file, into a temporary directory renamed into place at the end;
its address is the sha256 of its manifest (each file's relative path, sha256 and size, sorted), so the same
tree registered twice is stored once whatever the files' dates. The same content registered twice is stored
once. Large copies show a progress bar.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

from llmdock.errors import InvalidRequest, NotFound

CHUNK = 4 * 1024 * 1024
SHOW_PROGRESS_ABOVE = 64 * 1024 * 1024


def artifacts_dir(home: Path) -> Path:
    return Path(home).expanduser() / "artifacts"


def artifact_path(home: Path, sha256: str) -> Path:
    return artifacts_dir(home) / sha256


def put(home: Path, source: Path, *, progress: bool = True) -> tuple[str, int]:
    """Store a copy of ``source`` (a file or a directory); returns (sha256, size in bytes). Idempotent for the
    same content."""
    source = Path(source).expanduser()
    if source.is_dir():
        return _put_tree(home, source, progress)
    try:
        size = source.stat().st_size
    except FileNotFoundError:
        raise NotFound(f"no file {str(source)!r}", param="path") from None
    root = artifacts_dir(home)
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as out, _bar(source.name, size, progress) as bar:
            sha = _copy(source, out, bar, bar.add_task("copy", total=size))
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


def _copy(source: Path, out: BinaryIO, bar: Progress, task: TaskID) -> str:
    """Copy ``source`` into ``out`` (flushed to disk), hashing it on the way; its sha256."""
    digest = hashlib.sha256()
    with source.open("rb") as src:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
            bar.advance(task, len(chunk))
    out.flush()
    os.fsync(out.fileno())
    return digest.hexdigest()


def _tree_files(source: Path) -> list[Path]:
    """The regular files under ``source``, sorted; a link or an empty tree is refused."""
    found = []
    for path in sorted(source.rglob("*")):
        if path.is_symlink():
            raise InvalidRequest(f"{path} is a symbolic link: register the files themselves", param="path")
        if path.is_file():
            found.append(path)
    if not found:
        raise InvalidRequest(f"{source} holds no files", param="path")
    return found


def manifest_digest(entries: list[tuple[str, str, int]]) -> str:
    """A directory's address: the sha256 of its (relative path, sha256, size) lines, sorted by path."""
    lines = "".join(f"{rel}\0{sha}\0{size}\n" for rel, sha, size in sorted(entries))
    return hashlib.sha256(b"llmdock-tree-v1\n" + lines.encode()).hexdigest()


def _put_tree(home: Path, source: Path, progress: bool) -> tuple[str, int]:
    files = _tree_files(source)
    size = sum(f.stat().st_size for f in files)
    root = artifacts_dir(home)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".incoming-"))
    try:
        entries = []
        with _bar(source.name, size, progress) as bar:
            task = bar.add_task("copy", total=size)
            for f in files:
                rel = f.relative_to(source).as_posix()
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                with (tmp / rel).open("wb") as out:
                    entries.append((rel, _copy(f, out, bar, task), f.stat().st_size))
                os.chmod(tmp / rel, 0o444)
        sha = manifest_digest(entries)
        target = root / sha
        if target.is_dir():
            return sha, size
        os.replace(tmp, target)
        fsync_dir(root)
        return sha, size
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def verify(home: Path, sha256: str) -> bool:
    """Whether the stored file (or directory) still hashes to its address."""
    path = artifact_path(home, sha256)
    if path.is_dir():
        entries = [(f.relative_to(path).as_posix(), _hash(f), f.stat().st_size) for f in _tree_files(path)]
        return manifest_digest(entries) == sha256
    return _hash(path) == sha256


def _hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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
