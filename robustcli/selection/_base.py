"""The three small contracts Algorithm 1 is written against: :class:`SelectionStore`,
:class:`LossSource`, :class:`Rule`, and the frozen records they exchange (:class:`LossView`,
:class:`StepRecord`).

The loop (:func:`robustcli.selection.select`) imports neither torch nor MLflow: it asks a
selection store what is known, a loss source for what is missing, and a rule who survives.

Words. A *candidate* is named by its id (a string). *Instance index* ``j`` (0-based) means the
same training sample and seeds for every candidate (common random numbers), so losses of two
candidates at the same index are paired. A *loss* is a float, lower is better; a failed or
diverged instance has loss ``nan`` or ``inf``: it counts as a training and its candidate ranks
last (criterion ``+inf``, see :mod:`robustcli.robustness.criteria`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from robustcli.robustness.criteria import Objective

__all__ = ["LossSource", "LossView", "Rule", "SelectionStore", "StepRecord"]


@dataclass(frozen=True)
class StepRecord:
    """What one selection step did; a store keeps these as the selection's history.

    ``evaluated`` are the candidates that held instance ``step - 1`` at this step (the survivors
    of the previous step), ``survivors`` those the rule kept, ``values`` the criterion values of
    every evaluated candidate after this step (one float per criterion, ``inf`` = failed or
    undefined), ``trainings`` the instances the selection has used so far (this step included,
    whether trained now or found in the store), ``trained`` how many of this step's instances the
    loss source trained in this run (0 for a step replayed from the store), ``exhaustive_trainings``
    what an exhaustive search over the same candidates would cost, ``best`` the best evaluated
    candidate by the criterion at this step (ties by id).
    """

    step: int
    evaluated: tuple[str, ...]
    survivors: tuple[str, ...]
    best: str
    values: Mapping[str, tuple[float, ...]]
    criterion: tuple[str, ...]
    trainings: int
    trained: int
    exhaustive_trainings: int

    def as_dict(self) -> dict[str, object]:
        return {
            "step": self.step,
            "evaluated": len(self.evaluated),
            "survivors": list(self.survivors),
            "best": self.best,
            "criterion": list(self.criterion),
            "values": {k: list(v) for k, v in self.values.items()},
            "trainings": self.trainings,
            "trained": self.trained,
            "exhaustive_trainings": self.exhaustive_trainings,
        }


@dataclass(frozen=True)
class LossView:
    """A read-only snapshot a rule decides on: the losses of the candidates still in the race.

    ``losses[i, j]`` is the loss of candidate ``ids[i]`` at instance index ``j``; at step ``s``
    every row holds exactly ``s`` losses (indices ``0 .. s-1``), paired across rows. ``ids`` are
    sorted. The array is not writeable.
    """

    step: int
    ids: tuple[str, ...]
    losses: np.ndarray
    objective: Objective
    warmup: int = 1
    baseline: float | None = None
    _values: np.ndarray | None = field(default=None, repr=False, compare=False)
    _order: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        arr = np.array(self.losses, dtype=float, copy=True)
        if arr.shape != (len(self.ids), self.step):
            raise ValueError(f"losses must be {len(self.ids)} x {self.step}, got {arr.shape}")
        arr.flags.writeable = False
        object.__setattr__(self, "losses", arr)

    @property
    def values(self) -> np.ndarray:
        """Criterion values, candidates x criteria (computed once)."""
        if self._values is None:
            v = self.objective.values(self.losses)
            v.flags.writeable = False
            object.__setattr__(self, "_values", v)
        return self._values  # type: ignore[return-value]

    def order(self) -> np.ndarray:
        """Row indices from best to worst by the objective; ties by id (computed once)."""
        if self._order is None:
            o = self.objective.order(self.ids, self.losses, self.values)
            o.flags.writeable = False
            object.__setattr__(self, "_order", o)
        return self._order  # type: ignore[return-value]

    def ranked(self) -> list[str]:
        """Ids from best to worst by the objective; ties by id."""
        return [self.ids[i] for i in self.order()]

    @property
    def failed(self) -> np.ndarray:
        """Boolean per row: the candidate has a failed (non-finite) instance."""
        return ~np.isfinite(self.losses).all(axis=1)

    def mean_losses(self) -> np.ndarray:
        """Mean loss per row, ``+inf`` where an instance failed."""
        out = np.full(len(self.ids), np.inf)
        ok = ~self.failed
        if self.step:
            out[ok] = self.losses[ok].mean(axis=1)
        return out


class SelectionStore(ABC):
    """What is known about a selection: the losses of finished instances and the history. (Not the
    MLflow store: :class:`~robustcli.tracking.selection_store.MlflowSelectionStore` implements this
    contract over it.)

    Contract:

    * :meth:`known_losses` returns candidate id -> {instance index -> loss} for every finished
      instance of the study, including failed ones (``nan``/``inf``). The mapping may hold more
      than the loop needs (other candidates, later indices); the loop reads only what it needs.
      Callers must not mutate it; a store may return a live read-only view.
    * A loss, once known, never changes (finished instances are immutable).
    * :meth:`record_step` stores a step's :class:`StepRecord`. On resume the loop records the
      replayed steps again with identical content: a store must replace the record of the same
      step, not append a duplicate.
    * :meth:`baseline_loss` is the best non-deep reference loss of the task, or ``None``.
    """

    @abstractmethod
    def known_losses(self) -> Mapping[str, Mapping[int, float]]:
        """candidate id -> {instance index -> test loss}; failed instances are nan or inf."""

    @abstractmethod
    def record_step(self, record: StepRecord) -> None:
        """Keep the history of one step (idempotent per ``record.step``)."""

    def baseline_loss(self) -> float | None:
        """The best baseline's loss on the same samples, if known (default: none)."""
        return None


