"""A conformance kit for task plugins, after scikit-learn's ``check_estimator``.

Plugin authors run it in their own tests::

    from robustcli.testing import parametrize_with_checks
    from my_package.task import MyTask

    @parametrize_with_checks([MyTask(size=200)])
    def test_conformance(task, check):
        check(task)

or all at once with :func:`check_task`, which returns one :class:`CheckResult` per check and
raises :class:`TaskCheckError` listing the failures. Each check is a plain function
``check_xxx(task, *, sample=3, seed=0)`` that raises ``AssertionError`` with a message naming the
check, the task and, where one is involved, the candidate.

The checks (in the order they run):

============================  =======================================================================
check_documentation           name (equal to its entry point's, if registered), one-line description,
                              loss name and formula, default train size
check_candidate_ids           ids unique, equal to ``candidate_id(params)``, the same on a rebuild
check_named_candidates        every named candidate resolves by name and by id
check_data_shapes             TaskData of tensors, x float32, x and y rows match, pool and test alike
check_pool_test_disjoint      no row of test_x is identical to a row of pool_x (rows are hashed)
check_data_deterministic      two loads (and a fresh task's load) give equal tensors
check_forward_backward        each sampled candidate builds, runs forward and backward on a batch of
                              the pool, its output is shaped like y, its losses are finite scalars
check_seeded_training         two trainings with the same seeds are bitwise equal (CPU)
check_stacking                each sampled candidate trains under vmap (the stacked engine), or the
                              engine trains it one at a time and says why (passed, with a note)
check_pickle                  the task, its candidates and a built model survive pickle
============================  =======================================================================

The sampled candidates are every named candidate (at most :data:`MAX_NAMED`) followed by a seeded
random sample of ``sample`` grid candidates. The task's :class:`~robustcli.task.TaskTags` decide
which checks apply: ``deterministic_on_cpu=False`` skips check_seeded_training,
``supports_stacking=False`` skips check_stacking, and ``needs_gpu=True`` runs the model checks on
CUDA, or skips them where there is none. A check that needs another one to pass is skipped,
naming it, when that one fails: a float64 ``pool_x`` fails check_data_shapes alone, not every
model check after it. Known failures are data with reasons:
``check_task(task, expected_failed_checks={"check_pickle": "holds an open file"})``.

A task that keeps its constructor options in a mapping attribute ``options`` (as the built-in tasks
do) is also rebuilt as ``type(task)(**task.options)`` to check that a fresh instance gives the same
ids and the same data; otherwise ``type(task)()`` is tried, and that part is left out if it fails.
"""

from __future__ import annotations

import functools
import hashlib
import math
import pickle
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from robustcli.errors import unknown_message
from robustcli.task import Candidate, Loss, SearchSpace, Task, TaskData, TaskTags, candidate_id

if TYPE_CHECKING:
    import torch

__all__ = [
    "CHECKS",
    "CheckResult",
    "TaskCheckError",
    "check_candidate_ids",
    "check_data_deterministic",
    "check_data_shapes",
    "check_documentation",
    "check_forward_backward",
    "check_named_candidates",
    "check_pickle",
    "check_pool_test_disjoint",
    "check_seeded_training",
    "check_stacking",
    "check_task",
    "parametrize_with_checks",
    "sample_candidates",
]

#: named candidates checked at most (they come first, before the random sample)
MAX_NAMED = 5
#: rows of the pool a model runs forward and backward on
BATCH_ROWS = 8
#: training and test sizes and epochs of the seeded-training check
TRAIN_ROWS = 32
TEST_ROWS = 32
EPOCHS = 2
#: a description longer than this is not "one line" in `robust tasks`
MAX_DESCRIPTION = 120

