"""The stacked engine: exact per-instance optimisers, gradients, independence, fidelity, failures.

What "equal" means here. The stacked optimisers are **bitwise** equal to ``torch.optim``
(``foreach=False``) per instance on the same gradients. The stacked forward/backward is not: a
grouped convolution or a batched matmul sums in another order than the single model's kernels,
so gradients agree to ~1e-7 relative, and a whole training (where the optimiser amplifies ulp
differences) can never be bitwise equal to the plain loop in general; it is compared within a
tolerance. Within one stack of a fixed size, an instance's numbers do not depend on its
neighbours at all (bitwise).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import vmap

from robustcli.builtin.synthetic import SyntheticTask
from robustcli.config import EarlyStoppingSettings, TrainingSettings
from robustcli.errors import InputError
from robustcli.task import Candidate, Loss, SearchSpace, Task, TaskData
from robustcli.training.instance import InstanceSpec, train_instance
from robustcli.training.seeds import derive_seeds
from robustcli.training.stacked import check_stackable, rewrites, train_stacked, tuning
from robustcli.training.stacked.build import forward_fn, loss_fn
from robustcli.training.stacked.data import Gather, channels_last_rows
from robustcli.training.stacked.ops import SharedConvPool
from robustcli.training.stacked.probe import build
from robustcli.training.stacked_optim import (
    StackedAdam,
    StackedAdamW,
    StackedNAdam,
    StackedOptimizer,
    StackedRMSprop,
    StackedSGD,
)


class TinyConvTask(Task):
    """A tiny conv net (conv, max-pool, conv, PReLU, adaptive max-pool, dense) on 10x10 images."""

    name = "tiny-conv"
    loss = Loss("mse", "mean((y_pred - y)^2)")

    def load_data(self) -> TaskData:
        gen = torch.Generator().manual_seed(3)
        x = torch.randn(600, 1, 10, 10, generator=gen)
        y = (3 * x.mean(dim=(1, 2, 3)) + x[:, 0, 4:6, 4:6].sum(dim=(1, 2))).unsqueeze(1)
        return TaskData(x[:400], y[:400], x[400:], y[400:])

    def search_space(self) -> SearchSpace:
        return SearchSpace([Candidate.from_params({"optimizer": "adam", "lr": 3e-3, "batch_size": 16})])

    def build_model(self, candidate: Candidate) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3), nn.PReLU(8), nn.AdaptiveMaxPool2d(2),
            nn.Flatten(), nn.Linear(32, 8), nn.ReLU(), nn.Linear(8, 1),
        )  # fmt: skip

    def test_loss(self, pred, y):
        return ((pred - y) ** 2).mean()


SYN = SyntheticTask()
CONV = TinyConvTask()
SMALL = SYN.search_space().get("small")  # adam, lr 1e-2, batch 32
CONV_CAND = next(iter(CONV.search_space()))


def _specs(count: int, train_size: int = 96, first: int = 0) -> list[InstanceSpec]:
    out = []
    for i in range(first, first + count):
        s = derive_seeds(0, i)
        out.append(InstanceSpec(i, s.init_seed, s.data_seed, train_size))
    return out


def _settings(min_epochs: int = 4, window: int = 3, max_epochs: int = 12) -> TrainingSettings:
    return TrainingSettings(
        early_stopping=EarlyStoppingSettings(min_epochs=min_epochs, window=window, max_epochs=max_epochs)
    )


# -- (1) optimisers: bitwise equal to torch.optim per instance ------------------------------------
SHAPES = [(7, 3), (13,), (4, 3, 3, 3), (1,), (37,)]  # odd sizes: vectorised bodies and scalar tails

OPTIMISERS = {
    "adam": (StackedAdam, torch.optim.Adam, {}),
    "adamw": (StackedAdamW, torch.optim.AdamW, {}),
    "nadam": (StackedNAdam, torch.optim.NAdam, {}),
    "rmsprop": (StackedRMSprop, torch.optim.RMSprop, {}),
    "sgd": (StackedSGD, torch.optim.SGD, {"momentum": [0.9, 0.0, 0.5, 0.99, 0.9]}),
}


@pytest.mark.parametrize("name", list(OPTIMISERS))
@pytest.mark.parametrize("compact", [False, True], ids=["masked", "compacted"])
def test_stacked_optimiser_is_bitwise_torch_optim(name: str, compact: bool):
    stacked_cls, torch_cls, extra = OPTIMISERS[name]
    k, steps = 5, 50
    lr = [1e-3, 3e-3, 1e-2, 1e-3, 3e-4]
    wd = [0.0, 1e-2, 1e-1, 0.0, 1e-3]
    stop = [steps, 30, 50, 7, 41]  # each instance's own number of steps
    hyper = {"lr": lr, "weight_decay": wd, **extra}
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(k, *s, generator=gen) for s in SHAPES]
    grads = [[torch.randn(k, *s, generator=gen) * (10.0 if t % 7 == 0 else 1.0) for s in SHAPES] for t in range(steps)]

    params = [p.clone() for p in init]
    opt: StackedOptimizer = stacked_cls(params, **hyper)
    rows = list(range(k))  # which original instance each current row holds
    final: dict[int, list[torch.Tensor]] = {}
    for t in range(steps):
        if compact:  # stopped instances leave the stack
            keep = [r for r, orig in enumerate(rows) if t < stop[orig]]
            for r, orig in enumerate(rows):
                if r not in keep:
                    final[orig] = [p[r].clone() for p in opt.params]
            if len(keep) < len(rows):
                opt.keep(keep)
                rows = [rows[r] for r in keep]
            opt.step([g[torch.tensor(rows)] for g in grads[t]])
        else:  # stopped instances stay, masked out
            opt.step(grads[t], active=[t < stop[i] for i in range(k)])
    for r, orig in enumerate(rows):
        final[orig] = [p[r].clone() for p in opt.params]

    for i in range(k):
        ps = [init[j][i].clone().requires_grad_() for j in range(len(SHAPES))]
        kw = {key: (v[i] if isinstance(v, list) else v) for key, v in hyper.items()}
        ref = torch_cls(ps, foreach=False, **kw)
        for t in range(stop[i]):
            for j, p in enumerate(ps):
                p.grad = grads[t][j][i].clone()
            ref.step()
        for j, p in enumerate(ps):
            assert torch.equal(p.detach(), final[i][j]), f"{name}: instance {i}, parameter {j} differs"


def test_stacked_optimiser_reads_grad_and_refuses_bad_shapes():
    p = torch.zeros(3, 4, requires_grad=True)
    opt = StackedAdam([p], lr=[0.1, 0.2, 0.3])
    p.grad = torch.ones(3, 4)
    opt.step()
    assert opt.steps == [1, 1, 1] and (p.detach()[:, 0] < 0).all()
    with pytest.raises(ValueError):
        StackedAdam([p], lr=[0.1, 0.2])
    with pytest.raises(TypeError):
        StackedAdam([p], momentum=0.9)


# -- (2) first-step gradients ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("task", "candidate", "rtol"),
    # rtol relative to max |g| of each tensor: the MLP's batched matmuls; the conv net's grouped
    # convolutions sum their taps in another order (measured 7e-7 at worst)
    [(SYN, SMALL, 1e-6), (CONV, CONV_CAND, 2e-6)],
    ids=["mlp", "conv"],
)
def test_first_step_gradients_match_the_instance_alone(task, candidate, rtol):
    data = task.load_data()
    k, batch = 4, 16
    specs = _specs(k)
    idx = torch.randint(0, data.pool_size, (batch, k), generator=torch.Generator().manual_seed(0))
    base, params, buffers = build(task, [candidate] * k, specs, torch.device("cpu"))
    x, y = Gather(data.pool_x, data.pool_y, channels_last=True)(idx)
    vmap(loss_fn(task, base), in_dims=(0, 0, 1, 1))(params, buffers, x, y).sum().backward()
    for i, spec in enumerate(specs):
        torch.manual_seed(spec.init_seed)
        model = task.build_model(candidate)
        task.init_weights(model)
        task.objective(model(data.pool_x[idx[:, i]]), data.pool_y[idx[:, i]]).backward()
        for name, p in model.named_parameters():
            err = (params[name].grad[i] - p.grad).abs().max() / p.grad.abs().max()
            assert err <= rtol, f"{name} of instance {i}: {err:.2e}"


# -- (3) independence from the neighbours ---------------------------------------------------------
@pytest.mark.parametrize(("task", "candidate"), [(SYN, SMALL), (CONV, CONV_CAND)], ids=["mlp", "conv"])
def test_an_instance_does_not_depend_on_its_neighbours(task, candidate):
    """Same instance, same stack size, other neighbours (other seeds, other samples): bitwise
    identical with a fixed stack (compact=False). With compaction the stack size follows the
    neighbours' stops, which may change kernels: equal within floating-point noise."""
    data = task.load_data()
    me = _specs(1, first=7)
    settings = _settings(min_epochs=3, window=2, max_epochs=6)
    a = train_stacked(task, candidate, data, me + _specs(3, first=100), settings, compact=False)[0]
    b = train_stacked(task, candidate, data, me + _specs(3, first=200), settings, compact=False)[0]
    assert a.test_curve == b.test_curve and a.train_curve == b.train_curve
    c = train_stacked(task, candidate, data, _specs(3, first=300) + me, settings)[-1]
    assert c.epochs == a.epochs and c.stop_reason == a.stop_reason
    assert c.test_loss == pytest.approx(a.test_loss, rel=1e-4)


