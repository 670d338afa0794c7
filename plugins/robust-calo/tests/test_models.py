"""The paper's network family: appendix parameter counts, feature injection, training steps."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from robust_calo import features as f
from robust_calo.grid import named_models
from robust_calo.models import CaloNet, build_calo_net, count_parameters, local_barycenter_torch
from robustcli.training.init import he_init

#: appendix 6.1 of the paper (torchinfo "Trainable params")
APPENDIX = {"model1": 23_923, "model2": 23_932, "model3": 23_644, "model4": 23_662, "nas1": 5_756, "nas2": 15_932}
TARGET = {"model1": "energy", "model2": "energy", "model3": "position", "model4": "position", "nas1": "energy", "nas2": "energy"}


def clusters(n: int = 16, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = 0.05 * torch.randn(n, 1, 15, 15, generator=gen)
    x[:, 0, 6:9, 6:9] += torch.rand(n, 3, 3, generator=gen) * 5
    x[:, 0, 7, 7] += 20 * torch.rand(n, generator=gen) + 1
    return x


def named(name: str) -> dict:
    from robust_calo.grid import nas_models

    return {**named_models(TARGET[name]), **nas_models()}[name]


@pytest.mark.parametrize("name", sorted(APPENDIX))
def test_named_models_match_the_appendix_parameter_counts(name):
    model = build_calo_net(named(name), target=TARGET[name])
    assert count_parameters(model) == APPENDIX[name]


def test_layer_shapes_follow_the_appendix():
    m1 = build_calo_net(named("model1"), target="energy")
    m2 = build_calo_net(named("model2"), target="energy")
    m4 = build_calo_net(named("model4"), target="position")
    assert m1.conv(torch.zeros(2, 1, 15, 15)).shape == (2, 64 * 3 * 3)  # MaxPool -> [64, 3, 3]
    assert m4.conv(torch.zeros(2, 1, 15, 15)).shape == (2, 64)  # MaxPool -> [64, 1, 1]
    assert m1.dense[0][0].in_features == 576
    assert m2.dense[0][0].in_features == 577  # the energy sum joins the flattened conv output
    assert m4.dense[0][0].in_features == 64
    assert m4.dense[1][0].in_features == 66  # the barycentre joins after the first dense layer
    assert all(c.bias is None for c in m1.conv if isinstance(c, torch.nn.Conv2d))


@pytest.mark.parametrize("name", sorted(APPENDIX))
def test_named_models_train_a_step(name):
    torch.manual_seed(0)
    model = build_calo_net(named(name), target=TARGET[name])
    he_init(model)
    x = clusters()
    y = x.sum(dim=(1, 2, 3)).unsqueeze(1) if TARGET[name] == "energy" else torch.rand(16, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    pred = model(x)
    assert pred.shape == (16, 1)
    loss = ((pred - y) ** 2).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    opt.step()
    assert torch.isfinite(model(x)).all()


def test_every_architecture_of_the_grid_builds_and_runs():
    x = clusters(4)
    kinds = (("energy", "none"), ("energy", "esum"), ("position", "barycenter"))
    for i, (kernel, pool, hidden) in enumerate(itertools.product((2, 3, 5), (3, 1), ((9,), (64, 9), (64, 32, 9)))):
        target, feat = kinds[i % 3]
        act = ("relu", "prelu")[i % 2]
        params = {"kernel": kernel, "pool": pool, "hidden": hidden, "activation": act, "features": feat}
        model = build_calo_net(params, target=target)
        assert model(x).shape == (4, 1), params


def test_position_can_predict_x_and_y():
    model = build_calo_net(named("model4"), target="position", outputs=2)
    assert model(clusters(3)).shape == (3, 2)


def test_features_are_computed_from_the_input():
    x = clusters(32, seed=3)
    m2 = build_calo_net(named("model2"), target="energy")
    total = x.sum(dim=(1, 2, 3))
    np.testing.assert_allclose(m2._features(x, total)[:, 0].numpy(), f.energy_sum(x.numpy()), rtol=1e-5)
    m4 = build_calo_net(named("model4"), target="position", pitch_cm=4.04)
    bary = m4._features(x, total).numpy()
    lx, ly = f.local_barycenter(x.numpy(), 3, 4.04)
    np.testing.assert_allclose(bary[:, 0], lx, atol=1e-5)
    np.testing.assert_allclose(bary[:, 1], ly, atol=1e-5)


def test_local_barycenter_torch_is_bounded_with_noise():
    x = torch.zeros(2, 1, 15, 15)
    x[0, 0, 7, 7], x[0, 0, 7, 8], x[0, 0, 7, 6] = 1.0, 0.5, -1.4  # 3x3 sum 0.1: raw offset 19 cells
    centres = torch.tensor(f.cell_centres(15, 4.04), dtype=torch.float32)
    out = local_barycenter_torch(x, centres)
    assert torch.isfinite(out).all()
    assert out.abs().max() <= 1.5 * 4.04 + 1e-5


def test_fraction_input_makes_the_energy_net_homogeneous():
    torch.manual_seed(1)
    model = CaloNet(kernel=3, pool=3, hidden=(9,), input="fraction", target="energy")
    he_init(model)
    torch.nn.init.normal_(model.out.bias)  # a bias would break homogeneity with raw inputs
    x = clusters(5).abs()
    torch.testing.assert_close(model(3.0 * x), 3.0 * model(x), rtol=1e-5, atol=1e-5)


def test_stacked_instances_under_vmap_match_the_loop():
    from torch.func import functional_call, stack_module_state, vmap

    models = [build_calo_net(named("model4"), target="position") for _ in range(3)]
    for i, m in enumerate(models):
        torch.manual_seed(i)
        he_init(m)
    params, buffers = stack_module_state(models)
    x = clusters(6)
    out = vmap(lambda p, b: functional_call(models[0], (p, b), (x,)))(params, buffers)
    ref = torch.stack([m(x) for m in models])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="activation"):
        build_calo_net({"activation": "tanh"}, target="energy")
    with pytest.raises(ValueError, match="features"):
        build_calo_net({"features": "angle"}, target="energy")
    with pytest.raises(ValueError, match="kernel"):
        build_calo_net({"kernel": 9}, target="energy")
