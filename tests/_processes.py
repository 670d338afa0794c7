"""Helpers for tests that run `robust` as real processes: start, time, kill, and read the store back.

Only MLflow's public client reads the store here (the tests judge the tool from the outside).
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: early stopping that keeps a synthetic instance to a second or two (as conftest.FAST)
FAST = ["--min-epochs", "8", "--window", "4", "--max-epochs", "30"]


def robust_command() -> list[str]:
    """The `robust` console script next to this interpreter; else the same entry point through it."""
    bindir = Path(sys.executable).parent
    exe = shutil.which("robust", path=str(bindir))
    if exe is not None:
        return [exe]
    return [sys.executable, "-c", "import sys; sys.argv[0] = 'robust'; from robustcli.cli.main import main; main()"]


def robust_env(home: Path) -> dict[str, str]:
    """The environment of a `robust` process: one torch thread, its own cache, no tracking URI
    from outside (every test names its store)."""
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("ROBUST_TRACKING_WRITE", None)
    env["OMP_NUM_THREADS"] = "1"
    env["ROBUST_CACHE_DIR"] = str(home / "cache")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Proc:
    """A `robust` process started by a test, with what it printed once it has ended."""

    args: list[str]
    popen: subprocess.Popen
    started: float
    out_path: Path
    err_path: Path
    ended: float | None = None
    rc: int | None = None
    killed: bool = False
    _out: str | None = field(default=None, repr=False)
    _err: str | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def owner(self) -> str:
        """How the tool names this process as a lock's owner: host:pid."""
        return f"{socket.gethostname()}:{self.pid}"

    def wait(self, timeout: float) -> int | None:
        """Its exit code; None (and the process killed) if it runs past ``timeout`` seconds from now."""
        try:
            self.rc = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.rc = None
        self.ended = self.ended or time.monotonic()
        return self.rc

    def kill(self) -> None:
        """SIGKILL its process group (it was started in a session of its own): nothing survives it."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.killed = True
        self.popen.wait()
        self.ended = time.monotonic()

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    @property
    def stdout(self) -> str:
        if self._out is None:
            self._out = self.out_path.read_text(errors="replace")
        return self._out

    @property
    def stderr(self) -> str:
        if self._err is None:
            self._err = self.err_path.read_text(errors="replace")
        return self._err

    def json(self) -> dict[str, Any]:
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"stdout of {' '.join(self.args)} is not one JSON document:\n{self.stdout[-2000:]}") from None

    def describe(self) -> str:
        tail = "\n".join(self.stderr.strip().splitlines()[-6:])
        return f"`robust {' '.join(self.args)}` (pid {self.pid}): exit {self.rc} after {self.seconds:.1f} s; stderr tail:\n{tail}"


def start(args: list[str], home: Path, logs: Path, name: str) -> Proc:
    """Start `robust ARGS` in ``home`` (cwd), output to files in ``logs`` (pipes could fill up)."""
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / f"{name}.out", logs / f"{name}.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        popen = subprocess.Popen(
            [*robust_command(), *args],
            cwd=home,
            env=robust_env(home),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    return Proc(list(args), popen, time.monotonic(), out_path, err_path)


def run(args: list[str], home: Path, logs: Path, name: str, timeout: float = 300) -> Proc:
    proc = start(args, home, logs, name)
    proc.wait(timeout)
    return proc


def wait_for_entry(folder: Path, proc: Proc, timeout: float, match: str = "", poll: float = 0.01) -> float | None:
    """Seconds after ``proc`` started at which the first entry of ``folder`` whose name contains
    ``match`` appeared (any entry when ``match`` is empty: the store, a temporary or lock file or
    folder next to it); None if ``proc`` ended first or nothing appeared within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if any(match in p.name for p in folder.iterdir()):
                return time.monotonic() - proc.started
        except FileNotFoundError:
            pass
        if proc.popen.poll() is not None:
            return None
        time.sleep(poll)
    return None


def sleep_until(t0: float, seconds: float) -> None:
    """Sleep until ``seconds`` after the monotonic time ``t0``."""
    left = t0 + seconds - time.monotonic()
    if left > 0:
        time.sleep(left)


def tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[str, int, int]]:
    """Every path under ``root`` but those in ``skip`` (paths relative to it) and what lies under
    them: kind, size and mtime (ns). Two equal trees mean nothing was created, removed or written."""
    out: dict[str, tuple[str, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if str(rel / d) not in skip]
        for name in dirnames + [f for f in filenames if str(rel / f) not in skip]:
            p = Path(dirpath) / name
            st = p.lstat()
            kind = "dir" if p.is_dir() else "file"
            out[str(rel / name)] = (kind, 0 if kind == "dir" else st.st_size, 0 if kind == "dir" else st.st_mtime_ns)
    return out


# -- the store, through MLflow's public client ---------------------------------------------------------
def client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def all_runs(uri: str, filter_string: str, experiment: str = "synthetic") -> list[Any]:
    """Every (not deleted) run of the experiment matching ``filter_string``, through search_runs."""
    c = client(uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs: list[Any] = []
    token = None
    while True:
        page = c.search_runs([exp.experiment_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def instance_runs(uri: str) -> list[Any]:
    return all_runs(uri, "tags.`robust.kind` = 'instance'")


def duplicate_instances(uri: str) -> dict[tuple[str, str, str], int]:
    """(candidate_id, instance_index, fingerprint) that more than one instance run holds, with the count."""
    keys = collections.Counter(
        (
            r.data.tags.get("robust.candidate_id", "?"),
            r.data.tags.get("robust.instance_index", "?"),
            r.data.tags.get("robust.fingerprint", "?"),
        )
        for r in instance_runs(uri)
    )
    return {k: n for k, n in keys.items() if n > 1}


def selection_runs_per_key(uri: str) -> dict[str, int]:
    keys = collections.Counter(
        r.data.tags.get("robust.selection_key", "?") for r in all_runs(uri, "tags.`robust.kind` = 'selection'")
    )
    return dict(keys)


def experiment_names(uri: str) -> list[str]:
    return sorted(e.name for e in client(uri).search_experiments() if e.name != "Default")


# -- read-only folders, also for root ------------------------------------------------------------------
def _writable(folder: Path) -> bool:
    probe = folder / ".write-probe"
    try:
        probe.touch()
    except OSError:
        return False
    probe.unlink()
    return True


def make_read_only(folder: Path) -> str | None:
    """Make ``folder`` read-only: chmod 555, and where that does not stop this user (root), the
    immutable attribute (chattr +i). None when it is truly read-only now (checked by trying to
    write), else why not (the caller skips). Undo with :func:`undo_read_only`."""
    folder.chmod(0o555)
    if not _writable(folder):
        return None
    if shutil.which("chattr"):
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
        if done.returncode == 0 and not _writable(folder):
            return None
        why = done.stderr.strip() or "the folder stayed writable"
    else:
        why = "no chattr"
    undo_read_only(folder)
    folder.chmod(0o555)
    return f"running as uid {os.getuid()}, chmod 555 leaves {folder} writable and chattr +i failed ({why})"


def undo_read_only(folder: Path) -> None:
    if shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o755)
