"""The stacked engine's parts, each on its own: every rewrite pass (forward values and gradients
against the unrewritten stack), the run-time probe, the private torch uses, the stacked
optimisers against the installed torch's ``_single_tensor_*`` functions, and the accelerator's
device choices run on the CPU.

``tests/test_stacked.py`` checks the engine as a whole (bitwise optimisers, fidelity to the
plain loop, independence, failures); this file checks what a change to one part can break.
"""

from __future__ import annotations

import copy
import importlib
import inspect

import pytest
import torch
from torch import nn
from torch.func import vmap

from robustcli.config import EarlyStoppingSettings, TrainingSettings
from robustcli.errors import InputError
from robustcli.task import TaskData
from robustcli.training.instance import InstanceSpec
from robustcli.training.seeds import derive_seeds
from robustcli.training.stacked import _torch, rewrites, train_stacked, tuning
from robustcli.training.stacked.build import forward_fn, loss_fn, stack_models
from robustcli.training.stacked.data import Gather
from robustcli.training.stacked.probe import build
from robustcli.training.stacked_optim import StackedAdam, StackedAdamW, StackedNAdam, StackedRMSprop, StackedSGD
from test_stacked import OddConvTask


# 11x11 images through conv (one channel, no bias) -> ReLU -> 2x2 max-pool (a row and a column
# cropped) -> conv -> ReLU -> adaptive max-pool -> dense: every pass has work in it
TASK = OddConvTask()
CAND = next(iter(TASK.search_space()))
K = 3


def _specs(k: int) -> list[InstanceSpec]:
    return [InstanceSpec(i, derive_seeds(0, i).init_seed, derive_seeds(0, i).data_seed, 40) for i in range(k)]


def _run(base: nn.Module, params, buffers, data: TaskData, idx: torch.Tensor):
    """Training path (batched inputs): predictions and the gradients of the summed objectives;
    evaluation path (the test set shared by all rows, no gradient): predictions."""
    rows = {n: p.detach().clone().requires_grad_() for n, p in params.items()}
    x, y = Gather(data.pool_x, data.pool_y, channels_last=True)(idx)
    preds = vmap(forward_fn(base), in_dims=(0, 0, 1))(rows, buffers, x)
    losses = vmap(loss_fn(TASK, base), in_dims=(0, 0, 1, 1))(rows, buffers, x, y)
    grads = dict(zip(rows, torch.autograd.grad(losses.sum(), list(rows.values())), strict=True))
    base.eval()
    with torch.no_grad():
        evals = vmap(forward_fn(base), in_dims=(0, 0, None))(rows, buffers, data.test_x)
    base.train()
    return preds.detach(), grads, evals


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


# -- each rewrite pass alone, against the unrewritten stack ---------------------------------------
def test_the_registry_lists_the_passes_in_their_order():
    assert list(rewrites.PASSES) == [
        "shared_input_conv", "crop_conv", "pool_before_relu", "stacked_pool", "fused_eval_conv_pool",
    ]  # fmt: skip
    assert all(p.summary for p in rewrites.PASSES.values())


@pytest.mark.parametrize("passes", [[name] for name in rewrites.PASSES] + [list(rewrites.PASSES)], ids=lambda p: "+".join(p) if len(p) == 1 else "all")
def test_a_rewrite_pass_keeps_forward_values_and_gradients(passes):
    data = TASK.load_data()
    _, plain, params, buffers = stack_models(TASK, [CAND] * K, _specs(K), torch.device("cpu"))
    rewritten = copy.deepcopy(plain)
    done = rewrites.apply(rewritten, passes)
    assert all(done[name] >= 1 for name in passes), done  # the net gives every pass work
    idx = torch.randint(0, data.pool_size, (16, K), generator=torch.Generator().manual_seed(1))
    want = _run(plain, params, buffers, data, idx)
    got = _run(rewritten, params, buffers, data, idx)
    assert _rel(got[0], want[0]) <= 1e-6, "training-path predictions"
    for name, g in want[1].items():
        assert _rel(got[1][name], g) <= 1e-6, f"gradient of {name}"
    # the fused evaluation sums each 3x3 window in another order (~1e-7 relative)
    assert _rel(got[2], want[2]) <= 1e-5, "evaluation-path predictions"


