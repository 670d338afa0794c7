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


#: a result's repr is one line of at most this many characters (a notebook cell shows it whole)
_REPR_LIMIT = 300
#: rows an HTML table shows before "... N more rows" (to_frame() has them all)
_HTML_ROWS = 20


class TableResult:
    """Mixin of a result dataclass: ``as_dict``, ``records`` and ``to_frame``, and its display: a
    one-line ``repr`` (:meth:`summary_line`) and, in a notebook, ``_repr_html_``: that line over a
    table of :meth:`html_rows` (an estimate's ``x``, ``x_low``, ``x_high`` shown as ``x [low, high]``).
    Declare subclasses ``@dataclass(repr=False)``, or the dataclass's repr (every field, PNG
    bytes included) replaces this one."""

    def as_dict(self) -> dict[str, Any]:
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def records(self) -> list[dict[str, Any]]:
        """The result as a table: a list of flat dicts (the subclass says what a row is)."""
        return [self.as_dict()]

    def to_frame(self) -> Any:  # a pandas DataFrame: pandas is optional, and the hint must resolve without it
        """:meth:`records` as a pandas DataFrame (``pip install pandas`` if it is missing)."""
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - MLflow brings pandas; a bare install may not
            raise ImportError(f"{type(self).__name__}.to_frame() needs pandas (pip install pandas); .records() does not") from None
        return pd.DataFrame(self.records())

    # -- display ---------------------------------------------------------------------------
    def summary_line(self) -> str:
        """The result in one line of words (the subclass says what matters)."""
        return f"{len(self.records())} rows"

    def html_rows(self) -> list[dict[str, Any]]:
        """The rows a notebook shows (default: :meth:`records`)."""
        return self.records()

    def __repr__(self) -> str:
        line = f"<{type(self).__name__}: {self.summary_line()}>"
        return line if len(line) <= _REPR_LIMIT else line[: _REPR_LIMIT - 4] + " ...>"

    def _repr_html_(self) -> str:
        import html

        rows = [_joined_intervals(r) for r in self.html_rows()]
        head = f"<p><b>{html.escape(type(self).__name__)}</b>: {html.escape(self.summary_line())}</p>"
        if not rows:
            return head
        columns: list[str] = []
        for row in rows:
            columns += [k for k in row if k not in columns]
        cells = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_shown(r.get(c)))}</td>" for c in columns) + "</tr>"
            for r in rows[:_HTML_ROWS]
        )
        more = f"<p>... {len(rows) - _HTML_ROWS} more rows (.to_frame() has them all)</p>" if len(rows) > _HTML_ROWS else ""
        return f"{head}<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>{more}"


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        text = str(plain(value))
        return text if len(text) <= 80 else text[:77] + "..."
    return str(value)


def _joined_intervals(row: dict[str, Any]) -> dict[str, Any]:
    """``{"mean": v, "mean_low": l, "mean_high": h}`` -> ``{"mean": "v [l, h]"}`` (nan bounds left out)."""
    import math

    out: dict[str, Any] = {}
    for key, value in row.items():
        if key.endswith(("_low", "_high")) and key.rsplit("_", 1)[0] in row:
            continue
        low, high = row.get(f"{key}_low"), row.get(f"{key}_high")
        if isinstance(value, float) and isinstance(low, float) and isinstance(high, float):
            value = f"{value:.4g}" if math.isnan(low) or math.isnan(high) else f"{value:.4g} [{low:.4g}, {high:.4g}]"
        out[key] = value
    return out
