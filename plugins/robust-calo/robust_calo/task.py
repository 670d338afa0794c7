"""The two calorimeter tasks: photon energy (``calo-energy``) and position (``calo-position``).

Data: single photons in a 15x15 LHCb-like Shashlik ECAL, as a ROOT file (``path``) or, by default,
the package's own fast simulation (``dataset`` A or B, ``events`` showers, ``sim_seed``), made on
first use into the cache. The population is split 0.5/0.5 once with ``split_seed`` into the
training pool and the test set (paper section 2). ``x`` is ``[n, 1, 15, 15]`` (cell energies, GeV;
simulated cells are visible, scintillator energy by default, the paper's raw scale: 0-14 GeV for
dataset A; ``units = "calibrated"`` divides by the visible fraction, ``noise`` sets the per-cell
electronic noise: none by default, as in the paper's GEANT4 cells, ``lhcb`` for LHCb's, or a fixed
sigma in calibrated GeV);
``y`` is ``[n, 1]`` energy in GeV, or ``[n, 1]`` / ``[n, 2]`` impact position in cm.

Losses (paper section 3.2): energy ``RMSE(E)/E = sqrt(mean(((E_pred - E_true)/E_true)^2))``;
position ``RMSE(x)`` in cm.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from robust_calo import grid as _grid
from robustcli.errors import InputError
from robustcli.task import Baseline, Candidate, Loss, SearchSpace, Task, TaskData

__all__ = ["CaloEnergyTask", "CaloPositionTask", "CaloTask"]

#: the inner section's cell size (calo-physics.md): the default for the position units and features
CELL_SIZE_MM = 40.4
DEFAULT_EVENTS = 100_000


#: ``-o noise=lhcb``: LHCb's incoherent electronic noise per cell (PHYSICS.md)
LHCB_NOISE = "lhcb"


def _noise_option(value: Any, bad: Callable[[str, Any, str], InputError]) -> float | int | str:
    """``noise`` as given: ``lhcb``, or a sigma >= 0 per cell in calibrated GeV (0, the default: none)."""
    if value is None:
        return 0
    if isinstance(value, str) and value.strip().lower() == LHCB_NOISE:
        return LHCB_NOISE
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0 or value == float("inf"):
        raise bad("noise", value, "expected 0 (none), the default, as in the paper's cells; lhcb (LHCb's "
                  "electronic noise); or a per-cell sigma in calibrated GeV")  # fmt: skip
    return value


def noise_sigma(noise: float | int | str) -> float | None:
    """The simulator's ``noise_gev`` for a checked ``noise`` option: None for LHCb's, else the sigma."""
    return None if noise == LHCB_NOISE else float(noise)


def _noise_words(noise: float | int | str) -> str:
    if noise == LHCB_NOISE:
        return "LHCb's electronic noise per cell (-o noise=lhcb)"
    if noise == 0:
        return "no electronic noise (the paper's kind of cells; -o noise=lhcb adds LHCb's)"
    return f"electronic noise {noise:g} GeV per cell (calibrated)"


class CaloTask(Task):
    """What the two calorimeter tasks share: options, data loading and splitting, the grid."""

    target: ClassVar[str] = ""
    default_train_size: ClassVar[int] = 2000
    #: the paper scores on a test sample as large as the training sample (section 4.1)
    default_test_size: ClassVar[int | str] = "train"

    #: option -> default; ``None`` means "decided at load time"
    _common_options: ClassVar[dict[str, Any]] = {
        "dataset": "A",
        "path": None,
        "tree": None,
        "branches": None,
        "events": None,
        "sim_seed": 0,
        "split_seed": 0,
        "cell_size": CELL_SIZE_MM,
        "grid": "paper",
        "input": "raw",
        "units": "visible",
        "noise": 0,
    }
    _extra_options: ClassVar[dict[str, Any]] = {}

    def __init__(self, **options: Any) -> None:
        valid = {**self._common_options, **self._extra_options}
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise InputError(
                f"unknown option {unknown[0]!r} for task {self.name!r} (from [task_options]); "
                f"valid: {', '.join(sorted(valid))}"
            )
        for key in ("units", "noise"):
            if key in options and options.get("path") is not None:
                raise InputError(f"task {self.name!r} option {key} applies to the simulated data, not to a file "
                                 f"(path={options['path']!r}): a file's cells are as they were written")  # fmt: skip
        self.options = self._validate({**valid, **options})
        self._data: TaskData | None = None
        self._space: SearchSpace | None = None

    # -- options ----------------------------------------------------------------------------------
    def _bad(self, key: str, value: Any, allowed: str) -> InputError:
        return InputError(f"task {self.name!r} option {key}={value!r} is invalid (from [task_options]); {allowed}")

    def _validate(self, o: dict[str, Any]) -> dict[str, Any]:
        ds = o["dataset"]
        if not isinstance(ds, str) or ds.upper() not in ("A", "B"):
            raise self._bad("dataset", ds, "valid: A, B")
        o["dataset"] = ds.upper()
        if o["path"] is not None:
            if not isinstance(o["path"], str | bytes) and not hasattr(o["path"], "__fspath__"):
                raise self._bad("path", o["path"], "expected the path of a ROOT file")
            o["path"] = str(o["path"])
        if o["tree"] is not None and (not isinstance(o["tree"], str) or not o["tree"]):
            raise self._bad("tree", o["tree"], "expected a tree name")
        if o["branches"] is not None:
            b = o["branches"]
            if not isinstance(b, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in b.items()):
                raise self._bad("branches", b, "expected a table of our name -> branch name, e.g. {energy = \"E\"}")
            o["branches"] = dict(b)
        for key in ("events",):
            v = o[key]
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 4):
                raise self._bad(key, v, "expected an integer >= 4 (half goes to the pool, half to the test set)")
        for key in ("sim_seed", "split_seed"):
            v = o[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise self._bad(key, v, "expected a non-negative integer")
        cs = o["cell_size"]
        if isinstance(cs, bool) or not isinstance(cs, int | float) or not cs > 0:
            raise self._bad("cell_size", cs, "expected a positive cell size in mm")
        o["cell_size"] = float(cs)
        if o["grid"] not in _grid.GRIDS:
            raise self._bad("grid", o["grid"], f"valid: {', '.join(_grid.GRIDS)}")
        if o["input"] not in ("raw", "fraction"):
            raise self._bad("input", o["input"], "valid: raw, fraction")
        if o["units"] not in ("visible", "calibrated"):
            raise self._bad("units", o["units"], "valid: visible (the paper's scale), calibrated")
        o["noise"] = _noise_option(o["noise"], self._bad)
        return o

    @property
    def pitch_cm(self) -> float:
        return self.options["cell_size"] / 10.0

    # -- data -------------------------------------------------------------------------------------
    def _read(self) -> tuple[dict[str, Any], str]:
        from robust_calo import rootio

        o = self.options
        if o["path"] is not None:
            path = o["path"]
        else:
            events = o["events"] if o["events"] is not None else DEFAULT_EVENTS
            path = str(rootio.ensure_default_data(
                o["dataset"], n_events=events, seed=o["sim_seed"], units=o["units"],
                noise_gev=noise_sigma(o["noise"]),
            ))  # fmt: skip
        kwargs: dict[str, Any] = {"branches": o["branches"], "max_events": o["events"]}
        if o["tree"] is not None:
            kwargs["tree"] = o["tree"]
        return rootio.read_showers(path, **kwargs), path

    def _targets(self, showers: Mapping[str, Any]):
        raise NotImplementedError

    def load_data(self) -> TaskData:
        if self._data is not None:
            return self._data
        import numpy as np
        import torch

        showers, path = self._read()
        dep = np.asarray(showers["deposits"], dtype=np.float32)
        n = dep.shape[0]
        if n < 4:
            raise InputError(f"{path}: {n} events; the tasks need at least 4 (half pool, half test set)")
        y = np.asarray(self._targets(showers), dtype=np.float32).reshape(n, -1)
        perm = np.random.default_rng(self.options["split_seed"]).permutation(n)
        pool, test = perm[: n // 2], perm[n // 2 :]
        x = torch.from_numpy(dep).unsqueeze(1)
        yt = torch.from_numpy(y)
        energy = np.asarray(showers["energy"], dtype=np.float64)
        meta = {
            "source": path,
            "dataset": self.options["dataset"] if self.options["path"] is None else "file",
            "events": n,
            "pool_size": int(pool.size),
            "test_size": int(test.size),
            "split_seed": self.options["split_seed"],
            "cell_size_mm": self.options["cell_size"],
            "energy_range_gev": [float(energy.min()), float(energy.max())],
            "cell_unit": self.cell_unit(path),
            "max_cell_gev": float(dep.max()),
            "y_unit": self.loss.unit,
        }
        idx_pool, idx_test = torch.from_numpy(pool), torch.from_numpy(test)
        self._data = TaskData(x[idx_pool], yt[idx_pool], x[idx_test], yt[idx_test], meta=meta)
        return self._data

    def data_options(self) -> dict[str, Any]:
        """The cell unit and the noise of simulated data: their defaults changed (visible cells, the
        paper's scale; then no electronic noise, the paper's kind of cells), so instances logged on
        the data of before never count as instances of today's."""
        if self.options["path"] is not None:
            return {}
        return {"units": self.options["units"], "noise": self.options["noise"]}

    def cell_unit(self, path: str) -> str:
        """What the cells of the data hold, in words."""
        from robust_calo import rootio

        unit = rootio.cell_unit(path, self.options["tree"] or rootio.TREE)
        words = {"visible": "GeV of visible (scintillator) energy, the paper's scale",
                 "calibrated": "GeV calibrated (the 15x15 sum ~ E)"}  # fmt: skip
        return words[unit] if unit else "GeV as the file holds them (unit not recorded)"

    # -- space and models -------------------------------------------------------------------------
    def search_space(self) -> SearchSpace:
        if self._space is None:
            self._space = _grid.search_space(self.target, self.options["grid"], self.options["input"])
        return self._space

    @property
    def outputs(self) -> int:
        return 1

    def build_model(self, candidate: Candidate):
        from robust_calo.models import build_calo_net

        try:
            return build_calo_net(candidate.params, target=self.target, outputs=self.outputs, pitch_cm=self.pitch_cm)
        except (ValueError, TypeError) as exc:
            raise InputError(f"candidate {candidate.label} of task {self.name!r}: {exc}") from exc

    def describe_candidate(self, candidate: Candidate) -> str:
        return _grid.describe(candidate.params)

    def nas_space(self, trial: Any) -> dict[str, Any]:
        """The paper's NAS space (its appendix 7), see :data:`robust_calo.grid.NAS_SPACE`."""
        return _grid.nas_space(trial, self.target, self.options["input"])

    def describe(self) -> dict[str, Any]:
        o = self.options
        summary = _grid.grid_summary(self.target, o["grid"], o["input"])
        out: dict[str, Any] = {
            "options": {k: v for k, v in o.items() if v is not None},
            "grid": summary["size"],
            "grid source": summary["note"],
            "grid dimensions": summary["dimensions"],
            "fixed parameters": summary["fixed"],
            "nas space": f"{_grid.nas_space_size():,} candidates (`robust nas`; the paper's appendix 7: 9,477, "
            f"with the second pooling 3x3 or 1x1)",
            "data": (
                self._data.meta
                if self._data is not None
                else (o["path"] or f"simulated dataset {o['dataset']}, "
                      f"{o['events'] or DEFAULT_EVENTS} events (made on first use), split 0.5/0.5; cells in GeV of "
                      f"{'visible (scintillator) energy, the paper scale' if o['units'] == 'visible' else 'calibrated energy'}, "
                      f"{_noise_words(o['noise'])}")
            ),
        }  # fmt: skip
        return out