# -- (4) fidelity to the plain loop -------------------------------------------------------------
@pytest.mark.parametrize(("task", "candidate"), [(SYN, SMALL), (CONV, CONV_CAND)], ids=["mlp", "conv"])
def test_results_match_the_plain_loop(task, candidate):
    """Whole trainings cannot be bitwise equal to the plain loop in general (floating-point
    summation order differs in the stacked kernels, and training amplifies it), so: same epochs
    and stop reasons on this easy task, test losses within a small relative tolerance."""
    data = task.load_data()
    specs = _specs(5)
    settings = _settings()
    plain = [train_instance(task, candidate, data, s, settings) for s in specs]
    stacked = train_stacked(task, candidate, data, specs, settings)
    for p, s in zip(plain, stacked, strict=True):
        assert s.spec == p.spec
        assert (s.epochs, s.stop_reason, s.status) == (p.epochs, p.stop_reason, p.status)
        assert s.test_loss == pytest.approx(p.test_loss, rel=1e-3)
        assert s.test_curve == pytest.approx(p.test_curve, rel=1e-3)
        assert s.train_curve == pytest.approx(p.train_curve, rel=1e-3)


def test_partial_last_batch_and_test_subsample_match_the_plain_loop():
    data = SYN.load_data()
    specs = [InstanceSpec(s.index, s.init_seed, s.data_seed, 100, test_size=300) for s in _specs(3)]  # 100 = 3x32 + 4
    settings = TrainingSettings(
        sampling="without-replacement", early_stopping=EarlyStoppingSettings(min_epochs=3, window=2, max_epochs=3)
    )
    plain = [train_instance(SYN, SMALL, data, s, settings) for s in specs]
    stacked = train_stacked(SYN, SMALL, data, specs, settings)
    for p, s in zip(plain, stacked, strict=True):
        assert s.test_curve == pytest.approx(p.test_curve, rel=1e-4)
        assert s.train_curve == pytest.approx(p.train_curve, rel=1e-4)


