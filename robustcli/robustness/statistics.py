"""Statistics of a candidate's instance losses, with percentile-bootstrap confidence intervals,
and Student's t quantiles (the race's bounds on a mean difference).

Pure numpy: the selection loop and the reports use these without torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["STATISTICS", "Estimate", "LossSummary", "statistic", "summarize", "summarize_instances", "t_quantile"]


def _q(q: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda a: np.quantile(a, q, axis=-1)


#: name -> function of an array whose last axis holds the losses
STATISTICS: Mapping[str, Callable[[np.ndarray], np.ndarray]] = {
    "mean": lambda a: np.mean(a, axis=-1),
    "median": lambda a: np.median(a, axis=-1),
    "min": lambda a: np.min(a, axis=-1),
    "max": lambda a: np.max(a, axis=-1),
    # ddof=1 is the unbiased sample std; a single instance has none
    "std": lambda a: np.std(a, axis=-1, ddof=1) if a.shape[-1] > 1 else np.full(a.shape[:-1], np.nan),
    "iqr": lambda a: _q(0.75)(a) - _q(0.25)(a),
    "q90_q10": lambda a: _q(0.90)(a) - _q(0.10)(a),
}


@dataclass(frozen=True)
class Estimate:
    """A statistic's value over the losses and its bootstrap interval (NaN where undefined)."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def statistic(name: str, losses: Sequence[float]) -> float:
    """One named statistic of finite losses (failed instances are the caller's business)."""
    return float(STATISTICS[name](np.asarray(losses, dtype=float)))


def summarize(
    losses: Sequence[float],
    *,
    names: Sequence[str] = tuple(STATISTICS),
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Estimate]:
    """Each statistic with a percentile-bootstrap interval at ``confidence``.

    The bootstrap resamples the instances with replacement ``n_boot`` times with a fixed
    ``seed``, so the same losses always give the same intervals. With fewer than two losses the
    intervals are NaN: one instance says nothing about the spread.
    """
    a = np.asarray(losses, dtype=float)
    out: dict[str, Estimate] = {}
    if a.size == 0:
        return {n: Estimate(np.nan, np.nan, np.nan) for n in names}
    rng = np.random.default_rng(seed)
    resampled = a[rng.integers(0, a.size, size=(n_boot, a.size))] if a.size > 1 else None
    alpha = (1.0 - confidence) / 2
    for name in names:
        fn = STATISTICS[name]
        value = float(fn(a))
        if resampled is None:
            out[name] = Estimate(value, np.nan, np.nan)
            continue
        boot = fn(resampled)
        boot = boot[np.isfinite(boot)]
        low, high = (np.quantile(boot, [alpha, 1 - alpha]) if boot.size else (np.nan, np.nan))
        out[name] = Estimate(value, float(low), float(high))
    return out


@dataclass(frozen=True)
class LossSummary:
    """What every command shows of a candidate's instance losses (see :func:`summarize_instances`)."""

    instances: int
    failed: int
    statistics: Mapping[str, Estimate]

    @property
    def systematic_abs(self) -> float:
        """The instance-to-instance spread (std): the systematic uncertainty of "the" model's loss."""
        return self.statistics["std"].value

    @property
    def systematic_rel(self) -> float:
        """:attr:`systematic_abs` as a share of the mean loss (NaN without a mean)."""
        mean = self.statistics["mean"].value
        return self.systematic_abs / mean if mean and math.isfinite(mean) else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            "instances": self.instances,
            "failed": self.failed,
            "statistics": {k: v.as_dict() for k, v in self.statistics.items()},
            "systematic_abs": self.systematic_abs,
            "systematic_rel": self.systematic_rel,
        }


def summarize_instances(losses: Sequence[float], seed: int) -> LossSummary:
    """The one summary of a candidate's instance losses that every command prints (assess, select,
    report): every statistic of the finished instances' losses, with its bootstrap interval drawn
    with the *study's* ``seed``, so the same candidate shows the same interval everywhere. Failed
    instances (NaN or infinite loss) are counted, not averaged."""
    finite = [float(x) for x in losses if math.isfinite(x)]
    return LossSummary(len(losses), len(losses) - len(finite), summarize(finite, seed=seed))


# --- Student's t quantiles in pure Python (scipy is not a dependency of the core) -----------


def _betacf(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) (continued fraction, modified Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(ln)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _t_sf(t: float, df: float) -> float:
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


@lru_cache(maxsize=4096)
def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (``0 < p < 1``)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    tail = 1.0 - p
    lo, hi = 0.0, 1.0
    while _t_sf(hi, df) > tail:
        lo, hi = hi, hi * 2.0
        if hi > 1e12:
            return hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_sf(mid, df) > tail:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)
