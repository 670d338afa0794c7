"""Rules: which candidates survive a step of Algorithm 1.

``paper``
    The paper's rule (section 3.10). At the end of step 1, if a baseline loss is known, drop
    every candidate whose loss exceeds the baseline by more than ``baseline_margin`` (20 %);
    after the warm-up (steps > ``warmup``) drop the worse ``fraction`` (half) by the criterion.
``halving``
    Successive halving without the baseline cut: after the warm-up keep the better
    ``1 - fraction`` of the candidates by the criterion at every step.
``quantile``
    After the warm-up keep the candidates whose criterion is at most the ``1 - fraction``
    quantile of the criterion over the candidates still in the race (all ties at the threshold
    survive; with ``combine = "pareto"`` the value is the Pareto front index).
``race``
    A statistical race on the mean loss with an indifference zone; see :class:`RaceRule`.

Every rule is a pure function of the step and the :class:`~robustcli.selection.LossView`,
breaks ties by candidate id, ranks a candidate with a failed instance last and never returns
an empty set.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

from robustcli.errors import InputError, UnknownNameError
from robustcli.selection._base import LossView, Rule

__all__ = [
    "RULES",
    "HalvingRule",
    "PaperRule",
    "QuantileRule",
    "RaceRule",
    "make_rule",
    "t_quantile",
]


def _baseline_cut(view: LossView, margin: float) -> np.ndarray:
    """Mask of candidates whose mean loss is within ``(1 + margin)`` of the baseline.

    If no candidate passes, the cut says nothing useful and everyone is kept.
    """
    keep = np.ones(len(view.ids), dtype=bool)
    if view.baseline is None or not math.isfinite(view.baseline):
        return keep
    limit = view.baseline * (1.0 + margin) if view.baseline >= 0 else view.baseline * (1.0 - margin)
    passed = view.mean_losses() <= limit
    return passed if passed.any() else keep


def _keep_best(view: LossView, mask: np.ndarray, fraction: float) -> list[str]:
    """The better ``1 - fraction`` (rounded up, at least one) of the rows in ``mask``."""
    order = [i for i in view.order() if mask[i]]
    n_keep = max(1, math.ceil(len(order) * (1.0 - fraction) - 1e-9))
    kept = set(order[:n_keep])
    return [cid for i, cid in enumerate(view.ids) if i in kept]


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction < 1.0:
        raise InputError(f"fraction must be between 0 and 1 (exclusive), got {fraction}")


class PaperRule(Rule):
    """The paper's rule: a baseline cut after step 1, then drop the worse half every step."""

    name = "paper"

    def __init__(self, fraction: float = 0.5, baseline_margin: float = 0.20) -> None:
        _check_fraction(fraction)
        if baseline_margin < 0:
            raise InputError(f"baseline_margin must be >= 0, got {baseline_margin}")
        self.fraction, self.baseline_margin = fraction, baseline_margin

    def survivors(self, step: int, view: LossView) -> list[str]:
        mask = _baseline_cut(view, self.baseline_margin) if step == 1 else np.ones(len(view.ids), dtype=bool)
        if step > view.warmup:
            return _keep_best(view, mask, self.fraction)
        return [cid for cid, keep in zip(view.ids, mask) if keep]

    def describe(self) -> str:
        return f"paper (baseline +{self.baseline_margin:.0%}, then drop {self.fraction:.0%} per step)"


class HalvingRule(Rule):
    """Successive halving: after the warm-up keep the better ``1 - fraction`` each step."""

    name = "halving"

    def __init__(self, fraction: float = 0.5) -> None:
        _check_fraction(fraction)
        self.fraction = fraction

    def survivors(self, step: int, view: LossView) -> list[str]:
        if step <= view.warmup:
            return list(view.ids)
        return _keep_best(view, np.ones(len(view.ids), dtype=bool), self.fraction)

    def describe(self) -> str:
        return f"halving (drop {self.fraction:.0%} per step)"


class QuantileRule(Rule):
    """Keep those whose criterion is within the best ``1 - fraction`` quantile."""

    name = "quantile"

    def __init__(self, fraction: float = 0.5) -> None:
        _check_fraction(fraction)
        self.fraction = fraction

    def survivors(self, step: int, view: LossView) -> list[str]:
        if step <= view.warmup:
            return list(view.ids)
        score = view.objective.scalar(view.losses, view.values)
        finite = np.isfinite(score)
        if not finite.any():
            return list(view.ids)
        threshold = np.quantile(score[finite], 1.0 - self.fraction)
        keep = finite & (score <= threshold)
        best = int(view.order()[0])
        keep[best] = True
        return [cid for cid, k in zip(view.ids, keep) if k]

    def describe(self) -> str:
        return f"quantile (keep criterion <= the {1 - self.fraction:.0%} quantile)"


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


