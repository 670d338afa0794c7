"""Fast parametric simulation of single photons in an LHCb-like Shashlik ECAL (15x15 cells).

The shower model is the Grindhammer-Peters (GFlash) parameterisation for sampling calorimeters,
evaluated analytically instead of with thousands of point-like spots per event:

1. Kinematics. Dataset "A": normal incidence, E ~ U(1, 100) GeV. Dataset "B": photons from a
   target: projected angles theta_x, theta_y ~ U(-0.3, 0.3) rad and a transverse momentum
   p_T ~ Exp(mean 1.5 GeV) truncated so that E = p_T / sin(theta) lies in [1, 100] GeV; at fixed
   p_T a larger angle means a lower energy. The impact point is uniform over the central cell.
2. Longitudinal. The photon converts after t0 ~ Exp(9/7 X0); from there an electron-type gamma
   profile with correlated log-normal (T, alpha) per event (GFlash sampling tuning). The profile
   is cut in depth slices (1 X0 and 2 X0 wide); energy past the stack end is rear leakage.
3. Lateral. In each slice the GFlash core + tail profile (with sampling corrections), placed on the
   shower axis at the slice's energy-weighted mean depth. Each radial component
   2 r R^2 / (r^2 + R^2)^2 is written as a fixed mixture of 4 Gaussians (a Student-t with 2 degrees
   of freedom is a scale mixture of Gaussians; the 4-term fit has a radial CDF within 0.2 %), so
   the integral over a square cell is a product of two error-function differences. Inclined
   showers are projected onto the cell plane (cells are towers along z, non-projective).
4. Fluctuations. The finite number of GFlash spots, N = 10.3 / c_s E^0.959, and the sampling
   fluctuations (variance c_s^2 E, i.e. each spot's visible energy Gamma distributed) are
   reproduced to second order by one Dirichlet draw over the 225 cells plus an "outside" bin with
   concentration kappa, times an independent total Gamma(E_dep / c_s^2, c_s^2): the means,
   variances and covariances of all cells equal those of the spot-by-spot model (derivation in
   PHYSICS.md). Then a per-cell gain spread (1 %), a per-event constant term and Gaussian
   electronic noise per cell.
5. Units. Cells come out as visible (scintillator) energy in GeV by default, the paper's scale
   (``CaloParams.units``); "calibrated" divides by the visible fraction (the sum is then ~E).

Everything is vectorised over blocks of ``BLOCK`` events; each block has its own random stream
``numpy.random.default_rng([seed, dataset, block, SIM_VERSION])``, so a result depends only on the
seed and on the event index: not on ``chunk``, nor on ``n_events`` (the first k events of a large
sample equal a k-event sample). See PHYSICS.md for parameters, sources and the measured resolution.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

__all__ = [
    "BLOCK",
    "CELL_MM",
    "DATASETS",
    "GRID",
    "SIM_VERSION",
    "CaloParams",
    "cell_edges_mm",
    "simulate",
    "with_params",
]

GRID = 15
CELL_MM = 40.4  # inner-section LHCb cell pitch (121.2 mm module / 3)
DATASETS = ("A", "B")
SIM_VERSION = 1  # bump when the physics changes: it is part of the random streams and cache names
BLOCK = 1024  # events per random stream and per vectorised evaluation

# Gaussian scale-mixture fit of the GFlash radial component 2 r R^2/(r^2+R^2)^2 (R = 1):
# sum_q c_q (1 - exp(-r^2 / (2 a_q^2))) approximates r^2/(r^2+1) within 0.0022 for all r
# (least squares on r in [10^-2.5, 10^2.5]; a Student-t with nu = 2 is a Gaussian scale mixture).
_MIX_A = np.array([0.46246, 0.89359, 1.99652, 6.21656])
_MIX_C = np.array([0.28036, 0.47826, 0.20302, 0.03797])
_MIX_C = _MIX_C / _MIX_C.sum()

# depth slice edges in X0 along the shower axis, measured from the conversion point
_T_EDGES = np.concatenate([np.arange(0.0, 16.0, 1.0), np.arange(16.0, 30.0, 2.0)])

_DATASET_CODE = {"A": 65, "B": 66}


@dataclass(frozen=True)
class CaloParams:
    """Detector and shower-model parameters. Defaults: /work/shared/calo-physics.md, see PHYSICS.md."""

    cell_mm: float = CELL_MM
    x0_mm: float = 16.4  # effective radiation length of Pb 2 mm / scintillator 4 mm
    moliere_mm: float = 35.8  # effective Moliere radius
    critical_gev: float = 0.0097  # effective critical energy
    z_eff: float = 70.0
    sampling_frequency: float = 2.73  # F_s = X0_eff / (d_Pb + d_sc)
    e_over_mip: float = 0.652  # e_hat = 1 / (1 + 0.007 (Z_pas - Z_act))
    depth_x0: float = 24.2  # 66 x (2 mm Pb + 4 mm scintillator)
    conversion_x0: float = 9.0 / 7.0  # photon mean free path before pair conversion
    visible_fraction: float = 0.159  # e/gamma visible (scintillator) fraction, 1/6.3
    stochastic: float = 0.095  # c_s [sqrt(GeV)]: spot count N = 10.3/c_s E^0.959 and sampling Gamma
    cell_gain_spread: float = 0.01  # per-cell relative gain spread (LHCb GainError)
    constant_term: float = 0.0  # extra per-event global relative spread; leakage + gains already give ~1.2 %
    # electronic noise per cell, fixed in E_T (LHCb: 1.3 ADC counts incoherent, 2.44 MeV E_T per
    # count), converted to E with sin(theta) of the photon as seen from the target (dataset B) or of
    # a reference angle (normal incidence, dataset A): sigma_E = counts x gain / sin(theta)
    noise_counts: float = 1.3
    gev_per_count_et: float = 0.00244
    noise_theta_ref: float = 0.05  # rad: middle of LHCb's inner section (r ~ 0.6 m at z ~ 12.5 m)
    noise_theta_min: float = 0.025  # rad: inner edge of the inner section (beam plug)
    # per-cell sigma in calibrated GeV: 0 (default) none, as in the paper's GEANT4 cells; None: LHCb's
    noise_gev: float | None = 0.0
    # "visible" (default, the paper's scale: dataset A's cells 0-14 GeV): the energy seen in the
    # scintillator, deposited x visible_fraction; "calibrated": divided back, so the 15x15 sum ~ E
    units: str = "visible"
    # dataset B kinematics
    theta_max: float = 0.3  # |theta_x|, |theta_y| < theta_max [rad]
    pt_mean_gev: float = 1.5  # mean of the (untruncated) exponential p_T spectrum
    e_min_gev: float = 1.0
    e_max_gev: float = 100.0


def cell_edges_mm(params: CaloParams | None = None) -> np.ndarray:
    """The 16 cell edges [mm] along x (and y); the central cell is centred on 0."""
    d = (params or CaloParams()).cell_mm
    return (np.arange(GRID + 1) - GRID / 2) * d


def simulate(
    dataset: str,
    n_events: int,
    seed: int,
    *,
    progress: Callable[[int], None] | None = None,
    chunk: int = 20000,
    params: CaloParams | None = None,
    workers: int | None = None,
) -> dict[str, np.ndarray]:
    """Simulate ``n_events`` single photons of ``dataset`` ("A" or "B").

    Returns float32 arrays: ``deposits`` [n, 15, 15] cell energies in GeV (visible, scintillator
    energy by default: the sum is ~0.157 E; calibrated, the sum ~E minus leakage, if
    ``params.units == "calibrated"``), ``energy`` [n] GeV,
    ``x``, ``y`` [n] impact point in mm at the ECAL front face relative to the centre of the
    central cell, ``theta_x``, ``theta_y`` [n] rad. ``progress(k)`` is called with the number of
    events finished after each chunk of about ``chunk`` events. Deterministic for a given seed,
    independent of ``chunk`` and ``workers`` (threads; default: the usable CPUs, at most 8).
    """
    ds = str(dataset).upper()
    if ds not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}")
    n_events = int(n_events)
    if n_events < 0:
        raise ValueError(f"n_events must be >= 0, got {n_events}")
    p = params or CaloParams()
    if p.units not in ("calibrated", "visible"):
        raise ValueError(f"units must be 'calibrated' or 'visible', got {p.units!r}")

    n_blocks = -(-n_events // BLOCK)
    per_chunk = max(1, int(chunk) // BLOCK) if chunk else max(n_blocks, 1)
    out = {k: np.empty((n_events, GRID, GRID) if k == "deposits" else n_events, np.float32) for k in _KEYS}
    if n_blocks == 0:
        return out
    if workers is None:
        workers = _default_workers()
    workers = max(1, min(int(workers), n_blocks))

    import torch

    geo = _Geometry(p)
    code = _DATASET_CODE[ds]
    seed32 = int(seed) & 0xFFFFFFFF

    def run(b: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([seed32, code, b, SIM_VERSION])
        return _simulate_block(ds, rng, p, geo)

    # Blocks run in parallel Python threads, each single-threaded inside torch (torch and numpy
    # release the GIL): no intra-op thread barriers, which stall badly on a busy machine.
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for lo_b in range(0, n_blocks, per_chunk):
                blocks = range(lo_b, min(lo_b + per_chunk, n_blocks))
                for b, res in zip(blocks, pool.map(run, blocks)):
                    lo, hi = b * BLOCK, min((b + 1) * BLOCK, n_events)
                    for k in _KEYS:
                        out[k][lo:hi] = res[k][: hi - lo]
                if progress is not None:
                    progress(min(blocks[-1] * BLOCK + BLOCK, n_events))
    finally:
        torch.set_num_threads(prev_threads)
    return out


_KEYS = ("deposits", "energy", "x", "y", "theta_x", "theta_y")


def _default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


class _Geometry:
    """Per-parameter-set constants, built once per simulate() call."""

    def __init__(self, p: CaloParams) -> None:
        import torch

        self.torch = torch
        edges = cell_edges_mm(p) / math.sqrt(2.0)
        self.edge_mat = torch.tensor(np.stack([edges, np.full_like(edges, 1.0 / math.sqrt(2.0))], 1), dtype=torch.float32)
        self.t_edges = torch.tensor(_T_EDGES, dtype=torch.float64)
        self.mix_a = torch.tensor(_MIX_A, dtype=torch.float32)
        self.mix_c = torch.tensor(_MIX_C, dtype=torch.float32)


def _draw_kinematics(ds: str, rng: np.random.Generator, n: int, p: CaloParams):
    half = p.cell_mm / 2
    if ds == "A":
        energy = rng.uniform(p.e_min_gev, p.e_max_gev, n)
        tx = np.zeros(n)
        ty = np.zeros(n)
    else:
        tx = rng.uniform(-p.theta_max, p.theta_max, n)
        ty = rng.uniform(-p.theta_max, p.theta_max, n)
        tan2 = np.tan(tx) ** 2 + np.tan(ty) ** 2
        sin_t = np.maximum(np.sqrt(tan2 / (1.0 + tan2)), 1e-6)
        # p_T ~ Exp(pt_mean) truncated to [E_min sin, E_max sin] by inverting its CDF
        lo = np.exp(-p.e_min_gev * sin_t / p.pt_mean_gev)
        hi = np.exp(-p.e_max_gev * sin_t / p.pt_mean_gev)
        u = rng.uniform(size=n)
        pt = -p.pt_mean_gev * np.log(lo - u * (lo - hi))
        energy = np.clip(pt / sin_t, p.e_min_gev, p.e_max_gev)
    x = rng.uniform(-half, half, n)
    y = rng.uniform(-half, half, n)
    return energy, x, y, tx, ty


def _simulate_block(ds: str, rng: np.random.Generator, p: CaloParams, geo: _Geometry) -> dict[str, np.ndarray]:
    torch = geo.torch
    n = BLOCK
    energy, x_imp, y_imp, thx, thy = _draw_kinematics(ds, rng, n, p)
    t0 = rng.exponential(p.conversion_x0, n)
    z1 = rng.standard_normal(n)
    z2 = rng.standard_normal(n)

    # ---- longitudinal (GFlash sampling-calorimeter tuning, individual showers) ----
    fs, eh, zz = p.sampling_frequency, p.e_over_mip, p.z_eff
    lny = np.log(energy / p.critical_gev)
    mean_ln_t = np.log(np.maximum(lny - 0.812 - 0.55 / fs - 0.69 * (1 - eh), 1e-3))
    mean_ln_a = np.log(np.maximum(0.81 + (0.458 + 2.26 / zz) * lny - 0.476 / fs, 1.0 + 1e-3))
    s_t = np.minimum(1.0 / (-2.5 + 1.25 * lny), 0.5)
    s_a = np.minimum(1.0 / (-0.82 + 0.79 * lny), 0.5)
    rho = 0.784 - 0.023 * lny
    c1, c2 = np.sqrt((1 + rho) / 2), np.sqrt((1 - rho) / 2)
    t_max = np.maximum(np.exp(mean_ln_t + s_t * (c1 * z1 + c2 * z2)), 1.0)
    alpha = np.maximum(np.exp(mean_ln_a + s_a * (c1 * z1 - c2 * z2)), 1.1)
    beta = (alpha - 1.0) / t_max

    tan_x, tan_y = np.tan(thx), np.tan(thy)
    norm = np.sqrt(1.0 + tan_x**2 + tan_y**2)
    ux, uy, uz = tan_x / norm, tan_y / norm, 1.0 / norm
    t_back = np.maximum(p.depth_x0 / uz - t0, 0.0)  # stack end along the axis, from the conversion

    tb = torch.from_numpy(t_back)[:, None]
    te = torch.minimum(geo.t_edges[None, :], tb)  # [n, K+1]
    al = torch.from_numpy(alpha)[:, None]
    be = torch.from_numpy(beta)[:, None]
    cdf0 = torch.special.gammainc(al, be * te)
    cdf1 = torch.special.gammainc(al + 1.0, be * te)
    d0 = cdf0[:, 1:] - cdf0[:, :-1]  # energy fraction per slice
    d1 = cdf1[:, 1:] - cdf1[:, :-1]
    mid = 0.5 * (te[:, 1:] + te[:, :-1])
    t_bar = torch.where(d0 > 1e-12, (al / be) * d1 / d0.clamp_min(1e-300), mid).clamp(te[:, :-1], te[:, 1:])
    e_t = torch.from_numpy(energy)[:, None]
    de = e_t * d0  # [n, K] GeV deposited per slice
    e_dep = (e_t[:, 0] * cdf0[:, -1]).numpy()

    # ---- lateral: core + tail per slice, sampling corrections (radii in R_M) ----
    a_mean = np.exp(mean_ln_a)
    tau = t_bar * torch.from_numpy(beta / alpha * a_mean / (a_mean - 1.0))[:, None]
    lne = torch.from_numpy(np.log(energy))[:, None]
    r_c = (0.0251 + 0.00319 * lne) + (0.1162 - 0.000381 * zz) * tau
    r_c = r_c - 0.0203 * (1 - eh) + 0.0397 / fs * torch.exp(-tau)
    k4 = 0.3585 + 0.0412 * lne
    r_t = (0.659 - 0.00309 * zz) * (torch.exp(-2.59 * (tau - 0.645)) + torch.exp(k4 * (tau - 0.645)))
    r_t = r_t - 0.14 * (1 - eh) - 0.495 / fs * torch.exp(-tau)
    p3 = 1.313 - 0.0686 * lne
    arg = ((0.401 + 0.00187 * zz) - tau) / p3
    pc = (2.632 - 0.00094 * zz) * torch.exp(arg - torch.exp(arg))
    pc = (pc + (1 - eh) * (0.348 - 0.642 / fs * torch.exp(-((tau - 1.0) ** 2)))).clamp(0.0, 1.0)
    r_c = r_c.clamp_min(0.01) * p.moliere_mm
    r_t = r_t.clamp_min(0.05) * p.moliere_mm

    # axis position at the slice's mean depth (projected on the front face: cells are towers)
    s_mm = (torch.from_numpy(t0)[:, None] + t_bar) * p.x0_mm  # path length along the axis
    xc = torch.from_numpy(x_imp)[:, None] + s_mm * torch.from_numpy(ux)[:, None]
    yc = torch.from_numpy(y_imp)[:, None] + s_mm * torch.from_numpy(uy)[:, None]

    f32 = torch.float32
    # Gaussians g = (slice, component, mixture term): [n, K, 2, 4] -> [n, G]
    radius = torch.stack([r_c, r_t], dim=2).to(f32)[..., None] * geo.mix_a
    weight = (de[..., None] * torch.stack([pc, 1.0 - pc], dim=2)).to(f32)[..., None] * geo.mix_c
    ng = radius.shape[1] * radius.shape[2] * radius.shape[3]
    radius, weight = radius.reshape(n, ng), weight.reshape(n, ng)

    def cell_fractions(centre: torch.Tensor, u_axis: np.ndarray) -> torch.Tensor:
        """[n, 15, G]: fraction of each Gaussian in each cell column (or row)."""
        # projected width: a disc perpendicular to the axis seen along z is narrower by sqrt(1 - u^2)
        inv = 1.0 / (radius * torch.from_numpy(np.sqrt(1.0 - u_axis**2)).to(f32)[:, None])
        cen = centre.to(f32)[:, :, None].expand(-1, -1, radius.shape[1] // centre.shape[1]).reshape(n, ng)
        coef = torch.stack([inv, -cen * inv], dim=1)  # [n, 2, G]
        c = torch.erf(torch.bmm(geo.edge_mat.expand(n, -1, -1), coef))  # [n, 16, G]: erf((edge - c)/(sqrt2 sigma))
        return c[:, 1:, :] - c[:, :-1, :]  # 2 x fraction

    fx = cell_fractions(xc, ux)
    fy = cell_fractions(yc, uy) * (0.25 * weight)[:, None, :]
    # deposits[k, i, j]: row i along y, column j along x
    mean_cells = torch.bmm(fy, fx.transpose(1, 2)).numpy().astype(np.float64)  # [n, 15, 15] GeV

    # ---- fluctuations: spots + sampling as Dirichlet x Gamma(total) ----
    flat = mean_cells.reshape(n, GRID * GRID).clip(min=0.0)
    outside = np.maximum(e_dep - flat.sum(1), 0.0)
    total = flat.sum(1) + outside
    n_spots = 10.3 / p.stochastic * energy**0.959
    c2 = p.stochastic**2
    kappa = (total**2 + c2 * total) / (total**2 / (n_spots + 1.0) + c2 * total) - 1.0
    shapes = np.concatenate([flat, outside[:, None]], axis=1) * (kappa / np.maximum(total, 1e-12))[:, None]
    g = rng.standard_gamma(shapes)
    gsum = g.sum(1)
    g_tot = rng.standard_gamma(total / c2) * c2  # visible (calibrated) total with sampling fluctuation
    cells = g[:, : GRID * GRID] * (g_tot / np.where(gsum > 0, gsum, 1.0))[:, None]

    gains = 1.0 + p.cell_gain_spread * rng.standard_normal((n, GRID * GRID), dtype=np.float32)
    glob = 1.0 + p.constant_term * rng.standard_normal(n)
    cells = cells.astype(np.float32) * gains * glob.astype(np.float32)[:, None]
    sigma_noise = _noise_sigma(p, ds, tan_x, tan_y)
    if np.any(sigma_noise > 0):
        cells += sigma_noise.astype(np.float32)[:, None] * rng.standard_normal((n, GRID * GRID), dtype=np.float32)
    if p.units == "visible":
        cells *= np.float32(p.visible_fraction)
    return {
        "deposits": cells.reshape(n, GRID, GRID),
        "energy": energy.astype(np.float32),
        "x": x_imp.astype(np.float32),
        "y": y_imp.astype(np.float32),
        "theta_x": thx.astype(np.float32),
        "theta_y": thy.astype(np.float32),
    }


def _noise_sigma(p: CaloParams, ds: str, tan_x: np.ndarray, tan_y: np.ndarray) -> np.ndarray:
    """Per-event noise sigma per cell in calibrated GeV."""
    if p.noise_gev is not None:
        return np.full(tan_x.shape, float(p.noise_gev))
    if ds == "A":
        theta = np.full(tan_x.shape, p.noise_theta_ref)
    else:
        theta = np.arctan(np.sqrt(tan_x**2 + tan_y**2))
    theta = np.maximum(theta, p.noise_theta_min)
    return p.noise_counts * p.gev_per_count_et / np.sin(theta)


def with_params(**changes) -> CaloParams:
    """``CaloParams`` with some fields changed, e.g. ``with_params(noise_gev=None)`` (LHCb's noise)."""
    return replace(CaloParams(), **changes)