Status = Literal["passed", "failed", "skipped", "xfail", "xpass"]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one task.

    ``status``: passed (``message`` may hold a note, e.g. which candidates train one at a time);
    failed; skipped (not applicable to the task's tags, or a check it needs failed; ``message``
    says which); xfail (failed, as ``expected_failed_checks`` said it would; ``message`` is the
    failure); xpass (listed in ``expected_failed_checks`` but passed: the entry can go).
    """

    check: str
    task: str
    status: Status
    message: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status == "failed"


class TaskCheckError(AssertionError):
    """Raised by :func:`check_task` when a check fails; ``results`` holds every check's result."""

    def __init__(self, task: str, results: Sequence[CheckResult]) -> None:
        self.task = task
        self.results = list(results)
        self.failures = [r for r in self.results if r.failed]
        ran = sum(r.status != "skipped" for r in self.results)
        lines = [f"task {task!r} failed {len(self.failures)} of {ran} checks:"]
        lines += [f"- {r.message}" for r in self.failures]
        super().__init__("\n".join(lines))


# -- helpers ----------------------------------------------------------------------------------
def _where(check: str, task: Task, candidate: Candidate | None = None) -> str:
    name = getattr(task, "name", "") or type(task).__name__
    if candidate is None:
        return f"{check}: task {name!r}: "
    return f"{check}: task {name!r}, candidate {candidate.label}: "


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


@contextmanager
def _calling(check: str, task: Task, what: str, candidate: Candidate | None = None):
    """Turn an exception raised by the task's code into an AssertionError naming the call."""
    try:
        yield
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the plugin's code is the finding
        raise AssertionError(f"{_where(check, task, candidate)}{what} raised {_first_line(exc)}") from exc


def _space(check: str, task: Task) -> SearchSpace:
    with _calling(check, task, "search_space()"):
        space = task.search_space()
    if not isinstance(space, SearchSpace):
        raise AssertionError(f"{_where(check, task)}search_space() returned {type(space).__name__}, not a SearchSpace")
    return space


def _data(check: str, task: Task) -> TaskData:
    with _calling(check, task, "load_data()"):
        data = task.load_data()
    if not isinstance(data, TaskData):
        raise AssertionError(f"{_where(check, task)}load_data() returned {type(data).__name__}, not a TaskData")
    return data


def _fresh(task: Task) -> Task | None:
    """A second instance built the same way, or None when the kit cannot tell how."""
    options = getattr(task, "options", None)
    try:
        return type(task)(**dict(options)) if isinstance(options, Mapping) else type(task)()
    except Exception:  # noqa: BLE001 - a task we cannot rebuild is checked on its own instance only
        return None


def _device(task: Task) -> torch.device:
    import torch

    return torch.device("cuda") if task.tags.needs_gpu else torch.device("cpu")


def _shape(t: Any) -> str:
    return str(tuple(t.shape))


def sample_candidates(task: Task, sample: int = 3, seed: int = 0) -> list[Candidate]:
    """The candidates the model checks run on: named ones first (at most :data:`MAX_NAMED`), then a
    random sample of ``sample`` grid candidates drawn with ``seed``; no candidate twice."""
    return _sample(task.search_space(), sample, seed)


def _sample(space: SearchSpace, sample: int, seed: int) -> list[Candidate]:
    grid = list(space)
    picked = random.Random(seed).sample(grid, min(max(sample, 0), len(grid)))
    out: dict[str, Candidate] = {}
    for cand in list(space.named.values())[:MAX_NAMED] + picked:
        out.setdefault(cand.id, cand)
    return list(out.values())


def _candidates(check: str, task: Task, sample: int, seed: int) -> list[Candidate]:
    cands = _sample(_space(check, task), sample, seed)
    if not cands:
        raise AssertionError(f"{_where(check, task)}the search space has no candidates")
    return cands


