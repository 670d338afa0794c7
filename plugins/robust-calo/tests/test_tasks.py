"""calo-energy and calo-position: options, data, grid, losses and baselines on a small simulated sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robust_calo.rootio import write_showers
from robust_calo.simulation import CaloParams, simulate, with_params
from robust_calo.task import CaloEnergyTask, CaloPositionTask
from robustcli.errors import InputError

N_EVENTS = 2000

#: candidate ids are hashes of the parameters: a change here means every stored study's ids change
NAMED_IDS = {
    "model1": "c1445d7a313", "model2": "c578a836c62", "model3": "c441aa728db", "model4": "c4b752eadb2",
    "nas1": "c6b2157886a", "nas2": "c54e3db3c56",
}  # fmt: skip


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUST_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    arrays = simulate("A", N_EVENTS, 7)
    path = tmp_path_factory.mktemp("calo") / "a.root"
    write_showers(path, arrays)
    return path, arrays


@pytest.fixture(scope="module")
def noisy_sample(tmp_path_factory):
    """The same showers with LHCb's electronic noise (``-o noise=lhcb``)."""
    arrays = simulate("A", N_EVENTS, 7, params=with_params(noise_gev=None))
    path = tmp_path_factory.mktemp("calo") / "a-lhcb.root"
    write_showers(path, arrays)
    return path, arrays


# -- grid -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [CaloEnergyTask, CaloPositionTask])
def test_grid_has_the_papers_6912_candidates_with_stable_ids(cls):
    space = cls().search_space()
    assert len(space) == 6912
    assert len({c.id for c in space}) == 6912
    again = cls().search_space()
    assert [c.id for c in space] == [c.id for c in again]
    assert len(cls(grid="text").search_space()) == 8640
    ids = {c.id for c in space}
    for name, cand in space.named.items():
        assert cand.id == NAMED_IDS[name]
        assert (cand.id in ids) == name.startswith("model")  # Models 1-4 lie on the grid; NAS 1-2 in the NAS space
        assert space.get(name).params == cand.params


def test_named_models_carry_the_tables_hyperparameters():
    e = CaloEnergyTask().search_space().named
    p = CaloPositionTask().search_space().named
    assert set(e) == {"model1", "model2", "nas1", "nas2"} and set(p) == {"model3", "model4"}
    m1, m2, m3, m4 = e["model1"].params, e["model2"].params, p["model3"].params, p["model4"].params
    assert (m1["optimizer"], m1["lr"], m1["batch_size"], m1["weight_decay"]) == ("nadam", 1e-4, 64, 1e-2)
    assert (m2["optimizer"], m2["lr"], m2["batch_size"], m2["weight_decay"]) == ("adamw", 1e-3, 32, 1e-1)
    for m in (m3, m4):
        assert (m["optimizer"], m["lr"], m["batch_size"], m["weight_decay"], m["activation"]) == (
            "adamw", 1e-4, 32, 1e-1, "prelu",
        )  # fmt: skip
    assert (m1["features"], m2["features"], m3["features"], m4["features"]) == ("none", "esum", "none", "barycenter")
    n1, n2 = e["nas1"].params, e["nas2"].params  # Table 3
    assert (n1["optimizer"], n1["lr"], n1["batch_size"], n1["weight_decay"]) == ("adamw", 1e-3, 32, 1e-3)
    assert (n2["lr"], n2["weight_decay"], n2["hidden"], n2["features_at"]) == (1e-2, 1e-2, (128, 64, 9), 2)


@pytest.mark.parametrize("cls", [CaloEnergyTask, CaloPositionTask])
def test_nas_space_is_the_papers_and_holds_model2_and_the_nas_models(cls):
    optuna = pytest.importorskip("optuna")
    from robust_calo.grid import nas_space_size
    from robustcli.task import Candidate

    assert nas_space_size() == 2 * 9477  # the paper's count, times the second pooling (3x3 or 1x1)
    task = cls()
    model2 = {"conv1_filters": 32, "conv2_filters": 64, "pool": 3, "dense_layers": 1, "optimizer": "adamw",
              "lr": 1e-3, "batch_size": 32, "weight_decay": 1e-1}  # fmt: skip
    nas2 = {"conv1_filters": 32, "conv2_filters": 16, "pool": 1, "dense_layers": 3, "units_1": 128, "units_2": 64,
            "optimizer": "adamw", "lr": 1e-2, "batch_size": 32, "weight_decay": 1e-2}  # fmt: skip
    found = [Candidate.from_params(task.nas_space(optuna.trial.FixedTrial(a))) for a in (model2, nas2)]
    if cls is CaloEnergyTask:
        assert [c.id for c in found] == [NAMED_IDS["model2"], NAMED_IDS["nas2"]]
    for cand in found:
        task.build_model(cand)


def test_describe_gives_the_grid_without_loading_data(tmp_path):
    task = CaloEnergyTask()
    d = task.describe()
    assert d["grid"].endswith("= 6912")
    assert "made on first use" in d["data"]
    assert not (tmp_path / "cache").exists()