def test_passes_can_be_switched_off_and_unknown_ones_are_named():
    data = TASK.load_data()
    settings = TrainingSettings(early_stopping=EarlyStoppingSettings(min_epochs=1, window=2, max_epochs=1))
    every = train_stacked(TASK, CAND, data, _specs(2), settings)
    none = train_stacked(TASK, CAND, data, _specs(2), settings, passes=[])
    assert [r.test_loss for r in none] == pytest.approx([r.test_loss for r in every], rel=1e-5)
    with pytest.raises(InputError, match="unknown stacked-model rewrite 'nope' \\(valid: shared_input_conv, "):
        train_stacked(TASK, CAND, data, _specs(2), settings, passes=["nope"])


# -- the run-time probe checks gradients, not only predictions ------------------------------------
class _DoubleGrad(torch.autograd.Function):
    """The identity forward; a backward that doubles the gradient (a rewrite gone wrong)."""

    @staticmethod
    def forward(x):
        return x.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        return 2 * g

    @staticmethod
    def vmap(info, in_dims, x):
        return _DoubleGrad.apply(x), in_dims[0]


class _WrongBackward(nn.Module):
    def forward(self, x):
        return _DoubleGrad.apply(x)


def test_the_probe_rejects_a_rewrite_with_a_wrong_backward(monkeypatch):
    def bad(root: nn.Module) -> int:
        """Puts a module with a wrong backward after the first convolution."""
        root[1] = nn.Sequential(_WrongBackward(), root[1])
        return 1

    monkeypatch.setitem(rewrites.PASSES, "bad", rewrites.Pass("bad", bad))
    data = TASK.load_data()
    probe = (data.pool_x[:4], data.pool_y[:4])
    base, _, _ = build(TASK, [CAND] * 2, _specs(2), torch.device("cpu"), probe=probe, passes=["bad"])
    assert not any(isinstance(m, _WrongBackward) for m in base.modules())  # fell back to the unrewritten stack
    # the same rewrite with the gradient right is kept
    monkeypatch.setattr(_DoubleGrad, "backward", staticmethod(lambda ctx, g: g))
    base, _, _ = build(TASK, [CAND] * 2, _specs(2), torch.device("cpu"), probe=probe, passes=["bad"])
    assert any(isinstance(m, _WrongBackward) for m in base.modules())


# -- private torch APIs ----------------------------------------------------------------------------
def test_private_torch_apis_hold():
    """Fails on a torch outside the checked versions or on which a private use broke: see
    robustcli/training/stacked/_torch.py (after checking, widen CHECKED_UP_TO)."""
    assert _torch.version_problem() is None, _torch.version_problem()
    assert _torch.problems() == (), "\n".join(_torch.problems())


def test_nothing_else_in_the_engine_reaches_into_torch_privates():
    from pathlib import Path

    package = Path(rewrites.__file__).parent
    for path in package.glob("*.py"):
        if path.name == "_torch.py":
            continue
        text = path.read_text()
        for private in ("torch._C", "aten.", "__class__", "._modules", "batchnorm._"):
            assert private not in text, f"{path.name} uses {private!r}: put it behind _torch.py"


# -- the stacked optimisers against the installed torch's single-tensor functions -------------------
def _single_tensor(module: str, name: str):
    fn = getattr(importlib.import_module(f"torch.optim.{module}"), f"_single_tensor_{name}", None)
    assert fn is not None, f"torch {torch.__version__} has no torch.optim.{module}._single_tensor_{name}"
    return fn


