"""The `robust data show` figure: what a physicist looks at first in a shower sample.

One PNG with six panels, after the paper's Figures 1 and 11: an example cluster (15x15, log colour
scale), the energy spectrum, the angle spectra, the values of all cells and of the hottest cell
per event (log y), and the response: the 15x15 energy sum over the true energy versus energy.
Uses matplotlib's object API with the Agg canvas (no global backend switch, no display needed).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping

import numpy as np

__all__ = ["pick_example", "show_figure"]


def pick_example(energy: np.ndarray, target_gev: float = 65.0) -> int:
    """Index of the event whose energy is closest to ``target_gev`` (the paper shows 65 GeV)."""
    return int(np.argmin(np.abs(np.asarray(energy, dtype=np.float64) - target_gev)))


def show_figure(
    arrays: Mapping[str, np.ndarray],
    out: os.PathLike | str,
    *,
    title: str = "",
    event: int | None = None,
    dpi: int = 110,
) -> pathlib.Path:
    """Draw the six-panel overview of a shower sample into ``out`` (PNG) and return its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    dep = np.asarray(arrays["deposits"], dtype=np.float32)
    n = dep.shape[0]
    energy = np.asarray(arrays["energy"], dtype=np.float64)
    flat = dep.reshape(n, -1)
    idx = pick_example(energy) if event is None else int(event)
    if not 0 <= idx < n:
        raise IndexError(f"event {idx} is out of range (0..{n - 1})")

    fig = Figure(figsize=(15, 8.6), layout="constrained")
    FigureCanvasAgg(fig)
    axs = fig.subplots(2, 3)
    if title:
        fig.suptitle(title)

    # (1) example cluster
    ax = axs[0, 0]
    img = dep[idx].astype(np.float64)
    pos = img[img > 0]
    vmin = max(float(pos.min()) if pos.size else 1e-3, 1e-3)
    vmax = max(float(img.max()), vmin * 10)
    half = img.shape[0] / 2
    m = ax.imshow(
        np.where(img > vmin, img, vmin), origin="lower", cmap="viridis",
        norm=LogNorm(vmin=vmin, vmax=vmax), extent=(-half, half, -half, half),
    )
    fig.colorbar(m, ax=ax, label="cell energy [GeV]")
    th = ""
    if "theta_x" in arrays:
        th = f", θx={float(arrays['theta_x'][idx]):+.3f}, θy={float(arrays['theta_y'][idx]):+.3f} rad"
    ax.set_title(f"event {idx}: E={energy[idx]:.1f} GeV{th}", fontsize=9)
    ax.set_xlabel("x [cells]")
    ax.set_ylabel("y [cells]")

    # (2) energy spectrum
    ax = axs[0, 1]
    ax.hist(energy, bins=100, histtype="stepfilled", alpha=0.7)
    ax.set_xlabel("photon energy E [GeV]")
    ax.set_ylabel("events")
    ax.set_title(f"energy spectrum ({n} events)", fontsize=9)

    # (3) angles
    ax = axs[0, 2]
    tx = np.asarray(arrays.get("theta_x", np.zeros(n)), dtype=np.float64)
    ty = np.asarray(arrays.get("theta_y", np.zeros(n)), dtype=np.float64)
    if np.ptp(tx) == 0 and np.ptp(ty) == 0:
        ax.hist(tx, bins=np.linspace(-0.35, 0.35, 71), histtype="step", label="θx = θy")
        ax.set_title(f"angles: all {tx[0]:+.2f} rad (normal incidence)", fontsize=9)
    else:
        lim = max(float(np.abs(tx).max()), float(np.abs(ty).max())) * 1.05
        bins = np.linspace(-lim, lim, 71)
        ax.hist(tx, bins=bins, histtype="step", label="θx")
        ax.hist(ty, bins=bins, histtype="step", label="θy")
        ax.set_title("incidence angles", fontsize=9)
    ax.set_xlabel("angle [rad]")
    ax.set_ylabel("events")
    ax.legend(fontsize=8)

    # (4) all cell values (paper Fig. 11)
    ax = axs[1, 0]
    lo, hi = float(flat.min()), float(flat.max())
    counts, bin_edges = np.histogram(flat, bins=200, range=(lo, hi if hi > lo else lo + 1.0))
    ax.stairs(counts, bin_edges, fill=True, alpha=0.7)
    ax.set_yscale("log")
    ax.set_xlabel("cell energy [GeV]")
    ax.set_ylabel("cells")
    ax.set_title(f"all cells: min {lo:.3g}, max {hi:.3g} GeV", fontsize=9)

    # (5) hottest cell per event
    ax = axs[1, 1]
    mx = flat.max(1)
    ax.hist(mx, bins=150, histtype="stepfilled", alpha=0.7, color="C1")
    ax.set_yscale("log")
    ax.set_xlabel("max cell energy per event [GeV]")
    ax.set_ylabel("events")
    frac = float(np.median(mx / np.maximum(flat.sum(1), 1e-9)))
    ax.set_title(f"hottest cell: median {100 * frac:.0f} % of the cluster sum", fontsize=9)

    # (6) response: sum / E versus E
    ax = axs[1, 2]
    ratio = flat.sum(1, dtype=np.float64) / energy
    lo, hi = np.quantile(ratio, [0.001, 0.999])
    pad = 0.1 * (hi - lo) + 1e-3
    h = ax.hist2d(energy, ratio, bins=(60, 80), range=((energy.min(), energy.max()), (lo - pad, hi + pad)),
                  cmap="Blues", norm=LogNorm())
    fig.colorbar(h[3], ax=ax, label="events")
    ax.set_xlabel("photon energy E [GeV]")
    ax.set_ylabel("sum of 15x15 cells / E")
    ax.set_title(f"response: mean {ratio.mean():.3f}, rms {ratio.std():.3f}", fontsize=9)

    out = pathlib.Path(out)
    fig.savefig(out, dpi=dpi)
    return out