# -- the checks -------------------------------------------------------------------------------
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_documentation(task: Task, *, sample: int = 3, seed: int = 0) -> None:
    """name (the name of every entry point registering the class), description (one line), loss
    (name and formula) and default_train_size are set."""
    w = _where("check_documentation", task)
    name = getattr(task, "name", "")
    if not isinstance(name, str) or not name:
        raise AssertionError(f"{w}name is empty; set the class attribute `name` (the entry point's name)")
    if not _NAME.match(name):
        raise AssertionError(f"{w}name {name!r} is not one command-line word (letters, digits, '.', '_', '-')")
    from robustcli.plugins import entry_points_of

    for info in entry_points_of(type(task)):
        if info.name != name:
            raise AssertionError(
                f"{w}the entry point {info.name!r} of {info.distribution} ({info.value}) differs from the task's name "
                f"{name!r}; `--task` takes the entry point's name: give both the same name"
            )
    desc = getattr(task, "description", "")
    if not isinstance(desc, str) or not desc.strip():
        raise AssertionError(f"{w}description is empty; give a one-line description (class attribute `description`)")
    if "\n" in desc.strip():
        raise AssertionError(f"{w}description spans {len(desc.strip().splitlines())} lines; keep it to one line")
    if len(desc) > MAX_DESCRIPTION:
        raise AssertionError(f"{w}description has {len(desc)} characters; keep it under {MAX_DESCRIPTION}")
    loss = getattr(task, "loss", None)
    if not isinstance(loss, Loss):
        raise AssertionError(f"{w}loss is {type(loss).__name__}, not a robustcli.task.Loss")
    if not loss.name:
        raise AssertionError(f"{w}loss.name is empty; name the loss, e.g. Loss('rmse', ...)")
    if not loss.formula:
        raise AssertionError(f"{w}loss.formula is empty; state the formula, e.g. 'sqrt(mean((y_pred - y_true)^2))'")
    size = getattr(task, "default_train_size", None)
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise AssertionError(f"{w}default_train_size is {size!r}; expected a positive integer")
    if not isinstance(getattr(task, "tags", None), TaskTags):
        raise AssertionError(f"{w}tags is {type(getattr(task, 'tags', None)).__name__}, not a robustcli.task.TaskTags")


def check_candidate_ids(task: Task, *, sample: int = 3, seed: int = 0) -> None:
    """Ids are unique, derive from the parameters alone, and a rebuilt space gives the same ids."""
    check = "check_candidate_ids"
    w = _where(check, task)
    space = _space(check, task)
    cands = list(space)
    if not cands:
        raise AssertionError(f"{w}the search space has no candidates")
    ids = [c.id for c in cands]
    dups = [(i, n) for i, n in Counter(ids).items() if n > 1]
    if dups:
        listing = ", ".join(f"{i} ({n} times)" for i, n in dups[:5])
        raise AssertionError(f"{w}candidate ids are not unique: {listing}")
    for cand in cands + list(space.named.values()):
        expected = candidate_id(cand.params)
        if cand.id != expected:
            raise AssertionError(
                f"{_where(check, task, cand)}id is not candidate_id(params) = {expected}; "
                "make candidates with Candidate.from_params or SearchSpace.from_grid"
            )
    again = [c.id for c in _space(check, task)]
    if again != ids:
        raise AssertionError(f"{w}a second search_space() call gives other ids or another order")
    fresh = _fresh(task)
    if fresh is not None:
        with _calling(check, task, "search_space() of a fresh instance"):
            other = [c.id for c in fresh.search_space()]
        if other != ids:
            raise AssertionError(f"{w}a fresh instance of the task gives other candidate ids or another order")


def check_named_candidates(task: Task, *, sample: int = 3, seed: int = 0) -> None:
    """Every named candidate is reachable by its name and by its id, with the same parameters."""
    check = "check_named_candidates"
    space = _space(check, task)
    for name, cand in space.named.items():
        w = _where(check, task, cand)
        if not isinstance(name, str) or not name or any(ch.isspace() for ch in name):
            raise AssertionError(f"{w}name {name!r} must be one non-empty word")
        with _calling(check, task, f"search_space().get({name!r})", cand):
            by_name = space.get(name)
        if by_name.id != cand.id or dict(by_name.params) != dict(cand.params):
            raise AssertionError(f"{w}get({name!r}) returns {by_name.id}, not the named candidate")
        with _calling(check, task, f"search_space().get({cand.id!r})", cand):
            by_id = space.get(cand.id)
        if dict(by_id.params) != dict(cand.params):
            raise AssertionError(f"{w}get({cand.id!r}) returns other parameters than the named candidate")
        if cand.id != candidate_id(cand.params):
            raise AssertionError(f"{w}id is not candidate_id(params) = {candidate_id(cand.params)}")


