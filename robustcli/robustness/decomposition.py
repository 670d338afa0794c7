"""Where a candidate's spread comes from: the initialisation, the training sample, or both.

Three sets of instance losses: both seeds vary, only the initialisation varies (one training
sample), only the training sample varies (one initialisation). Were the two sources independent
and additive, var(both) = var(init) + var(data). The shares say how much of var(init) + var(data)
each source holds; the ratio (var(init) + var(data)) / var(both) says whether they add up. All with
percentile-bootstrap intervals (each set resampled on its own, a fixed seed). Pure numpy.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from robustcli.robustness.statistics import Estimate, summarize

__all__ = ["SOURCES", "Decomposition", "Spread", "SpreadBySource", "decompose"]

#: the three sets, by what varies between their instances
SOURCES = ("both", "init", "data")

#: a ratio interval reaching beyond [1/_LOOSE, _LOOSE] cannot tell adding up from a factor of 2
_LOOSE = 2.0


@dataclass(frozen=True)
class Decomposition:
    """The three standard deviations, the shares of var(init) + var(data), and whether they add up."""

    std: Mapping[str, Estimate]  # both, init, data
    shares: Mapping[str, Estimate]  # init, data: var(x) / (var(init) + var(data))
    ratio: Estimate  # (var(init) + var(data)) / var(both)
    verdict: str  # "adds up", "does not add up", "too few instances to tell"
    note: str | None  # a line for the reader when they do not add up (or cannot be told to)

    def as_dict(self) -> dict:
        return {
            "std": {k: v.as_dict() for k, v in self.std.items()},
            "shares": {k: v.as_dict() for k, v in self.shares.items()},
            "ratio": self.ratio.as_dict(),
            "verdict": self.verdict,
            "note": self.note,
        }


@dataclass(frozen=True)
class Spread:
    """The standard deviation of one set's finished instance losses (None with fewer than two), and
    how many there are: a cell of the report's table of where the spread comes from."""

    instances: int
    std: float | None

    @classmethod
    def of(cls, losses: Sequence[float]) -> Spread:
        finite = [x for x in losses if math.isfinite(x)]
        return cls(len(finite), statistics.stdev(finite) if len(finite) > 1 else None)


@dataclass(frozen=True)
class SpreadBySource:
    """A candidate's spread with both seeds varying, only the initialisation (``init``) and only the
    training sample (``data``): a row of the report's table; ``description`` is its readable label."""

    candidate: str
    both: Spread
    init: Spread
    data: Spread
    description: str | None = None

    def by_source(self) -> tuple[Spread, Spread, Spread]:
        """The three cells in :data:`SOURCES` order."""
        return self.both, self.init, self.data


def decompose(
    losses: Mapping[str, Sequence[float]], *, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> Decomposition:
    """Decompose the spread of ``losses["both"]`` into ``losses["init"]`` and ``losses["data"]``
    (finite losses only; at least two in each set for a spread)."""
    sets = {k: np.asarray([x for x in losses[k] if np.isfinite(x)], dtype=float) for k in SOURCES}
    std = {k: summarize(sets[k], names=("std",), confidence=confidence, n_boot=n_boot, seed=seed)["std"] for k in SOURCES}
    var = {k: _var(a) for k, a in sets.items()}
    if any(a.size < 2 for a in sets.values()):
        nan = Estimate(np.nan, np.nan, np.nan)
        return Decomposition(std, {"init": nan, "data": nan}, nan, "too few instances to tell",
                             "fewer than 2 finished instances in a set: no spread to decompose")
    rng = np.random.default_rng(seed)
    boot = {k: _var(a[rng.integers(0, a.size, size=(n_boot, a.size))]) for k, a in sets.items()}
    alpha = (1.0 - confidence) / 2

    def estimate(value: float, draws: np.ndarray) -> Estimate:
        draws = draws[np.isfinite(draws)]
        if not draws.size:
            return Estimate(float(value), np.nan, np.nan)
        low, high = np.quantile(draws, [alpha, 1 - alpha])
        return Estimate(float(value), float(low), float(high))

    with np.errstate(divide="ignore", invalid="ignore"):
        parts, boot_parts = var["init"] + var["data"], boot["init"] + boot["data"]
        shares = {k: estimate(var[k] / parts, boot[k] / boot_parts) for k in ("init", "data")}
        ratio = estimate(parts / var["both"], boot_parts / boot["both"])
    verdict, note = _verdict(ratio, min(a.size for a in sets.values()))
    return Decomposition(std, shares, ratio, verdict, note)


def _var(a: np.ndarray) -> np.ndarray:
    return np.var(a, axis=-1, ddof=1)


def _verdict(ratio: Estimate, n: int) -> tuple[str, str | None]:
    if not np.isfinite(ratio.value) or not np.isfinite(ratio.low):
        return "too few instances to tell", "the spreads are zero or undefined: nothing to decompose"
    said = (f"var(init) + var(data) = {100 * ratio.value:.0f}% of var(both) "
            f"[{100 * ratio.low:.0f}%, {100 * ratio.high:.0f}%]")
    if ratio.low > 1 or ratio.high < 1:
        return "does not add up", (
            f"the two sources do not add up: {said}; an interaction between initialisation and training "
            f"sample (or a fixed sample or initialisation that is not typical), or too few instances ({n} per set)"
        )
    if ratio.low < 1 / _LOOSE or ratio.high > _LOOSE:
        return "too few instances to tell", (
            f"too few instances ({n} per set) to tell whether the two sources add up: {said}"
        )
    return "adds up", None
