"""Non-deep references (paper section 3.1 and footnote 8), fitted on an instance's training sample.

* :class:`ScaledEnergySum` (energy): ``E = k * S`` with ``S`` the sum of all cells (the paper's) or of
  the 3x3 cells around the hottest one, and ``k`` the closed-form minimiser of the task's own loss
  on the training sample, ``k = sum(S/E) / sum((S/E)^2)``.
* :class:`SCurveBarycenter` (position): the energy-weighted barycentre of all cells (the paper's)
  or of the 3x3 window around the hottest cell, corrected with LHCb's asinh S-curve around the
  hottest cell's centre, followed by a least-squares line; ``b`` and the line are fitted on the
  training sample (LHCb's inner-cell b = 0.144 d is the fallback for a sample too small to fit).
* :class:`XGBoostEnergy`, :class:`XGBoostPosition`: gradient boosting on the paper's features
  (3x3 and 5x5 sums around the hottest cell, the total and the hottest cell, and their degree-2
  polynomial combinations; position adds the barycentres and the hottest cell's centre) with the
  paper's hyperparameters (learning_rate 0.1, n_estimators 75, max_depth 3, subsample 0.8,
  alpha 0.8, colsample_bytree 0.8), ``n_jobs=2`` and ``random_state`` from the seed, hence
  deterministic. The energy model regresses ``ln E`` (its squared error is the task's relative
  error to first order); the position model regresses x (and y) in cm.

Why two windows: on the paper's noiseless cells (the default) the two resolve alike, but with
LHCb's electronic noise (``-o noise=lhcb``: 63 MeV per cell calibrated, 10 MeV visible) 225 cells
of it give the all-cell sum a ~0.95 GeV spread, which dominates RMSE(E)/E below ~10 GeV, and can
bring the all-cell barycentre's denominator near zero. The 3x3 versions are what LHCb
reconstruction uses. Both are offered; ``robust select --rule paper`` takes the best logged.

All take and return torch tensors (``x`` ``[n, 1, 15, 15]`` in GeV, ``y`` ``[n, k]``); the work is numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from robust_calo.features import (
    B_OVER_D,
    SCurveFit,
    barycenter,
    energy_sum,
    fit_s_curve,
    local_barycenter,
    seed_centre,
    window_sum,
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


def _check_window(window: int | None) -> int | None:
    if window is not None and (window < 1 or window % 2 == 0):
        raise ValueError(f"window must be None (all cells) or an odd size, got {window}")
    return window


class ScaledEnergySum(Baseline):
    name: ClassVar[str] = "energy-sum"
    description: ClassVar[str] = "E = k x (sum of all cells), k fitted on the training sample to minimise RMSE(E)/E"

    def __init__(self, window: int | None = None) -> None:
        self.window = _check_window(window)
        self.scale: float | None = None
        if window is not None:
            self.description = (
                f"E = k x (sum of the {window}x{window} cells around the hottest), k fitted on the training sample"
            )

    def _sum(self, x: np.ndarray) -> np.ndarray:
        return energy_sum(x) if self.window is None else window_sum(x, self.window)

    def fit_predict(self, train_x, train_y, test_x, seed: int):
        ratio = self._sum(_np(train_x)) / _np(train_y)[:, 0]
        denom = float(np.sum(ratio**2))
        self.scale = float(np.sum(ratio) / denom) if denom > 0 else 1.0
        return _tensor(self.scale * self._sum(_np(test_x))[:, None], test_x)


class SCurveBarycenter(Baseline):
    name: ClassVar[str] = "barycenter"
    description: ClassVar[str] = (
        "barycentre of all cells, asinh S-curve correction and a line, fitted on the training sample"
    )

    def __init__(
        self, pitch: float = 4.04, coords: Sequence[str] = ("x",), window: int | None = None, fit: bool = True
    ) -> None:
        self.pitch = float(pitch)
        self.coords = tuple(coords)
        self.window = _check_window(window)
        self.fit = fit
        self.fits: dict[str, SCurveFit] = {}
        if window is not None:
            self.description = (
                f"barycentre of the {window}x{window} cells around the hottest, asinh S-curve correction "
                "and a line, fitted on the training sample"
            )

    def _parts(self, x: np.ndarray, coord: str) -> tuple[np.ndarray, np.ndarray]:
        if self.window is None:
            bx, by = barycenter(x, self.pitch)
        else:
            bx, by = local_barycenter(x, self.window, self.pitch)
        sx, sy = seed_centre(x, self.pitch)
        return (bx, sx) if coord == "x" else (by, sy)

    def fit_predict(self, train_x, train_y, test_x, seed: int):
        tx, ty, vx = _np(train_x), _np(train_y), _np(test_x)
        preds = []
        for j, coord in enumerate(self.coords):
            bar, seed_pos = self._parts(tx, coord)
            if self.fit and len(bar) >= 10:
                fitted = fit_s_curve(bar, seed_pos, ty[:, j], self.pitch)
            else:
                fitted = SCurveFit(b=B_OVER_D["inner"] * self.pitch, pitch=self.pitch)
            self.fits[coord] = fitted
            preds.append(fitted.apply(*self._parts(vx, coord)))
        return _tensor(np.stack(preds, axis=1), test_x)


class _XGBoost(Baseline):
    #: threads per fit. 2 by default; on a machine whose cores are already busy (e.g. training
    #: workers beside it) use 1: OpenMP threads then spin-wait and a fit can take 10-30x longer.
    #: Predictions do not depend on it.
    n_jobs: int = 2

    def _regressor(self, seed: int):
        try:
            from xgboost import XGBRegressor
        except ImportError as exc:  # pragma: no cover - xgboost is a dependency of robust-calo
            from robustcli.errors import InputError

            raise InputError("the xgboost baseline needs the xgboost package: pip install xgboost") from exc
        return XGBRegressor(
            **XGB_PARAMS, n_jobs=self.n_jobs, random_state=int(seed) % (2**31 - 1), tree_method="hist"
        )


class XGBoostEnergy(_XGBoost):
    name: ClassVar[str] = "xgboost"
    description: ClassVar[str] = (
        "XGBoost (paper's hyperparameters) on 3x3/5x5 sums around the hottest cell and their polynomial "
        "combinations, regressing ln E"
    )

    def __init__(self, n_jobs: int = 2) -> None:
        self.n_jobs = int(n_jobs)

    def fit_predict(self, train_x, train_y, test_x, seed: int):
        feats, _ = xgb_features(_np(train_x), "energy")
        model = self._regressor(seed)
        model.fit(feats, np.log(_np(train_y)[:, 0]))
        pred = np.exp(model.predict(xgb_features(_np(test_x), "energy")[0]).astype(np.float64))
        return _tensor(pred[:, None], test_x)


class XGBoostPosition(_XGBoost):
    name: ClassVar[str] = "xgboost"
    description: ClassVar[str] = (
        "XGBoost (paper's hyperparameters) on 3x3/5x5 sums, barycentres, the hottest cell and their "
        "polynomial combinations"
    )

    def __init__(self, pitch: float = 4.04, coords: Sequence[str] = ("x",), n_jobs: int = 2) -> None:
        self.pitch = float(pitch)
        self.coords = tuple(coords)
        self.n_jobs = int(n_jobs)

    def fit_predict(self, train_x, train_y, test_x, seed: int):
        feats, _ = xgb_features(_np(train_x), "position", self.pitch)
        vfeats, _ = xgb_features(_np(test_x), "position", self.pitch)
        ty = _np(train_y)
        preds = []
        for j, _coord in enumerate(self.coords):
            model = self._regressor(int(seed) + j)
            model.fit(feats, ty[:, j])
            preds.append(model.predict(vfeats))
        return _tensor(np.stack(preds, axis=1), test_x)
