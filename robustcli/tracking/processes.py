"""Who owns a lock or a journal: this host and process, and whether another owner still runs."""

from __future__ import annotations

import os
import socket

__all__ = ["owner_alive", "this_owner"]


def this_owner() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(host: str, pid: str | int) -> bool:
    """Whether process ``pid`` of ``host`` may still run. For another host it cannot be told, so
    True: its owner's host decides."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:  # it exists, as another user
        return True
    return True
