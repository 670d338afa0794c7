"""Cluster features: energy sum, barycentre, S-curve correction, sums around the hottest cell.

Everything here is vectorised numpy over a batch of clusters shaped ``[n, H, W]`` (a leading
channel axis ``[n, 1, H, W]`` is accepted and dropped). Conventions:

* ``deposits[n, i, j]`` is the cell in row ``i`` along y and column ``j`` along x (the simulator's
  layout, an image: axis 1 is y, axis 2 is x), both increasing with the index;
* positions are relative to the centre of the central cell, in units of ``pitch`` (pass the cell
  size in mm or cm to get mm or cm; the default 1.0 gives cell units);
* the *seed* is the hottest cell.

The torch counterparts the models compute inside their forward pass live in :mod:`robust_calo.models`
(they must stay differentiable and vmap-friendly); both follow the same conventions and the tests
check that they agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "B_OVER_D",
    "barycenter",
    "cell_centres",
    "energy_sum",
    "SCurveFit",
    "fit_s_curve",
    "hottest_cell",
    "local_barycenter",
    "polynomial_features",
    "s_curve_correct",
    "s_curve_forward",
    "seed_centre",
    "window_sum",
    "xgb_features",
]

#: LHCb's photon S-curve parameter b in units of the cell size d (calo-physics.md section 6)
B_OVER_D = {"inner": 0.144, "middle": 0.129, "outer": 0.102}


def _clusters(deposits) -> np.ndarray:
    arr = np.asarray(deposits, dtype=np.float64)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise ValueError(f"clusters must be shaped [n, H, W] or [n, 1, H, W], got {arr.shape}")
    return arr


def cell_centres(n: int, pitch: float = 1.0) -> np.ndarray:
    """Centres of ``n`` cells along one axis, the middle cell at 0 (``n`` odd)."""
    return (np.arange(n, dtype=np.float64) - (n - 1) / 2.0) * pitch


def energy_sum(deposits) -> np.ndarray:
    """Sum of all cells, ``[n]``."""
    return _clusters(deposits).sum(axis=(1, 2))


def barycenter(deposits, pitch: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Energy-weighted mean cell centre over all cells: ``(x, y)``, each ``[n]``.

    An empty cluster (sum <= 0) gives 0.
    """
    e = _clusters(deposits)
    _, ny, nx = e.shape
    total = e.sum(axis=(1, 2))
    safe = np.where(total > 0, total, 1.0)
    x = (e.sum(axis=1) @ cell_centres(nx, pitch)) / safe
    y = (e.sum(axis=2) @ cell_centres(ny, pitch)) / safe
    return np.where(total > 0, x, 0.0), np.where(total > 0, y, 0.0)


def hottest_cell(deposits) -> tuple[np.ndarray, np.ndarray]:
    """The x (column) and y (row) indices of the hottest cell of each cluster, ``([n], [n])``."""
    e = _clusters(deposits)
    flat = e.reshape(e.shape[0], -1).argmax(axis=1)
    iy, ix = np.divmod(flat, e.shape[2])
    return ix, iy


