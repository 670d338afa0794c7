"""cifar10-resnet on a tiny generated set in the CIFAR-10 python format (200 train, 100 test)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from robust_cifar10.data import ENV_VAR, read_batch, write_batches
from robust_cifar10.model import ResNet18, random_crop_flip
from robust_cifar10.schedule import one_cycle_factor
from robust_cifar10.task import Cifar10ResNetTask
from robustcli.errors import InputError
from robustcli.testing import parametrize_with_checks

N_TRAIN, N_TEST = 200, 100
WHAT = (
    "data_batch_1 ... data_batch_5 and test_batch (the python version of CIFAR-10, cifar-10-python.tar.gz "
    "from https://www.cs.toronto.edu/~kriz/cifar.html, extracted)"
)


def _make(folder):
    rng = np.random.default_rng(0)
    train = (rng.integers(0, 256, (N_TRAIN, 3072), dtype=np.uint8), rng.integers(0, 10, N_TRAIN))
    test = (rng.integers(0, 256, (N_TEST, 3072), dtype=np.uint8), rng.integers(0, 10, N_TEST))
    return write_batches(folder, train, test), train, test


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _make(tmp_path_factory.mktemp("cifar"))


@pytest.fixture(scope="module", autouse=True)
def _env(tiny):
    """ROBUST_CIFAR10_DIR points at the tiny set for the whole module (the kit's task reads it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_VAR, str(tiny[0]))
        yield


def test_reads_the_python_batches(tiny):
    folder, train, test = tiny
    data = Cifar10ResNetTask().load_data()
    assert (data.pool_size, data.test_size) == (N_TRAIN, N_TEST)
    assert data.pool_x.shape == (N_TRAIN, 3, 32, 32) and data.pool_x.dtype == torch.float32
    assert torch.equal(data.pool_y, torch.from_numpy(train[1]))
    # pixel 0 of image 0, red channel, normalised with the fixed CIFAR-10 constants
    assert float(data.test_x[0, 0, 0, 0]) == pytest.approx((test[0][0, 0] / 255 - 0.4914) / 0.2470, rel=1e-5)
    # the folder cifar-10-python.tar.gz extracts to is found inside the given one
    (folder.parent / "outer").mkdir()
    (folder.parent / "outer" / "cifar-10-batches-py").symlink_to(folder)
    assert Cifar10ResNetTask(data_dir=str(folder.parent / "outer")).load_data().pool_size == N_TRAIN


def test_missing_data_says_what_to_put_where_and_which_command_fetches_them(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError) as info:
        Cifar10ResNetTask(data_dir=str(empty)).load_data()
    assert info.value.exit_code == 2
    assert str(info.value) == (
        f"CIFAR-10 data not found in {empty} (from -o data_dir): missing data_batch_1, data_batch_2, data_batch_3, "
        f"data_batch_4, data_batch_5, test_batch; `robust data fetch-cifar10 --dest {empty}` downloads them there, "
        f"or put {WHAT} there"
    )
    # neither the option nor $ROBUST_CIFAR10_DIR: the cache, where `robust data fetch-cifar10` puts them
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setenv("ROBUST_CACHE_DIR", str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "cifar10"
    in_cache = (
        f"CIFAR-10 data not found in {cache} (from the cache; ${ENV_VAR} or -o data_dir=PATH picks another folder): "
        f"the folder does not exist; `robust data fetch-cifar10` downloads them there, or put {WHAT} there"
    )
    with pytest.raises(InputError) as info:
        Cifar10ResNetTask().load_data()
    assert str(info.value) == in_cache

    from robustcli.cli.main import app

    result = CliRunner().invoke(app, ["tasks", "show", "cifar10-resnet", "--json"])
    assert result.exit_code == 0
    shown = json.loads(result.stdout)
    assert shown["data"] == "missing: " + in_cache
    assert shown["learning rate"].startswith("one-cycle, peaking at the candidate's lr")


def test_a_bad_batch_file_is_refused_and_foreign_pickles_do_not_run(tmp_path):
    bad = tmp_path / "data_batch_1"
    bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(InputError, match=r"data_batch_1: b'data' must be uint8 \[N, 3072\], got uint8 \[2, 10\]"):
        read_batch(bad)
    bad.write_bytes(pickle.dumps({b"data": print}))
    with pytest.raises(InputError, match=r"not a CIFAR-10 python batch \(UnpicklingError: builtins.print is not allowed"):
        read_batch(bad)


def test_36_variants_with_stable_ids():
    space = Cifar10ResNetTask().search_space()
    assert len(space) == 36
    ids = [c.id for c in space]
    assert len(set(ids)) == 36 and ids == [c.id for c in Cifar10ResNetTask(width=8).search_space()]
    base = space.get("base")
    assert base.id == "c1e74726998"  # a change here changes every stored study's ids
    assert base.id in ids
    assert {(c.params["batch_size"], c.params["lr"], c.params["weight_decay"]) for c in space} == {
        (b, lr, wd) for b in (128, 256, 512) for lr in (0.05, 0.1, 0.2, 0.4) for wd in (1e-4, 5e-4, 1e-3)
    }


def test_resnet18_shapes_and_size():
    assert sum(p.numel() for p in ResNet18().parameters()) == 11_173_962
    model = ResNet18(width=8).train()
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10)
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 1, 2, 3])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_augmentation_is_a_seeded_crop_and_flip():
    x = torch.randn(16, 3, 32, 32)
    torch.manual_seed(3)
    a = random_crop_flip(x)
    torch.manual_seed(3)
    assert torch.equal(a, random_crop_flip(x))
    # every output is a shifted window of the padded image, possibly mirrored
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(16):
        windows = [padded[i, :, dy : dy + 32, dx : dx + 32] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(a[i], w) or torch.equal(a[i], w.flip(-1)) for w in windows)


