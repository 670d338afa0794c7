"""Criteria: built-ins, failed instances, user criteria by dotted path, lexicographic and Pareto."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from robustcli.errors import InputError, UnknownNameError
from robustcli.robustness.criteria import Criterion, get_criterion, make_objective, pareto_fronts
from robustcli.robustness.statistics import STATISTICS

LOSSES = np.array(
    [
        [0.10, 0.12, 0.11, 0.30],
        [0.20, 0.21, 0.19, 0.20],
        [0.05, 0.50, 0.06, 0.07],
    ]
)


@pytest.mark.parametrize("name", sorted(STATISTICS))
def test_builtin_matches_statistics(name: str) -> None:
    crit = get_criterion(name)
    np.testing.assert_allclose(crit.values(LOSSES), STATISTICS[name](LOSSES))
    assert crit(LOSSES[0]) == pytest.approx(float(STATISTICS[name](LOSSES[0])))


def test_names_are_case_and_dash_insensitive() -> None:
    assert get_criterion("Q90-Q10").name == "q90_q10"


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_failed_instance_makes_criterion_inf_and_ranks_last(bad: float) -> None:
    losses = LOSSES.copy()
    losses[2, 1] = bad
    obj = make_objective("mean")
    assert obj.values(losses)[2, 0] == np.inf
    assert obj.rank(["a", "b", "c"], losses) == ["a", "b", "c"]
    # min would have liked candidate c; a failed instance still ranks it last
    assert make_objective("min").rank(["a", "b", "c"], losses)[-1] == "c"


def test_undefined_statistic_is_inf() -> None:
    assert get_criterion("std")([0.1]) == np.inf


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_criterion("meen", where="from --criterion")
    msg = str(info.value)
    assert "'meen'" in msg and "did you mean 'mean'" in msg and "from --criterion" in msg


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    pkg = tmp_path / "usercrit"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "funcs.py").write_text(
        textwrap.dedent(
            """
            import numpy as np

            def worst_two(losses):
                return float(np.sort(losses)[-2:].mean())

            def broken(losses):
                raise ValueError("boom")

            class Holder:
                @staticmethod
                def first(losses):
                    return float(losses[0])

            NOT_CALLABLE = 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "usercrit.funcs"
    for name in [m for m in sys.modules if m.startswith("usercrit")]:
        del sys.modules[name]


@pytest.mark.parametrize("sep", [":", "."])
def test_user_criterion_by_dotted_path(user_module: str, sep: str) -> None:
    crit = get_criterion(f"{user_module}{sep}worst_two")
    np.testing.assert_allclose(crit.values(LOSSES), [0.21, 0.205, 0.285])
    assert crit.name == f"{user_module}{sep}worst_two"


def test_user_criterion_nested_attribute(user_module: str) -> None:
    assert get_criterion(f"{user_module}:Holder.first")(LOSSES[1]) == pytest.approx(0.20)


def test_user_criterion_gets_finite_rows_only(user_module: str) -> None:
    losses = LOSSES.copy()
    losses[0, 0] = np.inf
    values = get_criterion(f"{user_module}:worst_two").values(losses)
    assert values[0] == np.inf and np.isfinite(values[1:]).all()


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("nosuchpkg.mod:f", "cannot import module 'nosuchpkg.mod'"),
        ("usercrit.funcs:missing", "has no attribute 'missing'"),
        ("usercrit.funcs:NOT_CALLABLE", "is not callable"),
        ("usercrit.funcs:", "expected 'pkg.module:function'"),
    ],
)
def test_user_criterion_errors(user_module: str, spec: str, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        get_criterion(spec)


def test_user_criterion_that_raises_is_input_error(user_module: str) -> None:
    with pytest.raises(InputError, match="failed on losses"):
        get_criterion(f"{user_module}:broken").values(LOSSES)


def test_callable_criterion() -> None:
    crit = get_criterion(lambda a: float(a.max() - a.min()))
    assert isinstance(crit, Criterion)
    assert crit(LOSSES[1]) == pytest.approx(0.02)


def test_lexicographic_breaks_ties_by_next_criterion_then_id() -> None:
    losses = np.array([[1.0, 3.0], [2.0, 2.0], [1.5, 2.5], [2.0, 2.0]])  # all mean 2
    ids = ["d", "c", "b", "a"]
    obj = make_objective(["mean", "std"])
    assert obj.rank(ids, losses) == ["a", "c", "b", "d"]  # std 0, 0 (a before c), then .71, 1.41
    assert make_objective("mean").rank(ids, losses) == ["a", "b", "c", "d"]


def test_pareto_fronts() -> None:
    v = np.array([[1, 5], [2, 2], [5, 1], [3, 3], [6, 6], [np.inf, np.inf], [2, 2]], dtype=float)
    assert pareto_fronts(v).tolist() == [0, 0, 0, 1, 2, 3, 0]


def test_pareto_order_front_then_lexicographic_then_id() -> None:
    # mean and std: a (low mean, high spread), b (robust, mean a bit higher), c dominated by b
    losses = np.array([[0.10, 0.30], [0.25, 0.26], [0.30, 0.32], [0.10, 0.30]])
    obj = make_objective(["mean", "std"], combine="pareto")
    assert obj.rank(["a", "b", "c", "a2"], losses) == ["a", "a2", "b", "c"]
    assert obj.scalar(losses).tolist() == [0, 0, 1, 0]


def test_make_objective_defaults_and_bad_combine() -> None:
    assert make_objective(None).names == ["mean"]
    with pytest.raises(UnknownNameError, match="combine mode"):
        make_objective("mean", combine="sum")
