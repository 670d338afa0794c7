"""Tags that say where and with what an instance was trained, for `robust reproduce`."""

from __future__ import annotations

import functools
import platform
import socket
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from robustcli.tracking import tags as T


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


@functools.cache
def git_commit() -> str:
    """The commit of the robustcli checkout, when it runs from one."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else "unknown"


def provenance_tags(
    plugin_distribution: str, device: str, threads: int | None = None, wait_policy: str | None = None
) -> dict[str, str]:
    """Versions, host and how an instance ran; ``threads`` and ``wait_policy``: the torch threads of
    the process that trained it and how they waited (a pool worker's, not this process's), default
    this process's."""
    import torch

    from robustcli.execution.cores import wait_policy as this_wait_policy

    return {
        f"{T.VERSION_PREFIX}robustcli": _version("robustcli"),
        f"{T.VERSION_PREFIX}plugin": f"{plugin_distribution} {_version(plugin_distribution)}",
        f"{T.VERSION_PREFIX}torch": torch.__version__,
        f"{T.VERSION_PREFIX}mlflow": _version("mlflow"),
        f"{T.VERSION_PREFIX}python": platform.python_version(),
        T.GIT_COMMIT: git_commit(),
        T.DEVICE: device,
        T.HOST: socket.gethostname(),
        T.TORCH_THREADS: str(threads if threads is not None else torch.get_num_threads()),
        # OMP_WAIT_POLICY: when idle threads sleep (PASSIVE) or spin; speed only, never the numbers
        T.OMP_WAIT_POLICY: wait_policy or this_wait_policy(),
        T.DETERMINISTIC_ALGORITHMS: str(torch.are_deterministic_algorithms_enabled()).lower(),
    }


#: provenance tags whose difference can explain a reproduction that is not bit for bit
COMPARED_TAGS = (
    f"{T.VERSION_PREFIX}robustcli",
    f"{T.VERSION_PREFIX}plugin",
    f"{T.VERSION_PREFIX}torch",
    f"{T.VERSION_PREFIX}python",
    T.DEVICE,
    T.TORCH_THREADS,
    T.DETERMINISTIC_ALGORITHMS,
)
