"""`robust data`: make and inspect photon-shower samples (ROOT files).

Imported when `robust --help` runs, so it imports only typer and robustcli's light helpers at
module level; numpy, torch, uproot and matplotlib are imported inside the commands.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from robustcli.cli import handle_errors
from robustcli.errors import InputError

app = typer.Typer(
    name="data",
    help="Make and inspect calorimeter shower samples (ROOT files).\n\n"
    "Example: robust data make-calo --dataset A --events 500000 --out calo_A.root",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_DATASETS = ("A", "B")


def _check_dataset(value: str) -> str:
    ds = value.strip().upper()
    if ds not in _DATASETS:
        from robustcli.errors import unknown_message

        raise InputError(unknown_message("dataset", value, _DATASETS, "from --dataset"))
    return ds


def _noise_gev(value: str) -> float | None:
    """``--noise`` as the simulator takes it, checked as the task's ``noise`` option is: a sigma per
    cell in calibrated GeV, None for LHCb's."""
    from robust_calo.task import _noise_option, noise_sigma

    try:
        given: float | str = float(value)
    except ValueError:
        given = value
    refused = lambda _key, _value, why: InputError(f"--noise {value!r} is not valid; {why}")  # noqa: E731
    return noise_sigma(_noise_option(given, refused))


@app.command("make-calo", short_help="Simulate photon showers in an LHCb-like ECAL into a ROOT file.")
@handle_errors
def make_calo(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="A: normal incidence, E uniform 1-100 GeV; B: angles |θ|<0.3 rad, falling E spectrum.")] = "A",
    events: Annotated[int, typer.Option("--events", "-n", help="Number of photons to simulate.")] = 500_000,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output ROOT file. Default: calo_<dataset>_<events>_seed<seed>.root", show_default=False)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same events.")] = 0,
    units: Annotated[str, typer.Option("--units", help="Cell values: visible (scintillator energy, the paper's scale: 0-14 GeV for A) or calibrated (the 15x15 sum ~ E).")] = "visible",
    noise: Annotated[str, typer.Option("--noise", help="Electronic noise per cell: 0 (none, the paper's GEANT4-like cells), lhcb (LHCb's: 63 MeV at dataset A's reference angle) or a sigma in calibrated GeV.")] = "0",
) -> None:
    """Simulate single photons in a 15x15 cluster of an LHCb-like Shashlik ECAL and write a ROOT file.

    Fast GFlash-type parameterisation (see PHYSICS.md of robust-calo); one TTree "showers" with
    the branches deposits[15][15] (GeV: visible, scintillator energy by default, the paper's raw
    scale; the unit is recorded in the tree's title), energy (GeV), x, y (mm), theta_x, theta_y (rad).

    Cells carry no electronic noise by default, as the paper's GEANT4 cells; --noise lhcb adds
    LHCb's (1.3 ADC counts of 2.44 MeV E_T per cell).

    Example: robust data make-calo --dataset B --events 500000 --out calo_B.root --seed 1
    """
    ds = _check_dataset(dataset)
    if events <= 0:
        raise InputError(f"--events must be a positive number of photons, got {events}")
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    if units not in ("visible", "calibrated"):
        raise InputError(f"--units {units!r} is not valid; valid: visible, calibrated")
    noise_gev = _noise_gev(noise)
    path = out if out is not None else Path(f"calo_{ds}_{events}_seed{seed}.root")
    if path.exists() and path.is_dir():
        raise InputError(f"--out {path} is a directory; give a file name such as {path / 'calo.root'}")
    if not path.parent.exists():
        raise InputError(f"--out {path}: folder {path.parent} does not exist")

    import os
    import tempfile

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from robust_calo.rootio import write_showers
    from robust_calo.simulation import simulate, with_params

    console = Console(stderr=True)
    t0 = time.perf_counter()
    with Progress(
        TextColumn(f"simulating dataset {ds}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
    ) as bar:
        task = bar.add_task("sim", total=events)
        arrays = simulate(ds, events, seed, progress=lambda k: bar.update(task, completed=k),
                          params=with_params(units=units, noise_gev=noise_gev))
    t_sim = time.perf_counter() - t0
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with console.status(f"writing {path}"):
            write_showers(tmp, arrays, units=units)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    size = path.stat().st_size / 1e6
    console.print(
        f"{events} photons of dataset {ds} (seed {seed}) in {t_sim:.1f} s "
        f"({events / max(t_sim, 1e-9):,.0f} events/s); {size:.1f} MB", highlight=False,
    )
    print(path)


@app.command("show", short_help="Draw an overview of a shower sample into one PNG.")
@handle_errors
def show(
    file: Annotated[Path, typer.Argument(help="A shower ROOT file (from make-calo, or your own with --tree).", show_default=False)],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="PNG to write. Default: FILE with the suffix .png.", show_default=False)] = None,
    tree: Annotated[str, typer.Option("--tree", help="Name of the TTree.")] = "showers",
    event: Annotated[int | None, typer.Option("--event", help="Event to draw as the example cluster. Default: the one closest to 65 GeV.", show_default=False)] = None,
    max_events: Annotated[int, typer.Option("--max-events", help="Read at most this many events for the histograms.")] = 200_000,
) -> None:
    """Draw an overview of a shower sample into one PNG and print its path.

    Panels, after the paper's Figures 1 and 11: an example cluster (15x15, log colour), the
    energy spectrum, the angle spectra, all cell values and the hottest cell per event (log y),
    and the 15x15 energy sum over the true energy versus energy.

    Example: robust data show calo_A.root --out calo_A.png
    """
    if max_events <= 0:
        raise InputError(f"--max-events must be positive, got {max_events}")
    target = out if out is not None else file.with_suffix(".png")
    if target.suffix.lower() != ".png":
        raise InputError(f"--out {target}: the figure is a PNG, give a name ending in .png")
    if not target.parent.exists():
        raise InputError(f"--out {target}: folder {target.parent} does not exist")

    from robust_calo.plots import show_figure
    from robust_calo.rootio import read_showers

    arrays = read_showers(file, tree=tree, max_events=max_events)
    n = len(arrays["energy"])
    if event is not None and not 0 <= event < n:
        raise InputError(f"--event {event} is out of range: {file} has {n} events read (0..{n - 1})")
    show_figure(arrays, target, title=f"{file.name}  ({n} events)", event=event)
    print(_unit_line(file, tree, arrays), file=sys.stderr)
    print(target)


