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
    A paired statistical race on any criterion (several lexicographically) with an indifference
    zone (``delta``: 1 % of the leader's mean loss by default, or a loss difference): drops the
    candidates that rank tests (location) or paired bootstraps (spread, a user's criterion) show
    clearly worse than a reference, those not needed, and those that blew up, and stops once the
    leader is shown within ``delta`` of every survivor; see :class:`RaceRule`.
``race-strict``
    The race with Bonferroni-level screening against the best and no "not needed" drops.

Every rule is a pure function of the step and the :class:`~robustcli.selection.LossView`,
breaks ties by candidate id, ranks a candidate with a failed instance last and never returns
an empty set.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from robustcli.errors import InputError, UnknownNameError
from robustcli.parsing import DEFAULT_DELTA, parse_delta
from robustcli.robustness.criteria import Criterion, Objective
from robustcli.robustness.racing import (
    BLOWUP_FACTOR,
    CAP_SAFE,
    N_BOOT,
    blowups,
    bootstrap_values,
    capped,
    friedman_screen,
    t_lower_bounds,
    resample_columns,
)
from robustcli.robustness.statistics import t_quantile
from robustcli.selection._base import LossView, Rule

if TYPE_CHECKING:
    from robustcli.config import SelectionSettings

__all__ = [
    "RULES",
    "HalvingRule",
    "PaperRule",
    "QuantileRule",
    "RaceRule",
    "baseline_limit",
    "make_rule",
]

#: the confidence of the race's screening drops (clearly worse than the reference, not needed);
#: the stop, the drops against the leader and the pick's confidence use ``confidence``
DEFAULT_SCREEN = 0.8

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


#: criteria whose order the Friedman ranks inside each block test (a location of the losses)
_LOCATION = frozenset({"mean", "median"})
#: spread criteria: their screen ranks each candidate's absolute deviations from its own median
#: inside every block (Fligner-Killeen's idea, blocked as Friedman's ranks are)
_SPREAD = frozenset({"std", "iqr", "q90_q10"})
#: instances before a bootstrap decides: with fewer, resamples repeat one instance so often
#: that a spread is no estimate and the percentile bound is far too narrow
_MIN_BOOT = 5
#: instances before the mean's t bounds decide ("not needed", the stop): with two, a leader's own
#: variance is one degree of freedom and the winner's curse of a lucky pair goes unseen
_MIN_T = 3


class _Stage:
    """What one criterion's stage of the race decided: rows to drop, whether it stops, its leader."""

    def __init__(self, drop: np.ndarray, stop: bool, leader: int) -> None:
        self.drop, self.stop, self.leader = drop, stop, leader


class RaceRule(Rule):
    """A paired statistical race on any criterion, that blow-ups cannot stall.

    Instance ``j`` of every candidate shares its training sample and seeds (common random
    numbers), so the instances are *blocks* and every test is paired. At step ``s >= 2`` (after
    the warm-up) the ``m`` survivors are ranked by the criterion; the *leader* ``b`` is the best
    candidate without a blow-up, the *reference* ``r`` the ``k``-th best such,
    ``k = ceil(m ** reference)`` (``reference`` = 1/3: a few lucky first instances cannot knock
    out everyone). The decisions, each robust to a heavy right tail:

    * *Blow-ups.* A candidate with an instance above ``blowup`` (3) times its own median loss
      is dropped once its criterion exceeds the leader's by more than the zone ``delta``. Its
      observed mean is, if anything, an under-estimate: a right-skewed sample mean falls below
      the true one more often than above.
    * *Clearly worse than the reference*, one-sided at level ``(1 - screen) / 2`` for location
      criteria and ``(1 - confidence) / 2`` for the others. For ``mean`` and ``median`` the
      candidates are ranked inside every instance (Friedman) and one is dropped when its mean
      rank exceeds the reference's by Conover's post-hoc t, once Friedman's omnibus test rejects
      (as F-Race does), and its criterion is worse than the reference's. A blow-up is one worst
      rank, not an unbounded number, and the residual variance pooled over every candidate lets
      the test act after two instances. For the spreads (``std``, ``iqr``, ``q90_q10``) the same
      test ranks each candidate's absolute deviations from its own median (Fligner-Killeen's
      idea, blocked), from three instances. For ``min``, ``max`` and a user's function a paired
      bootstrap bounds the difference of the criterion from below, from five instances.
    * *Clearly worse than the leader*, at the Bonferroni level over the survivors: the same
      tests, so that the ``k`` best, spared the screen against ``r``, do not race forever.
    * *Not needed* (not in ``race-strict``). A candidate shown at most ``zone_fraction * delta``
      better than the reference is dropped: the reference is nearly as good.
    * *Stop.* The race ends with the leader when every other survivor is shown at most ``delta``
      better than it, simultaneously over survivors (Bonferroni) and steps (level
      ``(1 - confidence) * 6 / (pi^2 s^2)``, summing to ``1 - confidence``). Under the model
      (paired differences about normal once capped) a stopped race's pick is more than ``delta``
      worse than a survivor with probability at most ``(1 - confidence) / 2``; the drops are a
      screen, measured rather than guaranteed.

    The bounds on a challenger's advantage ("not needed", the stop, a spread's bootstrap) use
    its losses capped at ``blowup`` times its own median: every built-in criterion of capped
    losses is at most that of the raw ones, so the bound stays conservative while a blow-up no
    longer inflates the variance it is built from. For the mean the bound is a paired t whose
    variance is moderated (empirical Bayes: pooled with the median variance over the survivors,
    ``prior_df`` degrees of freedom), from three instances (two hide a lucky pair's winner's
    curse); for other criteria it is a bootstrap-t over the instances.

    *Several criteria* race lexicographically with a tolerance: the first criterion races until
    its leader is shown within ``delta`` of every survivor; the survivors, equal on it within the
    zone, then race on the second. When the race ends with several survivors (its step limit or
    budget), :meth:`pick` takes the best on the second criterion among those the first cannot
    tell from its leader. The paper's robustness question, "the smallest spread among the
    accurate ones", is ``--criterion mean,std``. A Pareto combination has no single order to
    race: it is refused. Failed instances drop their candidate at once; at step 1 a known
    baseline applies the paper's cut.

    ``delta`` is in loss units, or a share of the leader's mean loss when ``relative`` (``"1%"``,
    the default, the same zone on every loss scale; for a user's criterion a share of its value).
    ``race-strict`` (``strict=True``) never drops a candidate as "not needed", uses the best as
    its reference and screens at the Bonferroni level over survivors and steps: the true best is
    kept unless a test errs, at a higher cost. The defaults (``screen`` 0.8, ``confidence``
    0.95, ``delta`` 1 %, ``reference`` 1/3, a warm-up of one step) were chosen on
    ``benchmarks/selection_efficiency.py``.
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
        blowup: float = BLOWUP_FACTOR,
        n_boot: int = N_BOOT,
        screen: float = DEFAULT_SCREEN,
        reference: float = 1.0 / 3.0,
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
        if not 0.0 < screen < 1.0:
            raise InputError(f"screen confidence must be between 0 and 1 (exclusive), got {screen}")
        if not blowup > 1.0:
            raise InputError(f"blowup must be a factor above 1, got {blowup}")
        self.confidence, self.delta, self.baseline_margin = confidence, float(delta), baseline_margin
        self.prior_df, self.zone_fraction = prior_df, zone_fraction
        self.relative, self.strict = bool(relative), strict
        self.blowup, self.n_boot, self.screen = float(blowup), int(n_boot), float(screen)
        self.reference = float(reference)

        if strict:
            self.name = "race-strict"

    def validate(self, objective: Objective) -> None:
        if objective.combine == "pareto" and len(objective.criteria) > 1:
            raise InputError(
                f"rule {self.name!r} cannot race a Pareto front (it has no single order to test a pick against); "
                "use --combine lexicographic (the first criterion, then the next among those equal within --delta), "
                "or --rule paper, halving or quantile for a Pareto front"
            )

    # -- the rule --------------------------------------------------------------------------------

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
        rows = np.flatnonzero(keep)
        x = view.losses[rows]
        ids = [view.ids[i] for i in rows]
        alive = np.ones(len(rows), dtype=bool)
        criteria = view.objective.criteria
        for level, crit in enumerate(criteria):
            sub = np.flatnonzero(alive)
            if len(sub) == 1:
                break
            stage = self._stage(step, x[sub], [ids[i] for i in sub], crit)
            alive[sub[stage.drop]] = False
            if not stage.stop:
                break
            if level == len(criteria) - 1:
                return [ids[sub[stage.leader]]]
        return [cid for cid, a in zip(ids, alive) if a]

    def pick(self, view: LossView) -> str:
        """The pick among several survivors (the race ended at its step limit or budget): the
        leader on the first criterion, or, with several criteria, the best on the next among
        those the first cannot tell from the leader."""
        ok = ~view.failed
        if not ok.any():
            return view.ranked()[0]
        rows = np.flatnonzero(ok)
        x = view.losses[rows]
        ids = [view.ids[i] for i in rows]
        cand = np.arange(len(rows))
        for level, crit in enumerate(view.objective.criteria):
            sub = x[cand]
            v = crit.values(sub)
            blown = blowups(sub, self.blowup) if crit.name in CAP_SAFE else np.zeros(len(cand), dtype=bool)
            order = self._order(v, [ids[i] for i in cand], blown)
            b = order[0]
            if level == len(view.objective.criteria) - 1 or len(cand) == 1 or sub.shape[1] < 2:
                return ids[cand[b]]
            zone = self._zone(sub, v, b, crit.name)
            lb = self._lower_bounds(view.step, sub, b, crit, 1.0 - self.confidence)
            tied = (lb <= 0) & ~(blown & (v > v[b] + zone))
            tied[b] = True
            cand = cand[tied]
        return ids[cand[0]]

    # -- one criterion -----------------------------------------------------------------------------

    @staticmethod
    def _order(values: np.ndarray, ids: list[str], blown: np.ndarray) -> list[int]:
        """Rows best first by the criterion (ties by id), those without a blow-up before the rest."""
        order = sorted(range(len(ids)), key=lambda i: (values[i], ids[i]))
        return [i for i in order if not blown[i]] + [i for i in order if blown[i]]

    def _zone(self, x: np.ndarray, values: np.ndarray, leader: int, name: str) -> float:
        """The indifference zone in the criterion's units: ``delta``, or its share of the leader's
        mean loss (built-in criteria are in loss units) or of its value (a user's criterion)."""
        if not self.relative:
            return self.delta
        scale = float(np.mean(x[leader])) if name in CAP_SAFE else float(values[leader])
        return self.delta * abs(scale) if math.isfinite(scale) else 0.0

    def _lower_bounds(self, step: int, x: np.ndarray, ref: int, crit: Criterion, level: float | np.ndarray,
                      boot: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Per row, a lower confidence bound (one-sided, at ``1 - level``) on ``criterion(row) -
        criterion(ref)``, the row's losses capped at ``blowup`` times its median."""
        m, s = x.shape
        cap = crit.name in CAP_SAFE
        challengers = capped(x, self.blowup) if cap else x
        if crit.name == "mean":
            d = challengers - x[ref]
            df = s - 1
            var = d.var(axis=1, ddof=1) if s > 1 else np.zeros(m)
            others = np.delete(var, ref)
            prior = float(np.median(others)) if others.size else 0.0
            prior_df = self.prior_df if prior > 0 else 0.0
            se = np.sqrt((prior_df * prior + df * var) / max(prior_df + df, 1e-12) / s)
            lv = np.broadcast_to(np.asarray(level, dtype=float), (m,))
            q = np.array([t_quantile(1.0 - float(a), float(df + prior_df)) if df + prior_df > 0 else np.inf for a in lv])
            out = d.mean(axis=1) - q * se
            out[ref] = 0.0
            return out
        raw_b, chal_b = boot if boot is not None else self._bootstrap(step, x, crit)
        point = crit.values(challengers) - crit.values(x[ref : ref + 1])[0]
        out = t_lower_bounds(chal_b, raw_b[:, ref], point, s, level)
        out[ref] = 0.0
        return out

    def _bootstrap(self, step: int, x: np.ndarray, crit: Criterion) -> tuple[np.ndarray, np.ndarray]:
        """The criterion on block resamples of the raw and of the capped losses (a seed from the
        step and the table's shape: the rule stays a pure function of its view)."""
        m, s = x.shape
        cols = resample_columns(s, self.n_boot, seed=(step * 1_000_003 + m * 7919 + s) % (2**32))
        raw = bootstrap_values(x, crit.values, cols)
        chal = bootstrap_values(capped(x, self.blowup), crit.values, cols) if crit.name in CAP_SAFE else raw
        return raw, chal

    @staticmethod
    def _rank_table(x: np.ndarray, name: str) -> np.ndarray | None:
        """What the block ranks compare for a criterion: the losses (location), each candidate's
        absolute deviations from its own median (spread, from three instances), or None (the
        bootstrap decides)."""
        if name in _LOCATION:
            return x
        if name in _SPREAD and x.shape[1] >= 3:
            return np.abs(x - np.median(x, axis=1, keepdims=True))
        return None

    def _stage(self, step: int, x: np.ndarray, ids: list[str], crit: Criterion) -> _Stage:
        m, s = x.shape
        values = crit.values(x)
        blown = blowups(x, self.blowup) if crit.name in CAP_SAFE else np.zeros(m, dtype=bool)
        order = self._order(values, ids, blown)
        b = order[0]
        zone = self._zone(x, values, b, crit.name)
        alpha = 1.0 - self.confidence
        alpha_s = alpha * 6.0 / (math.pi**2 * step**2)
        k = 1 if self.strict else max(1, min(m, math.ceil(m**self.reference - 1e-9)))
        clean = [i for i in order if not blown[i]] or order
        r = clean[min(k, len(clean)) - 1]
        protected = np.zeros(m, dtype=bool)
        protected[clean[:k]] = True
        # location criteria screen at ``screen``; spreads and the bootstrap at ``confidence`` (measured:
        # a looser screen costs them the pick, see benchmarks/selection_efficiency.py)
        loose = (1.0 - self.screen) / 2.0 if crit.name in _LOCATION else alpha / 2.0
        screen_level = alpha_s / (2.0 * max(m - 1, 1)) if self.strict else loose

        drop = blown & (values > values[b] + zone)
        enough = s >= (_MIN_T if crit.name == "mean" else _MIN_BOOT)
        # the resamples, drawn once per stage and only where a bootstrap decides
        boot = self._bootstrap(step, x, crit) if crit.name != "mean" and enough else None
        ranks = self._rank_table(x, crit.name)
        screen = friedman_screen(ranks) if ranks is not None else None
        if screen is not None:
            worse = screen.worse_than(r, screen_level) & (values > values[r])
        elif enough:
            worse = self._lower_bounds(step, x, r, crit, screen_level, boot) > 0
        else:
            worse = np.zeros(m, dtype=bool)
        if enough and r != b:
            # the k best are kept from the screen against r; against the leader itself, at the
            # Bonferroni level over the survivors, they are not (else two would race forever)
            level_b = alpha / (2.0 * max(m - 1, 1))
            if screen is not None:
                worse_b = screen.worse_than(b, level_b) & (values > values[b])
            else:
                worse_b = self._lower_bounds(step, x, b, crit, level_b, boot) > 0
            worse |= worse_b & protected
        drop |= worse
        if not self.strict and enough:
            lb_r = self._lower_bounds(step, x, r, crit, loose, boot)
            drop |= lb_r >= -self.zone_fraction * zone
        drop &= ~protected | worse
        drop[b] = False

        rest = [i for i in np.flatnonzero(~drop) if i != b]
        if not rest:
            return _Stage(drop, True, b)
        if not enough:
            return _Stage(drop, False, b)
        lb_b = self._lower_bounds(step, x, b, crit, alpha_s / (2.0 * len(rest)), boot)
        stop = bool(np.all(lb_b[rest] >= -zone))
        return _Stage(drop, stop, b)

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


def make_rule(name: str, settings: SelectionSettings | None = None, where: str = "from --rule", **overrides: Any) -> Rule:
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