class CaloEnergyTask(CaloTask):
    name: ClassVar[str] = "calo-energy"
    description: ClassVar[str] = "Photon energy from a 15x15 ECAL cluster (loss RMSE(E)/E)"
    loss: ClassVar[Loss] = Loss(
        "rmse_rel", "sqrt(mean(((E_pred - E_true) / E_true)^2))", lower_is_better=True, unit="GeV"
    )
    target: ClassVar[str] = "energy"

    def _targets(self, showers):
        import numpy as np

        e = np.asarray(showers["energy"], dtype=np.float64)
        if not np.all(np.isfinite(e)) or np.any(e <= 0):
            raise InputError("energy branch: every true energy must be finite and > 0 (the loss divides by it)")
        return e

    def test_loss(self, pred, y):
        return (((pred - y) / y) ** 2).mean().sqrt()

    def baselines(self) -> Mapping[str, Baseline]:
        from robust_calo.baselines import ScaledEnergySum, XGBoostEnergy

        return {"energy-sum": ScaledEnergySum(), "energy-sum-3x3": ScaledEnergySum(window=3), "xgboost": XGBoostEnergy()}


class CaloPositionTask(CaloTask):
    name: ClassVar[str] = "calo-position"
    description: ClassVar[str] = "Photon impact position from a 15x15 ECAL cluster (loss RMSE(x), cm)"
    loss: ClassVar[Loss] = Loss("rmse_x", "sqrt(mean((x_pred - x_true)^2)), x in cm", lower_is_better=True, unit="cm")
    target: ClassVar[str] = "position"
    _extra_options: ClassVar[dict[str, Any]] = {"predict": "x"}

    def _validate(self, o: dict[str, Any]) -> dict[str, Any]:
        o = super()._validate(o)
        if o["predict"] not in ("x", "xy"):
            raise self._bad("predict", o["predict"], "valid: x, xy")
        return o

    @property
    def coords(self) -> tuple[str, ...]:
        return ("x",) if self.options["predict"] == "x" else ("x", "y")

    @property
    def outputs(self) -> int:
        return len(self.coords)

    def _targets(self, showers):
        import numpy as np

        cols = [np.asarray(showers[c], dtype=np.float64) / 10.0 for c in self.coords]  # mm -> cm
        return np.stack(cols, axis=1)

    def test_loss(self, pred, y):
        """RMSE of x (the first column), the paper's metric whether or not y is also predicted."""
        return ((pred[:, :1] - y[:, :1]) ** 2).mean().sqrt()

    def objective(self, pred, y):
        """RMSE over all predicted coordinates (x alone, or x and y)."""
        return ((pred - y) ** 2).mean().sqrt()

    def baselines(self) -> Mapping[str, Baseline]:
        from robust_calo.baselines import SCurveBarycenter, XGBoostPosition

        return {
            "barycenter": SCurveBarycenter(pitch=self.pitch_cm, coords=self.coords),
            "barycenter-3x3": SCurveBarycenter(pitch=self.pitch_cm, coords=self.coords, window=3),
            "xgboost": XGBoostPosition(pitch=self.pitch_cm, coords=self.coords),
        }
