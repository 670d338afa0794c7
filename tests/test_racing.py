"""The race's statistics on small hand-made tables: a blow-up, a tie, a spread-only difference."""

from __future__ import annotations

import numpy as np
import pytest

from robustcli.robustness.criteria import get_criterion, make_objective
from robustcli.robustness.racing import blowups, capped, friedman_screen, pick_confidence


def test_a_blowup_is_an_instance_beyond_three_times_its_own_median() -> None:
    x = np.array([[0.05, 0.051, 0.049, 500.0], [0.05, 0.06, 0.055, 0.12], [0.05, 0.05, 0.14, 0.05]])
    assert blowups(x).tolist() == [True, False, False]  # 0.14 is 2.8x its median, not a blow-up
    assert not blowups(x[:, :2]).any()  # two instances: nothing exceeds twice their mean


@pytest.mark.parametrize("name", ["mean", "median", "std", "iqr", "q90_q10", "min", "max"])
def test_capping_never_raises_a_built_in_criterion(name: str) -> None:
    rng = np.random.default_rng(0)
    x = np.exp(rng.normal(-3, 1.5, size=(200, 9)))  # heavy right tails
    crit = get_criterion(name)
    assert np.all(crit.values(capped(x)) <= crit.values(x) + 1e-15)


def test_block_ranks_shrug_off_an_astronomic_loss() -> None:
    # 'bad' is worse than 'ref' in 9 of 10 instances; in the tenth it is 10^4 times the rest
    rng = np.random.default_rng(1)
    data = 0.01 * rng.standard_normal(10)
    ref = 0.05 + data + 0.001 * rng.standard_normal(10)
    bad = ref + 0.004
    bad[7] = 500.0
    others = [0.05 + 0.02 * (i + 1) + data for i in range(4)]
    screen = friedman_screen(np.vstack([ref, bad, *others]))
    assert screen.omnibus_p < 1e-6
    assert screen.worse_than(0, 0.025)[1]
    # the paired t-test on the raw losses cannot see it: one instance swamps the variance
    d = bad - ref
    assert d.mean() / (d.std(ddof=1) / np.sqrt(d.size)) < 2.26  # t(0.975, 9): one outlier pins t near 1


def test_block_ranks_say_nothing_about_a_tie() -> None:
    rng = np.random.default_rng(2)
    x = 0.05 + 0.002 * rng.standard_normal((6, 4))
    screen = friedman_screen(x)
    assert screen.omnibus_p > 0.05 and not screen.worse_than(0, 0.025).any()


def test_pick_confidence_tells_a_spread_apart_only_under_a_spread_criterion() -> None:
    rng = np.random.default_rng(3)
    z, w = rng.standard_normal(40), rng.standard_normal(40)
    narrow = 0.05 + 0.002 * (z - z.mean()) / z.std()
    wide = 0.05 + 0.004 * (w - w.mean()) / w.std()
    x = np.vstack([narrow, wide])
    ids = ["narrow", "wide"]
    for name, told_apart in (("std", True), ("mean", False)):
        obj = make_objective(name)
        sure = pick_confidence(ids, x, "narrow", obj.primary.values, obj.order, 0.95)
        assert (sure.indistinguishable == ("narrow",)) is told_apart, name
        assert sum(sure.p_best.values()) == pytest.approx(1.0)
        if told_apart:
            assert sure.p_best["narrow"] > 0.95


def test_pick_confidence_tells_a_blown_up_candidate_apart_whatever_its_other_instances() -> None:
    good = np.full(8, 0.05) + np.linspace(0, 0.001, 8)
    fragile = good - 0.002
    fragile[5] = 400.0
    obj = make_objective("mean")
    sure = pick_confidence(["good", "fragile"], np.vstack([good, fragile]), "good", obj.primary.values,
                           obj.order, 0.95, zone=0.0005)
    assert sure.indistinguishable == ("good",)


def test_pick_confidence_on_a_near_tie_estimates_the_instances_that_would_separate() -> None:
    rng = np.random.default_rng(4)
    a = 0.05 + 0.003 * rng.standard_normal(10)
    b = a + 0.0005 + 0.002 * rng.standard_normal(10)
    obj = make_objective("mean")
    sure = pick_confidence(["a", "b"], np.vstack([a, b]), "a", obj.primary.values, obj.order, 0.95)
    assert sure.indistinguishable == ("a", "b")
    assert sure.more_instances["b"] is None or sure.more_instances["b"] >= 1
    assert "indistinguishable" in sure.sentence()


def _confidence(x: np.ndarray, ids: list[str], pick: str, name: str = "mean", **kw: object):
    obj = make_objective(name)
    return pick_confidence(ids, x, pick, obj.primary.values, obj.order, 0.95, mean=name == "mean", **kw)


