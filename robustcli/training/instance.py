"""One instance: draw its training sample, initialise, train to the stop, score once at the end.

This is the plain one-at-a-time loop: the reference every faster engine is measured against.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import torch

from robustcli.config import EngineName, TrainingSettings
from robustcli.errors import InputError
from robustcli.execution.cores import wait_policy as omp_wait_policy
from robustcli.task import Candidate, Task, TaskData
from robustcli.training.early_stopping import EarlyStopping, StopReason

__all__ = [
    "InstanceResult",
    "InstanceSpec",
    "InstanceStatus",
    "draw_indices",
    "make_optimizer",
    "resolve_device",
    "sample_indices",
    "train_instance",
]

#: a failed instance diverged (its test loss is NaN); every other one finished
InstanceStatus = Literal["finished", "failed"]

OPTIMIZERS = ("adam", "adamw", "nadam", "rmsprop", "sgd")
EVAL_CHUNK = 16384


@dataclass(frozen=True)
class InstanceSpec:
    """Which instance to train: its index in the study and its two seeds."""

    index: int
    init_seed: int
    data_seed: int
    train_size: int
    test_size: int | None = None


@dataclass
class InstanceResult:
    """What one training produced. ``test_loss`` is NaN when the instance failed."""

    spec: InstanceSpec
    status: InstanceStatus
    stop_reason: StopReason
    test_loss: float
    epochs: int
    seconds: float
    spiked: bool
    train_curve: list[float] = field(default_factory=list)
    test_curve: list[float] = field(default_factory=list)
    failure: str | None = None
    device: str = "cpu"
    #: torch CPU threads of the process that trained it (kernels may sum in another order with another count)
    threads: int = 1
    #: OMP_WAIT_POLICY of that process's torch threads: PASSIVE, ACTIVE or default (never changes results)
    wait_policy: str = "default"
    #: how it was trained: "plain", or "stacked" with the members of its stack, in order: instance
    #: indices, as "candidate_id:index" for members of another candidate
    engine: EngineName = "plain"
    stack: tuple[str, ...] = ()
    #: why a model that could not be stacked trained plainly (e.g. "a learning-rate schedule")
    plain_reason: str | None = None
    #: wall-clock time (``time.time()``) its training began: a stack's start for a stacked instance,
    #: whose ``seconds`` is only its share of the stack's time; 0 where unknown
    started_at: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status == "failed"


def has_lr_schedule(task: Task) -> bool:
    """Whether the task overrides :meth:`Task.lr_factor` (a constant rate otherwise)."""
    return type(task).lr_factor is not Task.lr_factor


def resolve_device(device: str) -> torch.device:
    """The torch device for ``--device`` (cpu, cuda, auto). On CUDA, TF32 is turned off for
    convolutions and matmuls: full fp32, so that spreads measured on a GPU compare with the CPU's."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA device is available (valid: cpu, cuda, auto)")
    if device == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return torch.device(device)


def draw_indices(n: int, size: int, seed: int, replace: bool) -> torch.Tensor:
    """``size`` indices into ``range(n)``: a bootstrap draw or a draw without replacement."""
    gen = torch.Generator().manual_seed(seed)
    if replace:
        return torch.randint(0, n, (size,), generator=gen)
    if size > n:
        raise InputError(f"train size {size} exceeds the pool of {n} examples (sampling without replacement)")
    return torch.randperm(n, generator=gen)[:size]


def sample_indices(data: TaskData, spec: InstanceSpec, replace: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The instance's training sample (indices into the pool) and its test subsample (indices
    into the test set, or None for the whole set), both from its ``data_seed``. Every engine and
    the baselines draw through here, so instance j sees the same data whoever trains it."""
    train_idx = draw_indices(data.pool_size, spec.train_size, spec.data_seed, replace)
    if spec.test_size is None or spec.test_size >= data.test_size:
        return train_idx, None
    # a separate stream, so the test draw does not depend on the training draw's size
    return train_idx, draw_indices(data.test_size, spec.test_size, spec.data_seed ^ 0x5EED, replace=False)


def make_optimizer(params: Iterable[torch.nn.Parameter], candidate: Candidate) -> torch.optim.Optimizer:
    """The candidate's optimiser. weight_decay is L2 (added to the gradient) except for AdamW,
    whose decay is decoupled, as in the paper (section 3.6). foreach=False keeps the math identical
    to the stacked engine's per-instance optimiser."""
    p = candidate.params
    name = str(p.get("optimizer", "adam")).lower()
    lr = float(p.get("lr", 1e-3))
    wd = float(p.get("weight_decay", 0.0))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, foreach=False)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, foreach=False)
    if name == "nadam":
        return torch.optim.NAdam(params, lr=lr, weight_decay=wd, foreach=False)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd, foreach=False)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=float(p.get("momentum", 0.0)), foreach=False)
    raise InputError(f"candidate {candidate.id}: unknown optimizer {name!r} (valid: {', '.join(OPTIMIZERS)})")