def _windows(e: np.ndarray, size: int, ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
    """The ``size x size`` cells around column ix, row iy, zero outside the grid: ``[n, size (y), size (x)]``."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"window size must be odd and positive, got {size}")
    half = size // 2
    padded = np.pad(e, ((0, 0), (half, half), (half, half)))
    off = np.arange(size)
    i = iy[:, None, None] + off[None, :, None]  # padded coordinates: iy - half + off + half
    j = ix[:, None, None] + off[None, None, :]
    return padded[np.arange(e.shape[0])[:, None, None], i, j]


def window_sum(deposits, size: int) -> np.ndarray:
    """Sum of the ``size x size`` cells centred on the hottest cell (cells outside the grid count 0)."""
    e = _clusters(deposits)
    ix, iy = hottest_cell(e)
    return _windows(e, size, ix, iy).sum(axis=(1, 2))


def local_barycenter(deposits, size: int = 3, pitch: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Barycentre of the ``size x size`` cells around the hottest cell, ``(x, y)``.

    Bounded: its offset from the hottest cell's centre is clipped to the window's half-width
    (noise can make a few cells negative), and an empty window gives the hottest cell's centre.
    With cell noise this is the barycentre to use: the all-cell one divides by a sum that noise
    can bring near zero for low-energy photons.
    """
    e = _clusters(deposits)
    ix, iy = hottest_cell(e)
    win = _windows(e, size, ix, iy)
    rel = cell_centres(size, 1.0)
    total = win.sum(axis=(1, 2))
    safe = np.where(total > 0, total, 1.0)
    lim = size / 2.0
    dx = np.where(total > 0, np.clip((win.sum(axis=1) @ rel) / safe, -lim, lim), 0.0)
    dy = np.where(total > 0, np.clip((win.sum(axis=2) @ rel) / safe, -lim, lim), 0.0)
    sx, sy = seed_centre(e, pitch)
    return sx + dx * pitch, sy + dy * pitch


def seed_centre(deposits, pitch: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Centre of the hottest cell, ``(x, y)``, in the unit of ``pitch``."""
    e = _clusters(deposits)
    _, ny, nx = e.shape
    ix, iy = hottest_cell(e)
    return (ix - (nx - 1) / 2.0) * pitch, (iy - (ny - 1) / 2.0) * pitch


# -- S-curve -------------------------------------------------------------------------------------
def s_curve_forward(x0, x_seed, b: float, pitch: float):
    """The barycentre an exponential transverse profile of slope ``b`` gives for impact ``x0``:
    ``x_bar = x_seed + (d/2) sinh((x0 - x_seed)/b) / sinh(d/(2b))`` (calo-physics.md section 6)."""
    d = float(pitch)
    return x_seed + 0.5 * d * np.sinh((np.asarray(x0) - x_seed) / b) / np.sinh(d / (2.0 * b))


def s_curve_correct(x_bar, x_seed, b: float, pitch: float):
    """Invert the S-curve (LHCb's asinh form): ``x = x_seed + b asinh((x_bar - x_seed)/(d/2) sinh(d/(2b)))``.

    ``x_bar`` and ``x_seed`` (the hottest cell's centre) in the same unit as ``b`` and ``pitch``.
    """
    d = float(pitch)
    b = float(b)
    u = (np.asarray(x_bar, dtype=np.float64) - x_seed) / (0.5 * d) * np.sinh(d / (2.0 * b))
    return x_seed + b * np.arcsinh(u)


@dataclass(frozen=True)
class SCurveFit:
    """A fitted S-curve correction followed by a linear calibration: ``slope * x_corr + offset``."""

    b: float
    pitch: float
    slope: float = 1.0
    offset: float = 0.0

    def apply(self, x_bar, x_seed):
        return self.slope * s_curve_correct(x_bar, x_seed, self.b, self.pitch) + self.offset


def fit_s_curve(
    x_bar,
    x_seed,
    x_true,
    pitch: float,
    *,
    calibrate: bool = True,
    bounds: tuple[float, float] = (0.02, 1.0),
    iters: int = 60,
) -> SCurveFit:
    """Fit ``b`` (and, with ``calibrate``, a least-squares line on top) to minimise the mean squared
    error against ``x_true``: a coarse scan of ``b/d`` over ``bounds`` (log-spaced), then a
    golden-section refinement around the best point.

    The line matters for inclined showers (dataset B): the barycentre is shifted by the unknown
    angle, and the best linear predictor shrinks it towards the mean; at normal incidence the slope
    stays ~1. ``b`` is returned in the unit of ``pitch``.
    """
    x_bar = np.asarray(x_bar, dtype=np.float64)
    x_seed = np.asarray(x_seed, dtype=np.float64)
    x_true = np.asarray(x_true, dtype=np.float64)
    d = float(pitch)

    def line(ratio: float) -> tuple[float, float, float]:
        xc = s_curve_correct(x_bar, x_seed, ratio * d, d)
        slope, offset = 1.0, 0.0
        if calibrate:
            var = float(np.var(xc))
            if var > 0:
                slope = float(np.mean((xc - xc.mean()) * (x_true - x_true.mean())) / var)
            offset = float(x_true.mean() - slope * xc.mean())
        return float(np.mean((slope * xc + offset - x_true) ** 2)), slope, offset

    def mse(ratio: float) -> float:
        return line(ratio)[0]

    grid = np.geomspace(bounds[0], bounds[1], 40)
    losses = [mse(r) for r in grid]
    i = int(np.argmin(losses))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    g = (np.sqrt(5.0) - 1.0) / 2.0
    a, c = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fc = mse(a), mse(c)
    for _ in range(iters):
        if fa < fc:
            hi, c, fc = c, a, fa
            a = hi - g * (hi - lo)
            fa = mse(a)
        else:
            lo, a, fa = a, c, fc
            c = lo + g * (hi - lo)
            fc = mse(c)
    best = float(min((fa, a), (fc, c), (losses[i], grid[i]))[1])
    _, slope, offset = line(best)
    return SCurveFit(b=best * d, pitch=d, slope=slope, offset=offset)


# -- XGBoost feature matrix ------------------------------------------------------------------------
def polynomial_features(features: np.ndarray, names: Sequence[str], degree: int = 2) -> tuple[np.ndarray, list[str]]:
    """The features plus all their products up to ``degree`` (squares included), like
    scikit-learn's ``PolynomialFeatures(include_bias=False)``."""
    from itertools import combinations_with_replacement

    features = np.asarray(features, dtype=np.float64)
    cols, out_names = [], []
    for k in range(1, degree + 1):
        for combo in combinations_with_replacement(range(features.shape[1]), k):
            cols.append(np.prod(features[:, combo], axis=1))
            out_names.append("*".join(names[j] for j in combo))
    return np.stack(cols, axis=1), out_names


def xgb_features(deposits, target: str = "energy", pitch: float = 1.0, degree: int = 2) -> tuple[np.ndarray, list[str]]:
    """The XGBoost baseline's features (paper footnote 8): sums of the 3x3 and 5x5 cells around the
    hottest cell, the total and the hottest cell, and their polynomial combinations.

    ``target="position"`` adds the position features such a fit needs: the barycentre over all
    cells and over the 3x3 window, and the hottest cell's centre (all in the unit of ``pitch``).
    Returns ``(matrix [n, k], names)``.
    """
    e = _clusters(deposits)
    total = e.sum(axis=(1, 2))
    e_max = e.reshape(e.shape[0], -1).max(axis=1)
    e3, e5 = window_sum(e, 3), window_sum(e, 5)
    base = [total, e_max, e3, e5]
    names = ["e_sum", "e_max", "e_3x3", "e_5x5"]
    if target == "position":
        bx, by = barycenter(e, pitch)
        lx, ly = local_barycenter(e, 3, pitch)
        sx, sy = seed_centre(e, pitch)
        base += [bx, by, lx, ly, sx, sy]
        names += ["bary_x", "bary_y", "bary3_x", "bary3_y", "seed_x", "seed_y"]
    elif target != "energy":
        raise ValueError(f"target must be 'energy' or 'position', got {target!r}")
    return polynomial_features(np.stack(base, axis=1), names, degree)