# -- losses -----------------------------------------------------------------------------------
def test_energy_loss_is_relative_rmse():
    task = CaloEnergyTask()
    pred = torch.tensor([[11.0], [45.0]])
    y = torch.tensor([[10.0], [50.0]])
    assert float(task.test_loss(pred, y)) == pytest.approx(0.1)
    assert float(task.objective(pred, y)) == pytest.approx(0.1)


def test_position_loss_is_rmse_of_x():
    task = CaloPositionTask()
    assert float(task.test_loss(torch.tensor([[1.0], [3.0]]), torch.zeros(2, 1))) == pytest.approx(np.sqrt(5))
    xy = CaloPositionTask(predict="xy")
    pred, y = torch.tensor([[1.0, 10.0], [-1.0, 10.0]]), torch.zeros(2, 2)
    assert float(xy.test_loss(pred, y)) == pytest.approx(1.0)  # x only, the paper's metric
    assert float(xy.objective(pred, y)) == pytest.approx(np.sqrt(50.5))  # both coordinates


# -- options ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "options", "match"),
    [
        (CaloEnergyTask, {"colour": 1}, "unknown option 'colour'.*valid: .*dataset"),
        (CaloEnergyTask, {"predict": "xy"}, "unknown option 'predict'"),
        (CaloEnergyTask, {"dataset": "C"}, "dataset='C'.*A, B"),
        (CaloEnergyTask, {"events": -5}, "events=-5"),
        (CaloEnergyTask, {"events": True}, "events=True"),
        (CaloEnergyTask, {"split_seed": "x"}, "split_seed"),
        (CaloEnergyTask, {"branches": ["E"]}, "branches"),
        (CaloEnergyTask, {"grid": "huge"}, "grid='huge'.*paper, text"),
        (CaloEnergyTask, {"input": "log"}, "input='log'"),
        (CaloEnergyTask, {"cell_size": 0}, "cell_size"),
        (CaloEnergyTask, {"units": "adc"}, "units='adc'.*visible"),
        (CaloEnergyTask, {"noise": -1}, "noise=-1"),
        (CaloEnergyTask, {"noise": 0, "path": "x.root"}, "noise applies to the simulated data"),
        (CaloPositionTask, {"predict": "z"}, "predict='z'.*x, xy"),
    ],
)
def test_bad_options_are_refused_with_one_line(cls, options, match):
    with pytest.raises(InputError, match=match) as err:
        cls(**options)
    assert "\n" not in str(err.value)


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        CaloEnergyTask(path=str(tmp_path / "nope.root")).load_data()