# -- (5) a diverging instance ---------------------------------------------------------------------
def test_a_diverging_instance_fails_alone():
    data = SYN.load_data()
    sgd = {"hidden": 16, "layers": 1, "activation": "relu", "optimizer": "sgd", "batch_size": 32}
    good = Candidate.from_params({**sgd, "lr": 1e-2})
    bad = Candidate.from_params({**sgd, "lr": 1e6})
    specs = _specs(4)
    settings = _settings(min_epochs=3, window=2, max_epochs=5)
    mixed = train_stacked(SYN, [good, bad, good, good], data, specs, settings, compact=False)
    healthy = train_stacked(SYN, [good] * 4, data, specs, settings, compact=False)
    assert mixed[1].failed and mixed[1].stop_reason == "diverged" and math.isnan(mixed[1].test_loss)
    assert mixed[1].failure and mixed[1].epochs == 1
    for i in (0, 2, 3):  # the neighbours: bitwise what they get next to a healthy instance
        assert not mixed[i].failed
        assert mixed[i].test_curve == healthy[i].test_curve
    # with compaction (the default) the failed row leaves after its epoch; the others finish
    compacted = train_stacked(SYN, [good, bad, good, good], data, specs, settings)
    assert compacted[1].failed and all(not compacted[i].failed for i in (0, 2, 3))
    for i in (0, 2, 3):
        assert compacted[i].test_loss == pytest.approx(healthy[i].test_loss, rel=1e-4)
    # and the plain loop agrees that it diverges in the first epoch
    alone = train_instance(SYN, bad, data, specs[1], settings)
    assert alone.failed and alone.epochs == 1


