"""Paired statistics for racing candidates whose losses have heavy right tails.

The losses of a race form a candidates x instances table whose columns are *blocks*: instance
``j`` of every candidate shares its training sample and seeds (common random numbers). A
non-robust candidate is one that sometimes blows up (an instance many times its usual loss), so
every test here keeps its validity and most of its power when one loss is 10^4 times the rest:

* :func:`blowups` flags the rows with an instance above ``factor`` times their own median;
* :func:`friedman_screen` ranks the candidates inside every block (Friedman) and compares mean
  ranks with Conover's post-hoc t (the test of F-Race and irace): a blow-up is one worst rank,
  never an unbounded number, and the residual variance pooled over all candidates lets it act
  after two instances;
* :func:`capped` caps a challenger's losses at ``factor`` times its own median: every built-in
  criterion (mean, median, quantiles, std, IQR, Q90-Q10) of the capped losses is at most that of
  the raw losses, so a lower bound on ``criterion(capped challenger) - criterion(reference)`` is a
  conservative lower bound on the true difference, while a blow-up no longer inflates the
  variance that the bound is built from;
* :func:`bootstrap_values` resamples whole blocks (the same instances for every candidate) and
  evaluates any criterion on each resample, and :func:`t_lower_bounds` turns that into a bound:
  the generic test for what ranks cannot test (min, max, a user's function; a spread's "not
  needed" and stop), and the pick's confidence;
* :func:`pick_confidence` says, when a selection ends, which candidates the data cannot tell
  from the pick, the probability that each is the best (a Student-t posterior for the mean, a
  t-smoothed paired bootstrap for other criteria: both doubt with few instances, where a plain
  resampling share says 100 %), and how many more instances would separate them.

Everything is deterministic: bootstrap resamples and posterior draws come from a seed the caller
derives from what it is shown (a rule must be a pure function of its view).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "BLOWUP_FACTOR",
    "CAP_SAFE",
    "N_BOOT",
    "PickConfidence",
    "blowups",
    "bootstrap_values",
    "capped",
    "friedman_screen",
    "t_lower_bounds",
    "pick_confidence",
    "resample_columns",
]

#: an instance above this many times its candidate's own median loss is a blow-up
BLOWUP_FACTOR = 3.0
#: built-in criteria that capping a candidate's losses cannot raise (see :func:`capped`)
CAP_SAFE = frozenset({"mean", "median", "min", "max", "std", "iqr", "q90_q10"})
#: resamples for the bootstrap tests and the pick's confidence
N_BOOT = 1000


def blowups(losses: np.ndarray, factor: float = BLOWUP_FACTOR) -> np.ndarray:
    """Rows (candidates) with an instance above ``factor`` times their own median loss.

    Needs three instances: with two, the median is their mean and nothing can exceed twice it.
    Non-finite rows (failed instances) are not flagged here: they fail on their own.
    """
    x = np.asarray(losses, dtype=float)
    out = np.zeros(x.shape[0], dtype=bool)
    if x.shape[1] < 3:
        return out
    ok = np.isfinite(x).all(axis=1)
    med = np.median(x[ok], axis=1)
    out[ok] = (x[ok].max(axis=1) > factor * np.abs(med)) & (med > 0)
    return out


def capped(losses: np.ndarray, factor: float = BLOWUP_FACTOR) -> np.ndarray:
    """Each row capped at ``factor`` times its own median (rows of fewer than three instances
    and rows with a non-positive median are left as they are)."""
    x = np.array(losses, dtype=float, copy=True)
    if x.shape[1] < 3:
        return x
    med = np.median(x, axis=1)
    cap = np.where(med > 0, factor * med, np.inf)
    return np.minimum(x, cap[:, None])


def _ranks_in_blocks(x: np.ndarray) -> np.ndarray:
    """Rank of every row inside each column (1 = lowest loss), ties sharing their mean rank."""
    m, s = x.shape
    ranks = np.empty((m, s))
    for j in range(s):
        col = x[:, j]
        order = np.argsort(col, kind="stable")
        r = np.empty(m)
        r[order] = np.arange(1, m + 1, dtype=float)
        sorted_col = col[order]
        # mean rank for ties (rare with float losses, common with capped or integer ones)
        if m > 1 and np.any(sorted_col[1:] == sorted_col[:-1]):
            _, start, counts = np.unique(sorted_col, return_index=True, return_counts=True)
            for st, c in zip(start, counts):
                if c > 1:
                    r[order[st : st + c]] = st + (c + 1) / 2.0
        ranks[:, j] = r
    return ranks


@dataclass(frozen=True)
class FriedmanScreen:
    """Mean ranks of the candidates over the blocks, and Conover's scale for their differences."""

    mean_ranks: np.ndarray
    se_diff: float  # standard error of a difference of two mean ranks
    df: float
    omnibus_p: float  # Friedman's test that all candidates rank alike (chi-squared approximation)

    def worse_than(self, ref: int, alpha: float) -> np.ndarray:
        """Rows whose mean rank is above ``ref``'s by more than the one-sided level-``alpha`` margin,
        once the omnibus test rejects at ``alpha`` (F-Race's gate: no post-hoc without it)."""
        m = self.mean_ranks.size
        if m < 2 or self.omnibus_p >= alpha:
            return np.zeros(m, dtype=bool)
        from scipy.stats import t

        if self.se_diff <= 0:
            return self.mean_ranks > self.mean_ranks[ref]
        crit = float(t.ppf(1.0 - alpha, self.df))
        return self.mean_ranks - self.mean_ranks[ref] > crit * self.se_diff