def _unit_line(file: Path, tree: str, arrays: dict) -> str:
    """What the cells hold: the unit the file records, else one inferred from the 15x15 sum over E."""
    import numpy as np

    from robust_calo.rootio import cell_unit

    dep = arrays["deposits"]
    ratio = float(np.median(dep.sum(axis=(1, 2)) / arrays["energy"]))
    unit = cell_unit(file, tree)
    how = "recorded in the file"
    if unit is None:
        unit, how = ("visible" if ratio < 0.5 else "calibrated"), "inferred from the sum over E; not recorded in the file"
    words = {"visible": "GeV of visible (scintillator) energy, the paper's raw scale", "calibrated": "calibrated GeV"}
    return (f"cells: {words[unit]} ({how}); max cell {float(dep.max()):.1f} GeV, "
            f"99.9% of hottest cells below {float(np.quantile(dep.max(axis=(1, 2)), 0.999)):.1f} GeV; "
            f"median 15x15 sum / E = {ratio:.3f}; {_noise_words(dep)}")  # fmt: skip


def _noise_words(dep) -> str:
    """Whether the cells carry electronic noise: a deposit is never negative, noise makes about half
    the cells that showers do not reach negative."""
    import numpy as np

    negative = float(np.mean(dep < 0))
    if negative == 0:
        return "no negative cell: no electronic noise (the paper's kind of cells)"
    corners = np.concatenate([dep[:, :2, :2].ravel(), dep[:, -2:, -2:].ravel()])
    return (f"electronic noise: {100 * negative:.0f}% of cells negative, corner cells spread "
            f"{1000 * float(np.std(corners)):.1f} MeV (make-calo --noise 0 gives noiseless cells)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
