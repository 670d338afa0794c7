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