# -- data -------------------------------------------------------------------------------------
def test_load_data_splits_half_and_half_once(sample):
    path, arrays = sample
    task = CaloEnergyTask(path=str(path))
    data = task.load_data()
    assert task.load_data() is data  # cached on the instance
    assert data.pool_x.shape == (N_EVENTS // 2, 1, 15, 15) and data.test_x.shape == (N_EVENTS // 2, 1, 15, 15)
    assert data.pool_y.shape == (N_EVENTS // 2, 1) and data.pool_x.dtype == torch.float32
    pool_e, test_e = set(data.pool_y[:, 0].tolist()), set(data.test_y[:, 0].tolist())
    assert pool_e.isdisjoint(test_e)
    assert pool_e | test_e == set(arrays["energy"].astype(np.float32).tolist())
    same = CaloEnergyTask(path=str(path)).load_data()
    assert torch.equal(same.pool_y, data.pool_y)
    other = CaloEnergyTask(path=str(path), split_seed=1).load_data()
    assert not torch.equal(other.pool_y, data.pool_y)
    assert data.meta["pool_size"] == N_EVENTS // 2 and data.meta["events"] == N_EVENTS


def test_position_targets_are_in_cm(sample):
    path, arrays = sample
    data = CaloPositionTask(path=str(path), predict="xy").load_data()
    assert data.pool_y.shape == (N_EVENTS // 2, 2)
    assert data.pool_y.abs().max() <= 2.02 + 1e-4  # inside the central 4.04 cm cell
    both = torch.cat([data.pool_y, data.test_y])
    ref = torch.from_numpy(np.stack([arrays["x"], arrays["y"]], axis=1) / 10.0)
    assert torch.allclose(both.sort(dim=0).values, ref.float().sort(dim=0).values, atol=1e-6)


def test_default_data_is_simulated_into_the_cache(tmp_path):
    task = CaloEnergyTask(dataset="b", events=64, sim_seed=3)
    data = task.load_data()
    assert data.pool_size + data.test_size == 64
    assert any((tmp_path / "cache").rglob("*.root"))
    assert task.describe()["data"]["dataset"] == "B"


def test_named_models_run_on_task_data(sample):
    path, _ = sample
    for task in (CaloEnergyTask(path=str(path)), CaloPositionTask(path=str(path), predict="xy")):
        data = task.load_data()
        for cand in task.search_space().named.values():
            model = task.build_model(cand)
            task.init_weights(model)
            pred = model(data.test_x[:64])
            assert pred.shape == data.test_y[:64].shape
            loss = task.objective(pred, data.test_y[:64])
            loss.backward()
            assert torch.isfinite(loss)


# -- baselines --------------------------------------------------------------------------------
def _expected_energy_sum_resolution(x: torch.Tensor, energy: torch.Tensor) -> float:
    """The simulator's resolution for the all-cell sum: its stochastic and constant terms, plus the
    noise of 225 cells, measured in the corner cells, which showers hardly reach."""
    p = CaloParams()
    e = energy[:, 0].double().numpy()
    corners = x[:, 0].double().numpy()[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    noise = float(corners.std()) / p.visible_fraction  # cells in visible GeV (the default): in E, calibrated
    var = p.stochastic**2 / e + (15 * noise / e) ** 2 + p.constant_term**2
    return float(np.sqrt(np.mean(var)))


@pytest.mark.parametrize("noisy", [False, True], ids=["noiseless", "lhcb-noise"])
def test_energy_baselines(noisy, request):
    path, _ = request.getfixturevalue("noisy_sample" if noisy else "sample")
    task = CaloEnergyTask(path=str(path))
    data = task.load_data()
    base = task.baselines()
    assert set(base) == {"energy-sum", "energy-sum-3x3", "xgboost"}
    assert base["xgboost"].n_jobs == 2
    base["xgboost"].n_jobs = 1  # same predictions; immune to a busy test machine
    losses = {}
    for name, b in base.items():
        pred = b.fit_predict(data.pool_x, data.pool_y, data.test_x, seed=5)
        assert pred.shape == data.test_y.shape and pred.dtype == torch.float32
        losses[name] = float(task.test_loss(pred, data.test_y))
    expected = _expected_energy_sum_resolution(data.test_x, data.test_y)
    assert losses["energy-sum"] == pytest.approx(expected, rel=0.25)
    # visible deposits (the default, the paper's scale): k = 1 / (visible fraction x containment) ~ 6.4
    assert base["energy-sum"].scale == pytest.approx(1 / (0.99 * CaloParams().visible_fraction), rel=0.05)
    if noisy:
        assert losses["energy-sum-3x3"] < 0.6 * losses["energy-sum"]  # noise of 9 cells, not 225
        assert losses["xgboost"] < losses["energy-sum"]
    else:  # the paper's cells: no noise for a small window to avoid, both sums resolve alike
        assert losses["energy-sum-3x3"] == pytest.approx(losses["energy-sum"], rel=0.1)
    again = base["xgboost"].fit_predict(data.pool_x, data.pool_y, data.test_x, seed=5)
    first = base["xgboost"].fit_predict(data.pool_x, data.pool_y, data.test_x, seed=5)
    assert torch.equal(again, first)  # deterministic for a seed


def test_position_baselines(sample):
    path, _ = sample
    task = CaloPositionTask(path=str(path), predict="xy")
    data = task.load_data()
    spread = float(data.test_y[:, 0].std())  # predicting the centre: ~4.04/sqrt(12) = 1.17 cm
    for name, b in task.baselines().items():
        b.n_jobs = 1
        pred = b.fit_predict(data.pool_x, data.pool_y, data.test_x, seed=2)
        assert pred.shape == data.test_y.shape
        loss = float(task.test_loss(pred, data.test_y))
        assert loss < spread, name
        if name != "barycenter":  # the all-cell barycentre suffers from the noise of 225 cells
            assert loss < 0.3, name
    fit = task.baselines()["barycenter-3x3"]
    fit.fit_predict(data.pool_x, data.pool_y, data.test_x, seed=0)
    assert 0.08 < fit.fits["x"].b / 4.04 < 0.2  # LHCb: 0.129 (3x3), 0.144 (inner)


def test_the_cell_unit_is_part_of_the_fingerprint(tmp_path):
    """Instances logged on the calibrated data of before (no units option) never count as today's."""
    from robustcli.config import load_settings
    from robustcli.session import StudySession

    uri = f"sqlite:///{tmp_path}/mlflow.db"

    def session(**options):
        return StudySession(load_settings(None, task="calo-energy", task_options=options or None), uri)

    default, visible, calibrated = session(), session(units="visible"), session(units="calibrated")
    assert default.fingerprint == visible.fingerprint != calibrated.fingerprint
    assert default.settings.task_options == {"units": "visible", "noise": 0}
    # the noise default changed too (LHCb's before, none now): instances of before are not today's
    noisy = session(noise="lhcb")
    assert default.fingerprint == session(noise=0).fingerprint != noisy.fingerprint
    assert noisy.settings.task_options == {"units": "visible", "noise": "lhcb"}
    before = load_settings(None, task="calo-energy").fingerprint()  # what earlier versions logged
    assert before not in (default.fingerprint, calibrated.fingerprint)
    assert session(path=str(tmp_path / "x.root")).settings.task_options == {"path": str(tmp_path / "x.root")}
