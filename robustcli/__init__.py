"""robustcli: find deep-learning models that are accurate and robust to the training sample and the
initialisation. The `robust` command is its face; :mod:`robustcli.api` is the library."""

from typing import Any

from robustcli.execution.cores import use_passive_wait

__all__ = ["__version__"]

# before torch loads (every robust command and API use imports this package first): torch's
# OpenMP threads then sleep rather than spin while they wait, which keeps a job fast beside other
# jobs; a user's own OMP_WAIT_POLICY is kept (see robustcli.execution.cores)
use_passive_wait()


def __getattr__(name: str) -> Any:
    # looked up when asked for: every `robust` start imports this package
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("robustcli")
        except PackageNotFoundError:  # run from a source tree that was never installed
            return "0+unknown"
    raise AttributeError(f"module 'robustcli' has no attribute {name!r}")
