"""Checks before and while stacking: can this model be stacked, and is its rewritten stack exact?

* :func:`check_stackable` (asked by the stacked executor before it picks the engine): a cheap
  trial of the model under vmap, forward and backward, plus the state of the private torch uses;
* :func:`build`: the stacked model as the loop trains it, rewritten (:mod:`.rewrites`) and then
  checked at run time by :func:`matches_models` on a few examples: its predictions on the
  training path and the evaluation path and one step's gradients against the models' own. A
  model the rewrites do not foresee (e.g. a module called twice from custom code) falls back to
  the unrewritten stack; a model whose stack is wrong even unrewritten is refused.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch.func import vmap

from robustcli.errors import InputError
from robustcli.task import Candidate, Task, TaskData
from robustcli.training.instance import InstanceSpec, has_lr_schedule
from robustcli.training.stacked import _torch, rewrites
from robustcli.training.stacked.build import Stack, forward_fn, loss_fn, stack_models
from robustcli.training.stacked.data import Gather, channels_last_rows

__all__ = ["activation_bytes_per_example", "build", "check_stackable", "matches_models"]

#: largest difference allowed between the stack and the models alone, relative to the largest
#: value of each compared tensor (a rewrite that is wrong is off by far more than rounding)
PROBE_RTOL = 1e-4


def build(
    task: Task,
    candidates: Sequence[Candidate],
    specs: Sequence[InstanceSpec],
    device: torch.device,
    fast: bool = True,
    probe: tuple[torch.Tensor, torch.Tensor] | None = None,
    passes: Iterable[str] | None = None,
) -> tuple[torch.nn.Module, Stack, Stack]:
    """K models, each built and initialised exactly as the plain loop does, then stacked.

    Returns the stateless base module (on the meta device; rewritten by ``passes``, all by
    default, when ``fast``) and the stacked parameters and buffers, ``[K, ...]`` leaf tensors on
    ``device`` (with ``fast``, convolution weights laid out as :func:`.data.channels_last_rows`).
    With ``probe`` (a few examples and their targets), the rewritten stack is checked against
    the first two models alone (:func:`matches_models`); on a mismatch the unrewritten stack is
    used, and when that does not match either, :class:`InputError`."""
    models, base, params, buffers = stack_models(task, candidates, specs, device)
    if not fast:
        return base, params, buffers
    plain_base = copy.deepcopy(base)
    rewrites.apply(base, passes)
    fast_params = dict(params)
    for name, m in base.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            key = f"{name}.weight" if name else "weight"
            fast_params[key] = channels_last_rows(params[key]).requires_grad_(params[key].requires_grad)
    if probe is not None:
        x, y = (t.to(device) for t in probe)
        if not matches_models(task, base, fast_params, buffers, models[:2], x, y):
            if not matches_models(task, plain_base, params, buffers, models[:2], x, y):
                raise InputError(
                    f"the stacked copy of task {task.name!r}'s model does not predict what each model predicts alone "
                    "(state outside its parameters and buffers, e.g. a plain tensor attribute?): use --engine plain"
                )
            return plain_base, params, buffers
    return base, fast_params, buffers


def matches_models(
    task: Task, base: torch.nn.Module, params: Stack, buffers: Stack, models: Sequence[torch.nn.Module],
    x: torch.Tensor, y: torch.Tensor,
) -> bool:  # fmt: skip
    """The stacked model (its first ``len(models)`` rows) computes what each model computes
    alone, within :data:`PROBE_RTOL`: predictions on the training path (batched inputs,
    gradients on) and on the evaluation path (one shared input, no gradient), and the gradients
    of one step's objective. Evaluation mode throughout (no dropout draws to compare); the
    models' own gradients are taken with ``autograd.grad`` (nothing is left in ``.grad``)."""
    k = len(models)
    rows = {n: p[:k].detach().requires_grad_(p.requires_grad) for n, p in params.items()}
    bufs = {n: b[:k] for n, b in buffers.items()}
    trainable = [n for n, p in rows.items() if p.requires_grad]
    base.eval()
    try:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            for m in models:
                m.eval()
            with torch.no_grad():
                want = torch.stack([m(x) for m in models])
            want_grads = []
            for m in models:
                named = dict(m.named_parameters())
                grads = torch.autograd.grad(task.objective(m(x), y), [named[n] for n in trainable], allow_unused=True)
                want_grads.append([torch.zeros_like(named[n]) if g is None else g for n, g in zip(trainable, grads, strict=True)])
            gather = Gather(x, y, channels_last=True)
            xb, yb = gather(torch.arange(x.shape[0], device=x.device).unsqueeze(1).expand(-1, k))
            with torch.enable_grad():
                got_train = vmap(forward_fn(base), in_dims=(0, 0, 1))(rows, bufs, xb).detach()
                losses = vmap(loss_fn(task, base), in_dims=(0, 0, 1, 1))(rows, bufs, xb, yb)
                got_grads = torch.autograd.grad(losses.sum(), [rows[n] for n in trainable], allow_unused=True)
            with torch.no_grad():
                got_eval = vmap(forward_fn(base), in_dims=(0, 0, None))(rows, bufs, gather.shared(0, x.shape[0]))
    except Exception:  # noqa: BLE001 - a rewrite the model does not survive: use the plain stacked model
        return False
    finally:
        base.train()
        for m in models:
            m.train()
    pairs = [(got_train, want, 1e-6), (got_eval, want, 1e-6)]
    for i in range(k):
        # a gradient that is zero in exact arithmetic (e.g. a bias before a normalisation) is
        # rounding noise: compared at the scale of the instance's largest gradient
        floor = max([float(g.abs().max()) for g in want_grads[i] if g.numel()], default=0.0) * 1e-2
        for j, g in enumerate(got_grads):
            stacked = torch.zeros_like(rows[trainable[j]]) if g is None else g
            pairs.append((stacked[i], want_grads[i][j], max(floor, 1e-6)))
    return all(_close(got, ref, floor) for got, ref, floor in pairs)