def test_one_cycle_matches_torch():
    # torch.optim.lr_scheduler.OneCycleLR(max_lr=1, total_steps=40) at these steps (taken once:
    # building a torch scheduler costs a second of imports)
    torch_lr = {0: 0.04, 5: 0.45168887762882304, 11: 1.0, 20: 0.7660169741935152, 30: 0.2339870258064848, 39: 4e-06}
    for step, lr in torch_lr.items():
        assert one_cycle_factor(step, 40) == pytest.approx(lr, rel=1e-12)
    with pytest.raises(ValueError, match="step 40 is outside 0..39"):
        one_cycle_factor(40, 40)
    task = Cifar10ResNetTask()
    assert task.lr_factor(task.search_space().get("base"), 11, 40) == 1.0


def test_training_follows_the_one_cycle_schedule_at_every_step():
    """The core sets each optimiser step's rate to lr x lr_factor: the rates the optimiser used are
    the one-cycle curve over max_epochs x batches per epoch (2 x 2 here)."""
    from robustcli.config import EarlyStoppingSettings, TrainingSettings
    from robustcli.training.instance import InstanceSpec, train_instance
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    task = Cifar10ResNetTask(width=8)
    base = task.search_space().get("base")  # lr 0.1, batch 128: 2 steps per epoch of 200 images
    used: list[float] = []
    hook = register_optimizer_step_pre_hook(lambda opt, *_: used.append(opt.param_groups[0]["lr"]))
    try:
        settings = TrainingSettings(early_stopping=EarlyStoppingSettings(min_epochs=2, window=2, max_epochs=2))
        result = train_instance(task, base, task.load_data(), InstanceSpec(0, 1, 2, N_TRAIN, test_size=20), settings)
    finally:
        hook.remove()
    assert result.epochs == 2
    assert used == pytest.approx([0.1 * one_cycle_factor(step, 4) for step in range(4)], rel=1e-12)


@parametrize_with_checks([Cifar10ResNetTask(width=8)], sample=1)
def test_conformance(task, check):
    check(task)