# -- (6) early-stopped instances leave the stack ---------------------------------------------------
def test_stopped_instances_leave_the_stack(monkeypatch):
    sizes: list[int] = []
    original = StackedOptimizer.step

    def spy(self, grads=None, active=None):
        sizes.append(self.k)
        return original(self, grads, active)

    monkeypatch.setattr(StackedOptimizer, "step", spy)
    data = SYN.load_data()
    specs = _specs(6)
    settings = _settings(min_epochs=3, window=3, max_epochs=15)
    seen: list[int] = []
    results = train_stacked(SYN, SMALL, data, specs, settings, on_result=lambda r: seen.append(r.spec.index))
    epochs = [r.epochs for r in results]
    assert len(set(epochs)) > 1, "the test needs instances that stop at different epochs"
    steps_per_epoch = math.ceil(96 / 32)
    # every row-step is one active instance's step: nothing is computed for stopped instances
    assert sum(sizes) == sum(epochs) * steps_per_epoch
    assert sizes == sorted(sizes, reverse=True) and sizes[0] == 6 and sizes[-1] < 6
    # results come out as instances stop, in train_stacked's return in spec order
    assert sorted(seen) == [s.index for s in specs] and [r.spec for r in results] == specs
    assert [results[[s.index for s in specs].index(i)].epochs for i in seen] == sorted(epochs)


# -- the executor ---------------------------------------------------------------------------------
def test_executor_groups_by_candidate_and_falls_back_where_stacking_does_not_pay():
    from robustcli.execution.stacked import StackedExecutor

    data = SYN.load_data()
    big = Candidate.from_params({**SMALL.params, "batch_size": 256})
    settings = _settings(min_epochs=2, window=2, max_epochs=2)
    specs = _specs(5)
    jobs = [(SMALL, s) for s in specs] + [(big, specs[0]), (big, specs[1])]
    ex = StackedExecutor(max_stack=3, plain_batch=256)
    out = list(ex.run(SYN, data, jobs, settings))
    assert sorted((c.id, r.spec.index) for c, r in out) == sorted((c.id, s.index) for c, s in jobs)
    assert ex.decisions == [(SMALL.id, "stacked", 5, 3), (big.id, "plain", 2, 1)]
    # stacks of 3 and 2 give what one stack of 5 gives, up to floating-point noise
    ref = train_stacked(SYN, SMALL, data, specs, settings)
    got = {r.spec.index: r for c, r in out if c.id == SMALL.id}
    for r in ref:
        assert got[r.spec.index].test_loss == pytest.approx(r.test_loss, rel=1e-4)


def test_unstackable_models_are_reported_and_trained_plainly():
    class Clipped(nn.Module):  # data-dependent Python control flow: impossible under vmap
        def forward(self, x):
            return x / float(x.detach().abs().max()) if float(x.detach().abs().max()) > 1 else x

    class ClippingTask(SyntheticTask):
        def build_model(self, candidate):
            return nn.Sequential(nn.Linear(6, 8), Clipped(), nn.ReLU(), nn.Linear(8, 1))

    from robustcli.execution.stacked import StackedExecutor

    task = ClippingTask()
    data = task.load_data()
    assert check_stackable(task, SMALL, data) is not None
    assert check_stackable(SYN, SMALL, data) is None
    ex = StackedExecutor()
    out = list(ex.run(task, data, [(SMALL, s) for s in _specs(2)], _settings(min_epochs=1, window=2, max_epochs=1)))
    assert len(out) == 2 and ex.decisions == [(SMALL.id, "plain", 2, 1)] and ex.planner.why_plain(SMALL.id)
    assert all(r.engine == "plain" and r.plain_reason == ex.planner.why_plain(SMALL.id) for _, r in out)


