"""Rules, each on a hand-made LossView: paper (baseline cut, halving), halving, quantile, race."""

from __future__ import annotations

import numpy as np
import pytest

from robustcli.config import SelectionSettings
from robustcli.errors import InputError, UnknownNameError
from robustcli.robustness.criteria import make_objective
from robustcli.robustness.statistics import t_quantile
from robustcli.selection import (
    HalvingRule,
    LossView,
    MemorySelectionStore,
    PaperRule,
    QuantileRule,
    RaceRule,
    TableLosses,
    make_rule,
    select,
)


def view(losses, ids=None, *, baseline=None, warmup=1, criterion="mean", combine="lexicographic") -> LossView:
    a = np.asarray(losses, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    ids = ids or [f"c{i}" for i in range(a.shape[0])]
    return LossView(step=a.shape[1], ids=tuple(ids), losses=a, objective=make_objective(criterion, combine),
                    warmup=warmup, baseline=baseline)


def test_view_is_read_only() -> None:
    v = view([[0.1, 0.2]])
    with pytest.raises(ValueError):
        v.losses[0, 0] = 1.0


# --- paper ----------------------------------------------------------------------------------


def test_paper_baseline_cut_after_step_one() -> None:
    v = view([0.10, 0.119, 0.121, 0.30, np.inf], baseline=0.10)
    assert PaperRule().survivors(1, v) == ["c0", "c1"]


def test_paper_no_baseline_no_cut_at_step_one() -> None:
    v = view([0.10, 0.119, 0.121, 0.30])
    assert PaperRule().survivors(1, v) == ["c0", "c1", "c2", "c3"]


def test_paper_keeps_everyone_when_nobody_passes_the_baseline() -> None:
    v = view([0.5, 0.6], baseline=0.1)
    assert PaperRule().survivors(1, v) == ["c0", "c1"]


def test_paper_halves_after_warmup_by_mean() -> None:
    losses = [[0.3, 0.3], [0.1, 0.2], [0.2, 0.2], [0.1, 0.1], [0.5, 0.1]]
    assert PaperRule().survivors(2, view(losses)) == ["c1", "c2", "c3"]  # ceil(5/2) = 3 kept
    assert PaperRule().survivors(2, view(losses, warmup=2)) == ["c0", "c1", "c2", "c3", "c4"]


def test_paper_baseline_cut_uses_margin() -> None:
    v = view([0.10, 0.129, 0.131], baseline=0.10)
    assert PaperRule(baseline_margin=0.3).survivors(1, v) == ["c0", "c1"]


# --- halving ---------------------------------------------------------------------------------


def test_halving_keeps_better_share_ties_by_id() -> None:
    losses = [[0.2, 0.2], [0.1, 0.3], [0.2, 0.2], [0.3, 0.3]]  # c0, c1, c2 tie on the mean
    assert HalvingRule().survivors(2, view(losses, ids=["b", "c", "a", "d"])) == ["b", "a"]
    assert HalvingRule(fraction=0.75).survivors(2, view(losses, ids=["b", "c", "a", "d"])) == ["a"]


def test_halving_waits_for_warmup_and_ranks_failed_last() -> None:
    losses = [[0.1, np.nan], [0.5, 0.5], [0.6, 0.6]]
    assert HalvingRule().survivors(2, view(losses, warmup=2)) == ["c0", "c1", "c2"]
    assert HalvingRule(fraction=0.6).survivors(2, view(losses)) == ["c1", "c2"]


def test_halving_bad_fraction() -> None:
    with pytest.raises(InputError, match="fraction"):
        HalvingRule(fraction=1.0)


# --- quantile --------------------------------------------------------------------------------


def test_quantile_keeps_ties_at_threshold() -> None:
    losses = [[0.1, 0.1], [0.2, 0.2], [0.2, 0.2], [0.4, 0.4], [0.9, 0.9]]
    # median of the means is 0.2: both 0.2s survive
    assert QuantileRule(fraction=0.5).survivors(2, view(losses)) == ["c0", "c1", "c2"]
    assert QuantileRule(fraction=0.8).survivors(2, view(losses)) == ["c0"]


def test_quantile_on_pareto_fronts() -> None:
    losses = [[0.10, 0.30], [0.25, 0.26], [0.30, 0.32], [0.5, 0.9]]
    v = view(losses, criterion=["mean", "std"], combine="pareto")
    assert QuantileRule(fraction=0.5).survivors(2, v) == ["c0", "c1"]


# --- race ------------------------------------------------------------------------------------


def race_table(seed: int = 0, n_bad: int = 12, n_inst: int = 40):
    """Three near-tied good candidates (within 0.001) and clearly worse ones, with a shared
    per-instance data effect (common random numbers)."""
    rng = np.random.default_rng(seed)
    data = 0.004 * rng.standard_normal(n_inst)
    means = [0.050, 0.0505, 0.051] + list(0.07 + 0.01 * np.arange(n_bad))
    rows = {f"m{i:02d}": mu + data + 0.0015 * rng.standard_normal(n_inst) for i, mu in enumerate(means)}
    return rows


def run_table(rows, rule, **kw):
    store = MemorySelectionStore(baseline=kw.pop("baseline", None))
    return select(rows, store, TableLosses(rows, store), rule, "mean", **kw)


def test_race_drops_clearly_worse_early_and_stops_on_near_ties() -> None:
    rows = race_table()
    result = run_table(rows, RaceRule(delta=0.005), max_steps=40, exhaustive_instances=40)
    assert result.selected in {"m00", "m01", "m02"}
    assert result.reason == "one-left"
    assert result.survivors_per_step[1] <= 4  # the bad ones go after two instances
    assert result.trainings < 0.2 * result.exhaustive_trainings


def test_race_with_zero_delta_runs_until_separated_or_out_of_steps() -> None:
    rows = race_table()
    result = run_table(rows, RaceRule(delta=0.0), max_steps=40)
    assert result.selected == "m00"


def test_race_strict_picks_a_near_best() -> None:
    strict = run_table(race_table(), make_rule("race-strict"), max_steps=40)
    assert strict.selected in {"m00", "m01", "m02"}
    assert strict.rule == "race-strict"


def test_race_strict_screens_less_than_race_after_two_instances() -> None:
    rng = np.random.default_rng(3)
    losses = 0.05 + np.linspace(0, 0.02, 30)[:, None] + 0.003 * rng.standard_normal((30, 2))
    v = view(losses)
    loose = RaceRule(delta=0.0).survivors(2, v)
    strict = RaceRule(delta=0.0, strict=True).survivors(2, v)
    assert set(loose) <= set(strict) and len(strict) > len(loose)


def test_race_drops_failed_at_once_and_applies_baseline_cut() -> None:
    v = view([[0.05], [np.inf], [0.09], [0.051]], baseline=0.05)
    assert RaceRule().survivors(1, v) == ["c0", "c3"]


def test_race_needs_two_instances() -> None:
    v = view([[0.05], [0.5]])
    assert RaceRule().survivors(1, v) == ["c0", "c1"]


def test_race_identical_candidates_pick_smallest_id() -> None:
    rows = {cid: np.full(10, 0.05) for cid in ["b", "a", "c"]}
    result = run_table(rows, RaceRule(), max_steps=10)
    assert result.selected == "a" and result.steps == 3  # the t bounds decide from the third instance


def test_race_refuses_a_pareto_front_in_one_line() -> None:
    v = view([[0.05, 0.06], [0.07, 0.08]], criterion=["mean", "std"], combine="pareto")
    with pytest.raises(InputError, match="cannot race a Pareto front.*--combine lexicographic.*paper, halving or quantile"):
        RaceRule().survivors(2, v)


# --- the race against heavy tails, ties and spreads (small hand-made tables) ------------------


def blowup_table(n_inst: int = 12):
    """'good' is the robust best; 'fragile' is better than 'good' in every instance but one, where
    it is 10^4 times its usual loss; 'bad' is worse than 'good' in every instance but one, where it
    is astronomically bad; the rest are clearly worse."""
    rng = np.random.default_rng(5)
    data = 0.002 * rng.standard_normal(n_inst)
    rows = {
        "good": 0.050 + data + 0.0005 * rng.standard_normal(n_inst),
        "fragile": 0.049 + data + 0.0005 * rng.standard_normal(n_inst),
        "bad": 0.056 + data + 0.0005 * rng.standard_normal(n_inst),
    }
    rows["fragile"][3] = 490.0
    rows["bad"][2] = 5e5
    for i in range(6):
        rows[f"worse{i}"] = 0.07 + 0.01 * i + data + 0.0005 * rng.standard_normal(n_inst)
    return rows


def test_race_drops_a_candidate_worse_in_most_instances_despite_an_astronomic_blowup() -> None:
    # the paired t-test could never show 'bad' worse (its one blow-up swamps the variance); the
    # block ranks do, after a few instances
    rows = blowup_table()
    result = run_table(rows, RaceRule(), max_steps=12)
    dropped_at = next(r.step for r in result.history if "bad" in r.evaluated and "bad" not in r.survivors)
    assert dropped_at <= 4


def test_race_never_ends_with_a_blowup_beside_a_robust_candidate_within_the_zone() -> None:
    rows = blowup_table()
    result = run_table(rows, RaceRule(), max_steps=12)
    assert result.selected == "good"
    assert "fragile" not in result.survivors
    # the blow-up is found once three instances show it, i.e. at the step that trains instance 3
    dropped_at = next(r.step for r in result.history if "fragile" in r.evaluated and "fragile" not in r.survivors)
    assert dropped_at == 4


def test_race_identical_pair_is_a_tie_settled_by_id_and_said_indistinguishable() -> None:
    base = np.array([0.05, 0.052, 0.049, 0.051, 0.05, 0.053])
    rows = {"b": base.copy(), "a": base.copy(), "z": base + 0.02}
    result = run_table(rows, RaceRule(delta=0.0), max_steps=6)
    assert result.selected == "a"
    assert "z" not in result.survivors
    assert result.indistinguishable == ["a", "b"] or set(result.indistinguishable) >= {"a", "b"}


def spread_table(n_inst: int = 30):
    """'narrow' and 'wide' have the same mean; 'wide' is twice as spread. 'far' is worse on both."""
    rng = np.random.default_rng(11)
    z = rng.standard_normal(n_inst)
    z = (z - z.mean()) / z.std()
    w = rng.standard_normal(n_inst)
    w = (w - w.mean()) / w.std()
    return {
        "narrow": 0.05 + 0.002 * z,
        "wide": 0.05 + 0.004 * w,
        "far": 0.09 + 0.006 * z,
    }


@pytest.mark.parametrize("criterion", ["std", "iqr", "q90_q10"])
def test_race_on_a_spread_criterion_tells_two_equal_means_apart(criterion: str) -> None:
    rows = spread_table()
    store = MemorySelectionStore()
    result = select(rows, store, TableLosses(rows, store), RaceRule(), criterion, max_steps=30)
    assert result.selected == "narrow"
    assert "wide" not in result.survivors


def test_race_mean_then_std_is_the_papers_robustness_question() -> None:
    # the means tie (within the zone); the narrow one wins on its spread; the far one goes on the mean
    rows = spread_table()
    store = MemorySelectionStore()
    result = select(rows, store, TableLosses(rows, store), RaceRule(delta="2%"), ["mean", "std"], max_steps=30)
    assert result.selected == "narrow"
    dropped_far = next(r.step for r in result.history if "far" not in r.survivors)
    assert dropped_far <= 3


def test_race_pick_confidence_on_a_clear_winner_and_on_a_near_tie() -> None:
    rows = race_table()
    clear = run_table({k: rows[k] for k in ("m00", "m05", "m06")}, RaceRule(delta=0.0), max_steps=10)
    assert clear.indistinguishable == ["m00"]
    assert clear.p_best["m00"] > 0.95
    tie = run_table({k: rows[k] for k in ("m00", "m01")}, RaceRule(delta=0.0), max_steps=6)
    assert set(tie.indistinguishable) == {"m00", "m01"}
    assert 0.05 < tie.p_best["m01"] < 0.95 and abs(sum(tie.p_best.values()) - 1.0) < 1e-9
    assert tie.confidence is not None and tie.confidence.more_instances.get("m01") in (None,) or \
        tie.confidence.more_instances["m01"] >= 1


def test_race_relative_delta() -> None:
    rows = race_table()
    result = run_table(rows, RaceRule(delta=0.1, relative=True), max_steps=40)
    assert result.selected in {"m00", "m01", "m02"}
    assert "of the leader's mean" in RaceRule(delta=0.1, relative=True).describe()


# --- factory and t quantiles -----------------------------------------------------------------


def test_make_rule_routes_settings() -> None:
    s = SelectionSettings(fraction=0.25, confidence=0.9, baseline_margin=0.1)
    paper = make_rule("paper", s)
    assert isinstance(paper, PaperRule) and paper.fraction == 0.25 and paper.baseline_margin == 0.1
    race = make_rule("race", s)
    assert isinstance(race, RaceRule) and race.confidence == 0.9 and (race.delta, race.relative) == (0.01, True)
    assert make_rule("race", s, delta=0.01).delta == 0.01
    assert (make_rule("race", s, delta="2%").delta, make_rule("race", s, delta="0.005").relative) == (0.02, False)
    assert isinstance(make_rule("Quantile"), QuantileRule)


def test_make_rule_unknown() -> None:
    with pytest.raises(UnknownNameError, match="unknown rule 'halve'.*did you mean 'halving'"):
        make_rule("halve")


@pytest.mark.parametrize(
    "p, df, expected",
    [(0.975, 1, 12.7062047), (0.975, 10, 2.2281389), (0.95, 5, 2.0150484), (0.999, 3, 10.2145319),
     (0.95, 1e6, 1.6448550), (0.025, 10, -2.2281389)],
)
def test_t_quantile(p: float, df: float, expected: float) -> None:
    assert t_quantile(p, df) == pytest.approx(expected, rel=1e-6)


def test_race_refuses_pareto_before_training() -> None:
    rows = race_table()
    store = MemorySelectionStore()
    executor = TableLosses(rows, store)
    with pytest.raises(InputError, match="cannot race a Pareto front"):
        select(rows, store, executor, RaceRule(), ["std", "mean"], combine="pareto") if False else \
            select(rows, store, executor, RaceRule(), make_objective(["std", "mean"], "pareto"))
    assert executor.trained == 0