def friedman_screen(losses: np.ndarray) -> FriedmanScreen:
    """Friedman ranks of a candidates x blocks table (all finite or ``+inf``, which ranks last).

    Conover's post-hoc treats the ranks as an additive two-way layout: the residual variance of
    the ranks once each candidate's mean rank is removed, ``(A - sum R_i^2 / b) / ((b - 1)(k - 1))``
    with ``A`` the sum of squared ranks and ``R_i`` the rank sums, gives the standard error of a
    difference of mean ranks, ``sqrt(2 sigma^2 / b)``, on ``(b - 1)(k - 1)`` degrees of freedom.
    """
    from scipy.stats import chi2

    x = np.asarray(losses, dtype=float)
    k, b = x.shape
    ranks = _ranks_in_blocks(x)
    rank_sums = ranks.sum(axis=1)
    mean_ranks = rank_sums / b
    df = float((b - 1) * (k - 1))
    if b < 2 or k < 2:
        return FriedmanScreen(mean_ranks, 0.0, max(df, 1.0), 1.0)
    a = float((ranks**2).sum())
    resid = max(a - float((rank_sums**2).sum()) / b, 0.0)
    sigma2 = resid / df
    # Friedman's statistic, corrected for ties: (k-1) * SS_treatment / SS_total per block
    total = a - b * k * ((k + 1) / 2.0) ** 2
    treat = float((rank_sums**2).sum()) / b - b * k * ((k + 1) / 2.0) ** 2
    stat = (k - 1) * b * treat / total if total > 0 else 0.0
    p = float(chi2.sf(stat, k - 1)) if total > 0 else 1.0
    return FriedmanScreen(mean_ranks, math.sqrt(2.0 * sigma2 / b), df, p)


def resample_columns(s: int, n_boot: int, seed: int) -> np.ndarray:
    """``n_boot`` bootstrap resamples of ``s`` block indices (with replacement), reproducible."""
    return np.random.default_rng(seed).integers(0, s, size=(n_boot, s))


