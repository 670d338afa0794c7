"""Non-deep references (paper section 3.1 and footnote 8), fitted on an instance's training sample.

* :class:`ScaledEnergySum` (energy): ``E = k * sum(cells)``, with ``k`` the closed-form minimiser of
  the task's own loss on the training sample, ``k = sum(S/E) / sum((S/E)^2)``.
* :class:`SCurveBarycenter` (position): the energy-weighted barycentre of all cells, corrected with
  LHCb's asinh S-curve around the hottest cell; the S-curve parameter ``b`` is fitted by least
  squares on the training sample (LHCb's inner-cell value 0.144 d is the starting scan range's
  middle and the fallback for a sample too small to fit).
* :class:`XGBoostEnergy`, :class:`XGBoostPosition`: gradient boosting on the paper's features
  (3x3 and 5x5 sums around the hottest cell and their degree-2 polynomial combinations; position
  adds barycentres and the hottest cell's centre) with the paper's hyperparameters
  (learning_rate 0.1, n_estimators 75, max_depth 3, subsample 0.8, alpha 0.8,
  colsample_bytree 0.8), ``n_jobs=2`` and ``random_state`` from the seed, hence deterministic.
  The regression targets are chosen so that few shallow trees suffice: the energy model fits
  ``E / sum`` with weights ``(sum/E)^2``, which makes its squared error exactly the task's
  ``((E_pred - E)/E)^2``; the position model fits the residual ``x - barycentre``.

All take and return torch tensors (``x`` ``[n, 1, 15, 15]`` in GeV, ``y`` ``[n, k]``); the work is numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from robust_calo.features import (
    B_OVER_D,
    barycenter,
    energy_sum,
    fit_s_curve_b,
    s_curve_correct,
    seed_centre,
    xgb_features,
)
from robustcli.task import Baseline

__all__ = ["XGB_PARAMS", "SCurveBarycenter", "ScaledEnergySum", "XGBoostEnergy", "XGBoostPosition"]

#: the paper's XGBoost hyperparameters (footnote 8)
XGB_PARAMS = {
    "learning_rate": 0.1,
    "n_estimators": 75,
    "max_depth": 3,
    "subsample": 0.8,
    "reg_alpha": 0.8,
    "colsample_bytree": 0.8,
}


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64) if hasattr(t, "detach") else np.asarray(t, dtype=np.float64)


def _tensor(a: np.ndarray, like):
    import torch

    out = torch.as_tensor(np.asarray(a, dtype=np.float32))
    return out.to(like.device) if hasattr(like, "device") else out


def _xgb_seed(seed: int) -> int:
    return int(seed) % (2**31 - 1)


class ScaledEnergySum(Baseline):
    name: ClassVar[str] = "energy-sum"
    description: ClassVar[str] = "E = k x (sum of all cells), k fitted on the training sample to minimise RMSE(E)/E"

    def __init__(self) -> None:
        self.scale: float | None = None

    def fit_predict(self, train_x, train_y, test_x, seed: int):
        s = energy_sum(_np(train_x))
        e = _np(train_y)[:, 0]
        ratio = s / e
        denom = float(np.sum(ratio**2))
        self.scale = float(np.sum(ratio) / denom) if denom > 0 else 1.0
        return _tensor(self.scale * energy_sum(_np(test_x))[:, None], test_x)


class SCurveBarycenter(Baseline):
    name: ClassVar[str] = "barycenter"
    description: ClassVar[str] = (
        "barycentre of all cells with the asinh S-curve correction, b fitted on the training sample"
    )

    def __init__(self, pitch: float = 4.04, coords: Sequence[str] = ("x",), fit: bool = True) -> None:
        self.pitch = float(pitch)
        self.coords = tuple(coords)
        self.fit = fit
        self.b: dict[str, float] = {}

    def _parts(self, x: np.ndarray, coord: str) -> tuple[np.ndarray, np.ndarray]:
        bx, by = barycenter(x, self.pitch)
        sx, sy = seed_centre(x, self.pitch)
        return (bx, sx) if coord == "x" else (by, sy)

    def fit_predict(self, train_x, train_y, test_x, seed: int):
        tx, ty, vx = _np(train_x), _np(train_y), _np(test_x)
        preds = []
        for j, coord in enumerate(self.coords):
            bar, seed_pos = self._parts(tx, coord)
            b = B_OVER_D["inner"] * self.pitch
            if self.fit and len(bar) >= 10:
                b = fit_s_curve_b(bar, seed_pos, ty[:, j], self.pitch)
            self.b[coord] = b
            vbar, vseed = self._parts(vx, coord)
            preds.append(s_curve_correct(vbar, vseed, b, self.pitch))
        return _tensor(np.stack(preds, axis=1), test_x)


class _XGBoost(Baseline):
    target: ClassVar[str] = ""

    def _regressor(self, seed: int):
        try:
            from xgboost import XGBRegressor
        except ImportError as exc:  # pragma: no cover - xgboost is a dependency of robust-calo
            from robustcli.errors import InputError

            raise InputError("the xgboost baseline needs the xgboost package: pip install xgboost") from exc
        return XGBRegressor(**XGB_PARAMS, n_jobs=2, random_state=_xgb_seed(seed), tree_method="hist")


class XGBoostEnergy(_XGBoost):
    name: ClassVar[str] = "xgboost"
    description: ClassVar[str] = (
        "XGBoost on 3x3/5x5 sums around the hottest cell and their polynomial combinations (paper's hyperparameters)"
    )
    target: ClassVar[str] = "energy"

    def fit_predict(self, train_x, train_y, test_x, seed: int):
        tx, e, vx = _np(train_x), _np(train_y)[:, 0], _np(test_x)
        feats, _ = xgb_features(tx, "energy")
        s = energy_sum(tx)
        ok = s > 0
        model = self._regressor(seed)
        model.fit(feats[ok], (e / s)[ok], sample_weight=((s / e) ** 2)[ok])
        vs = energy_sum(vx)
        ratio = model.predict(xgb_features(vx, "energy")[0])
        return _tensor((ratio * vs)[:, None], test_x)


class XGBoostPosition(_XGBoost):
    name: ClassVar[str] = "xgboost"
    description: ClassVar[str] = (
        "XGBoost on 3x3/5x5 sums, barycentres, hottest cell and their polynomial combinations (paper's hyperparameters)"
    )
    target: ClassVar[str] = "position"

    def __init__(self, pitch: float = 4.04, coords: Sequence[str] = ("x",)) -> None:
        self.pitch = float(pitch)
        self.coords = tuple(coords)

    def fit_predict(self, train_x, train_y, test_x, seed: int):
        tx, ty, vx = _np(train_x), _np(train_y), _np(test_x)
        feats, _ = xgb_features(tx, "position", self.pitch)
        vfeats, _ = xgb_features(vx, "position", self.pitch)
        bars = dict(zip(("x", "y"), barycenter(tx, self.pitch), strict=True))
        vbars = dict(zip(("x", "y"), barycenter(vx, self.pitch), strict=True))
        preds = []
        for j, coord in enumerate(self.coords):
            model = self._regressor(seed + j)
            model.fit(feats, ty[:, j] - bars[coord])
            preds.append(vbars[coord] + model.predict(vfeats))
        return _tensor(np.stack(preds, axis=1), test_x)
