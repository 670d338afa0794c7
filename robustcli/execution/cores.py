"""How `robust` uses the CPU cores it is given: how many there are, and how torch's threads wait.

Why this matters: torch's CPU kernels run on an OpenMP thread pool, and by default an
OpenMP thread that has finished its share of an op *spins* for its next one instead of sleeping.
Alone on a machine that costs nothing; beside another busy process (another study, a second
user's training, a test suite) each of the plain loop's thousands of small ops waits for a core
that the neighbour holds, and a command ran 1.6-7x slower while burning up to 4x the CPU.

So, unless the user says otherwise:

* ``OMP_WAIT_POLICY=PASSIVE`` is set as soon as :mod:`robustcli` is imported, before torch loads
  (the OpenMP runtime reads it once, when torch loads it; it is inherited by the local pool's
  workers). A user's own ``OMP_WAIT_POLICY`` is left alone, and nothing is set when torch was
  imported first (too late to matter: the policy recorded is then the one torch started with).
* the cores this process may use are counted from its CPU affinity *and* its cgroup's CPU quota
  (a container or a cluster job limited to 2 CPUs of a 64-core node gets 2 workers or threads,
  not 64); a user's ``OMP_NUM_THREADS`` is kept.

The default executor trains with one thread per process anyway (:mod:`robustcli.execution.auto`);
the passive policy serves whoever asks for several (``--threads``, ``--executor inprocess``,
XGBoost's baselines).

The wait policy changes when a thread sleeps, never what it computes: results are the same under
either policy. The thread count can change a kernel's summation order, so every instance run
records both (tags ``robust.torch_threads`` and ``robust.omp_wait_policy``).
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

__all__ = [
    "WAIT_POLICY_VAR", "available_cores", "cgroup_cpu_limit", "default_threads", "omp_num_threads", "use_passive_wait",
    "wait_policy",
]

WAIT_POLICY_VAR = "OMP_WAIT_POLICY"

#: the policy this process's OpenMP runtime started with (None: not known yet, see wait_policy)
_POLICY: str | None = None


def use_passive_wait() -> None:
    """Ask OpenMP's threads to sleep, not spin, while they wait (unless the user chose, or torch
    is already loaded); remember the policy torch runs with. Called when robustcli is imported."""
    global _POLICY
    if _POLICY is not None:
        return
    if "torch" not in sys.modules:
        os.environ.setdefault(WAIT_POLICY_VAR, "PASSIVE")
    _POLICY = _normalised(os.environ.get(WAIT_POLICY_VAR))


def wait_policy() -> str:
    """``PASSIVE``, ``ACTIVE`` or ``default`` (OpenMP's own: spin a while, then sleep): the wait
    policy torch's threads run with in this process."""
    return _POLICY if _POLICY is not None else _normalised(os.environ.get(WAIT_POLICY_VAR))


def _normalised(value: str | None) -> str:
    value = (value or "").strip().upper()
    return value if value in ("PASSIVE", "ACTIVE") else "default"


def available_cores() -> int:
    """The CPUs this process may use: its affinity, capped by its cgroup's CPU quota, at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, math.ceil(limit))
    return max(1, cores)


def omp_num_threads() -> int | None:
    """``OMP_NUM_THREADS`` where the user set it to a count (torch reads it too), else None."""
    given = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(given) if given.isdigit() and int(given) > 0 else None


def default_threads() -> int:
    """torch threads of ``--executor inprocess`` without ``--threads``: ``OMP_NUM_THREADS`` where
    set, else :func:`available_cores`."""
    return omp_num_threads() or available_cores()


def cgroup_cpu_limit(root: str | Path = "/sys/fs/cgroup", own: str | Path = "/proc/self/cgroup") -> float | None:
    """CPUs allowed by the cgroup quota of this process (quota / period), the tightest along its
    cgroup path; None when there is none (or no cgroup file can be read).

    cgroup v2: ``cpu.max`` (``"200000 100000"`` or ``"max 100000"``) in the process's cgroup and
    its parents; cgroup v1: ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1: none). Inside a
    container the process's cgroup is the root of what it sees."""
    root = Path(root)
    limits: list[float] = []
    for folder in _cgroup_folders(root, Path(own)):
        limit = _v2_limit(folder / "cpu.max")
        if limit is None:
            limit = _v1_limit(folder / "cpu.cfs_quota_us", folder / "cpu.cfs_period_us")
        if limit is not None:
            limits.append(limit)
    return min(limits) if limits else None


def _cgroup_folders(root: Path, own: Path) -> list[Path]:
    """The folders that may hold this process's CPU quota: its cgroup (v2, or v1's cpu controller)
    and every parent up to ``root``, and ``root`` itself (a container's own cgroup)."""
    paths: list[Path] = []
    try:
        lines = own.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, rel = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # v2: "0::/path"
            base = root
        elif "cpu" in controllers.split(","):  # v1: "4:cpu,cpuacct:/path"
            base = next((root / name for name in (controllers, "cpu", "cpu,cpuacct") if (root / name).is_dir()), None)
            if base is None:
                continue
        else:
            continue
        folder = base / rel.strip("/") if rel.strip("/") else base
        while True:
            paths.append(folder)
            if folder == base:
                break
            folder = folder.parent
    for extra in (root, root / "cpu", root / "cpu,cpuacct"):
        if extra not in paths:
            paths.append(extra)
    return paths


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _v2_limit(path: Path) -> float | None:
    text = _read(path)
    if not text:
        return None
    quota, _, period = text.partition(" ")
    try:
        return None if quota == "max" else int(quota) / int(period or 100000)
    except (ValueError, ZeroDivisionError):
        return None


def _v1_limit(quota_path: Path, period_path: Path) -> float | None:
    quota, period = _read(quota_path), _read(period_path)
    try:
        q, p = int(quota or "-1"), int(period or "0")
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None