def bootstrap_values(losses: np.ndarray, criterion: Callable[[np.ndarray], np.ndarray],
                     cols: np.ndarray) -> np.ndarray:
    """``criterion`` (rows -> one value per row) on every resample of the columns: resamples x rows.

    The same resampled instances for every row keep the pairing (common random numbers)."""
    x = np.asarray(losses, dtype=float)
    n_boot = cols.shape[0]
    out = np.empty((n_boot, x.shape[0]))
    # in chunks, so that thousands of candidates x a thousand resamples stay in memory
    chunk = max(1, 2_000_000 // max(1, x.size))
    for start in range(0, n_boot, chunk):
        block = cols[start : start + chunk]
        resampled = x[:, block]  # rows x chunk x s
        flat = resampled.transpose(1, 0, 2).reshape(-1, x.shape[1])
        with np.errstate(all="ignore"):
            vals = np.asarray(criterion(flat), dtype=float)
        out[start : start + len(block)] = vals.reshape(len(block), x.shape[0])
    out[np.isnan(out)] = np.inf
    return out


def t_lower_bounds(challengers: np.ndarray, reference: np.ndarray, point: np.ndarray, s: int,
                   level: float | np.ndarray) -> np.ndarray:
    """Per row, a one-sided lower confidence bound at ``1 - level`` on ``challenger - reference``:
    ``challengers`` is resamples x rows of the challengers' criterion, ``reference`` one column of
    the reference's, ``point`` the difference on the ``s`` instances themselves.

    Bootstrap-t with the bootstrap's standard error: ``point - t(1 - level, s - 1) * se *
    sqrt(s / (s - 1))``, ``se`` the standard deviation of the resampled differences. A percentile
    bound of a handful of instances is far too narrow (a resample repeats one instance often, and
    the spread of repeated values is zero); the t quantile on ``s - 1`` degrees of freedom widens it
    where few instances are known, and far-out levels (Bonferroni over survivors and steps) stay
    finite where a percentile would run out of resamples.
    """
    from scipy.stats import t

    diff = challengers - reference[:, None]
    lv = np.broadcast_to(np.asarray(level, dtype=float), (diff.shape[1],))
    centre = np.asarray(point, dtype=float)
    if s < 2:
        return np.full(centre.shape, -np.inf)
    with np.errstate(invalid="ignore"):
        se = np.nanstd(np.where(np.isfinite(diff), diff, np.nan), axis=0, ddof=1)
    q = t.ppf(1.0 - lv, s - 1)
    out = centre - q * se * math.sqrt(s / (s - 1.0))
    out[~np.isfinite(out)] = -np.inf
    return out


@dataclass(frozen=True)
class PickConfidence:
    """How sure a selection is of its pick.

    ``contenders`` are the candidates of the selection's last step (the final survivors and
    those the last step dropped), each with ``instances`` losses. ``indistinguishable`` holds those
    the data cannot tell from the pick at ``level`` (the pick included): a one-sided paired bound
    on their criterion's excess over the pick's (the paired t for the mean, bootstrap-t otherwise)
    does not exclude zero. ``p_best`` is, per contender, the probability that its criterion is
    truly the lowest: for the mean, under the posterior of the paired mean differences; for other
    criteria, under the paired bootstrap over instances widened by the same Student-t factor (see
    :func:`pick_confidence`); ``method`` says which. ``more_instances`` estimates, per
    indistinguishable contender, how many more
    instances would show the difference at ``level`` (``None`` when its estimated difference is
    zero or favours it, or more than 10^9 would be needed: "never").
    """

    pick: str
    level: float
    instances: int
    contenders: tuple[str, ...]
    indistinguishable: tuple[str, ...]
    p_best: dict[str, float] = field(default_factory=dict)
    more_instances: dict[str, int | None] = field(default_factory=dict)
    method: str = "Student-t posterior of the paired mean differences"

    def as_dict(self) -> dict[str, object]:
        return {
            "confidence_level": self.level,
            "contenders": list(self.contenders),
            "indistinguishable": list(self.indistinguishable),
            "p_best": {k: round(v, 4) for k, v in self.p_best.items()},
            "more_instances": dict(self.more_instances),
            "confidence_method": self.method,
        }

    def sentence(self) -> str:
        """One line for a person: the pick's certainty in words."""
        others = [c for c in self.indistinguishable if c != self.pick]
        p = self.p_best.get(self.pick, float("nan"))
        head = f"P(best) of the pick {p:.0%} over {self.instances} instances"
        if not others:
            return f"{head}; no other contender is indistinguishable from it at {self.level:.0%}"
        return f"{head}; {len(others)} other contender(s) indistinguishable from it at {self.level:.0%}"


#: at most this many contenders (the best by the criterion) enter the bootstrap of the pick's confidence
MAX_CONTENDERS = 64
#: how P(best) is estimated (``PickConfidence.method``): the criterion is the mean / anything else
POSTERIOR = "Student-t posterior of the paired mean differences"
SMOOTHED_BOOTSTRAP = "paired bootstrap over instances, t-smoothed"


def pick_confidence(
    ids: Sequence[str],
    losses: np.ndarray,
    pick: str,
    value: Callable[[np.ndarray], np.ndarray],
    order: Callable[[Sequence[str], np.ndarray], np.ndarray],
    level: float = 0.95,
    *,
    cap: bool = True,
    factor: float = BLOWUP_FACTOR,
    zone: float = 0.0,
    seed: int = 0,
    n_boot: int = 2000,
    mean: bool = False,
) -> PickConfidence:
    """The pick's confidence among ``ids`` (rows of ``losses``, paired columns); see :class:`PickConfidence`.

    ``value`` maps rows of losses to the primary criterion (lower is better), ``order`` ranks rows
    (ids, losses) best first. With ``cap`` (a criterion that capping cannot raise), a contender's
    losses are capped at ``factor`` times its median before its excess over the pick is bounded,
    and a contender with a blow-up whose criterion exceeds the pick's by more than ``zone`` is
    told apart from the pick, as the race drops it: heavy right tails are what make a
    candidate non-robust, and a right-skewed mean is under- rather than over-estimated.

    P(best) is the share of ``n_boot`` draws of the contenders' true differences to the pick in
    which each is the lowest (the pick's being 0). With ``mean`` (``value`` is the mean) the draws
    come from the posterior of the mean differences (:func:`_posterior_draws`) and the bound is the
    paired t on the same scale; otherwise from the paired bootstrap of ``value``, widened to doubt
    as that posterior does (:func:`_smoothed_draws`). A raw resampling share cannot doubt: when
    every instance favours the pick, so does every resample, and 3 instances said "100 %" beside
    "cannot tell them apart". A contender told apart for a blow-up gets 0.
    """
    x = np.asarray(losses, dtype=float)
    ids = list(ids)
    m, s = x.shape
    pos = ids.index(pick)
    finite = np.isfinite(x).all(axis=1)
    point = np.asarray(value(np.where(finite[:, None], x, 0.0)), dtype=float)
    point[~finite] = np.inf
    ranked = [int(i) for i in order(ids, x)]
    keep = [i for i in ranked if finite[i]][:MAX_CONTENDERS]
    if pos not in keep:
        keep = [pos] + keep[: MAX_CONTENDERS - 1]
    sub_ids = [ids[i] for i in keep]
    sub = x[keep]
    p = sub_ids.index(pick)
    contenders = tuple(sorted(ids))
    method = POSTERIOR if mean else SMOOTHED_BOOTSTRAP
    if s < 2 or len(keep) < 2:
        p_best = {c: (1.0 if c == pick else 0.0) for c in contenders}
        return PickConfidence(pick, level, s, contenders, (pick,), p_best, {}, method)
    chal = capped(sub, factor) if cap else sub
    chal_point = np.asarray(value(chal), dtype=float)
    gap = chal_point - point[pos]
    rng = np.random.default_rng(seed)
    if mean:
        # the paired t: its bound and the posterior below share one scale, so a contender the
        # data cannot tell apart at ``level`` keeps a posterior chance of at least 1 - level
        # to be below the pick (exactly so with two contenders)
        from scipy.stats import t

        d = chal - sub[p]
        sd = d.std(axis=1, ddof=1)
        lb = gap - float(t.ppf(level, s - 1)) * sd / math.sqrt(s)
        draws = _posterior_draws(d, n_boot, rng, gap)
    else:
        cols = resample_columns(s, n_boot, seed)
        raw = bootstrap_values(sub, value, cols)
        challenger = bootstrap_values(chal, value, cols) if cap else raw
        lb = t_lower_bounds(challenger, raw[:, p], gap, s, 1.0 - level)
        with np.errstate(invalid="ignore"):
            diff = challenger - raw[:, p : p + 1]
        sd = _bootstrap_sd(diff, s)
        draws = _smoothed_draws(diff, gap, s, rng)
    blown = blowups(sub, factor) if cap else np.zeros(len(keep), dtype=bool)
    told_apart = (lb > 0) | (blown & (point[keep] > point[pos] + zone))
    told_apart[p] = False
    indist = tuple(sorted(c for c, apart in zip(sub_ids, told_apart) if not apart))
    # a contender told apart for a blow-up cannot be the best: its capped losses understate it
    draws[:, blown & told_apart] = np.inf
    draws[:, p] = 0.0
    share = _share_lowest(draws)
    p_best = {c: 0.0 for c in contenders}
    p_best.update({c: float(w) for c, w in zip(sub_ids, share)})
    more: dict[str, int | None] = {}
    for i, c in enumerate(sub_ids):
        if c == pick or c not in indist:
            continue
        more[c] = _instances_to_separate(float(gap[i]), float(sd[i]), s, level)
    return PickConfidence(pick, level, s, contenders, indist, p_best, more, method)


def _posterior_draws(d: np.ndarray, n: int, rng: np.random.Generator, centre: np.ndarray) -> np.ndarray:
    """Draws (n x rows) of the rows' true mean differences given their per-instance differences
    ``d`` (rows x s): under the noninformative prior, a multivariate Student-t on ``s - 1`` degrees
    of freedom centred on the observed means (``centre``, the criterion's own differences) with
    scale ``S / s`` (``S`` their sample covariance).

    ``centre + sqrt(nu / chi2_nu) * Dc^T z / sqrt(s (s - 1))``, ``z ~ N(0, I_s)``: ``Dc^T Dc / (s - 1)``
    is ``S`` itself, so no factorisation is needed and a singular ``S`` (fewer instances than
    contenders) is fine. One chi-squared per draw, shared by the rows, as the joint law has it."""
    k, s = d.shape
    nu = s - 1
    dbar = d.mean(axis=1)
    dc = d - dbar[:, None]
    z = rng.standard_normal((n, s))
    scale = np.sqrt(nu / rng.chisquare(nu, size=n))
    return centre[None, :] + scale[:, None] * (z @ dc.T) / math.sqrt(s * nu)


def _bootstrap_sd(diff: np.ndarray, s: int) -> np.ndarray:
    """Per row, the per-instance standard deviation that the bootstrap's standard error of the
    difference stands for (``se * sqrt(s) * sqrt(s / (s - 1))``, as :func:`t_lower_bounds` widens it)."""
    with np.errstate(invalid="ignore"):
        se = np.nanstd(np.where(np.isfinite(diff), diff, np.nan), axis=0, ddof=1)
    return np.nan_to_num(se, nan=0.0) * math.sqrt(s) * math.sqrt(s / (s - 1.0))


def _smoothed_draws(diff: np.ndarray, point: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """The bootstrap's differences (resamples x rows) made to doubt as the posterior does: each
    resample's deviation from the observed difference ``point`` widened by ``sqrt(s / (s - 1))``
    and by a ``sqrt(nu / chi2_nu)`` shared across rows.

    For the mean this is close to the Student-t posterior (the bootstrap mean is near normal with
    the sample's variance / s); for any criterion it is continuous where the raw bootstrap of a few
    instances has a handful of values, all on one side of zero when every instance agrees, and it
    tends to the plain bootstrap as instances accrue. Centred on ``point`` rather than on the
    bootstrap's own mean, which keeps the bootstrap's shape (a median's is lumpy and skewed)."""
    n = diff.shape[0]
    nu = s - 1
    scale = np.sqrt(nu / rng.chisquare(nu, size=n)) * math.sqrt(s / (s - 1.0))
    with np.errstate(invalid="ignore"):
        out = np.where(np.isfinite(diff), point[None, :] + scale[:, None] * (diff - point[None, :]), diff)
    out[np.isnan(out)] = np.inf  # a criterion undefined on a resample: that contender does not win it
    return out


def _share_lowest(draws: np.ndarray) -> np.ndarray:
    """Per column, the share of rows (draws) in which it is the lowest, exact ties split evenly."""
    low = draws.min(axis=1, keepdims=True)
    first = draws == low
    return (first / first.sum(axis=1, keepdims=True)).sum(axis=0) / draws.shape[0]


def _instances_to_separate(gap: float, sd: float, s: int, level: float) -> int | None:
    """How many more instances than ``s`` the bound of :func:`t_lower_bounds` needs to exclude zero
    for a difference ``gap`` whose per-instance standard deviation is ``sd`` (None: never, the
    difference is zero or favours the challenger)."""
    from scipy.stats import norm, t

    if not gap > 0 or not sd > 0 or not math.isfinite(sd):
        return None if not gap > 0 else 1
    most = 10**9  # beyond this, "never" is the honest answer
    guess = (float(norm.ppf(level)) * sd / gap) ** 2
    if not guess < most:
        return None
    n = max(s + 1, math.ceil(guess))
    while float(t.ppf(level, float(n - 1))) * sd / math.sqrt(n) >= gap:
        n = math.ceil(n * 1.05) + 1
        if n >= most:
            return None
    return n - s