class RaceRule(Rule):
    """A paired statistical race on the mean loss, with an indifference zone ``delta``.

    At each step ``s`` (after the warm-up and once ``min_instances`` are known) let ``b`` be the
    survivor with the best mean loss (ties by id) and, for every other survivor ``i``, let
    ``d_i`` be the per-instance differences ``loss_i[j] - loss_b[j]``. Pairing by instance index
    (common random numbers) removes the data effect the candidates share. The race

    * **drops** ``i`` when a one-sided t bound says ``i`` is worse than ``b``:
      ``mean(d_i) - t * se_i > 0``;
    * **stops** with ``b`` when every other survivor is at most ``delta`` better than ``b``:
      ``mean(d_i) - t * se_i >= -delta`` for all ``i`` (the indifference zone: near-ties are
      settled by halting, not by more instances);
    * drops at once a candidate with a failed instance (its criterion is +inf; it cannot win);
    * at step 1, if a baseline loss is known, applies the paper's baseline cut.

    The standard error uses a *moderated* variance (empirical Bayes, as limma does for many
    parallel tests with few replicates): each candidate's sample variance of ``d_i`` (``s - 1``
    degrees of freedom) is pooled with a prior variance, the median variance over the
    survivors at this step, weighted by ``prior_df`` degrees of freedom; ``t`` is Student's
    quantile at ``s - 1 + prior_df`` degrees of freedom. This is what lets the race drop the
    clearly bad candidates after two instances instead of ten.

    The level: at step ``s`` each comparison uses ``alpha_s / (2 (m - 1))`` with ``m`` the
    survivors and ``alpha_s = (1 - confidence) * 6 / (pi^2 s^2)`` (sums to ``1 - confidence``
    over all steps); half of it is for dropping, half for stopping.

    Guarantee (under the model below): with probability at least ``confidence`` the true best
    candidate (lowest expected loss) is never dropped, and if the race stops by the indifference
    zone the pick's expected loss is within ``delta`` of it. The union bound runs over the
    possible references ``b``, so the guarantee holds although ``b`` is chosen from the data.
    Limits: the model is that the paired differences are roughly normal and that a candidate's
    variance is not far above the prior pooled from the others; heavy right tails (occasional
    blow-ups) and very few instances break both, so a non-robust candidate can be dropped on an
    unlucky early instance (it then rarely has the best mean anyway). The baseline cut is the
    paper's heuristic, not a test. If the selection ends at ``max_steps`` or the budget with
    several survivors, the pick is the best mean among them and only "the true best is among the
    survivors" holds. The statistics concern the mean loss: the race requires the (first)
    criterion to be ``mean``; use ``paper``/``halving``/``quantile`` for spread criteria.
    ``delta`` is absolute (loss units) unless ``relative`` is true, in which case it is a
    fraction of the reference's mean loss.
    """

    name = "race"

    def __init__(
        self,
        confidence: float = 0.95,
        delta: float = 0.005,
        baseline_margin: float = 0.20,
        prior_df: float = 4.0,
        min_instances: int = 2,
        relative: bool = False,
    ) -> None:
        if not 0.0 < confidence < 1.0:
            raise InputError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
        if delta < 0:
            raise InputError(f"delta must be >= 0, got {delta}")
        if min_instances < 2:
            raise InputError(f"min_instances must be at least 2, got {min_instances}")
        self.confidence, self.delta, self.baseline_margin = confidence, delta, baseline_margin
        self.prior_df, self.min_instances, self.relative = prior_df, min_instances, relative

    def survivors(self, step: int, view: LossView) -> list[str]:
        if view.objective.primary.name != "mean":
            raise InputError(
                f"rule 'race' tests mean losses; its first criterion must be 'mean', got {view.objective.primary.name!r}"
            )
        keep = ~view.failed
        if step == 1:
            keep &= _baseline_cut(view, self.baseline_margin)
        if not keep.any():  # everyone failed: nothing to race on
            return list(view.ids)
        s = view.step
        if step <= view.warmup or s < self.min_instances or keep.sum() == 1:
            return [cid for cid, k in zip(view.ids, keep) if k]
        rows = np.flatnonzero(keep)
        means = view.mean_losses()
        b = min(rows, key=lambda i: (means[i], view.ids[i]))
        others = rows[rows != b]
        d = view.losses[others] - view.losses[b]
        dbar = d.mean(axis=1)
        df = s - 1
        var = d.var(axis=1, ddof=1)
        prior = float(np.median(var)) if var.size else 0.0
        if self.prior_df > 0 and prior > 0:
            var = (self.prior_df * prior + df * var) / (self.prior_df + df)
            df_total = df + self.prior_df
        else:
            df_total = df
        se = np.sqrt(var / s)
        m = len(rows)
        alpha_s = (1.0 - self.confidence) * 6.0 / (math.pi**2 * step**2)
        crit = t_quantile(1.0 - alpha_s / (2 * (m - 1)), float(df_total))
        lower = dbar - crit * se
        worse = lower > 0
        delta = self.delta * abs(means[b]) if self.relative else self.delta
        if np.all(lower[~worse] >= -delta):
            return [view.ids[b]]
        alive = set(others[~worse].tolist()) | {int(b)}
        return [cid for i, cid in enumerate(view.ids) if i in alive]

    def describe(self) -> str:
        unit = f"{self.delta:.1%} relative" if self.relative else f"{self.delta:g}"
        return f"race (confidence {self.confidence:g}, indifference {unit})"


RULES: dict[str, type[Rule]] = {
    "paper": PaperRule,
    "halving": HalvingRule,
    "quantile": QuantileRule,
    "race": RaceRule,
}


def make_rule(name: str, settings: Any = None, where: str = "from --rule", **overrides: Any) -> Rule:
    """A rule by name, its parameters taken from a ``SelectionSettings`` (or defaults).

    ``fraction`` -> paper/halving/quantile, ``baseline_margin`` -> paper/race,
    ``confidence`` -> race, and ``delta`` -> race when the settings have one. ``overrides``
    win over the settings.
    """
    key = str(name).strip().lower()
    if key not in RULES:
        raise UnknownNameError("rule", str(name), RULES, where)
    params: dict[str, Any] = {}
    wanted = {
        "paper": ("fraction", "baseline_margin"),
        "halving": ("fraction",),
        "quantile": ("fraction",),
        "race": ("confidence", "baseline_margin", "delta"),
    }[key]
    for field in wanted:
        if settings is not None and getattr(settings, field, None) is not None:
            params[field] = getattr(settings, field)
    params.update({k: v for k, v in overrides.items() if v is not None})
    return RULES[key](**params)
