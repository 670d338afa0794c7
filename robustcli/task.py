"""The plugin contract: what a task is, what a candidate is, and what the core asks of them.

A plugin distribution registers a :class:`Task` subclass under the entry-point group
``robustcli.tasks``::

    [project.entry-points."robustcli.tasks"]
    my-task = "my_package.task:MyTask"

The core instantiates it with the task options of the study (``MyTask(**options)``), then asks
for its data, its search space and a model per candidate. Everything here is importable without
torch: torch types appear in annotations only, so ``robust --help`` stays fast.

Contract, in short:

* ``name``, ``description`` (one line) and ``loss`` (a :class:`Loss`) are class attributes.
* ``load_data()`` returns a :class:`TaskData`: the training pool and the test set as tensors. The
  core draws each instance's training sample from the pool; the test set is never trained on.
* ``search_space()`` returns a :class:`SearchSpace`: candidates with stable ids.
* ``build_model(candidate)`` returns a fresh ``torch.nn.Module`` mapping a batch of ``x`` to
  predictions; the core applies He initialisation afterwards (override ``init_weights``).
* ``test_loss(pred, y)`` is the reported loss (a scalar tensor, lower is better);
  ``objective(pred, y)`` is what is minimised, by default the test loss itself.
* ``baselines()`` optionally returns non-deep references scored with the same ``test_loss``.
* ``nas_space(trial)`` optionally defines the space ``robust nas`` searches with Optuna; by
  default the grid of ``search_space()``, one categorical per dimension.

What the core relies on and the conformance kit (``robust check TASK``, :mod:`robustcli.testing`)
enforces is written out in :class:`Task`'s docstring.
"""

from __future__ import annotations

import hashlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import TYPE_CHECKING, Any, ClassVar

from robustcli.errors import InputError, UnknownNameError

if TYPE_CHECKING:  # torch is imported lazily by the core, never at module import (Optuna: by robust nas)
    import optuna
    import torch

__all__ = [
    "Baseline",
    "Candidate",
    "Loss",
    "SearchSpace",
    "Task",
    "TaskData",
    "TaskTags",
    "TRAINING_KEYS",
    "candidate_id",
    "candidate_label",
    "describe_params",
    "filter_candidates",
]

#: Candidate parameters the core reads to build the optimiser and batches. Everything else in a
#: candidate's params is the task's own (architecture, features...).
TRAINING_KEYS = ("optimizer", "lr", "batch_size", "weight_decay", "momentum")


_SHORT_KEYS = {"optimizer": "", "lr": "lr", "batch_size": "bs", "weight_decay": "wd", "momentum": "mom"}


def _short(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if value == 0 or abs(value) >= 1:
            return f"{value:g}"
        mantissa, _, exponent = f"{value:.3e}".partition("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"  # 0.001 -> 1e-3, as papers write rates
    if isinstance(value, (list, tuple)):
        return "x".join(_short(v) for v in value)
    return str(value)


def describe_params(params: Mapping[str, Any]) -> str:
    """A short readable description of a candidate's parameters, e.g. ``adamw-lr1e-3-bs32-wd1e-1-depth=2``:
    the training keys first (optimizer, lr, batch size, weight decay), then the task's own in
    sorted order. The default of :meth:`Task.describe_candidate`, and what :func:`candidate_label`
    shows when no task is at hand; a plugin's description may build on it."""
    parts = [f"{_SHORT_KEYS[k]}{_short(params[k])}" for k in TRAINING_KEYS if k in params]
    parts += [f"{k}={_short(v)}" for k, v in sorted(params.items()) if k not in TRAINING_KEYS]
    return "-".join(parts)


@dataclass(frozen=True)
class Loss:
    """The loss a task reports: a short name, its formula in words, and its direction."""

    name: str
    formula: str
    lower_is_better: bool = True
    unit: str = ""


@dataclass(frozen=True)
class TaskTags:
    """Capabilities that decide which checks and engines apply to a task."""

    deterministic_on_cpu: bool = True
    supports_stacking: bool = True
    needs_gpu: bool = False


def _canonical(params: Mapping[str, Any]) -> str:
    def default(value: Any) -> Any:
        if isinstance(value, tuple):
            return list(value)
        raise TypeError(f"candidate parameter value {value!r} is not JSON-serialisable")

    return json.dumps(dict(params), sort_keys=True, separators=(",", ":"), default=default)


def candidate_id(params: Mapping[str, Any]) -> str:
    """A stable id from the parameters alone: adding candidates to a space never changes it."""
    digest = hashlib.blake2b(_canonical(params).encode(), digest_size=5).hexdigest()
    return f"c{digest}"


@dataclass(frozen=True)
class Candidate:
    """One point of a search space: an architecture plus its training hyperparameters.

    ``params`` holds everything; the keys in :data:`TRAINING_KEYS` are read by the core
    (``optimizer`` one of adam, adamw, nadam, rmsprop, sgd; ``lr``; ``batch_size``;
    ``weight_decay``: L2 for all but adamw, decoupled decay for adamw). ``name`` is an optional
    human alias such as ``model2``.
    """

    id: str
    params: Mapping[str, Any]
    name: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any], name: str | None = None) -> Candidate:
        return cls(id=candidate_id(params), params=dict(params), name=name)

    @property
    def label(self) -> str:
        """The id-level label, ``model2 (c1a2b3c4d5)`` or ``c1a2b3c4d5``, for messages written where no
        task is at hand (a task's own errors, the checks); output shows :func:`candidate_label`."""
        return f"{self.name} ({self.id})" if self.name else self.id

    def to_json(self) -> str:
        return _canonical(self.params)

    def __hash__(self) -> int:
        return hash(self.id)