def test_cpu_stacks_of_conv_nets_are_sized_by_examples_per_step():
    from robustcli.execution.stacked import StackedExecutor

    ex = StackedExecutor(max_stack=64, cpu_cache_bytes=1 << 20, cpu_min_stack=2, cpu_stack_examples=256)
    settings = _settings()
    assert ex.planner.plan(SYN, SYN.load_data(), SMALL, 100, settings) == ("stacked", 64)  # tiny MLP: all of it
    conv = Candidate.from_params({**CONV_CAND.params, "batch_size": 64})
    engine, k = ex.planner.plan(CONV, CONV.load_data(), conv, 100, settings)
    assert engine == "stacked" and 2 <= k < 64
    assert ex.planner.plan(SYN, SYN.load_data(), SMALL, 1, settings) == ("plain", 1)
    # the defaults: 4096 examples per step, at least 8 instances
    default = StackedExecutor()
    sizes = {b: default.planner.plan(CONV, CONV.load_data(), Candidate.from_params({**CONV_CAND.params, "batch_size": b}), 100, settings)[1]
             for b in (32, 256, 1024)}  # fmt: skip
    assert sizes == {32: 64, 256: 16, 1024: 8}
    # a lone instance: plain for the MLP, a stack of one for a conv net from batch 64 on
    lone = {b: default.planner.plan(CONV, CONV.load_data(), Candidate.from_params({**CONV_CAND.params, "batch_size": b}), 1, settings)
            for b in (32, 64)}  # fmt: skip
    assert lone == {32: ("plain", 1), 64: ("stacked", 1)}
    assert default.planner.plan(SYN, SYN.load_data(), Candidate.from_params({**SMALL.params, "batch_size": 64}), 1, settings) == ("plain", 1)


# -- (7) the stacked model's rewrites (crop, pool before ReLU, fused conv+pool, layouts) ---------------
class OddConvTask(TinyConvTask):
    """11x11 images: conv 3x3 -> 9x9, so the 2x2 pooling drops a row and a column (the crop)."""

    name = "odd-conv"

    def load_data(self) -> TaskData:
        gen = torch.Generator().manual_seed(5)
        x = torch.randn(300, 1, 11, 11, generator=gen).relu()  # exact zeros: ties at 0 in the pooling
        y = x.mean(dim=(1, 2, 3)).unsqueeze(1)
        return TaskData(x[:200], y[:200], x[200:], y[200:])

    def build_model(self, candidate: Candidate) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, bias=False), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 2), nn.ReLU(), nn.AdaptiveMaxPool2d(2),
            nn.Flatten(), nn.Linear(32, 1),
        )  # fmt: skip


def test_rewritten_stacked_model_matches_the_model_alone():
    task = OddConvTask()
    data = task.load_data()
    k = 3
    specs = _specs(k)
    base, params, buffers = build(task, [CONV_CAND] * k, specs, torch.device("cpu"))
    convs = [m for m in base.modules() if isinstance(m, rewrites.StackedConv2d)]
    assert convs[0].crop_kernel == (2, 2) and convs[0].fused
    assert not any(type(m) is nn.ReLU for m in base.modules())  # both ReLUs now run after their pooling
    assert params["3.weight"].stride()[2] == 1  # conv weights stored [K, O, kh, kw, I]
    # training forward/backward: gradients as the model alone's
    idx = torch.randint(0, data.pool_size, (16, k), generator=torch.Generator().manual_seed(1))
    x, y = Gather(data.pool_x, data.pool_y, channels_last=True)(idx)
    vmap(loss_fn(task, base), in_dims=(0, 0, 1, 1))(params, buffers, x, y).sum().backward()
    # evaluation of a shared input (the fused conv+pool path): predictions as the model alone's
    with torch.no_grad():
        preds = vmap(forward_fn(base), in_dims=(0, 0, None))(params, buffers, data.test_x)
    for i, spec in enumerate(specs):
        torch.manual_seed(spec.init_seed)
        model = task.build_model(CONV_CAND)
        task.init_weights(model)
        task.objective(model(data.pool_x[idx[:, i]]), data.pool_y[idx[:, i]]).backward()
        for name, p in model.named_parameters():
            err = (params[name].grad[i] - p.grad).abs().max() / p.grad.abs().max()
            assert err <= 2e-6, f"{name} of instance {i}: {err:.2e}"
        with torch.no_grad():
            ref = model(data.test_x)
        assert torch.allclose(preds[i], ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pool", [(2, 2), (3, 2)])
def test_fused_evaluation_conv_pool_in_tiles_matches_conv_then_pool(monkeypatch, pool):
    """The evaluation's fused one-channel convolution + pooling, computed in tiles (here 7 rows,
    the last tile short), gives the convolution-then-pooling of each instance."""
    monkeypatch.setattr(tuning, "SHARED_CONV_POOL_TILE_FLOATS", 7 * pool[0] * pool[1] * 3 * 5)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, 1, 12, 11, generator=gen)
    weight = torch.randn(3, 5, 1, 3, 3, generator=gen)  # K=3 instances, 5 filters each
    with torch.no_grad():
        got = vmap(lambda w: SharedConvPool.apply(x, w, pool), in_dims=0)(weight)
    for i in range(3):
        want = torch.nn.functional.max_pool2d(torch.nn.functional.conv2d(x, weight[i]), pool)
        assert got[i].shape == want.shape
        assert torch.allclose(got[i], want, rtol=1e-5, atol=1e-6)