def check_data_shapes(task: Task, *, sample: int = 3, seed: int = 0) -> None:
    """Tensors; x float32; x and y rows match; pool and test share shapes and dtypes; x finite."""
    import torch

    check = "check_data_shapes"
    w = _where(check, task)
    data = _data(check, task)
    for field in ("pool_x", "pool_y", "test_x", "test_y"):
        if not isinstance(getattr(data, field), torch.Tensor):
            raise AssertionError(f"{w}{field} is {type(getattr(data, field)).__name__}, not a torch.Tensor")
    for part in ("pool", "test"):
        x, y = getattr(data, f"{part}_x"), getattr(data, f"{part}_y")
        if x.dim() == 0 or y.dim() == 0:
            raise AssertionError(f"{w}{part}_x and {part}_y need the examples as their first dimension")
        if x.shape[0] == 0:
            raise AssertionError(f"{w}{part}_x has no rows")
        if x.shape[0] != y.shape[0]:
            raise AssertionError(f"{w}{part}_x has {x.shape[0]} rows but {part}_y has {y.shape[0]}")
        if x.dtype != torch.float32:
            raise AssertionError(f"{w}{part}_x has dtype {x.dtype}; the core trains in float32 (use .float())")
        if not bool(torch.isfinite(x).all()):
            raise AssertionError(f"{w}{part}_x holds NaN or infinite values")
        if y.is_floating_point() and not bool(torch.isfinite(y).all()):
            raise AssertionError(f"{w}{part}_y holds NaN or infinite values")
    if data.pool_x.shape[1:] != data.test_x.shape[1:]:
        raise AssertionError(f"{w}pool_x rows have shape {_shape(data.pool_x[0])} but test_x rows {_shape(data.test_x[0])}")
    if data.pool_y.shape[1:] != data.test_y.shape[1:] or data.pool_y.dtype != data.test_y.dtype:
        raise AssertionError(
            f"{w}pool_y ({data.pool_y.dtype}, rows {_shape(data.pool_y[0])}) and test_y "
            f"({data.test_y.dtype}, rows {_shape(data.test_y[0])}) differ"
        )


def _row_hashes(x: torch.Tensor) -> list[bytes]:
    arr = x.detach().cpu().contiguous().reshape(x.shape[0], -1).numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in arr]


def check_pool_test_disjoint(task: Task, *, sample: int = 3, seed: int = 0) -> None:
    """No test example is identical (bytewise) to a training-pool example."""
    check = "check_pool_test_disjoint"
    data = _data(check, task)
    pool = {h: i for i, h in enumerate(_row_hashes(data.pool_x))}
    shared = [(j, pool[h]) for j, h in enumerate(_row_hashes(data.test_x)) if h in pool]
    if shared:
        j, i = shared[0]
        raise AssertionError(
            f"{_where(check, task)}{len(shared)} of {data.test_size} test rows are identical to training-pool rows "
            f"(first: test row {j} = pool row {i}); the test set must never be trained on"
        )


def _same_data(a: TaskData, b: TaskData) -> str | None:
    import torch

    for field in ("pool_x", "pool_y", "test_x", "test_y"):
        ta, tb = getattr(a, field), getattr(b, field)
        if ta.shape != tb.shape or ta.dtype != tb.dtype or not torch.equal(ta, tb):
            return field
    return None


def check_data_deterministic(task: Task, *, sample: int = 3, seed: int = 0) -> None:
    """Two loads give equal tensors (or the same cached object); so does a fresh instance's load."""
    check = "check_data_deterministic"
    w = _where(check, task)
    first = _data(check, task)
    second = _data(check, task)
    if second is not first:
        diff = _same_data(first, second)
        if diff:
            raise AssertionError(
                f"{w}two load_data() calls differ in {diff}; cache the data or seed every random draw"
            )
    fresh = _fresh(task)
    if fresh is not None:
        with _calling(check, task, "load_data() of a fresh instance"):
            other = fresh.load_data()
        diff = _same_data(first, other)
        if diff:
            raise AssertionError(f"{w}a fresh instance of the task loads a different {diff}; seed every random draw")