class SearchSpace:
    """An ordered collection of candidates with unique stable ids and optional named aliases."""

    def __init__(
        self,
        candidates: Iterable[Candidate] | Callable[[], Iterable[Candidate]],
        named: Mapping[str, Candidate] | None = None,
        *,
        size: int | None = None,
    ):
        # a callable is expanded on first use: `robust tasks` only needs the size, and hashing
        # thousands of candidates' parameters would slow every start-up
        self._source = candidates
        self._size = size
        self._by_id_cache: dict[str, Candidate] | None = None
        self._named = dict(named or {})
        #: the grid it was built from (``from_grid`` without a filter): what ``suggest`` draws from
        self._grid: dict[str, list[Any]] | None = None
        self._fixed: dict[str, Any] = {}
        if not callable(candidates):
            self._by_id  # noqa: B018 - a given list is checked for clashing ids at once

    def __getstate__(self) -> dict[str, Any]:
        # workers get the expanded candidates, never the grid's closure (not picklable)
        return {
            "_source": list(self._by_id.values()), "_size": None, "_by_id_cache": self._by_id, "_named": self._named,
            "_grid": self._grid, "_fixed": self._fixed,
        }  # fmt: skip

    @property
    def _by_id(self) -> dict[str, Candidate]:
        if self._by_id_cache is None:
            source = self._source() if callable(self._source) else self._source
            by_id: dict[str, Candidate] = {}
            for cand in source:
                if cand.id in by_id and by_id[cand.id].params != cand.params:
                    raise ValueError(f"two different candidates share the id {cand.id}")
                by_id[cand.id] = cand
            self._by_id_cache = by_id
        return self._by_id_cache

    @classmethod
    def from_grid(
        cls,
        grid: Mapping[str, Sequence[Any]],
        *,
        fixed: Mapping[str, Any] | None = None,
        keep: Callable[[Mapping[str, Any]], bool] | None = None,
        named: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> SearchSpace:
        """The cartesian product of ``grid`` (plus ``fixed`` values), filtered by ``keep``.

        Named candidates need not lie on the grid; they are reachable by name and by id.
        """
        keys = list(grid)

        def expand() -> Iterator[Candidate]:
            for values in product(*(grid[k] for k in keys)):
                params = {**(fixed or {}), **dict(zip(keys, values, strict=True))}
                if keep is None or keep(params):
                    yield Candidate.from_params(params)

        named_cands = {n: Candidate.from_params(p, name=n) for n, p in (named or {}).items()}
        size = math.prod(len(grid[k]) for k in keys) if keep is None else None
        space = cls(expand, named_cands, size=size)
        if keep is None:
            space._grid = {k: list(grid[k]) for k in keys}
            space._fixed = dict(fixed or {})
        return space

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """The parameters of a candidate drawn by an Optuna ``trial``: one categorical per grid
        dimension (named as the dimension; values that are not numbers, strings or booleans, such
        as tuples, are offered as their JSON text), plus the fixed values. A space not built from a
        plain grid (a hand-made list, or a grid with a ``keep`` filter, whose product holds points
        that are not candidates) is one categorical over its candidates' ids, named ``candidate``."""
        if self._grid is None:
            ids = sorted(c.id for c in self)
            return dict(self._by_id[trial.suggest_categorical("candidate", ids)].params)
        params = dict(self._fixed)
        for key, values in self._grid.items():
            if all(v is None or isinstance(v, (bool, int, float, str)) for v in values):
                params[key] = trial.suggest_categorical(key, values)
            else:
                texts = [json.dumps(v) for v in values]
                params[key] = values[texts.index(trial.suggest_categorical(key, texts))]
        return params

    def __len__(self) -> int:
        # distinct grid points hash to distinct ids; a collision would raise on expansion
        return self._size if self._size is not None and self._by_id_cache is None else len(self._by_id)

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self._by_id.values())

    def __contains__(self, key: str) -> bool:
        return key in self._by_id or key in self._named or any(c.id == key for c in self._named.values())

    @property
    def named(self) -> Mapping[str, Candidate]:
        return dict(self._named)

    def name_of(self, candidate: Candidate) -> str | None:
        """The candidate's name, also for a nameless copy of a named candidate (a grid point, a
        logged run); None if it has none."""
        return candidate.name or next((n for n, c in self._named.items() if c.id == candidate.id), None)

    def get(self, key: str, where: str = "--candidate") -> Candidate:
        """A candidate by id or by name; an unknown key raises with the closest valid ones."""
        if key in self._named:
            return self._named[key]
        for cand in self._named.values():
            if cand.id == key:
                return cand
        if key in self._by_id:
            cand = self._by_id[key]
            # a grid point that is also a named model keeps its name
            for name, named in self._named.items():
                if named.id == cand.id:
                    return named
            return cand
        raise UnknownNameError("candidate", key, list(self._named) + list(self._by_id)[:50], where)


