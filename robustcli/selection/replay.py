"""Loss tables in CSV: read and validate one for ``robust select --replay``; write one for
``robust export``.

Format: a header naming at least the columns ``candidate``, ``instance`` and ``loss`` (in any
order; other columns are ignored), then one row per finished instance::

    candidate,instance,loss
    lr0.001-bs32,0,0.0512
    lr0.001-bs32,1,0.0498
    ...

``instance`` is the 0-based instance index (the same index means the same data seed for every
candidate). A failed instance is written ``inf`` and read back as a failed instance; ``nan``, an
empty loss, and a number too large for a float (``1e400``, which would read as ``inf``) are
refused, naming the line. Every candidate must hold the same instances ``0 .. n-1``, and at least
one loss must be finite: a table of failed instances only has nothing to select on.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robustcli.errors import InputError

__all__ = ["REQUIRED_COLUMNS", "LossTable", "check_baseline_loss", "read_loss_table", "write_loss_table"]

REQUIRED_COLUMNS: tuple[str, ...] = ("candidate", "instance", "loss")
#: how a failed instance is written (any case, an optional "+")
_FAILED = ("inf", "infinity")


@dataclass(frozen=True)
class LossTable:
    """A complete table: ``losses[i, j]`` is candidate ``candidates[i]`` at instance ``j``."""

    candidates: tuple[str, ...]
    losses: np.ndarray
    source: str = "<memory>"

    @property
    def instances(self) -> int:
        return int(self.losses.shape[1])

    def as_mapping(self) -> dict[str, np.ndarray]:
        return {cid: self.losses[i] for i, cid in enumerate(self.candidates)}

    def subset(self, candidates: Sequence[str]) -> LossTable:
        """Only ``candidates`` (in table order)."""
        pos = {cid: i for i, cid in enumerate(self.candidates)}
        keep = sorted(pos[c] for c in set(candidates))
        table = LossTable(tuple(self.candidates[i] for i in keep), self.losses[keep], self.source)
        return _with_a_finite_loss(table, " of the chosen candidates")

    def require_steps(self, steps: int, option: str = "--max-steps") -> None:
        """Refuse a number of steps the table cannot feed (each step needs one instance more)."""
        if steps > self.instances:
            raise InputError(
                f"{self.source}: {option} {steps} needs {steps} instances per candidate, but candidate "
                f"{self.candidates[0]!r} (like every candidate in the table) has {self.instances}"
            )


def _parse_loss(text: str, reader: Any, path: Path, cid: str, instance: int) -> float:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is not None and value - value == 0.0:  # the common case: a finite number
        return value
    where = f"{path}: line {reader.line_num}"
    raw = text.strip()
    if not raw:
        raise InputError(f"{where}: empty loss for candidate {cid!r} instance {instance}")
    if value is None:
        raise InputError(f"{where}: loss {raw!r} of candidate {cid!r} instance {instance} is not a number")
    if value == math.inf:
        if raw.lower().lstrip("+") in _FAILED:
            return value
        raise InputError(
            f"{where}: loss {raw!r} of candidate {cid!r} instance {instance} is too large for a float "
            "(it would read as inf, a failed instance); write a failed instance as inf"
        )
    if math.isnan(value):
        raise InputError(
            f"{where}: loss is NaN for candidate {cid!r} instance {instance} (write a failed instance as inf)"
        )
    raise InputError(f"{where}: loss is -inf for candidate {cid!r} instance {instance}")


def _describe(indices: Sequence[int]) -> str:
    s = sorted(indices)
    if s and s == list(range(s[0], s[-1] + 1)):
        return f"{len(s)} instances ({s[0]}..{s[-1]})" if len(s) > 1 else f"1 instance ({s[0]})"
    shown = ", ".join(map(str, s[:6])) + (", ..." if len(s) > 6 else "")
    return f"{len(s)} instances ({shown})"


def read_loss_table(path: str | Path, *, min_instances: int | None = None) -> LossTable:
    """Read and validate a loss table; refuse anything malformed with a one-line InputError.

    The message names the file, the line and the problem: a missing column, an empty or NaN
    loss, a non-integer or negative instance, a duplicate (candidate, instance) pair,
    candidates with different instance sets, or fewer than ``min_instances`` instances.
    """
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: loss table not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the loss table: {exc.strerror or exc}") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise InputError(f"{path}: empty file; expected a header with columns {','.join(REQUIRED_COLUMNS)}") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: line 1: not a CSV header: {exc}") from None
        names = [h.strip().lower().lstrip("\ufeff") for h in header]
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise InputError(
                f"{path}: line 1: missing column {missing[0]!r} (the header has: {', '.join(header) or 'nothing'}; "
                f"needed: {', '.join(REQUIRED_COLUMNS)})"
            )
        ci, ii, li = (names.index(c) for c in REQUIRED_COLUMNS)
        width = max(ci, ii, li) + 1
        data: dict[str, dict[int, float]] = {}
        first_line: dict[tuple[str, int], int] = {}
        try:
            for row in reader:
                # the hot loop of a 500,000-row table: messages are built only on error
                if len(row) < width:
                    if not row or all(not cell.strip() for cell in row):
                        continue
                    row = row + [""] * (width - len(row))
                cid = row[ci].strip()
                raw_j = row[ii]
                try:
                    j = int(raw_j)
                except ValueError:
                    if not cid and all(not cell.strip() for cell in row):
                        continue
                    where = f"{path}: line {reader.line_num}"
                    if not cid:
                        raise InputError(f"{where}: empty candidate id") from None
                    raise InputError(
                        f"{where}: instance {raw_j.strip()!r} of candidate {cid!r} is not an integer"
                    ) from None
                if not cid or j < 0:
                    where = f"{path}: line {reader.line_num}"
                    if not cid:
                        raise InputError(f"{where}: empty candidate id")
                    raise InputError(f"{where}: instance {j} of candidate {cid!r} is negative (instances are 0-based)")
                per = data.get(cid)
                if per is None:
                    per = data[cid] = {}
                elif j in per:
                    raise InputError(
                        f"{path}: line {reader.line_num}: duplicate candidate {cid!r} instance {j} "
                        f"(first on line {first_line[(cid, j)]})"
                    )
                per[j] = _parse_loss(row[li], reader, path, cid, j)
                first_line[(cid, j)] = reader.line_num
        except csv.Error as exc:
            raise InputError(f"{path}: line {reader.line_num}: malformed CSV: {exc}") from None
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not UTF-8 text: {exc}") from None
    if not data:
        raise InputError(f"{path}: no data rows after the header")
    return _complete(data, str(path), min_instances)


def _complete(data: Mapping[str, Mapping[int, float]], source: str, min_instances: int | None) -> LossTable:
    ids = sorted(data)
    ref = ids[0]
    ref_set = set(data[ref])
    for cid in ids:
        got = set(data[cid])
        if got != ref_set:
            lacking = sorted(ref_set - got)
            extra = sorted(got - ref_set)
            detail = f"lacks instance {lacking[0]}" if lacking else f"has extra instance {extra[0]}"
            raise InputError(
                f"{source}: candidate {cid!r} has {_describe(sorted(got))} but candidate {ref!r} has "
                f"{_describe(sorted(ref_set))} ({cid!r} {detail}); every candidate needs the same instances"
            )
    n = len(ref_set)
    if ref_set != set(range(n)):
        gap = min(set(range(n)) - ref_set)
        raise InputError(
            f"{source}: candidate {ref!r} (like every candidate) has {_describe(sorted(ref_set))} but lacks "
            f"instance {gap}; instances must be 0..n-1"
        )
    if min_instances is not None and n < min_instances:
        raise InputError(
            f"{source}: {min_instances} instances per candidate are needed, but candidate {ref!r} "
            f"(like every candidate) has {n}"
        )
    losses = np.array([[data[cid][j] for j in range(n)] for cid in ids], dtype=float)
    return _with_a_finite_loss(LossTable(tuple(ids), losses, source))


def _with_a_finite_loss(table: LossTable, which: str = "") -> LossTable:
    """``table``, refused when no candidate has a finite loss (every instance failed): a
    selection would pick one by its id alone."""
    if not np.isfinite(table.losses).any():
        raise InputError(
            f"{table.source}: every loss{which} is inf (a failed instance): no candidate has a finite loss to select on"
        )
    return table


def check_baseline_loss(value: float | None, option: str = "--baseline-loss") -> float | None:
    """A baseline loss as given, refused unless finite (NaN or inf would silently switch the cut off)."""
    if value is not None and not math.isfinite(value):
        raise InputError(f"{option} {value}: expected a finite loss (the best baseline's mean loss)")
    return value


def loss_table_from_array(candidates: Sequence[str], losses: np.ndarray, source: str = "<memory>") -> LossTable:
    """A :class:`LossTable` from ids and a candidates x instances array (validated the same way)."""
    a = np.asarray(losses, dtype=float)
    if a.ndim != 2 or a.shape[0] != len(candidates):
        raise InputError(f"{source}: losses must be {len(candidates)} x n, got shape {a.shape}")
    if len(set(candidates)) != len(candidates):
        raise InputError(f"{source}: duplicate candidate ids")
    if np.isnan(a).any():
        i, j = np.argwhere(np.isnan(a))[0]
        raise InputError(f"{source}: loss is NaN for candidate {candidates[i]!r} instance {j}")
    order = sorted(range(len(candidates)), key=lambda i: str(candidates[i]))
    return LossTable(tuple(str(candidates[i]) for i in order), a[order], source)


def _format_loss(value: Any) -> str:
    x = float(value)
    if not math.isfinite(x):
        return "inf"
    return repr(x)


def write_loss_table(path: str | Path, rows: Iterable[Mapping[str, Any] | Sequence[Any]]) -> int:
    """Write rows as a loss table; returns the number of rows written.

    A row is ``(candidate, instance, loss)`` or a mapping with at least those keys; a
    mapping's other keys become extra columns (in the order first seen). Losses are written
    at full precision; a failed instance (``nan`` or ``inf``) is written ``inf``. The file is
    written to a temporary name and renamed, so a reader never sees half a table.
    """
    path = Path(path)
    materialised: list[dict[str, Any]] = []
    extra: list[str] = []
    for n, row in enumerate(rows, start=1):
        if isinstance(row, Mapping):
            missing = [c for c in REQUIRED_COLUMNS if c not in row]
            if missing:
                raise InputError(f"row {n} for {path} lacks {missing[0]!r}")
            rec = dict(row)
            for key in rec:
                if key not in REQUIRED_COLUMNS and key not in extra:
                    extra.append(key)
        else:
            seq = list(row)
            if len(seq) < 3:
                raise InputError(f"row {n} for {path} needs candidate, instance, loss; got {seq!r}")
            rec = dict(zip(REQUIRED_COLUMNS, seq[:3]))
        try:
            rec["instance"] = int(rec["instance"])
        except (TypeError, ValueError):
            raise InputError(f"row {n} for {path}: instance {rec['instance']!r} is not an integer") from None
        if rec["instance"] < 0:
            raise InputError(f"row {n} for {path}: instance {rec['instance']} is negative")
        rec["loss"] = _format_loss(rec["loss"])
        materialised.append(rec)
    columns = list(REQUIRED_COLUMNS) + extra
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            for rec in materialised:
                writer.writerow({k: ("" if rec.get(k) is None else rec.get(k)) for k in columns})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(materialised)