def _shape_problem(pred: Any, y: torch.Tensor) -> str | None:
    import torch

    if not isinstance(pred, torch.Tensor):
        return f"the model returned {type(pred).__name__}, not a tensor"
    if y.is_floating_point():
        if pred.shape != y.shape:
            return f"model output has shape {_shape(pred)} but y has shape {_shape(y)}; the losses would broadcast them"
    elif pred.shape[:-1] != y.shape or pred.dim() != y.dim() + 1:
        want = "(" + ", ".join([*(str(d) for d in y.shape), "n_classes"]) + ")"
        return f"model output has shape {_shape(pred)} but y holds class labels of shape {_shape(y)}; expected {want}"
    return None


def _scalar_problem(name: str, value: Any) -> str | None:
    import torch

    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        shape = _shape(value) if isinstance(value, torch.Tensor) else type(value).__name__
        return f"{name} returned {shape}, not a scalar tensor"
    if not math.isfinite(float(value.detach())):
        return f"{name} is {float(value.detach())} at initialisation"
    return None


def check_forward_backward(task: Task, *, sample: int = 3, seed: int = 0) -> None:
    """Each sampled candidate builds, runs forward and backward on a few pool rows; the output is
    shaped like y (or y's shape plus classes for integer labels); objective and test loss are
    finite scalars; some parameter gets a gradient and every gradient is finite."""
    import torch

    check = "check_forward_backward"
    data = _data(check, task)
    device = _device(task)
    x, y = data.pool_x[:BATCH_ROWS].to(device), data.pool_y[:BATCH_ROWS].to(device)
    for cand in _candidates(check, task, sample, seed):
        w = _where(check, task, cand)
        with torch.random.fork_rng(devices=[]), _calling(check, task, "building or running the model", cand):
            torch.manual_seed(seed)
            model = task.build_model(cand)
            if not isinstance(model, torch.nn.Module):
                raise AssertionError(f"{w}build_model() returned {type(model).__name__}, not a torch.nn.Module")
            task.init_weights(model)
            model.to(device).train()
            pred = model(x)
            problem = _shape_problem(pred, y)
            if problem:
                raise AssertionError(w + problem)
            objective = task.objective(pred, y)
            problem = _scalar_problem("objective", objective)
            if problem:
                raise AssertionError(w + problem)
            objective.backward()
            params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
            if not any(p.grad is not None for _, p in params):
                raise AssertionError(f"{w}no parameter received a gradient from the objective")
            for name, p in params:
                if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                    raise AssertionError(f"{w}the gradient of {name} is not finite")
            model.eval()
            with torch.no_grad():
                pred = model(x)
            problem = _shape_problem(pred, y)
            if problem:
                raise AssertionError(f"{w}in eval mode, {problem}")
            problem = _scalar_problem("test_loss", task.test_loss(pred, y))
            if problem:
                raise AssertionError(w + problem)


def _tiny_settings(task: Task):
    from robustcli.config import EarlyStoppingSettings, TrainingSettings

    stop = EarlyStoppingSettings(min_epochs=1, window=2, max_epochs=EPOCHS)
    return TrainingSettings(early_stopping=stop, device="cuda" if task.tags.needs_gpu else "cpu")


