"""Locks that the kernel releases when their process dies: POSIX record locks on small files.

Why these and not tags in MLflow: a tag cannot be set "only if nobody else has", so two processes
that check a tag and then set it can both win. A record lock (``fcntl.lockf``) is granted to one
process at a time, and is released by the kernel the moment its owner exits, however it exits
(SIGKILL included), so a dead owner never has to be recognised by its pid. Unlike ``flock``,
record locks are not inherited by forked children (the local pool's workers cannot keep them).

One file holds many locks: each key locks one byte at an offset hashed from the key. A process
keeps one open descriptor per lock file for its whole life, since closing any descriptor of a
file drops all of the process's record locks on it.

The files live next to a local store (``<store folder>/robust-locks/``), or for a tracking server
in this user's cache: then they coordinate the processes of this machine only.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import threading
import time
from pathlib import Path

from robustcli.errors import StoreError

__all__ = ["LockFile", "lock_file", "try_lock_whole"]

_OPEN: dict[str, LockFile] = {}
_OPEN_LOCK = threading.Lock()


def _offset(key: str) -> int:
    # 47 bits: far below off_t's limit, collisions between a store's keys negligible
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") >> 17


class LockFile:
    """Named exclusive locks on one file, for this process (threads of a process share them)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise StoreError(f"cannot open the lock file {path}: {exc.strerror or exc}") from None
        self._held: set[str] = set()
        self._mutex = threading.Lock()

    def try_lock(self, key: str) -> bool:
        """Take ``key`` if no other process holds it; True if this process holds it now."""
        with self._mutex:
            if key in self._held:
                return True
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _offset(key))
            except OSError as exc:
                if exc.errno in (errno.EACCES, errno.EAGAIN):
                    return False
                raise StoreError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
            self._held.add(key)
            return True

    def lock(self, key: str, timeout: float | None = None, poll: float = 0.05) -> bool:
        """Wait for ``key`` (at most ``timeout`` seconds); True once held. Polls, so Ctrl-C works."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.try_lock(key):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(poll)
            poll = min(poll * 1.5, 0.5)
        return True

    def unlock(self, key: str) -> None:
        with self._mutex:
            if key not in self._held:
                return
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, _offset(key))
            self._held.discard(key)


def lock_file(path: Path) -> LockFile:
    """This process's :class:`LockFile` for ``path`` (one descriptor per file, see the module doc)."""
    key = str(path.resolve())
    with _OPEN_LOCK:
        if key not in _OPEN:
            _OPEN[key] = LockFile(path)
        return _OPEN[key]


def try_lock_whole(fd: int) -> bool:
    """Lock a whole open file (a journal) without waiting; False if another process holds it."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return False
        raise
    return True
