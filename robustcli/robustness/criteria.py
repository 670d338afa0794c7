"""Criteria: how a candidate's instance losses are turned into a rank (lower is better).

A criterion is a statistic of one candidate's losses: the built-in ones are the names of
:data:`robustcli.robustness.statistics.STATISTICS` (``mean``, ``median``, ``min``, ``max``,
``std``, ``iqr``, ``q90_q10``); a user adds one by dotted path, ``pkg.mod:func`` or
``pkg.mod.func``, to a function ``func(losses: numpy.ndarray) -> float`` that receives the
finite losses of one candidate, ordered by instance index, and returns a number where lower is
better. Such a function is called once on a small sample (:data:`PROBE_LOSSES`) when the
criterion is made, before anything trains: one that fails there, or returns anything but a
number, is refused as bad input.

Failed instances. A diverged or failed instance has loss ``nan`` or ``inf``. It counts as a
training, and a candidate with any such instance gets criterion value ``+inf``: it ranks after
every candidate whose instances all finished. An undefined statistic (``std`` of one instance)
is ``+inf`` too, so an undefined value never wins; use a warm-up of at least two steps with
spread criteria.

Several criteria at once (:class:`Objective`):

* ``lexicographic``: rank by the first criterion, break its ties by the second, and so on;
* ``pareto``: rank by Pareto front (front 0 is the candidates no other candidate dominates;
  front 1 is those only front 0 dominates, ...), break ties inside a front lexicographically.

The last tie-breaker is always the candidate id, so a ranking is deterministic.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from robustcli.errors import InputError, UnknownNameError
from robustcli.robustness.statistics import STATISTICS

__all__ = [
    "COMBINE_MODES",
    "Criterion",
    "Objective",
    "get_criterion",
    "make_objective",
    "pareto_fronts",
]

Combine = Literal["lexicographic", "pareto"]
COMBINE_MODES: tuple[str, ...] = ("lexicographic", "pareto")


@dataclass(frozen=True)
class Criterion:
    """One named statistic of a candidate's losses; lower is better.

    ``fn`` maps a 2-D array (candidates x instances, all finite) to one value per row when
    ``vectorized`` is true, else a 1-D array of one candidate's losses to a float.
    """

    name: str
    fn: Callable[[np.ndarray], object] = field(repr=False, compare=False)
    vectorized: bool = False

    def values(self, losses: np.ndarray) -> np.ndarray:
        """The criterion of every row of ``losses`` (candidates x instances), as floats.

        A row holding a non-finite loss, and an undefined (NaN) value, become ``+inf``.
        """
        a = np.asarray(losses, dtype=float)
        if a.ndim != 2:
            raise ValueError(f"losses must be 2-D (candidates x instances), got shape {a.shape}")
        out = np.full(a.shape[0], np.inf)
        if a.shape[1] == 0 or a.shape[0] == 0:
            return out
        ok = np.isfinite(a).all(axis=1)
        if not ok.any():
            return out
        if self.vectorized:
            with np.errstate(all="ignore"):
                out[ok] = np.asarray(self.fn(a[ok]), dtype=float)
        else:
            for row in np.flatnonzero(ok):
                out[row] = self._call_one(a[row])
        out[np.isnan(out)] = np.inf
        return out

    def __call__(self, losses: Sequence[float]) -> float:
        """The criterion of one candidate's losses (``+inf`` if one failed or it is undefined)."""
        return float(self.values(np.asarray(losses, dtype=float).reshape(1, -1))[0])

    def _call_one(self, row: np.ndarray) -> float:
        try:
            value = self.fn(row.copy())
            return float(value)  # type: ignore[arg-type]
        except Exception as exc:  # a user's function: report it as bad input, naming it
            raise InputError(f"criterion {self.name!r} failed on losses {row.tolist()[:5]}...: {exc}") from None


def _builtin(name: str) -> Criterion:
    return Criterion(name=name, fn=STATISTICS[name], vectorized=True)