def check_seeded_training(task: Task, *, sample: int = 3, seed: int = 0) -> None:
    """Two trainings of the first sampled candidate with the same seeds (train_instance, a tiny
    sample, two epochs) give bitwise-equal curves and test loss. For tasks tagged
    ``deterministic_on_cpu``."""
    import torch

    from robustcli.training.instance import InstanceSpec, train_instance
    from robustcli.training.seeds import derive_seeds

    check = "check_seeded_training"
    data = _data(check, task)
    cand = _candidates(check, task, sample, seed)[0]
    seeds = derive_seeds(seed, 0)
    spec = InstanceSpec(0, seeds.init_seed, seeds.data_seed, min(TRAIN_ROWS, data.pool_size), min(TEST_ROWS, data.test_size))
    settings = _tiny_settings(task)
    runs = []
    for _ in range(2):
        with torch.random.fork_rng(devices=[]), _calling(check, task, "train_instance()", cand):
            runs.append(train_instance(task, cand, data, spec, settings))
    a, b = runs

    def bits(r) -> list[str]:
        return [float(v).hex() for v in (*r.train_curve, *r.test_curve, r.test_loss)]

    if bits(a) != bits(b) or a.stop_reason != b.stop_reason:
        raise AssertionError(
            f"{_where(check, task, cand)}two trainings with the same seeds differ (test loss {a.test_loss!r} vs "
            f"{b.test_loss!r} after {a.epochs} epochs); draw every random number from torch's generator "
            "(seeded with init_seed before build_model), not from numpy, random or the clock"
        )


def check_stacking(task: Task, *, sample: int = 3, seed: int = 0) -> str | None:
    """Each sampled candidate's model trains under vmap (the stacked engine), or the stacked engine
    trains it one at a time and says why, as it does for data-dependent control flow, state outside
    parameters and buffers, batch norm without running statistics and ``lr_factor`` schedules: such
    a task conforms. Returns a note naming those candidates and the reason (None when all stack)."""
    from robustcli.execution.planning import unstackable_reason

    check = "check_stacking"
    data = _data(check, task)
    notes = []
    for cand in _candidates(check, task, sample, seed):
        with _calling(check, task, "probing the stacked engine", cand):
            why = unstackable_reason(task, cand, data)
        if why:
            notes.append(f"{cand.label}: {why}")
    if not notes:
        return None
    return "trains in the one-at-a-time loop, not stacked (runs say why in robust.plain_reason): " + "; ".join(notes)


def check_pickle(task: Task, *, sample: int = 3, seed: int = 0) -> None:
    """The task (with the same ids after a round trip), its candidates and a built model survive
    ``pickle``: process pools and Ray send them to workers."""
    import torch

    check = "check_pickle"
    w = _where(check, task)
    try:
        blob = pickle.dumps(task)
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(
            f"{w}pickle.dumps(task) failed ({_first_line(exc)}); process pools and Ray send the task to "
            "workers: keep lambdas, open files and locks out of its attributes, or define __getstate__"
        ) from exc
    with _calling(check, task, "pickle.loads(pickle.dumps(task))"):
        copy = pickle.loads(blob)
    if type(copy) is not type(task) or copy.name != task.name:
        raise AssertionError(f"{w}the unpickled task is {type(copy).__name__} {copy.name!r}")
    cands = _candidates(check, task, sample, seed)
    with _calling(check, task, "search_space() of the unpickled task"):
        copy_ids = [c.id for c in copy.search_space()]
    if copy_ids != [c.id for c in _space(check, task)]:
        raise AssertionError(f"{w}the unpickled task gives other candidate ids")
    for cand in cands:
        with _calling(check, task, "pickling the candidate", cand):
            back = pickle.loads(pickle.dumps(cand))
        if back.id != cand.id or dict(back.params) != dict(cand.params) or back.name != cand.name:
            raise AssertionError(f"{_where(check, task, cand)}the candidate changes in a pickle round trip")
    cand = cands[0]
    data = _data(check, task)
    x = data.pool_x[:BATCH_ROWS]
    with torch.random.fork_rng(devices=[]), _calling(check, task, "pickling a built model", cand):
        torch.manual_seed(seed)
        model = task.build_model(cand)
        task.init_weights(model)
        model.eval()
        back = pickle.loads(pickle.dumps(model))
        back.eval()
        with torch.no_grad():
            same = torch.equal(model(x), back(x))
    if not same:
        raise AssertionError(f"{_where(check, task, cand)}the unpickled model predicts differently")


#: training rows a baseline is fitted on in check_baselines (fewer where the pool is smaller)
BASELINE_ROWS = 256