@dataclass
class TaskData:
    """The training pool (instances draw their samples from it) and the test set.

    ``x`` tensors have the batch as first dimension; ``y`` tensors too. They must not overlap.
    """

    pool_x: torch.Tensor
    pool_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def pool_size(self) -> int:
        return int(self.pool_x.shape[0])

    @property
    def test_size(self) -> int:
        return int(self.test_x.shape[0])


class Baseline(ABC):
    """A non-deep reference, fitted on the same training sample as an instance."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    @abstractmethod
    def fit_predict(
        self, train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, seed: int
    ) -> torch.Tensor:
        """Fit on the training sample and return predictions for ``test_x`` shaped like the
        model's output, which the core scores with the task's ``test_loss`` exactly as it scores
        a model: for regression, values shaped like ``y`` (``(n,)`` for a ``(n, 1)`` ``y`` is
        reshaped); for classification (integer labels), ``(n, n_classes)`` scores of the kind
        the models return (logits for a cross-entropy ``test_loss``). ``robust check`` fits and
        scores each baseline (``check_baselines``)."""


class Task(ABC):
    """A problem plus its data, search space and models. Subclass it in a plugin.

    What the core relies on (the conformance kit, ``robust check TASK``, checks each point):

    * **Without a plugin.** ``robustcli.api.Study(MyTask)`` (or ``Study(task=MyTask())``) takes a
      task defined in a script or notebook, for every method of the API; its code's hash is part
      of the study's fingerprint (:mod:`robustcli.task_code`). The CLI takes installed tasks only.
    * **Name.** ``name`` is one command-line word and equals the entry point's name (``--task``
      takes the entry point's name; ``robust tasks`` warns and the kit fails when they differ). A
      name another distribution already registers is ignored, never a replacement: a built-in
      task's name always stays the built-in's.
    * **Construction and options.** The core builds the task as ``MyTask(**options)`` from the
      study's task options: ``-o key=value`` on the command line gives each value parsed as JSON
      where it parses (``-o events=5000`` an int, ``-o noise=0.1`` a float, ``-o fast=true`` a
      bool, ``-o dataset=B`` the string ``"B"``), a study file's ``[task_options]`` gives TOML's
      types, the command line winning key by key. So convert and check types yourself (``-o
      noise=1`` is the int 1) and refuse an unknown option with
      :class:`~robustcli.errors.InputError`. ``MyTask()`` with no options must work: ``robust
      tasks`` and ``robust tasks show`` build it so (a task that cannot is listed as broken).
      ``__init__`` need not call ``super().__init__()``: the base sets nothing and only refuses
      options, so a task that takes options overrides it without calling it (or calls it with none).
      Keep the options in a mapping attribute ``options`` for the kit to rebuild the task with.
    * **Pickling.** The task (after ``load_data()``, its cache included), its candidates and a
      built model must survive ``pickle``: ``--executor local`` and Ray send the task and its data
      to worker processes (with cloudpickle where installed; the kit uses plain pickle). No open
      files, locks or lambdas in attributes, or define ``__getstate__``.
    * **Data.** ``x`` tensors are ``float32`` (the core trains in float32 and converts nothing),
      finite, with the examples as first dimension; pool and test rows alike, disjoint, and equal
      on every load (seed every random draw).
    * **Outputs and targets.** For regression (a floating ``y``), the model's output has exactly
      ``y``'s shape: a ``(n, 1)`` output needs a ``(n, 1)`` ``y``, not ``(n,)``, which would
      broadcast inside the loss. For classification, ``y`` holds integer labels of shape ``(n,)``
      and the output is ``(n, n_classes)``. ``objective`` and ``test_loss`` return finite scalar
      tensors.
    * **Training keys.** A candidate's ``optimizer`` (default ``adam``), ``lr`` (``1e-3``),
      ``batch_size`` (``64``), ``weight_decay`` (``0``) and ``momentum`` (``0``, SGD) are read by
      the core; a candidate without them trains with those defaults. Everything else is the
      task's own.
    * **Randomness.** The core seeds torch with the instance's init seed before ``build_model``
      and applies :meth:`init_weights`; draw every random number from torch's generator, not
      numpy, ``random`` or the clock, or two trainings with the same seeds differ (tag
      ``deterministic_on_cpu=False`` where that cannot be helped).
    * **Stacking.** The stacked engine trains a candidate's instances as one model under
      ``torch.func.vmap``: the forward pass has no data-dependent Python control flow, and all
      state lives in parameters and buffers. Models that do not (batch norm without running
      statistics, plain tensor attributes, an ``lr_factor`` schedule) are found by a probe and
      trained one at a time, which conforms; ``tags = TaskTags(supports_stacking=False)`` opts out.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    loss: ClassVar[Loss] = Loss("loss", "")
    tags: ClassVar[TaskTags] = TaskTags()
    #: training-sample size used when the study does not set one
    default_train_size: ClassVar[int] = 1000
    #: test set scored when the study does not say: "all", "train" (a subsample of the training
    #: sample's size, drawn with the instance's data seed) or a number
    default_test_size: ClassVar[int | str] = "all"

    def __init__(self, **options: Any) -> None:
        if options:
            raise InputError(
                f"task {self.name!r} takes no options; got {', '.join(sorted(options))} (from [task_options])"
            )

    # -- data and space -------------------------------------------------------------------
    @abstractmethod
    def load_data(self) -> TaskData:
        """The training pool and the test set. Called once per process; cache it if costly."""

    @abstractmethod
    def search_space(self) -> SearchSpace:
        """All candidates of the task, with stable ids."""

    # -- models and losses ----------------------------------------------------------------
    @abstractmethod
    def build_model(self, candidate: Candidate) -> torch.nn.Module:
        """A fresh, untrained model for ``candidate``."""

    @abstractmethod
    def test_loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The reported loss over a set of predictions, a scalar tensor."""

    def objective(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """What training minimises on a batch; by default the test loss."""
        return self.test_loss(pred, y)

    def lr_factor(self, candidate: Candidate, step: int, total_steps: int) -> float:
        """The learning rate at optimiser ``step`` (0-based) as a fraction of the candidate's ``lr``.

        Override it for a schedule (one-cycle, warm-up...): the core then sets each step's rate to
        ``lr * lr_factor(...)``, with ``total_steps`` = ``max_epochs`` x batches per epoch, so a
        schedule meant to end with training wants ``min_epochs = max_epochs``. Not overridden:
        a constant rate, as the paper trains.
        """
        return 1.0

    def init_weights(self, model: torch.nn.Module) -> None:
        """He (Kaiming) initialisation of conv and linear weights, zero biases (paper, sec. 3.9)."""
        from robustcli.training.init import he_init

        he_init(model)

    def baselines(self) -> Mapping[str, Baseline]:
        """Non-deep references by name. None by default."""
        return {}

    def data_options(self) -> Mapping[str, Any]:
        """Options, with their values in effect, that decide the data although the study may not
        name them: the session adds them to the study's task options (those given win), so that
        instances logged before a default changed are never taken for instances of the new data.
        The calorimeter tasks give their cell unit. Values must be valid options. None by default."""
        return {}

    def nas_space(self, trial: optuna.Trial) -> Mapping[str, Any]:
        """The parameters of one candidate, drawn by an Optuna ``trial``: the space ``robust nas`` searches.

        Ask for each parameter with the trial's ``suggest_categorical`` / ``suggest_int`` /
        ``suggest_float`` (conditional parameters are fine: ask for them only when they apply) and
        return the candidate's whole ``params``, as ``search_space()`` would hold them (equal params
        give the same candidate id, so instances logged by ``assess`` or ``select`` are reused). The
        space need not be the grid: the calorimeter tasks return the paper's NAS space (its
        appendix). Called once per trial and again, with the logged values, when a search resumes,
        so it must be a pure function of the trial's answers. Default: the grid of
        ``search_space()``, one categorical per dimension (:meth:`SearchSpace.suggest`).
        """
        return self.search_space().suggest(trial)

    def describe(self) -> dict[str, Any]:
        """What ``robust tasks show`` prints besides the contract's fields."""
        return {}

    def describe_candidate(self, candidate: Candidate) -> str:
        """A plugin's hook: a short readable description of a candidate's parameters, which
        :func:`candidate_label` shows as its MLflow run name and beside its id (a named candidate
        shows its name instead). Override it for a more telling one, e.g.
        ``conv32x64-fc9-adamw-lr1e-3-bs32``; the default is :func:`describe_params`."""
        return describe_params(candidate.params)