def _load_dotted(spec: str, where: str) -> Callable[[np.ndarray], object]:
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
    else:
        module_name, _, attr = spec.rpartition(".")
    place = f" ({where})" if where else ""
    if not module_name or not attr:
        raise InputError(f"criterion {spec!r}{place}: expected 'pkg.module:function' or 'pkg.module.function'")
    if module_name.startswith(".") or any(not part.isidentifier() for part in module_name.split(".")):
        raise InputError(
            f"criterion {spec!r}{place}: {module_name!r} is not an absolute module name; "
            "expected 'pkg.module:function' or 'pkg.module.function'"
        )
    if any(not part.isidentifier() for part in attr.split(".")):
        raise InputError(f"criterion {spec!r}{place}: {attr!r} is not a function name; expected 'pkg.module:function'")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"criterion {spec!r}{place}: cannot import module {module_name!r}: {exc}") from None
    except (Exception, SystemExit) as exc:  # the user's module failed while importing
        raise InputError(
            f"criterion {spec!r}{place}: importing module {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise InputError(f"criterion {spec!r}{place}: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise InputError(f"criterion {spec!r}{place}: {attr!r} is not callable")
    return obj  # type: ignore[return-value]


#: the losses a user's criterion is tried on before anything trains (three finite losses, unordered)
PROBE_LOSSES = (0.3, 0.1, 0.2)


def _probe(crit: Criterion, where: str) -> Criterion:
    """Call a user's criterion once on :data:`PROBE_LOSSES` (a vectorised one on two such rows):
    one that does not take an array of losses or does not return a number is refused now, before
    any training, not after the first step."""
    place = f" ({where})" if where else ""
    sample = np.array([PROBE_LOSSES, PROBE_LOSSES[::-1]]) if crit.vectorized else np.array(PROBE_LOSSES)
    shown = list(PROBE_LOSSES)
    try:
        with np.errstate(all="ignore"):
            value = crit.fn(sample.copy())
    except Exception as exc:  # noqa: BLE001 - a user's function: any failure is bad input, named
        raise InputError(
            f"criterion {crit.name!r}{place} failed on losses {shown} (tried before anything trains; it takes a "
            f"numpy array of one candidate's losses and returns a number): {type(exc).__name__}: {exc}"
        ) from None
    expected = 2 if crit.vectorized else None
    try:
        numbers = np.asarray(value, dtype=float)
        ok = numbers.shape == (expected,) if expected else numbers.ndim == 0
    except (TypeError, ValueError):
        ok = False
    if not ok or isinstance(value, (str, bytes)):
        want = "one number per row" if expected else "a number"
        raise InputError(
            f"criterion {crit.name!r}{place} returned {value!r:.60} ({type(value).__name__}) on losses {shown}, "
            f"not {want}; a criterion maps a numpy array of one candidate's losses to a float (lower is better)"
        )
    return crit


def get_criterion(spec: str | Criterion | Callable[[np.ndarray], object], where: str = "") -> Criterion:
    """A :class:`Criterion` from a built-in name, a dotted path, a callable or a Criterion.

    A user's criterion (a dotted path or a callable) is called once on :data:`PROBE_LOSSES` here,
    so that one that does not map losses to a number is refused before anything trains.

    Raises :class:`~robustcli.errors.UnknownNameError` for an unknown plain name (listing the
    built-in ones) and :class:`~robustcli.errors.InputError` for a dotted path that does not load
    or a criterion that fails on the sample.
    """
    if isinstance(spec, Criterion):
        return spec
    if callable(spec):
        name = f"{getattr(spec, '__module__', '?')}:{getattr(spec, '__qualname__', repr(spec))}"
        return _probe(Criterion(name=name, fn=spec, vectorized=bool(getattr(spec, "vectorized", False))), where)
    text = str(spec).strip()
    key = text.replace("-", "_").lower()
    if key in STATISTICS:
        return _builtin(key)
    if ":" in text or "." in text:
        fn = _load_dotted(text, where)
        return _probe(Criterion(name=text, fn=fn, vectorized=bool(getattr(fn, "vectorized", False))), where)
    raise UnknownNameError("criterion", text, list(STATISTICS) + ["pkg.module:function"], where)


def pareto_fronts(values: np.ndarray) -> np.ndarray:
    """Front index of every row of ``values`` (rows x criteria, lower is better); 0 = non-dominated.

    Row a dominates row b when a <= b in every column and a < b in one. ``+inf`` compares as
    the worst value; equal rows do not dominate each other. Fast non-dominated sorting
    (Deb et al., NSGA-II): O(rows^2 x criteria) time, computed in blocks.
    """
    v = np.asarray(values, dtype=float)
    n = v.shape[0]
    if n == 0:
        return np.zeros(0, dtype=int)
    if v.ndim == 1 or v.shape[1] == 1:
        col = v.reshape(n, -1)[:, 0]
        _, inverse = np.unique(col, return_inverse=True)
        return inverse.astype(int)
    dominates = np.zeros((n, n), dtype=bool)  # dominates[a, b]: a dominates b
    block = max(1, 4_000_000 // max(1, n * v.shape[1]))
    for start in range(0, n, block):
        a = v[start : start + block, None, :]
        le = (a <= v[None, :, :]).all(axis=2)
        lt = (a < v[None, :, :]).any(axis=2)
        dominates[start : start + block] = le & lt
    count = dominates.sum(axis=0)
    front = np.full(n, -1, dtype=int)
    current = np.flatnonzero(count == 0)
    level = 0
    while current.size:
        front[current] = level
        count = count - dominates[current].sum(axis=0)
        count[front >= 0] = -1
        current = np.flatnonzero(count == 0)
        level += 1
    return front


@dataclass(frozen=True)
class Objective:
    """One or more criteria and how they combine into one ranking (lower is better)."""

    criteria: tuple[Criterion, ...]
    combine: Combine = "lexicographic"

    def __post_init__(self) -> None:
        if not self.criteria:
            raise InputError("at least one criterion is needed")
        if self.combine not in COMBINE_MODES:
            raise UnknownNameError("combine mode", str(self.combine), COMBINE_MODES)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.criteria]

    @property
    def primary(self) -> Criterion:
        return self.criteria[0]

    def values(self, losses: np.ndarray) -> np.ndarray:
        """Criterion values, candidates x criteria (``+inf`` for failed or undefined)."""
        a = np.asarray(losses, dtype=float)
        if not self.criteria:
            return np.zeros((a.shape[0], 0))
        return np.column_stack([c.values(a) for c in self.criteria])

    def scalar(self, losses: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
        """One number per candidate, lower is better, that the ranking agrees with up to ties:
        the first criterion (lexicographic) or the Pareto front index (pareto)."""
        v = self.values(losses) if values is None else values
        if self.combine == "pareto" and v.shape[1] > 1:
            return pareto_fronts(v).astype(float)
        return v[:, 0]

    def order(self, ids: Sequence[str], losses: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
        """Row indices of ``losses`` from best to worst; ties broken by candidate id."""
        v = self.values(losses) if values is None else values
        if len(ids) != v.shape[0]:
            raise ValueError("one id per row of losses is needed")
        id_rank = np.empty(len(ids), dtype=int)
        id_rank[np.argsort(np.asarray(ids, dtype=object), kind="stable")] = np.arange(len(ids))
        keys: list[np.ndarray] = [id_rank]
        keys += [v[:, k] for k in reversed(range(v.shape[1]))]
        if self.combine == "pareto" and v.shape[1] > 1:
            keys.append(pareto_fronts(v))
        return np.lexsort(keys)

    def rank(self, ids: Sequence[str], losses: np.ndarray) -> list[str]:
        """Candidate ids from best to worst."""
        return [ids[i] for i in self.order(ids, losses)]


def make_objective(
    criteria: str | Criterion | Sequence[str | Criterion] | Objective | None = None,
    combine: str = "lexicographic",
    where: str = "",
) -> Objective:
    """An :class:`Objective` from names/dotted paths/criteria (default: ``mean``)."""
    if isinstance(criteria, Objective):
        return criteria
    if criteria is None:
        criteria = ["mean"]
    if isinstance(criteria, (str, Criterion)) or callable(criteria):
        criteria = [criteria]  # type: ignore[list-item]
    items = tuple(get_criterion(c, where) for c in criteria)  # type: ignore[union-attr]
    if combine not in COMBINE_MODES:
        raise UnknownNameError("combine mode", str(combine), COMBINE_MODES, where)
    return Objective(items, combine)  # type: ignore[arg-type]