class LossSource(ABC):
    """Trains the instances the loop asks for.

    Contract: :meth:`run` is given distinct ``(candidate id, instance index)`` pairs that the
    store does not know yet. It yields ``(candidate id, instance index, loss)`` once per pair,
    in any order, as each finishes (a failed instance yields ``nan`` or ``inf``: failures are
    results, not exceptions). By the time a triple is yielded the store knows that loss, so an
    interrupted run loses nothing that was yielded. A source that cannot train at all raises a
    :class:`~robustcli.errors.RobustError`; the loop can then be re-run and resumes.
    """

    @abstractmethod
    def run(self, requests: Sequence[tuple[str, int]]) -> Iterable[tuple[str, int, float]]:
        """Train ``requests``; yield each result as it finishes."""


class Rule(ABC):
    """Decides which candidates survive a step.

    Contract: :meth:`survivors` is called at the end of every step ``step >= 1`` with a
    :class:`LossView` of the candidates that took part in it, and returns a non-empty subset of
    ``view.ids``; returning one id ends the selection with it. A rule must be a pure function
    of ``(step, view)``: no state carried between calls, no randomness. That is what makes a
    resumed selection decide exactly as an uninterrupted one. A rule should not rank
    candidates during the first ``view.warmup`` steps (a cut against an absolute threshold,
    like the paper's baseline cut, may come earlier). Ties are broken by candidate id.
    :meth:`validate` is called once, before anything is trained, to refuse a criterion the rule
    cannot use.
    """

    #: the name ``--rule`` selects it by
    name: ClassVar[str] = ""

    @abstractmethod
    def survivors(self, step: int, view: LossView) -> list[str]:
        """The ids that go on to the next step."""

    def validate(self, objective: Objective) -> None:
        """Refuse (InputError) a criterion this rule cannot work with; called before any training."""

    def pick(self, view: LossView) -> str:
        """The pick when a selection ends with several survivors (at its budget or step limit):
        ``view`` holds the survivors. By default the best by the objective (ties by id)."""
        return view.ranked()[0]

    def describe(self) -> str:
        """One line for tables and logs."""
        return self.name

