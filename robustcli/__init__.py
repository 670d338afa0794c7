"""robustcli: find deep-learning models that are accurate and robust to the training sample and the
initialisation. The `robust` command is its face; :mod:`robustcli.api` is the library."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("robustcli")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
