"""One process at a time: the background loops of ``llmdock serve`` (alerts, online evaluation) run in
whichever worker holds a lock file under ``home``; if that worker stops, another takes the lock at its next try.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class LeaderLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def held(self) -> bool:
        """Whether this process leads (holds the lock), trying to take it when it does not."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
