"""robust-digits: an example task plugin for robust (scikit-learn's 8x8 digits)."""

from robust_digits.task import DigitsTask

__all__ = ["DigitsTask"]
__version__ = "0.1.0"
