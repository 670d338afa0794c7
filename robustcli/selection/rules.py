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
    A paired statistical race on the mean loss with an indifference zone (``delta``: 1 % of the
    leader's mean loss by default, or an absolute difference): drops what a test shows clearly worse than a robust reference, or not needed, and
    stops once the best is shown within ``delta`` of every survivor; see :class:`RaceRule`.
``race-strict``
    The race with a screening that controls the error of dropping the true best (rigorous
    under its model, several times more trainings).

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
from robustcli.robustness.criteria import Objective
from robustcli.selection._base import LossView, Rule

__all__ = [
    "RULES",
    "HalvingRule",
    "PaperRule",
    "QuantileRule",
    "RaceRule",
    "baseline_limit",
    "make_rule",
    "parse_delta",
    "t_quantile",
]

#: the race's default indifference zone: 1 % of the leader's mean loss (see :func:`parse_delta`)
DEFAULT_DELTA = "1%"


def parse_delta(value: float | str) -> tuple[float, bool]:
    """``(amount, relative)`` of an indifference zone: ``"1%"`` is 0.01 of the leader's mean loss
    (relative), a plain number (``0.005``, ``"0.005"``) is in loss units (absolute)."""
    text = str(value).strip()
    relative = text.endswith("%")
    try:
        amount = float(text[:-1] if relative else text)
    except ValueError:
        raise InputError(f"--delta {value!r}: expected a loss difference (0.005) or a share of the leader's mean (1%)") from None
    if not math.isfinite(amount) or amount <= 0:
        raise InputError(f"--delta {value!r}: must be a positive finite number")
    return (amount / 100.0, True) if relative else (amount, False)


def baseline_limit(baseline: float | None, margin: float) -> float | None:
    """The mean loss above which the baseline cut drops a candidate: the baseline plus ``margin``
    of it (None without a finite baseline: no cut)."""
    if baseline is None or not math.isfinite(baseline):
        return None
    return baseline * (1.0 + margin) if baseline >= 0 else baseline * (1.0 - margin)


def _baseline_cut(view: LossView, margin: float) -> np.ndarray:
    """Mask of candidates whose mean loss is within ``(1 + margin)`` of the baseline.

    If no candidate passes, the cut says nothing useful and everyone is kept.
    """
    keep = np.ones(len(view.ids), dtype=bool)
    limit = baseline_limit(view.baseline, margin)
    if limit is None:
        return keep
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

    Losses of two candidates at the same instance index share the training sample (common
    random numbers), so the race compares candidates through their per-instance differences,
    which cancels the data effect they share. At step ``s`` (``s >= 2``, after the warm-up) the
    ``m`` survivors are ranked by mean loss (ties by id); ``b`` is the best and the reference
    ``r`` the ``k``-th best, ``k = ceil(m ** (1/3))``.

    *Variance.* The variance of a paired difference is *moderated* (empirical Bayes, as limma
    does for many parallel tests with few replicates): a candidate's sample variance of its
    differences (``s - 1`` degrees of freedom) is pooled with a prior, the median over the
    survivors of the variance of their differences to ``b``, worth ``prior_df`` degrees of
    freedom; t quantiles use ``s - 1 + prior_df`` degrees of freedom. This is what lets the
    race act after two instances instead of ten.

    *Screening.* A candidate is dropped when a one-sided paired t-test at level
    ``(1 - confidence) / 2`` shows it worse than ``r`` (clearly bad), or shows it at most
    ``zone_fraction * delta`` better than ``r`` (not needed: ``r`` is nearly as good). The
    ``k`` best are never screened out. Testing against the k-th best rather than the best keeps
    a few candidates with lucky first instances (the winner's curse) from knocking out everyone.

    *Stop (indifference zone).* The race ends with ``b`` when every other survivor ``i`` is
    shown to be at most ``delta`` better than ``b``: ``mean(d_i) - t * se_i >= -delta`` with
    ``d_i = loss_i - loss_b``, at simultaneous level ``alpha_s / 2`` (Bonferroni over the
    ``m - 1`` survivors, ``alpha_s = (1 - confidence) * 6 / (pi^2 s^2)``, which sums to
    ``1 - confidence`` over all steps). Near-ties are settled by halting, not by more training.

    Also: a candidate with a failed instance is dropped at once (its criterion is +inf); at
    step 1, if a baseline loss is known, the paper's baseline cut applies.

    Guarantee and limits. The stop test is a simultaneous test over all looks: under the model
    below, the probability that the race *stops* with a pick more than ``delta`` worse (in
    expected loss) than a candidate still in the race is at most ``(1 - confidence) / 2``.
    The screening is not corrected for multiplicity across candidates and steps, and each
    "not needed" drop may give away up to ``zone_fraction * delta`` (more if references are
    themselves dropped in a chain), so it does not guarantee that a candidate within ``delta``
    of the true best survives. It is the kind of test racing methods (F-Race, irace) use; the
    selection-efficiency benchmark measures what it costs in regret. ``strict=True``
    (``--rule race-strict``) makes the screening rigorous instead: no "not needed" drops, and a
    candidate is dropped only if significantly worse than at least ``k`` others, for ``k`` in
    {1, ceil(sqrt(m))}, each at level ``alpha_s / 4 * k / (m - 1)``; by Markov's inequality
    and a union bound the true best is dropped with probability at most
    ``(1 - confidence) / 2`` over the whole race, so with probability at least ``confidence``
    a race that stops by the indifference zone picks a candidate within ``delta`` of the true
    best. It costs several times more trainings (see the benchmark). The model behind every
    level: paired differences are about normal and a candidate's variance is not far above the
    pooled prior. Heavy right tails (a non-robust candidate's occasional blow-up) break both,
    and a rare failure (a candidate that diverges one time in five) can go unseen in the few
    instances a race spends on it. If the selection ends at ``max_steps`` or the budget with
    several survivors, the pick is the best mean among them. The test concerns mean losses,
    so the race requires the (first) criterion to be ``mean``. ``delta`` is in loss units, or
    a fraction of ``b``'s mean loss when ``relative`` is true; a string says which by itself
    (``"1%"``, ``"0.005"``, see :func:`parse_delta`). The default, ``"1%"`` of ``b``'s mean, is the
    same zone on every loss scale.
    """

    name = "race"

    def __init__(
        self,
        confidence: float = 0.95,
        delta: float | str = DEFAULT_DELTA,
        baseline_margin: float = 0.20,
        prior_df: float = 4.0,
        zone_fraction: float = 0.5,
        relative: bool | None = None,
        strict: bool = False,
    ) -> None:
        if not 0.0 < confidence < 1.0:
            raise InputError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
        if isinstance(delta, str):  # "1%" or "0.005" (see parse_delta)
            delta, percent = parse_delta(delta)
            relative = percent if relative is None else relative
        if delta < 0:
            raise InputError(f"delta must be >= 0, got {delta}")
        if prior_df < 0:
            raise InputError(f"prior_df must be >= 0, got {prior_df}")
        if not 0.0 <= zone_fraction <= 1.0:
            raise InputError(f"zone_fraction must be between 0 and 1, got {zone_fraction}")
        self.confidence, self.delta, self.baseline_margin = confidence, delta, baseline_margin
        self.prior_df, self.zone_fraction = prior_df, zone_fraction
        self.relative, self.strict = bool(relative), strict
        if strict:
            self.name = "race-strict"

    def validate(self, objective: Objective) -> None:
        primary = objective.primary.name
        if primary != "mean":
            raise InputError(
                f"rule {self.name!r} tests mean losses; its first criterion must be 'mean', got {primary!r} "
                "(use paper, halving or quantile for other criteria)"
            )

    def survivors(self, step: int, view: LossView) -> list[str]:
        self.validate(view.objective)
        keep = ~view.failed
        if step == 1:
            keep &= _baseline_cut(view, self.baseline_margin)
        if not keep.any():  # everyone failed: nothing to race on
            return list(view.ids)
        s = view.step
        if step <= view.warmup or s < 2 or keep.sum() == 1:
            return [cid for cid, k in zip(view.ids, keep) if k]

        means = view.mean_losses()
        ranked = np.array(sorted(np.flatnonzero(keep).tolist(), key=lambda i: (means[i], view.ids[i])))
        m = len(ranked)
        x = view.losses[ranked]  # row 0 is b
        df = s - 1
        d_b = x - x[0]
        var_b = d_b.var(axis=1, ddof=1)
        prior = float(np.median(var_b[1:]))
        prior_df = self.prior_df if prior > 0 else 0.0
        df_total = float(df + prior_df)

        def se(var: np.ndarray) -> np.ndarray:
            return np.sqrt((prior_df * prior + df * var) / (prior_df + df) / s)

        alpha = 1.0 - self.confidence
        alpha_s = alpha * 6.0 / (math.pi**2 * step**2)
        delta = self.delta * abs(means[ranked[0]]) if self.relative else self.delta
        if self.strict:
            out = self._strict_screen(x, se, df_total, alpha_s, math.ceil(math.sqrt(m)))
        else:
            k = max(1, min(m, math.ceil(m ** (1.0 / 3.0) - 1e-9)))
            d_r = x - x[k - 1]
            lower_r = d_r.mean(axis=1) - t_quantile(1.0 - alpha / 2.0, df_total) * se(d_r.var(axis=1, ddof=1))
            out = (lower_r > 0) | (lower_r >= -self.zone_fraction * delta)
            out[:k] = False
        out[0] = False

        lower_b = d_b.mean(axis=1) - t_quantile(1.0 - alpha_s / (2.0 * (m - 1)), df_total) * se(var_b)
        alive = np.flatnonzero(~out)
        if np.all(lower_b[alive[1:]] >= -delta):
            return [view.ids[ranked[0]]]
        kept = set(ranked[alive].tolist())
        return [cid for i, cid in enumerate(view.ids) if i in kept]

    @staticmethod
    def _strict_screen(x: np.ndarray, se: Any, df_total: float, alpha_s: float, k_ref: int) -> np.ndarray:
        """Rows (ranked by mean) significantly worse than at least k others, k in {1, k_ref}.

        Markov's inequality on the count of rejections of the true best's m - 1 pair tests,
        with a union bound over the k's. Only the best ``max(64, 4 k_ref)`` rows are used as
        comparators: counting fewer rejections only drops less, so the bound still holds.
        """
        m, s = x.shape
        mu = x.mean(axis=1)
        xc = x - mu[:, None]
        sq = (xc**2).sum(axis=1)
        ks = sorted({1, max(1, min(m - 1, k_ref))})
        crits = {k: t_quantile(1.0 - alpha_s / (2.0 * len(ks)) * k / (m - 1), df_total) for k in ks}
        top = min(m, max(64, 4 * k_ref))
        pair_var = np.maximum(sq[:, None] + sq[None, :top] - 2.0 * xc @ xc[:top].T, 0.0) / (s - 1)
        pair_se = se(pair_var)
        diff = mu[:, None] - mu[None, :top]
        worse = np.zeros(m, dtype=bool)
        for k, crit in crits.items():
            worse |= ((diff - crit * pair_se) > 0).sum(axis=1) >= k
        return worse

    def describe(self) -> str:
        unit = f"{100 * self.delta:g}% of the leader's mean" if self.relative else f"{self.delta:g}"
        kind = "race-strict" if self.strict else "race"
        return f"{kind} (confidence {self.confidence:g}, indifference zone {unit})"


RULES: dict[str, type[Rule]] = {
    "paper": PaperRule,
    "halving": HalvingRule,
    "quantile": QuantileRule,
    "race": RaceRule,
    "race-strict": RaceRule,
}


def make_rule(name: str, settings: Any = None, where: str = "from --rule", **overrides: Any) -> Rule:
    """A rule by name, its parameters taken from a ``SelectionSettings`` (or defaults).

    ``fraction`` -> paper/halving/quantile, ``baseline_margin`` -> paper/race,
    ``confidence`` -> race, and ``delta`` -> race when the settings have one (``"1%"``: relative to
    the leader's mean; a number: absolute, see :func:`parse_delta`). ``overrides`` win over the
    settings.
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
        "race-strict": ("confidence", "baseline_margin", "delta"),
    }[key]
    for field in wanted:
        if settings is not None and getattr(settings, field, None) is not None:
            params[field] = getattr(settings, field)
    params.update({k: v for k, v in overrides.items() if v is not None})
    if key == "race-strict":
        params["strict"] = True
    return RULES[key](**params)