def candidate_label(task: Task | None, candidate: Candidate, *, with_id: bool = True, use_name: bool = True) -> str:
    """A candidate as output shows it: ``model2 (c1a2b3c4d5)``, or the task's description and id,
    ``adam-lr1e-2-bs32-hidden=16 (c1a2b3c4d5)``. The text is its name if it has one (and
    ``use_name``), else :meth:`Task.describe_candidate`, else :func:`describe_params` (no task at
    hand, or its description failed); ``with_id=False`` leaves out the id (where it is shown apart)."""
    text = candidate.name if candidate.name and use_name else _description(task, candidate)
    return f"{text} ({candidate.id})" if with_id else text


def _description(task: Task | None, candidate: Candidate) -> str:
    if task is not None:
        try:
            return str(task.describe_candidate(candidate))
        except Exception:  # noqa: BLE001 - a plugin's bug must not hide the candidate
            pass
    return describe_params(candidate.params)


def _same_value(value: Any, wanted: Any) -> bool:
    # tuples come from grids, lists from JSON: compare as JSON would, or as text (lr=1e-3 is 0.001)
    norm = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
    return norm(value) == norm(wanted) or str(value) == str(wanted)


def filter_candidates(candidates: Iterable[Candidate], wanted: Mapping[str, Any], where: str) -> list[Candidate]:
    """The candidates whose parameters equal every ``KEY: VALUE`` of ``wanted`` (``--where``), in
    order. None matching is refused, naming ``where`` and the parameters the candidates have."""
    cands = list(candidates)
    out = [c for c in cands if all(_same_value(c.params.get(k), v) for k, v in wanted.items())]
    if not out:
        keys = sorted({k for c in cands for k in c.params})
        raise InputError(f"no candidate matches {where} (parameters: {', '.join(keys) or 'none'})")
    return out
