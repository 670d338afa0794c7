"""Algorithm 1 of the paper as a pure loop over a :class:`SelectionStore` and a :class:`LossSource`.

Step ``s`` (1-based) needs instance index ``s - 1`` of every surviving candidate. The loop asks
the store what is known, asks the loss source for the missing pairs only, then lets the rule cut.
It ends when one candidate is left, when the next step would exceed the ``budget`` (total
instances used), or after ``max_steps``.

Resume is free because the loop is a deterministic replay: at step ``s`` it reads only losses
at indices ``< s`` of the candidates still in the race, and rules are pure functions of what
they are shown. Run it again on a store that already holds losses and it walks the same steps,
trains only what is missing, and ends with the same result as an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from robustcli.errors import InputError, RobustError
from robustcli.parsing import DEFAULT_DELTA, parse_delta
from robustcli.robustness.criteria import Criterion, Objective, make_objective
from robustcli.robustness.racing import CAP_SAFE, PickConfidence, pick_confidence
from robustcli.selection._base import LossSource, LossView, Rule, SelectionStore, StepRecord

__all__ = ["SelectionResult", "draw_candidate_ids", "select"]


def draw_candidate_ids(ids: Sequence[str], k: int, seed: int, where: str = "") -> list[str]:
    """``k`` of ``ids`` drawn with ``seed``, sorted: a study and a replay of its exported table
    pick the same candidates for the same seed (--sample)."""
    pool = sorted(ids)
    if k > len(pool):
        raise InputError(f"--sample {k} exceeds the {len(pool)} candidates {where or 'available'}")
    picked = np.random.default_rng(seed).choice(len(pool), size=k, replace=False)
    return sorted(pool[i] for i in picked)

StopReason = Literal["one-left", "budget", "max-steps"]


@dataclass(frozen=True)
class SelectionResult:
    """The outcome of a selection.

    ``selected`` is the last candidate standing, or the best by the criterion among the
    survivors when the selection stopped at the budget or ``max_steps`` (``reason`` says which).
    ``trainings`` counts the instances the selection used (known before or trained now),
    ``trained`` those the loss source trained in this call, ``exhaustive_trainings`` the cost of
    training every candidate as many instances (candidates x ``exhaustive_instances``, or
    candidates x steps when that is not given).
    """

    selected: str
    reason: StopReason
    steps: int
    trainings: int
    trained: int
    exhaustive_trainings: int
    candidates: int
    survivors: tuple[str, ...]
    values: Mapping[str, tuple[float, ...]]
    criterion: tuple[str, ...]
    rule: str
    rule_description: str
    history: tuple[StepRecord, ...]
    confidence: PickConfidence | None = None

    @property
    def indistinguishable(self) -> list[str]:
        """The candidates the data cannot tell from the pick at the stated confidence (the pick included)."""
        return list(self.confidence.indistinguishable) if self.confidence else [self.selected]

    @property
    def p_best(self) -> dict[str, float]:
        """Per contender of the last step, the bootstrap probability that it is the best."""
        return dict(self.confidence.p_best) if self.confidence else {self.selected: 1.0}

    @property
    def survivors_per_step(self) -> list[int]:
        """How many candidates were left after each step."""
        return [len(r.survivors) for r in self.history]

    @property
    def ratio(self) -> float:
        """Exhaustive trainings / trainings used (how many times cheaper)."""
        return self.exhaustive_trainings / self.trainings if self.trainings else float("nan")

    def as_dict(self) -> dict[str, object]:
        return {
            "selected": self.selected,
            "reason": self.reason,
            "rule": self.rule,
            "rule_description": self.rule_description,
            "criterion": list(self.criterion),
            "candidates": self.candidates,
            "steps": self.steps,
            "trainings": self.trainings,
            "trained": self.trained,
            "exhaustive_trainings": self.exhaustive_trainings,
            "ratio": round(self.ratio, 3) if self.trainings else None,
            "survivors_per_step": self.survivors_per_step,
            "survivors": list(self.survivors),
            "values": {k: [_json_number(x) for x in v] for k, v in self.values.items()},
            **(self.confidence.as_dict() if self.confidence else {
                "confidence_level": None, "contenders": [self.selected], "indistinguishable": [self.selected],
                "p_best": {self.selected: 1.0}, "more_instances": {}, "confidence_method": None}),
            "history": [
                {
                    "step": r.step,
                    "evaluated": len(r.evaluated),
                    "survivors": len(r.survivors),
                    "best": r.best,
                    "trainings": r.trainings,
                    "trained": r.trained,
                }
                for r in self.history
            ],
        }


def _json_number(x: float) -> float | str:
    """JSON has no infinities: write them (and NaN) as strings."""
    if np.isfinite(x):
        return float(x)
    return "nan" if np.isnan(x) else ("inf" if x > 0 else "-inf")


def _missing(known: Mapping[str, Mapping[int, float]], overlay: Mapping[tuple[str, int], float],
             ids: Sequence[str], index: int) -> list[tuple[str, int]]:
    out = []
    for cid in ids:
        if (cid, index) in overlay:
            continue
        per = known.get(cid)
        if per is None or index not in per:
            out.append((cid, index))
    return out


def _loss(known: Mapping[str, Mapping[int, float]], overlay: Mapping[tuple[str, int], float],
          cid: str, index: int) -> float:
    per = known.get(cid)
    if per is not None and index in per:
        return float(per[index])
    return float(overlay[(cid, index)])


def select(
    candidates: Iterable[str],
    store: SelectionStore,
    source: LossSource,
    rule: Rule,
    criterion: Objective | Criterion | str | Sequence[str | Criterion] | None = None,
    *,
    warmup: int = 1,
    budget: int | None = None,
    max_steps: int | None = None,
    exhaustive_instances: int | None = None,
    on_step: Callable[[StepRecord], None] | None = None,
    confidence: float = 0.95,
) -> SelectionResult:
    """Run Algorithm 1 over ``candidates``; see the module docstring.

    ``criterion`` is an :class:`~robustcli.robustness.criteria.Objective` or anything
    :func:`~robustcli.robustness.criteria.make_objective` accepts (default ``mean``).
    ``warmup`` is passed to the rule (rules do not rank during the first ``warmup`` steps).
    ``budget`` caps the instances used in all; a step is never started if completing it would
    exceed the budget. ``on_step`` is called with each step's record after the store got it.
    ``confidence`` is the level of the pick's confidence statement (:class:`PickConfidence`),
    made over the candidates of the last step.
    """
    ids = sorted(set(map(str, candidates)))
    if not ids:
        raise InputError("no candidates to select from")
    if warmup < 1:
        raise InputError(f"warmup must be at least 1, got {warmup}")
    if budget is not None and budget < len(ids) and len(ids) > 1:
        raise InputError(f"budget {budget} is below the {len(ids)} trainings the first step needs")
    if max_steps is not None and max_steps < 1:
        raise InputError(f"max_steps must be at least 1, got {max_steps}")
    objective = make_objective(criterion)
    rule.validate(objective)
    baseline = store.baseline_loss()

    survivors = list(ids)
    rows: dict[str, list[float]] = {cid: [] for cid in ids}  # losses at indices 0..step-1
    overlay: dict[tuple[str, int], float] = {}  # what the source yielded in this call
    history: list[StepRecord] = []
    trainings = trained_total = step = 0
    reason: StopReason = "one-left"
    last_view: LossView | None = None

    while True:
        if len(survivors) == 1:
            reason = "one-left"
            break
        if max_steps is not None and step >= max_steps:
            reason = "max-steps"
            break
        if budget is not None and trainings + len(survivors) > budget:
            reason = "budget"
            break
        s = step + 1
        index = s - 1
        known = store.known_losses()
        requests = _missing(known, overlay, survivors, index)
        trained_now = 0
        if requests:
            wanted = set(requests)
            for cid, j, loss in source.run(requests):
                key = (str(cid), int(j))
                if key not in wanted:
                    raise RobustError(f"loss source returned {key}, which was not requested")
                wanted.discard(key)
                overlay[key] = float(loss)
                trained_now += 1
            if wanted:
                first = sorted(wanted)[0]
                raise RobustError(
                    f"loss source finished without {len(wanted)} requested instance(s), e.g. candidate "
                    f"{first[0]!r} instance {first[1]}; re-run to resume"
                )
            known = store.known_losses()
        for cid in survivors:
            rows[cid].append(_loss(known, overlay, cid, index))
        trainings += len(survivors)
        trained_total += trained_now
        matrix = np.array([rows[cid] for cid in survivors], dtype=float).reshape(len(survivors), s)
        view = LossView(step=s, ids=tuple(survivors), losses=matrix, objective=objective,
                        warmup=warmup, baseline=baseline)
        kept = rule.survivors(s, view)
        kept_set = set(kept)
        if not kept_set or not kept_set <= set(survivors):
            raise RobustError(f"rule {rule.name!r} returned an invalid survivor set at step {s}: {sorted(kept_set)[:5]}")
        new_survivors = [cid for cid in survivors if cid in kept_set]
        values = view.values
        record = StepRecord(
            step=s,
            evaluated=tuple(survivors),
            survivors=tuple(new_survivors),
            best=view.ids[int(view.order()[0])],
            values={cid: tuple(float(x) for x in values[i]) for i, cid in enumerate(survivors)},
            criterion=tuple(objective.names),
            trainings=trainings,
            trained=trained_now,
            exhaustive_trainings=len(ids) * (exhaustive_instances or s),
        )
        store.record_step(record)
        history.append(record)
        if on_step is not None:
            on_step(record)
        survivors = new_survivors
        last_view = view
        step = s

    if len(survivors) == 1:
        selected = survivors[0]
    else:
        assert last_view is not None  # more than one survivor means at least one step ran
        pos = {cid: i for i, cid in enumerate(last_view.ids)}
        rows_idx = [pos[cid] for cid in survivors]
        final_view = LossView(step=last_view.step, ids=tuple(survivors), losses=last_view.losses[rows_idx],
                              objective=objective, warmup=warmup, baseline=baseline)
        selected = rule.pick(final_view)
    sure = _confidence(last_view, selected, objective, confidence) if last_view is not None else None
    final_values = history[-1].values if history else {}
    return SelectionResult(
        selected=selected,
        reason=reason,
        steps=step,
        trainings=trainings,
        trained=trained_total,
        exhaustive_trainings=len(ids) * (exhaustive_instances or step),
        candidates=len(ids),
        survivors=tuple(survivors),
        values={cid: final_values[cid] for cid in survivors if cid in final_values},
        criterion=tuple(objective.names),
        rule=rule.name,
        rule_description=rule.describe(),
        history=tuple(history),
        confidence=sure,
    )


def _confidence(view: LossView, pick: str, objective: Objective, level: float) -> PickConfidence | None:
    """The pick's confidence among the last step's candidates (first criterion; the race's default
    zone, a share of the pick's mean loss, as the one within which a candidate that blew up is
    still told apart)."""
    if pick not in view.ids:
        return None
    row = view.losses[view.ids.index(pick)]
    share, _ = parse_delta(DEFAULT_DELTA)
    zone = share * abs(float(np.mean(row))) if np.isfinite(row).all() else 0.0
    primary = objective.primary
    return pick_confidence(view.ids, view.losses, pick, primary.values, objective.order, level,
                           cap=primary.name in CAP_SAFE, zone=zone, seed=view.step, mean=primary.name == "mean")
