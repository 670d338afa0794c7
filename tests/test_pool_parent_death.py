"""Workers of `--executor local` die with the process that started them (issue 20): killing it
once left the fork server, the resource tracker and the idle workers alive for a minute or more."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = r'''
import os, pickle, sys, time
from concurrent.futures import ProcessPoolExecutor

from robustcli.execution.pool import _context, _init_worker

pool = ProcessPoolExecutor(max_workers=2, mp_context=_context(), initializer=_init_worker,
                           initargs=(pickle.dumps((None, None)), 1, os.getpid()))
futures = [pool.submit(time.sleep, s) for s in (60, 0)]  # one busy worker, one idle
futures[1].result()
print(" ".join(str(p) for p in pool._processes), flush=True)
time.sleep(120)
'''


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server and /proc: Linux")
def test_workers_fork_server_and_resource_tracker_die_with_their_parent():
    parent = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True)
    family: set[int] = set()
    try:
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert len(workers) == 2
        family = _descendants(parent.pid)  # the fork server, the resource tracker, the workers
        assert set(workers) <= family and len(family) >= 4
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(p) for p in family):
            time.sleep(0.2)
        assert not [p for p in family if _alive(p)], "left alive after their parent died"
    finally:  # whatever this test started, and only that
        parent.kill()
        parent.wait()
        for pid in family:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