def test_pool_before_relu_is_exact_with_ties_at_zero():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 8, 8, generator=gen).clamp_min(0) - torch.randn(4, 3, 8, 8, generator=gen).relu()
    x[0, 0, :4, :4] = 0.0  # a window of ties at zero
    plain = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))
    swapped = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))
    assert rewrites.PASSES["pool_before_relu"].rewrite(swapped) == 1
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn(4, 3, 4, 4, generator=gen)
    ya, yb = plain(a), swapped(b)
    (ya * g).sum().backward()
    (yb * g).sum().backward()
    assert torch.equal(ya, yb) and torch.equal(a.grad, b.grad)


def test_optimiser_keeps_the_parameter_layout_and_its_bits():
    gen = torch.Generator().manual_seed(0)
    p0 = torch.randn(4, 6, 5, 3, 3, generator=gen)
    grads = [torch.randn(4, 6, 5, 3, 3, generator=gen) for _ in range(5)]
    dense, strided = p0.clone(), channels_last_rows(p0.clone())
    assert strided.stride() != dense.stride()
    a, b = StackedNAdam([dense], lr=1e-2, weight_decay=1e-2), StackedNAdam([strided], lr=1e-2, weight_decay=1e-2)
    for t, g in enumerate(grads):
        a.step([g])
        b.step([channels_last_rows(g)])
        if t == 2:
            a.keep([0, 2, 3])
            b.keep([0, 2, 3])
            grads = [gg[[0, 2, 3]] for gg in grads]
    assert b.params[0].stride() == channels_last_rows(b.params[0].contiguous()).stride()
    assert b.state[0]["exp_avg"].stride() == b.params[0].stride()
    assert torch.equal(a.params[0], b.params[0])


def test_keep_freed_memory_is_idempotent():
    from robustcli.training.cpu_memory import keep_freed_memory

    first = keep_freed_memory()
    assert keep_freed_memory() is first


# -- (8) models the rewrites must leave exact, or leave alone (found in review) ---------------------
class _Scaled(nn.Conv2d):  # a Conv2d subclass with its own forward: never rewritten
    def forward(self, x):
        return super().forward(x) * 2


class _Reuse(nn.Module):  # a convolution also called from custom code: the rewrites would change both uses
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(4 * 16 + 4 * 49, 1)

    def forward(self, x):
        return self.head(torch.cat([self.features(x).flatten(1), self.features[0](x[:, :, 1:, 1:]).flatten(1)], 1))


class _Unpool(nn.Module):  # pooling indices read back by an unpooling: no cropping before it
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 4, 2), nn.ReLU(), nn.MaxPool2d(2, return_indices=True))
        self.out = nn.Linear(4 * 81, 1)

    def forward(self, x):
        y, idx = self.enc(x)
        return self.out(nn.functional.max_unpool2d(y, idx, 2, output_size=(9, 9)).flatten(1))