def check_baselines(task: Task, *, sample: int = 3, seed: int = 0) -> str | None:
    """Each baseline fits on a few hundred pool rows and predicts the first test rows; its
    predictions are scored by the task's ``test_loss`` exactly as a model's output is (shaped
    like y for regression, ``(n, n_classes)`` scores for class labels) to a finite scalar."""
    import torch

    from robustcli.errors import TrainingError
    from robustcli.execution.baselines import baseline_scores

    check = "check_baselines"
    with _calling(check, task, "calling baselines()"):
        baselines = task.baselines()
    if not baselines:
        return "the task defines no baselines"
    data = _data(check, task)
    rows = min(BASELINE_ROWS, data.pool_size)
    tx, ty = data.test_x[:BATCH_ROWS], data.test_y[:BATCH_ROWS]
    for name, base in baselines.items():
        w = f"{_where(check, task)}baseline {name!r}: "
        with torch.random.fork_rng(devices=[]), _calling(check, task, f"fitting baseline {name!r}"):
            pred = base.fit_predict(data.pool_x[:rows], data.pool_y[:rows], tx, seed=seed)
        try:
            scores = baseline_scores(name, pred, ty)
        except TrainingError as exc:
            raise AssertionError(w + str(exc)) from None
        with _calling(check, task, f"scoring baseline {name!r} with test_loss"):
            loss = task.test_loss(scores, ty)
        problem = _scalar_problem("test_loss of its predictions", loss)
        if problem:
            raise AssertionError(w + problem)
    return None


#: every check by name, in the order check_task runs them
CHECKS: dict[str, Callable[..., None]] = {
    fn.__name__: fn
    for fn in (
        check_documentation,
        check_candidate_ids,
        check_named_candidates,
        check_data_shapes,
        check_pool_test_disjoint,
        check_data_deterministic,
        check_forward_backward,
        check_seeded_training,
        check_stacking,
        check_pickle,
        check_baselines,
    )
}

_MODEL_CHECKS = ("check_forward_backward", "check_seeded_training", "check_stacking")

#: the checks each check needs to pass first: the model checks say nothing new on data of the
#: wrong type or shape, nor on a model that does not run
_NEEDS: dict[str, tuple[str, ...]] = {
    "check_forward_backward": ("check_data_shapes",),
    "check_seeded_training": ("check_data_shapes", "check_forward_backward"),
    "check_stacking": ("check_data_shapes", "check_forward_backward"),
    "check_pickle": ("check_data_shapes",),
    "check_baselines": ("check_data_shapes",),
}


def _blocked(check: str, failed: Callable[[str], bool]) -> str | None:
    """Why ``check`` is skipped when a check it needs fails (``failed(name)``), or None."""
    first = next((need for need in _NEEDS.get(check, ()) if failed(need)), None)
    return None if first is None else f"{first} failed: fix that first"


@functools.lru_cache(maxsize=256)
def _fails(task: Task, check: str, sample: int, seed: int) -> bool:
    """Whether ``check`` fails on ``task`` (once per task, for the pytest items that need it)."""
    try:
        CHECKS[check](task, sample=sample, seed=seed)
    except Exception:  # noqa: BLE001 - any failure
        return True
    return False


class _Check:
    """One check as a pytest item calls it: skipped when a check it needs fails."""

    def __init__(self, name: str, sample: int, seed: int) -> None:
        self.name, self.sample, self.seed = name, sample, seed

    def __call__(self, task: Task) -> str | None:
        blocked = _blocked(self.name, lambda need: _fails(task, need, self.sample, self.seed))
        if blocked:
            import pytest

            pytest.skip(blocked)
        return CHECKS[self.name](task, sample=self.sample, seed=self.seed)

    def __repr__(self) -> str:
        return self.name


def _skip_reason(task: Task, check: str) -> str | None:
    """Why ``check`` does not apply to ``task`` (its tags), or None when it does."""
    tags = task.tags
    if check == "check_seeded_training" and not tags.deterministic_on_cpu:
        return "the task is tagged deterministic_on_cpu=False"
    if check == "check_stacking" and not tags.supports_stacking:
        return "the task is tagged supports_stacking=False"
    if check in _MODEL_CHECKS and tags.needs_gpu:
        import torch

        if not torch.cuda.is_available():
            return "the task is tagged needs_gpu=True and no CUDA device is available"
    return None