@torch.no_grad()
def evaluate(task: Task, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    preds = [model(x[i : i + EVAL_CHUNK]) for i in range(0, x.shape[0], EVAL_CHUNK)]
    model.train()
    return float(task.test_loss(torch.cat(preds), y))


def train_instance(
    task: Task,
    candidate: Candidate,
    data: TaskData,
    spec: InstanceSpec,
    settings: TrainingSettings,
    *,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> InstanceResult:
    """Train one instance from scratch and score it on the test set at the end of training.

    The result is the test loss after the last epoch, never the best epoch's. A non-finite loss
    ends the instance as failed with reason ``diverged``: it is returned, never dropped.
    """
    device = resolve_device(settings.device)
    if device.type == "cpu":
        from robustcli.training.cpu_memory import keep_freed_memory

        keep_freed_memory()  # the same allocator setting as the stacked engine (see cpu_memory)
    start, started_at = time.perf_counter(), time.time()
    replace = settings.sampling == "bootstrap"
    train_idx, test_idx = sample_indices(data, spec, replace)
    x, y = data.pool_x[train_idx].to(device), data.pool_y[train_idx].to(device)
    if test_idx is not None:
        tx, ty = data.test_x[test_idx].to(device), data.test_y[test_idx].to(device)
    else:
        tx, ty = data.test_x.to(device), data.test_y.to(device)

    torch.manual_seed(spec.init_seed)
    model = task.build_model(candidate)
    task.init_weights(model)
    model.to(device).train()
    optimizer = make_optimizer(model.parameters(), candidate)
    batch = int(candidate.params.get("batch_size", 64))
    shuffle = torch.Generator().manual_seed(spec.init_seed)
    stopper = EarlyStopping(settings.early_stopping)
    monitor_test = settings.early_stopping.monitor == "test"

    train_curve: list[float] = []
    test_curve: list[float] = []
    n = x.shape[0]
    scheduled = has_lr_schedule(task)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    total_steps = settings.early_stopping.max_epochs * -(-n // batch)
    step = 0
    reason: StopReason | None = None
    while reason is None:
        order = torch.randperm(n, generator=shuffle).to(device)
        total = torch.zeros((), device=device)
        for lo in range(0, n, batch):
            idx = order[lo : lo + batch]
            optimizer.zero_grad(set_to_none=True)
            loss = task.objective(model(x[idx]), y[idx])
            loss.backward()
            if scheduled:
                factor = task.lr_factor(candidate, step, total_steps)
                for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                    group["lr"] = base * factor
            optimizer.step()
            step += 1
            total += loss.detach() * idx.shape[0]  # stays on the device: no sync per batch
        train_loss = float(total) / n
        test_loss = evaluate(task, model, tx, ty)
        train_curve.append(train_loss)
        test_curve.append(test_loss)
        if on_epoch is not None:
            on_epoch(len(train_curve), train_loss, test_loss)
        if not (math.isfinite(train_loss) and math.isfinite(test_loss)):
            stopper.update(math.nan)
            reason = "diverged"
        else:
            reason = stopper.update(test_loss if monitor_test else train_loss)

    failed = reason == "diverged"
    return InstanceResult(
        spec=spec,
        status="failed" if failed else "finished",
        stop_reason=reason,
        test_loss=math.nan if failed else test_curve[-1],
        epochs=len(train_curve),
        seconds=time.perf_counter() - start,
        started_at=started_at,
        spiked=stopper.spiked,
        train_curve=train_curve,
        test_curve=test_curve,
        failure=(f"non-finite loss at epoch {len(train_curve)} (train {train_loss}, test {test_loss})" if failed else None),
        device=str(device),
        threads=torch.get_num_threads(),
        wait_policy=omp_wait_policy(),
    )
