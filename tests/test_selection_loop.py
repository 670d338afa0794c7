"""Algorithm 1 on tables of losses: the winner, resume, ties, limits, contracts."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from robustcli.errors import InputError, RobustError
from robustcli.selection import (
    LossSource,
    MemorySelectionStore,
    PaperRule,
    RaceRule,
    SelectionResult,
    StepRecord,
    TableLosses,
    make_rule,
    select,
)


def table(n: int = 16, m: int = 12, seed: int = 0, best: str = "c05") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = 0.003 * rng.standard_normal(m)  # common random numbers: one effect per instance index
    out = {}
    for i in range(n):
        cid = f"c{i:02d}"
        mu = 0.05 if cid == best else 0.06 + 0.004 * i
        out[cid] = mu + data + 0.002 * rng.standard_normal(m)
    return out


class CountingExecutor(TableLosses):
    """Counts and optionally fails after ``fail_after`` trainings (a crash mid-step)."""

    def __init__(self, rows, store, fail_after: int | None = None) -> None:
        super().__init__(rows, store)
        self.fail_after = fail_after

    def run(self, requests: Sequence[tuple[str, int]]) -> Iterator[tuple[str, int, float]]:
        for item in super().run(requests):
            yield item
            if self.fail_after is not None and self.trained >= self.fail_after:
                raise RobustError("worker lost")


def run(rows, rule=None, store=None, executor=None, **kw) -> tuple[SelectionResult, MemorySelectionStore, TableLosses]:
    store = store if store is not None else MemorySelectionStore()
    executor = executor if executor is not None else CountingExecutor(rows, store)
    result = select(list(rows), store, executor, rule or PaperRule(), "mean", **kw)
    return result, store, executor


def summary(r: SelectionResult):
    return (r.selected, r.steps, r.trainings, r.survivors_per_step, [h.survivors for h in r.history],
            [h.values for h in r.history])


@pytest.mark.parametrize("rule", ["paper", "halving", "quantile", "race"])
def test_finds_the_clear_winner(rule: str) -> None:
    result, _, ex = run(table(), make_rule(rule), max_steps=12, exhaustive_instances=12)
    assert result.selected == "c05"
    assert result.trainings == ex.trained == result.trained
    assert result.exhaustive_trainings == 16 * 12
    assert result.survivors_per_step[-1] == 1 and result.reason == "one-left"


def test_paper_rule_steps_and_trainings() -> None:
    result, _, _ = run(table())
    # 16 -> 16 (no baseline) -> 8 -> 4 -> 2 -> 1
    assert result.survivors_per_step == [16, 8, 4, 2, 1]
    assert result.trainings == 16 + 16 + 8 + 4 + 2
    assert result.exhaustive_trainings == 16 * 5  # candidates x steps when not told


def test_step_s_trains_instance_s_minus_one_of_survivors_only() -> None:
    result, _, ex = run(table())
    for rec in result.history:
        asked = [(c, j) for c, j in ex.requests if j == rec.step - 1]
        assert sorted(c for c, _ in asked) == list(rec.evaluated)
    assert len(ex.requests) == len(set(ex.requests))


def test_resume_after_budget_trains_nothing_twice_and_ends_the_same() -> None:
    rows = table(n=24, m=12, seed=4)
    whole, _, _ = run(rows, RaceRule())
    store = MemorySelectionStore()
    first, _, ex1 = run(rows, RaceRule(), store=store, budget=whole.trainings // 2)
    assert first.reason == "budget" and first.trainings <= whole.trainings // 2
    ex2 = CountingExecutor(rows, store)
    second, _, _ = run(rows, RaceRule(), store=store, executor=ex2)
    assert not set(ex1.requests) & set(ex2.requests)
    assert ex1.trained + ex2.trained == whole.trainings
    assert second.trained == ex2.trained
    assert summary(second) == summary(whole)
    assert [h.step for h in store.history] == list(range(1, whole.steps + 1))


def test_resume_after_a_crash_mid_step() -> None:
    rows = table()
    whole, _, _ = run(rows)
    store = MemorySelectionStore()
    with pytest.raises(RobustError, match="worker lost"):
        run(rows, store=store, executor=CountingExecutor(rows, store, fail_after=20))
    assert len(store) == 20  # everything yielded before the crash is kept
    ex = CountingExecutor(rows, store)
    again, _, _ = run(rows, store=store, executor=ex)
    assert ex.trained == whole.trainings - 20
    assert summary(again) == summary(whole)


def test_rerun_of_a_finished_selection_trains_nothing() -> None:
    rows = table()
    first, store, _ = run(rows)
    ex = CountingExecutor(rows, store)
    again, _, _ = run(rows, store=store, executor=ex)
    assert ex.trained == 0 and again.trained == 0 and summary(again) == summary(first)
    assert [r.trained for r in again.history] == [0] * again.steps


def test_extra_known_losses_do_not_change_decisions() -> None:
    rows = table()
    whole, _, _ = run(rows)
    store = MemorySelectionStore({cid: dict(enumerate(v)) for cid, v in rows.items()})  # everything known
    result, _, ex = run(rows, store=store)
    assert ex.trained == 0 and summary(result) == summary(whole)


def test_ties_are_broken_by_id_whatever_the_order() -> None:
    rows = {cid: np.full(8, 0.05) for cid in ["d", "b", "a", "c"]}
    r1, _, _ = run(rows, PaperRule())
    r2, _, _ = run(dict(reversed(list(rows.items()))), PaperRule())
    assert r1.selected == r2.selected == "a"
    assert summary(r1) == summary(r2)


def test_max_steps_picks_best_survivor_by_criterion() -> None:
    result, _, _ = run(table(), make_rule("halving", fraction=0.25), max_steps=2)
    assert result.reason == "max-steps" and result.steps == 2
    assert len(result.survivors) == 12 and result.selected == "c05"


def test_budget_below_first_step_is_refused() -> None:
    with pytest.raises(InputError, match="budget 5 is below the 16 trainings"):
        run(table(), budget=5)


def test_single_candidate_needs_no_training() -> None:
    result, _, ex = run({"only": np.array([0.1, 0.2])})
    assert result.selected == "only" and result.steps == 0 and ex.trained == 0


def test_failed_instances_count_and_rank_last() -> None:
    rows = {"a": np.array([np.nan, 0.01, 0.01]), "b": np.array([0.05, 0.05, 0.05]),
            "c": np.array([0.06, 0.06, 0.06]), "d": np.array([0.07, 0.07, 0.07])}
    result, _, _ = run(rows)  # "a" would be best but for its failed first instance
    assert result.trainings == 4 + 4 + 2 and result.selected == "b"
    assert "a" not in result.history[1].survivors
    assert result.history[0].values["a"] == (np.inf,)


def test_failed_instance_in_store_counts_as_known() -> None:
    rows = table()
    store = MemorySelectionStore({"c00": {0: float("inf")}})
    result, _, ex = run(rows, store=store)
    assert ("c00", 0) not in ex.requests
    assert result.trainings == ex.trained + 1


def test_on_step_and_store_history() -> None:
    seen: list[StepRecord] = []
    result, store, _ = run(table(), on_step=seen.append)
    assert seen == list(result.history) == store.history
    assert seen[0].best == "c05" and seen[-1].survivors == ("c05",)


class BadLossSource(LossSource):
    def __init__(self, mode: str) -> None:
        self.mode = mode

    def run(self, requests):
        if self.mode == "extra":
            yield ("nobody", 0, 0.1)
        for cid, j in requests[:-1]:
            yield cid, j, 0.1


@pytest.mark.parametrize("mode, message", [("extra", "was not requested"), ("short", "finished without 1")])
def test_executor_contract_violations(mode: str, message: str) -> None:
    with pytest.raises(RobustError, match=message):
        select(["a", "b"], MemorySelectionStore(), BadLossSource(mode), PaperRule())


def test_memory_store_refuses_a_changed_loss() -> None:
    store = MemorySelectionStore()
    store.add("a", 0, 0.1)
    store.add("a", 0, 0.1)
    with pytest.raises(InputError, match="already known"):
        store.add("a", 0, 0.2)


def test_result_as_dict_is_json_ready() -> None:
    import json

    result, _, _ = run(table())
    payload = json.loads(json.dumps(result.as_dict()))
    for key in ("selected", "trainings", "exhaustive_trainings", "steps", "survivors_per_step", "values", "rule"):
        assert key in payload


def test_selection_imports_neither_torch_nor_mlflow() -> None:
    code = (
        "import sys, robustcli.selection, robustcli.robustness.criteria, robustcli.cli.select;"
        "bad = [m for m in ('torch', 'mlflow') if m in sys.modules];"
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