def _instantiate(task_or_class: Task | type[Task]) -> Task:
    if isinstance(task_or_class, type) and issubclass(task_or_class, Task):
        return task_or_class()
    if isinstance(task_or_class, Task):
        return task_or_class
    raise TypeError(f"expected a robustcli.task.Task instance or subclass, got {task_or_class!r}")


def _validate_expected(expected: Mapping[str, str] | None) -> dict[str, str]:
    expected = dict(expected or {})
    for name in expected:
        if name not in CHECKS:
            raise ValueError(unknown_message("check", name, CHECKS, "expected_failed_checks"))
    return expected


def check_task(
    task_or_class: Task | type[Task],
    *,
    sample: int = 3,
    expected_failed_checks: Mapping[str, str] | None = None,
    seed: int = 0,
    raise_on_failure: bool = True,
) -> list[CheckResult]:
    """Run every check on a task (a class is instantiated without options) and return the results.

    ``sample`` grid candidates (drawn with ``seed``) plus the named ones go through the model
    checks. ``expected_failed_checks`` maps check names to reasons: those failing are ``xfail``,
    those passing ``xpass``. Raises :class:`TaskCheckError` listing the failures unless
    ``raise_on_failure=False``.
    """
    task = _instantiate(task_or_class)
    expected = _validate_expected(expected_failed_checks)
    name = getattr(task, "name", "") or type(task).__name__
    results: list[CheckResult] = []
    for check_name, check in CHECKS.items():
        skip = _skip_reason(task, check_name) or _blocked(
            check_name, lambda need: any(r.check == need and r.status in ("failed", "xfail") for r in results)
        )
        if skip:
            results.append(CheckResult(check_name, name, "skipped", skip))
            continue
        start = time.perf_counter()
        message = ""
        try:
            message = check(task, sample=sample, seed=seed) or ""
            status: Status = "passed"
        except AssertionError as exc:
            status, message = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - a crash of a check is a failure of that check
            status, message = "failed", f"{check_name}: task {name!r}: {_first_line(exc)}"
        if check_name in expected:
            if status == "failed":
                status = "xfail"
            else:
                status, message = "xpass", f"expected to fail ({expected[check_name]}) but passed"
        results.append(CheckResult(check_name, name, status, message, time.perf_counter() - start))
    if raise_on_failure and any(r.failed for r in results):
        raise TaskCheckError(name, results)
    return results


def parametrize_with_checks(
    tasks: Sequence[Task | type[Task]],
    *,
    sample: int = 3,
    seed: int = 0,
    expected_failed_checks: Callable[[Task], Mapping[str, str]] | Mapping[str, str] | None = None,
):
    """A ``pytest.mark.parametrize("task, check", ...)`` over every (task, check) pair, with ids
    ``task-name:check_name`` that ``-k`` can pick (a second instance of the same task is
    ``task-name-2``). Checks that do not apply to a task's tags are
    marked skip, and a check skips itself when one it needs fails (it names that one);
    ``expected_failed_checks`` (a mapping, or a function of the task) marks xfail::

        @parametrize_with_checks([MyTask(size=200)])
        def test_conformance(task, check):
            check(task)
    """
    import pytest

    params = []
    seen: Counter[str] = Counter()
    for item in tasks:
        task = _instantiate(item)
        seen[task.name] += 1
        label = task.name if seen[task.name] == 1 else f"{task.name}-{seen[task.name]}"
        xfails = _validate_expected(
            expected_failed_checks(task) if callable(expected_failed_checks) else expected_failed_checks
        )
        for check_name in CHECKS:
            check = _Check(check_name, sample, seed)
            marks = []
            skip = _skip_reason(task, check_name)
            if skip:
                marks.append(pytest.mark.skip(reason=skip))
            if check_name in xfails:
                marks.append(pytest.mark.xfail(reason=xfails[check_name], strict=False))
            params.append(pytest.param(task, check, id=f"{label}:{check_name}", marks=marks))
    return pytest.mark.parametrize("task, check", params)