ODD_MODELS = {
    "padded conv, fused evaluation": lambda: nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4, 1)
    ),
    "conv subclass": lambda: nn.Sequential(_Scaled(1, 4, 3, bias=False), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 1)),
    "conv called twice": _Reuse,
    "return_indices + unpool": _Unpool,
}


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # vmap has no rule for max_unpool2d
@pytest.mark.parametrize("name", list(ODD_MODELS))
def test_stacked_rewrites_keep_odd_models_exact(name):
    class OddTask(TinyConvTask):
        def build_model(self, candidate):
            return ODD_MODELS[name]()

    task = OddTask()
    data = task.load_data()
    settings = _settings(min_epochs=2, window=2, max_epochs=2)
    specs = _specs(2)
    alone = [train_instance(task, CONV_CAND, data, s, settings) for s in specs]
    stacked = train_stacked(task, CONV_CAND, data, specs, settings)
    for a, b in zip(alone, stacked, strict=True):
        assert b.test_loss == pytest.approx(a.test_loss, rel=1e-4), name


def test_candidates_whose_params_differ_only_by_list_or_tuple_share_a_stack():
    a = Candidate.from_params({**SMALL.params, "extra": (1, 2)})
    b = Candidate.from_params({**SMALL.params, "extra": [1, 2], "lr": 3e-3})
    results = train_stacked(SYN, [a, b], SYN.load_data(), _specs(2), _settings(min_epochs=1, window=2, max_epochs=1))
    assert len(results) == 2


# -- (8) what the stack must not change about a model: frozen weights, state, schedules ------------
class _FrozenConvTask(TinyConvTask):
    """The first convolution is a fixed random filter bank (requires_grad False)."""

    def init_weights(self, model):
        super().init_weights(model)
        model[0].weight.requires_grad_(False)


def test_frozen_parameters_stay_frozen_in_the_stack_and_after_compaction():
    task = _FrozenConvTask()
    data = task.load_data()
    good = CONV_CAND
    bad = Candidate.from_params({**good.params, "lr": 1e9})  # diverges at once: leaves the stack
    settings = _settings(min_epochs=3, window=2, max_epochs=3)
    specs = _specs(2)
    plain = train_instance(task, good, data, specs[0], settings)
    compacted = train_stacked(task, [good, bad], data, specs, settings)
    assert compacted[1].status == "failed" and compacted[1].epochs == 1
    assert compacted[0].test_curve == pytest.approx(plain.test_curve, rel=1e-4)
    base, params, _ = build(task, [good], specs[:1], torch.device("cpu"), probe=(data.pool_x[:4], data.pool_y[:4]))
    assert not params["0.weight"].requires_grad and params["3.weight"].requires_grad


class _RandomFeatures(nn.Module):
    """Random Fourier features kept as a plain tensor attribute (neither parameter nor buffer)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.randn(6, 8)
        self.head = nn.Linear(16, 1)

    def forward(self, x):
        z = x @ self.proj
        return self.head(torch.cat([z.sin(), z.cos()], -1))


def test_state_outside_parameters_and_buffers_is_refused_not_shared():
    class FeaturesTask(SyntheticTask):
        def build_model(self, candidate):
            return _RandomFeatures()

    task = FeaturesTask()
    data = task.load_data()
    why = check_stackable(task, SMALL, data)
    assert why is not None and "does not predict what each model predicts alone" in why
    with pytest.raises(InputError, match="--engine plain"):
        train_stacked(task, SMALL, data, _specs(2), _settings(min_epochs=1, window=2, max_epochs=1))


def test_batch_dependent_evaluation_and_learning_rate_schedules_are_not_stacked():
    class BatchStatsTask(SyntheticTask):
        def build_model(self, candidate):
            return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8, track_running_stats=False), nn.ReLU(), nn.Linear(8, 1))

    class ScheduledTask(SyntheticTask):
        def lr_factor(self, candidate, step, total_steps):
            return 1.0 - step / total_steps

    data = SYN.load_data()
    assert "running statistics" in check_stackable(BatchStatsTask(), SMALL, data)
    assert "lr_factor" in check_stackable(ScheduledTask(), SMALL, data)
    with pytest.raises(InputError, match="lr_factor"):
        train_stacked(ScheduledTask(), SMALL, data, _specs(2), _settings(min_epochs=1, window=2, max_epochs=1))