@pytest.mark.parametrize("name", ["mean", "median", "std"])
def test_p_best_doubts_three_instances_that_all_favour_the_pick(name: str) -> None:
    # make demo's case: the pick better on all 3 instances, the two indistinguishable at 95 %;
    # a resampling share said 100 % / 0 % here (every resample favours the pick too)
    pick = np.array([0.050, 0.048, 0.052])
    other = pick + np.array([0.004, 0.001, 0.006]) if name != "std" else 0.05 + 3 * (pick - 0.05)
    sure = _confidence(np.vstack([pick, other]), ["pick", "other"], "pick", name)
    assert sure.indistinguishable == ("other", "pick")
    assert 0.5 < sure.p_best["pick"] < 0.97 and sure.p_best["other"] > 0.03
    assert sum(sure.p_best.values()) == pytest.approx(1.0)


def test_p_best_agrees_with_the_indistinguishable_set_for_the_mean() -> None:
    # two contenders: indistinguishable at 95 % <=> the posterior leaves the other >= 5 % (the
    # paired t and the posterior share one scale); told apart <=> under 5 %
    rng = np.random.default_rng(7)
    for _ in range(30):
        s = int(rng.integers(3, 8))
        a = 0.05 + 0.01 * rng.standard_normal(s)
        b = a + 0.002 * (1.0 + rng.standard_normal(s))
        if b.mean() <= a.mean():
            continue
        sure = _confidence(np.vstack([a, b]), ["a", "b"], "a", n_boot=20000)
        if "b" in sure.indistinguishable:
            assert sure.p_best["b"] > 0.045  # 5 %, less the draws' error (0.15 % at 20,000)
        else:
            assert sure.p_best["b"] < 0.055


def test_p_best_is_sure_of_a_clear_gap_over_thirty_instances() -> None:
    rng = np.random.default_rng(8)
    a = 0.05 + 0.01 * rng.standard_normal(30)
    x = np.vstack([a, a + 0.003 + 0.002 * rng.standard_normal(30), a + 0.01 + 0.002 * rng.standard_normal(30)])
    for name in ("mean", "median"):
        sure = _confidence(x, ["a", "b", "c"], "a", name)
        assert sure.indistinguishable == ("a",)
        assert sure.p_best["a"] > 0.99, name


def test_an_astronomic_instance_neither_wins_p_best_nor_breaks_the_statement() -> None:
    # 'fragile' is a bit better than 'good' on 7 of 8 instances and 10^4 x them on the eighth
    rng = np.random.default_rng(9)
    good = 0.05 + 0.002 * rng.standard_normal(8)
    fragile = good - 0.001
    fragile[3] = 1e4 * good[3]
    x = np.vstack([good, fragile, good + 0.001 + 0.001 * rng.standard_normal(8)])
    for name in ("mean", "median", "std", "q90_q10"):
        sure = _confidence(x, ["good", "fragile", "other"], "good", name, zone=0.0005)
        p = sure.p_best
        assert all(np.isfinite(v) and 0.0 <= v <= 1.0 for v in p.values()), name
        assert sum(p.values()) == pytest.approx(1.0), name
        if name != "median":  # the median shrugs the blow-up off: 'fragile' is then truly better
            assert p["fragile"] == 0.0 and "fragile" not in sure.indistinguishable, name
        assert "nan" not in sure.sentence() and all(v is None or v >= 1 for v in sure.more_instances.values())


def test_p_best_is_deterministic_for_a_seed_and_sums_to_one() -> None:
    rng = np.random.default_rng(10)
    x = 0.05 + 0.002 * rng.standard_normal((5, 4))
    ids = [f"c{i}" for i in range(5)]
    pick = ids[int(np.argmin(x.mean(axis=1)))]
    for name in ("mean", "iqr"):
        one, two = (_confidence(x, ids, pick, name, seed=3) for _ in range(2))
        assert one.p_best == two.p_best and one.indistinguishable == two.indistinguishable
        assert sum(one.p_best.values()) == pytest.approx(1.0)
        assert _confidence(x, ids, pick, name, seed=4).p_best != one.p_best  # the seed is used


def test_a_failed_contender_has_no_chance_of_being_the_best() -> None:
    x = np.array([[0.050, 0.048, 0.052, 0.049], [0.051, 0.049, np.inf, 0.050], [0.052, 0.050, 0.053, 0.050]])
    sure = _confidence(x, ["a", "failed", "c"], "a")
    assert sure.p_best["failed"] == 0.0 and "failed" not in sure.indistinguishable
    assert sum(sure.p_best.values()) == pytest.approx(1.0) and 0.0 < sure.p_best["c"] < sure.p_best["a"]
