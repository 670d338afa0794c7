"""Who owns a lock or a journal: this host and process, and whether another owner still runs.

An owner is ``host:pid``, kept with the process's start time where it is known (Linux: clock
ticks after boot, from ``/proc``) in a field of its own, so that versions which know no start
still read the owner. With the start, a pid reused by a later process is told apart from the dead
owner; without it (another OS, or an owner written by an older version), a live process with the
same pid counts as the owner.
"""

from __future__ import annotations

import os
import socket

__all__ = ["owner_alive", "parse_owner", "process_start", "this_owner"]


def process_start(pid: int) -> str | None:
    """When process ``pid`` of this host started, as an opaque string; None if it cannot be told."""
    try:
        with open(f"/proc/{int(pid)}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except (OSError, ValueError):
        return None
    # the command name (field 2) may hold spaces and parentheses: the fields after it follow the last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None  # field 22, starttime


def started_in_words(start: str | None, now: float | None = None) -> str | None:
    """A :func:`process_start` of this host in words: 'since 05:12:03 (2 min ago)'; None if it
    cannot be told (another host's, or no /proc)."""
    import time

    try:
        ticks = int(start or "")
        with open("/proc/stat", encoding="ascii") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith("btime "))
        began = boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, StopIteration, AttributeError):
        return None
    ago = max(0.0, (now if now is not None else time.time()) - began)
    span = f"{ago:.0f} s" if ago < 120 else f"{ago / 60:.0f} min" if ago < 7200 else f"{ago / 3600:.1f} h"
    return f"since {time.strftime('%H:%M:%S', time.localtime(began))} ({span} ago)"


def this_owner() -> str:
    """``host:pid`` of this process (its start: ``process_start(os.getpid())``)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def parse_owner(owner: str) -> tuple[str, str, str | None]:
    """``(host, pid, start or None)`` of ``host:pid`` (or ``host:pid:start``)."""
    head, _, last = owner.rpartition(":")
    if ":" in head:  # host:pid:start
        host, _, pid = head.rpartition(":")
        return host, pid, last or None
    return head, last, None


def owner_alive(host: str, pid: str | int, start: str | None = None) -> bool:
    """Whether process ``pid`` of ``host`` (started at ``start``, when given) may still run. For
    another host it cannot be told, so True: its owner's host decides."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:  # it exists, as another user
        pass
    if start is not None:
        now = process_start(int(pid))
        if now is not None and now != start:
            return False  # the pid was reused by a later process
    return True