def _call(fn, lists: list, **options):
    """Calls a ``_single_tensor_*`` function with its state lists and the keyword options its
    signature asks for; an option this test does not know fails with its name."""
    params = inspect.signature(fn).parameters
    keywords = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = [n for n in keywords if n not in options and params[n].default is inspect.Parameter.empty]
    assert not unknown, f"{fn.__name__} on torch {torch.__version__} takes {unknown}, which StackedOptimizer does not mirror"
    positional = [n for n, p in params.items() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    args = lists + [None] * (len(positional) - len(lists))  # grad_scale, found_inf
    fn(*args, **{n: options[n] for n in keywords if n in options})


_COMMON = {"maximize": False, "capturable": False, "differentiable": False, "has_complex": False, "eps": 1e-8}


def _adam(decoupled: bool):
    def step(p, g, st, lr, wd):
        zero = lambda: st.setdefault("s", [torch.zeros_like(p), torch.zeros_like(p), torch.tensor(0.0)])  # noqa: E731
        m, v, t = zero()
        _call(_single_tensor("adam", "adam"), [[p], [g], [m], [v], [], [t]], amsgrad=False, beta1=0.9, beta2=0.999,
              lr=lr, weight_decay=wd, decoupled_weight_decay=decoupled, **_COMMON)  # fmt: skip

    return step


def _nadam(p, g, st, lr, wd):
    m, v, mu, t = st.setdefault("s", [torch.zeros_like(p), torch.zeros_like(p), torch.tensor(1.0), torch.tensor(0.0)])
    _call(_single_tensor("nadam", "nadam"), [[p], [g], [m], [v], [mu], [t]], beta1=0.9, beta2=0.999, lr=lr,
          weight_decay=wd, momentum_decay=4e-3, decoupled_weight_decay=False, **_COMMON)  # fmt: skip


def _rmsprop(p, g, st, lr, wd):
    sq, t = st.setdefault("s", [torch.zeros_like(p), torch.tensor(0.0)])
    _call(_single_tensor("rmsprop", "rmsprop"), [[p], [g], [sq], [], [], [t]], lr=lr, alpha=0.99, weight_decay=wd,
          momentum=0.0, centered=False, **_COMMON)  # fmt: skip


def _sgd(p, g, st, lr, wd):
    bufs = st.setdefault("s", [None])  # torch fills the momentum buffer at the first step
    _call(_single_tensor("sgd", "sgd"), [[p], [g], bufs], weight_decay=wd, momentum=0.9, lr=lr, dampening=0.0,
          nesterov=False, maximize=False, has_sparse_grad=False)  # fmt: skip


SINGLE = {
    "adam": (StackedAdam, {}, _adam(False)),
    "adamw": (StackedAdamW, {}, _adam(True)),
    "nadam": (StackedNAdam, {}, _nadam),
    "rmsprop": (StackedRMSprop, {}, _rmsprop),
    "sgd": (StackedSGD, {"momentum": 0.9}, _sgd),
}


@pytest.mark.parametrize("name", list(SINGLE))
def test_stacked_optimiser_is_bitwise_the_installed_single_tensor_function(name):
    stacked_cls, extra, single = SINGLE[name]
    lr, wd = [1e-3, 3e-2, 1e-2], [0.0, 1e-2, 1e-1]
    gen = torch.Generator().manual_seed(1)
    init = torch.randn(3, 5, 7, generator=gen)
    grads = [torch.randn(3, 5, 7, generator=gen) for _ in range(25)]
    p = init.clone()
    opt = stacked_cls([p], lr=lr, weight_decay=wd, **extra)
    for g in grads:
        opt.step([g])
    for i in range(3):
        q, state = init[i].clone(), {}
        for g in grads:
            single(q, g[i].clone(), state, lr[i], wd[i])
        assert torch.equal(p[i], q), f"{name}, row {i}"


# -- the accelerator's device choices, run on the CPU -----------------------------------------------
def test_the_accelerator_choices_give_the_cpu_results(monkeypatch):
    """A GPU takes other chunk sizes, no tiling and no layout copy (tuning.ACCELERATOR); the logic
    around them is shared, so running them on the CPU checks everything but the device."""
    data = TASK.load_data()
    settings = TrainingSettings(early_stopping=EarlyStoppingSettings(min_epochs=2, window=2, max_epochs=2))
    cpu = train_stacked(TASK, CAND, data, _specs(K), settings)
    monkeypatch.setattr(tuning, "for_device", lambda device_type: tuning.ACCELERATOR)
    accelerator = train_stacked(TASK, CAND, data, _specs(K), settings)
    for a, b in zip(cpu, accelerator, strict=True):
        assert b.test_curve == pytest.approx(a.test_curve, rel=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_stacked_engine_on_cuda_gives_the_cpu_results(monkeypatch):  # never run yet: no GPU at hand
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    data = TASK.load_data()
    es = EarlyStoppingSettings(min_epochs=2, window=2, max_epochs=2)
    cpu = train_stacked(TASK, CAND, data, _specs(K), TrainingSettings(early_stopping=es))
    cuda = train_stacked(TASK, CAND, data, _specs(K), TrainingSettings(early_stopping=es, device="cuda"))
    for a, b in zip(cpu, cuda, strict=True):
        assert b.device.startswith("cuda")
        assert b.test_curve == pytest.approx(a.test_curve, rel=1e-4)
