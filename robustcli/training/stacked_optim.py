"""Per-instance optimisers on stacked parameters: K instances as rows of ``[K, ...]`` tensors.

Each instance (row) has its own hyperparameters (lr, weight decay, momentum...), its own step
count and its own optimiser state, and its update is **bitwise equal** to what
``torch.optim.X(foreach=False)`` does to that instance alone on the same gradients.

How the exactness is obtained: the update of ``torch.optim``'s single-tensor path
(``_single_tensor_adam`` and friends, torch 2.x) is mirrored op by op, with the same Python-double
scalar arithmetic for the bias corrections and step sizes. Rows whose hyperparameters and step
count agree form a *run*; each run of consecutive rows is updated with exactly the torch calls,
on a row-slice view, with plain Python scalars. The element-wise CPU/CUDA kernels compute each
element independently of its position in the tensor, so a row updated inside a stack gets the
same bits as the same tensor updated alone (``tests/test_stacked.py`` checks it for every
optimiser). One run covers the whole stack in the usual case (one candidate, instances stepping
together), so the stack costs the same number of kernel launches as one instance.

Rows that do not step (``active`` False) keep their parameters and state untouched, as an
instance that has stopped. ``keep(rows, params)`` compacts the stack to a subset of rows.

CUDA graphs: designed, not built (no GPU has been at hand). A captured step replays the same
kernels with the same arguments, so nothing that changes from one step to the next may be a
Python number, and today the bias corrections and step sizes are Python doubles computed per
run of rows: that is what makes each row bitwise ``torch.optim``'s default (``capturable=False``)
path. The graph step would keep each row's step count and hyperparameters as ``[K]`` float32
tensors on the device and compute the bias corrections there, mirroring torch's
``capturable=True`` branch of ``_single_tensor_adam`` (and friends); that branch is also the one
``differentiable=True`` takes, which runs on the CPU, so its bitwise test needs no GPU. Stopped
rows would be masked (``active`` as a device tensor) rather than compacted inside a graph. Its
results would be bitwise torch's ``capturable=True`` path, not the default one (float32 bias
corrections in place of doubles): a change of results, hence opt-in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

if TYPE_CHECKING:
    from robustcli.task import Candidate

__all__ = [
    "StackedAdam",
    "StackedAdamW",
    "StackedNAdam",
    "StackedOptimizer",
    "StackedRMSprop",
    "StackedSGD",
    "make_stacked_optimizer",
]


class StackedOptimizer:
    """Base: per-row hyperparameters and step counts, runs of equal rows, compaction.

    ``params`` are stacked tensors ``[K, ...]`` whose ``.grad`` (or the ``grads`` given to
    :meth:`step`) hold each row's own gradient. Hyperparameters are given as a scalar (shared by
    all rows) or a sequence of K values.
    """

    #: hyperparameter -> default; subclasses fill it (the torch defaults)
    defaults: ClassVar[dict[str, float]] = {}
    #: per-parameter state tensors, created lazily as zeros like the parameter
    state_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Sequence[Tensor], **hyper: float | Sequence[float]) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("a stacked optimiser needs at least one parameter")
        self.k = int(self.params[0].shape[0])
        if any(int(p.shape[0]) != self.k for p in self.params):
            raise ValueError("every stacked parameter must have the same leading (instance) dimension")
        unknown = sorted(set(hyper) - set(self.defaults))
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown hyperparameter {unknown[0]!r} (valid: {', '.join(self.defaults)})")
        columns: dict[str, list[float]] = {}
        for name, default in self.defaults.items():
            value = hyper.get(name, default)
            if isinstance(value, (int, float)):
                columns[name] = [float(value)] * self.k
            else:
                vals = [float(v) for v in value]
                if len(vals) != self.k:
                    raise ValueError(f"hyperparameter {name!r} has {len(vals)} values for {self.k} instances")
                columns[name] = vals
        self.hyper: list[dict[str, float]] = [{n: columns[n][r] for n in self.defaults} for r in range(self.k)]
        self.steps: list[int] = [0] * self.k
        self.state: list[dict[str, Tensor]] = [{} for _ in self.params]
        self._keys: list[tuple[float, ...]] = []
        self._refresh_keys()

    # -- bookkeeping --------------------------------------------------------------------------
    def _refresh_keys(self) -> None:
        self._keys = [tuple(h[n] for n in self.defaults) for h in self.hyper]
        self._uniform = all(key == self._keys[0] for key in self._keys)

    def _runs(self, active: Sequence[bool] | None) -> list[tuple[int, int]]:
        """Maximal runs [a, b) of consecutive active rows with equal hyperparameters and step."""
        steps = self.steps
        if active is None and self._uniform and steps.count(steps[0]) == self.k:
            return [(0, self.k)]
        runs: list[tuple[int, int]] = []
        start = None
        for r in range(self.k + 1):
            on = r < self.k and (active is None or bool(active[r]))
            if start is not None and (
                not on or self._keys[r] != self._keys[start] or steps[r] != steps[start]
            ):
                runs.append((start, r))
                start = None
            if on and start is None:
                start = r
        return runs

    def _state(self, i: int) -> dict[str, Tensor]:
        st = self.state[i]
        if not st:
            p = self.params[i]
            for name in self.state_names:
                st[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return st

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor | None] | None = None, active: Sequence[bool] | None = None) -> None:
        """One optimiser step for the active rows (all by default), from ``grads`` or ``.grad``."""
        if grads is None:
            grads = [p.grad for p in self.params]
        if len(grads) != len(self.params):
            raise ValueError(f"{len(grads)} gradients for {len(self.params)} parameters")
        if active is not None and len(active) != self.k:
            raise ValueError(f"active has {len(active)} entries for {self.k} instances")
        for a, b in self._runs(active):
            hp = self.hyper[a]
            step = self.steps[a] + 1
            for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
                if g is None:
                    continue
                st = {name: t[a:b] for name, t in self._state(i).items()}
                self._update(p[a:b], g[a:b], st, hp, step, i, a, b)
            self._after_run(a, b, hp, step)
            for r in range(a, b):
                self.steps[r] = step

    def _update(
        self, p: Tensor, g: Tensor, st: dict[str, Tensor], hp: Mapping[str, float], step: int, i: int, a: int, b: int
    ) -> None:
        raise NotImplementedError

    def _after_run(self, a: int, b: int, hp: Mapping[str, float], step: int) -> None:
        """Per-row scalar state updated once per step (not per parameter), e.g. NAdam's mu_product."""

    def keep(self, rows: Sequence[int] | Tensor, params: Sequence[Tensor] | None = None) -> None:
        """Compact to ``rows`` (in that order). ``params``: the compacted parameters to use from now
        on (new leaf tensors); by default the current ones are index-selected in place of them."""
        idx_list = [int(r) for r in (rows.tolist() if isinstance(rows, Tensor) else rows)]
        # row selection by indexing, which keeps each tensor's memory layout (index_select does not)
        if params is None:
            params = [p.detach()[torch.tensor(idx_list, device=p.device)] for p in self.params]
        params = list(params)
        if len(params) != len(self.params):
            raise ValueError(f"{len(params)} parameters given to keep, the optimiser has {len(self.params)}")
        for i, st in enumerate(self.state):
            for name, t in st.items():
                st[name] = t[torch.tensor(idx_list, device=t.device)]
        self.params = params
        self.hyper = [self.hyper[r] for r in idx_list]
        self.steps = [self.steps[r] for r in idx_list]
        self._keep_rows(idx_list)
        self.k = len(idx_list)
        self._refresh_keys()

    def _keep_rows(self, rows: list[int]) -> None:
        """Compact per-row scalar state of a subclass."""


