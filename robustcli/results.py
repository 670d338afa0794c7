"""What every result of the library shares: a JSON-ready dict and a table (``to_frame``).

A result is a plain dataclass. ``as_dict()`` is what ``--json`` prints; ``records()`` is its natural
table (one row per instance, per candidate, per size...), and ``to_frame()`` that table as a
pandas DataFrame for a notebook (pandas is optional: ``records()`` needs nothing).
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["TableResult", "flat_statistics", "plain"]


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data: results and estimates by their ``as_dict``, dataclasses by
    field, containers item by item."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def flat_statistics(statistics: dict[str, Any]) -> dict[str, float]:
    """``{"mean": {"value", "low", "high"}, ...}`` -> ``{"mean": v, "mean_low": l, "mean_high": h, ...}``."""
    out: dict[str, float] = {}
    for name, est in statistics.items():
        est = est.as_dict() if hasattr(est, "as_dict") else est
        out[name], out[f"{name}_low"], out[f"{name}_high"] = est["value"], est["low"], est["high"]
    return out


class TableResult:
    """Mixin of a result dataclass: ``as_dict``, ``records`` and ``to_frame``."""

    def as_dict(self) -> dict[str, Any]:
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def records(self) -> list[dict[str, Any]]:
        """The result as a table: a list of flat dicts (the subclass says what a row is)."""
        return [self.as_dict()]

    def to_frame(self) -> Any:
        """:meth:`records` as a pandas DataFrame (``pip install pandas`` if it is missing)."""
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - MLflow brings pandas; a bare install may not
            raise ImportError(f"{type(self).__name__}.to_frame() needs pandas (pip install pandas); .records() does not") from None
        return pd.DataFrame(self.records())