def _close(got: torch.Tensor, ref: torch.Tensor, floor: float) -> bool:
    """``got`` equals ``ref`` within :data:`PROBE_RTOL` of ``max(|ref|)`` (at least ``floor``)."""
    if got.shape != ref.shape:
        return False
    if ref.numel() == 0:
        return True
    return bool((got - ref).abs().max() / ref.abs().max().clamp_min(floor) < PROBE_RTOL)


def check_stackable(task: Task, candidate: Candidate, data: TaskData) -> str | None:
    """None when ``candidate``'s model trains under vmap, else why not (one line).

    A cheap probe (2 instances, 2 examples, one backward, on the CPU) to run before choosing the
    stacked engine: models with batch norm, in-place writes into unbatched tensors or
    data-dependent control flow fail here rather than in the middle of a study; so does a torch
    on which the engine's private torch uses no longer hold (:func:`._torch.problems`). The
    global RNG state is left as it was.
    """
    if not task.tags.supports_stacking:
        return f"task {task.name!r} declares supports_stacking=False"
    if has_lr_schedule(task):
        return f"task {task.name!r} schedules its learning rate (lr_factor), which the stacked optimisers do not apply"
    broken = _torch.problems()
    if broken:
        return f"the stacked engine's private torch uses fail on this torch: {broken[0]}"
    try:
        with torch.random.fork_rng(devices=[]):
            specs = [InstanceSpec(i, i + 1, i + 1, 2) for i in range(2)]
            probe = (data.pool_x[:4], data.pool_y[:4])
            base, params, buffers = build(task, [candidate, candidate], specs, torch.device("cpu"), probe=probe)
            gather = Gather(data.pool_x[:2], data.pool_y[:2], channels_last=True)
            x, y = gather(torch.tensor([[0, 1], [1, 0]]))
            losses = vmap(loss_fn(task, base), in_dims=(0, 0, 1, 1))(params, buffers, x, y)
            if losses.shape != (2,):
                return f"the objective of task {task.name!r} does not return one scalar per instance under vmap"
            losses.sum().backward()
            batch_norm = _torch.batch_norm_base()
            if any(isinstance(m, batch_norm) and not m.track_running_stats for m in base.modules()):
                # its evaluation depends on which examples share a batch, and the stack scores the
                # test set in other chunks than the plain loop
                return "batch normalisation without running statistics (batch-dependent evaluation)"
    except Exception as exc:  # noqa: BLE001 - any failure means "use the plain loop"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{type(exc).__name__}: {first}"
    return None


def activation_bytes_per_example(task: Task, candidate: Candidate, data: TaskData) -> int:
    """Bytes of the outputs of the model's leaf modules for one example (one forward pass, CPU).

    A proxy for the memory a stack streams through per example and instance; the stacked
    executor uses it to keep a CPU stack's working set near the caches."""
    with torch.random.fork_rng(devices=[]):
        model = task.build_model(candidate)
    total = 0

    def hook(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(data.pool_x[:2])
    finally:
        for h in handles:
            h.remove()
    return max(1, total // 2)