class StackedAdam(StackedOptimizer):
    """``torch.optim.Adam(foreach=False)`` per row (amsgrad off, maximize off).

    ``decoupled_weight_decay=True`` gives AdamW (torch's AdamW is Adam with that flag)."""

    defaults: ClassVar[dict[str, float]] = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    state_names = ("exp_avg", "exp_avg_sq")
    decoupled: ClassVar[bool] = False

    def _update(self, p, g, st, hp, step, i, a, b):
        lr, beta1, beta2, eps, wd = hp["lr"], hp["beta1"], hp["beta2"], hp["eps"], hp["weight_decay"]
        exp_avg, exp_avg_sq = st["exp_avg"], st["exp_avg_sq"]
        if wd != 0:
            if self.decoupled:
                p.mul_(1 - lr * wd)
            else:
                g = g.add(p, alpha=wd)
        exp_avg.lerp_(g, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        step_f = float(step)  # torch keeps the step in a float32 tensor and reads it back with .item()
        bias_correction1 = 1 - beta1**step_f
        bias_correction2 = 1 - beta2**step_f
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        p.addcdiv_(exp_avg, denom, value=-step_size)


class StackedAdamW(StackedAdam):
    """``torch.optim.AdamW(foreach=False)`` per row: decoupled weight decay (default 1e-2)."""

    defaults: ClassVar[dict[str, float]] = {**StackedAdam.defaults, "weight_decay": 1e-2}
    decoupled = True


class StackedSGD(StackedOptimizer):
    """``torch.optim.SGD(foreach=False)`` per row, with momentum, dampening and nesterov."""

    defaults: ClassVar[dict[str, float]] = {
        "lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": 0.0,
    }  # fmt: skip
    state_names = ("momentum_buffer",)

    def _update(self, p, g, st, hp, step, i, a, b):
        lr, momentum, dampening, wd = hp["lr"], hp["momentum"], hp["dampening"], hp["weight_decay"]
        if wd != 0:
            g = g.add(p, alpha=wd)
        if momentum != 0:
            buf = st["momentum_buffer"]
            if step == 1:  # torch: buf = grad.clone() on the first step
                buf.copy_(g)
            else:
                buf.mul_(momentum).add_(g, alpha=1 - dampening)
            g = g.add(buf, alpha=momentum) if hp["nesterov"] else buf
        p.add_(g, alpha=-lr)

    def _state(self, i):
        # no buffer at all without momentum, like torch
        if all(h["momentum"] == 0 for h in self.hyper):
            return {}
        return super()._state(i)


class StackedRMSprop(StackedOptimizer):
    """``torch.optim.RMSprop(foreach=False)`` per row (centered off)."""

    defaults: ClassVar[dict[str, float]] = {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0}
    state_names = ("square_avg", "momentum_buffer")

    def _update(self, p, g, st, hp, step, i, a, b):
        lr, alpha, eps, wd, momentum = hp["lr"], hp["alpha"], hp["eps"], hp["weight_decay"], hp["momentum"]
        if wd != 0:
            g = g.add(p, alpha=wd)
        square_avg = st["square_avg"]
        square_avg.mul_(alpha).addcmul_(g, g, value=1 - alpha)
        avg = square_avg.sqrt()
        avg = avg.add_(eps)
        if momentum > 0:
            buf = st["momentum_buffer"]
            buf.mul_(momentum).addcdiv_(g, avg)
            p.add_(buf, alpha=-lr)
        else:
            p.addcdiv_(g, avg, value=-lr)


class StackedNAdam(StackedOptimizer):
    """``torch.optim.NAdam(foreach=False)`` per row, with its float32 ``mu_product`` per row."""

    defaults: ClassVar[dict[str, float]] = {
        "lr": 2e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "momentum_decay": 4e-3,
        "decoupled_weight_decay": 0.0,
    }  # fmt: skip
    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Sequence[Tensor], **hyper: Any) -> None:
        super().__init__(params, **hyper)
        # torch keeps mu_product as a float32 CPU scalar tensor per parameter; every parameter of
        # an instance holds the same value, so one per row suffices
        self.mu_product = torch.ones(self.k, dtype=torch.float32)
        self._pending: tuple[float, float, float] | None = None

    def _mu(self, hp: Mapping[str, float], step: int) -> tuple[float, float]:
        step_f = float(step)
        mu = hp["beta1"] * (1.0 - 0.5 * (0.96 ** (step_f * hp["momentum_decay"])))
        mu_next = hp["beta1"] * (1.0 - 0.5 * (0.96 ** ((step_f + 1) * hp["momentum_decay"])))
        return mu, mu_next

    def _update(self, p, g, st, hp, step, i, a, b):
        lr, beta1, beta2, eps, wd = hp["lr"], hp["beta1"], hp["beta2"], hp["eps"], hp["weight_decay"]
        exp_avg, exp_avg_sq = st["exp_avg"], st["exp_avg_sq"]
        bias_correction2 = 1 - beta2 ** float(step)
        if wd != 0:
            if hp["decoupled_weight_decay"]:
                p.mul_(1 - lr * wd)
            else:
                g = g.add(p, alpha=wd)
        mu, mu_next = self._mu(hp, step)
        # mu_product *= mu, in float32, read back as a Python float (torch: _get_value)
        mp = self.mu_product[a : a + 1] * mu
        mu_product = mp.item()
        exp_avg.lerp_(g, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        denom = exp_avg_sq.div(bias_correction2).sqrt()
        mu_product_next = mu_product * mu_next
        denom.add_(eps)
        p.addcdiv_(g, denom, value=(-lr * (1.0 - mu) / (1.0 - mu_product)))
        p.addcdiv_(exp_avg, denom, value=(-lr * mu_next) / (1.0 - mu_product_next))

    def _after_run(self, a, b, hp, step):
        mu, _ = self._mu(hp, step)
        self.mu_product[a:b].mul_(mu)

    def _keep_rows(self, rows):
        self.mu_product = self.mu_product[torch.tensor(rows, dtype=torch.long)].clone()


_OPTIMIZERS: dict[str, type[StackedOptimizer]] = {
    "adam": StackedAdam,
    "adamw": StackedAdamW,
    "nadam": StackedNAdam,
    "rmsprop": StackedRMSprop,
    "sgd": StackedSGD,
}


def make_stacked_optimizer(params: Sequence[Tensor], candidates: Sequence[Candidate]) -> StackedOptimizer:
    """The stacked twin of :func:`robustcli.training.instance.make_optimizer`: one row per
    candidate (all with the same optimizer name), with each row's lr / weight decay / momentum
    read exactly as the plain loop reads them."""
    from robustcli.errors import InputError

    names = {str(c.params.get("optimizer", "adam")).lower() for c in candidates}
    if len(names) != 1:
        raise InputError(f"a stack needs one optimizer for all its instances, got {', '.join(sorted(names))}")
    name = names.pop()
    if name not in _OPTIMIZERS:
        raise InputError(f"unknown optimizer {name!r} (valid: {', '.join(_OPTIMIZERS)})")
    lr = [float(c.params.get("lr", 1e-3)) for c in candidates]
    wd = [float(c.params.get("weight_decay", 0.0)) for c in candidates]
    if name == "sgd":
        momentum = [float(c.params.get("momentum", 0.0)) for c in candidates]
        return StackedSGD(params, lr=lr, weight_decay=wd, momentum=momentum)
    return _OPTIMIZERS[name](params, lr=lr, weight_decay=wd)
