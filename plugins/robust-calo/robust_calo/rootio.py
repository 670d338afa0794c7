"""Shower samples in ROOT files (uproot): write, strict read, and the default-data cache.

Layout written by :func:`write_showers`: one TTree (``showers``) with one entry per photon and
the branches ``deposits`` (``float[15][15]``, GeV), ``energy`` (GeV), ``x``, ``y`` (mm) and
``theta_x``, ``theta_y`` (rad), all float32, ZSTD-compressed. :func:`read_showers` also reads a
user's own file (e.g. from GEANT4) through a branch-name mapping, with deposits stored as
``float[225]``, ``float[15][15]`` or a jagged array of 225 values per entry, in a TTree or an
RNTuple.

Every problem with a file is an :class:`robustcli.errors.InputError` with one line naming the
file and the problem.
"""

from __future__ import annotations

import os
import pathlib
import struct
import tempfile
from collections.abc import Callable, Mapping

import numpy as np

from robustcli.errors import InputError

__all__ = [
    "BRANCHES",
    "MIN_DEPOSIT_GEV",
    "TREE",
    "UNITS",
    "cache_dir",
    "cell_unit",
    "default_data_path",
    "ensure_default_data",
    "read_showers",
    "write_showers",
]

TREE = "showers"
#: the cell units the simulator writes (``CaloParams.units``), recorded in the tree's title
UNITS = ("visible", "calibrated")
_UNIT_MARK = "; cells in GeV, "
BRANCHES = ("deposits", "energy", "x", "y", "theta_x", "theta_y")
GRID = 15
NCELLS = GRID * GRID
# Cells may be slightly negative: electronic noise is added to every cell (simulated noise is
# ~0.06 GeV per cell, so -1 GeV is a >15 sigma excursion). Anything below is a broken file.
MIN_DEPOSIT_GEV = -1.0


def _fail(path: os.PathLike | str, problem: str) -> InputError:
    return InputError(f"{path}: {problem}")


def _short(names, limit: int = 12) -> str:
    names = [str(n) for n in names]
    if not names:
        return "none"
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


# ---------------------------------------------------------------------------------- write


def write_showers(
    path: os.PathLike | str,
    arrays: Mapping[str, np.ndarray],
    tree: str = TREE,
    *,
    compression: str = "zstd",
    step: int = 100_000,
    units: str | None = None,
) -> None:
    """Write a shower sample (the dict :func:`robust_calo.simulation.simulate` returns) to ``path``.

    ``deposits`` may be [n, 15, 15] or [n, 225]; it is stored as a fixed-size ``float[15][15]``
    branch. Overwrites ``path``. ``compression``: "zstd" (default, fast), "zlib", "lz4" or "none".
    ``units`` ("visible" or "calibrated") is recorded in the tree's title (:func:`cell_unit`).
    """
    import uproot

    missing = [b for b in BRANCHES if b not in arrays]
    if missing:
        raise ValueError(f"write_showers: missing arrays {missing}; need {list(BRANCHES)}")
    dep = np.asarray(arrays["deposits"], dtype=np.float32)
    n = dep.shape[0]
    if dep.size != n * NCELLS:
        raise ValueError(f"write_showers: deposits must hold {NCELLS} cells per event, shape is {dep.shape}")
    data = {"deposits": dep.reshape(n, GRID, GRID)}
    for b in BRANCHES[1:]:
        a = np.asarray(arrays[b], dtype=np.float32).reshape(-1)
        if a.shape[0] != n:
            raise ValueError(f"write_showers: {b} has {a.shape[0]} entries, deposits has {n}")
        data[b] = a
    comp = {
        "zstd": uproot.ZSTD(1),
        "zlib": uproot.ZLIB(1),
        "lz4": uproot.LZ4(1),
        "none": None,
    }[compression]
    types = {b: (np.dtype((np.float32, (GRID, GRID))) if b == "deposits" else np.float32) for b in BRANCHES}
    with uproot.recreate(os.fspath(path), compression=comp) as f:
        title = "single photons in a 15x15 Shashlik ECAL cluster (robust-calo)"
        if units is not None:
            title += f"{_UNIT_MARK}{units}"
        t = f.mktree(tree, types, title=title)
        for lo in range(0, max(n, 1), step):
            if n == 0:
                break
            t.extend({b: data[b][lo : lo + step] for b in BRANCHES})


# ----------------------------------------------------------------------------------- read


def _check_header(path: pathlib.Path) -> None:
    """Magic bytes and the file length the header promises (fEND): catches truncated copies."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(64)
    if len(head) < 4 or head[:4] != b"root":
        raise _fail(path, "not a ROOT file (no 'root' magic bytes at the start)")
    if len(head) < 21:
        raise _fail(path, f"truncated or corrupt ROOT file (only {size} bytes)")
    version = struct.unpack(">i", head[4:8])[0]
    if version >= 1_000_000:  # large-file header: 8-byte pointers
        end = struct.unpack(">q", head[12:20])[0]
    else:
        end = struct.unpack(">i", head[12:16])[0]
    if end > size:
        raise _fail(path, f"truncated ROOT file ({size} bytes on disk, the header says {end})")


def _open(path: pathlib.Path):
    import uproot

    try:
        return uproot.open(os.fspath(path))
    except Exception as exc:  # uproot raises many types for damaged files
        raise _fail(path, f"truncated or corrupt ROOT file ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _tree_keys(f) -> list[str]:
    """Names of the TTrees and RNTuples in the file (without cycle numbers), sorted."""
    try:
        classes = f.classnames(recursive=True)
    except Exception:
        return []
    names = {k.split(";")[0] for k, c in classes.items() if c in ("TTree", "TNtuple", "ROOT::RNTuple", "TNtupleD")}
    return sorted(names)


def _all_keys(f) -> list[str]:
    try:
        return sorted({k.split(";")[0] for k in f.keys(recursive=True)})
    except Exception:
        return []


def read_showers(
    path: os.PathLike | str,
    tree: str = TREE,
    branches: Mapping[str, str] | None = None,
    *,
    max_events: int | None = None,
    min_deposit: float = MIN_DEPOSIT_GEV,
) -> dict[str, np.ndarray]:
    """Read and validate a shower sample; return float32 arrays keyed like ``simulate()``.

    ``branches`` maps our names (``deposits``, ``energy``, ``x``, ``y``, ``theta_x``, ``theta_y``)
    to the file's branch names, for a user's own file; names not in it are looked up as is.
    ``deposits`` comes back as [n, 15, 15]. Raises :class:`InputError` (one line naming the file)
    for a missing, non-ROOT, truncated or corrupt file, a missing tree or branch, deposits not
    225 per event, NaN/inf values, truth energy <= 0, deposits below ``min_deposit`` GeV, or no
    entries.
    """
    p = pathlib.Path(path)
    if max_events is not None and int(max_events) <= 0:
        raise InputError(f"{p}: max_events must be positive, got {max_events}")
    mapping = {b: b for b in BRANCHES}
    if branches:
        unknown = sorted(set(branches) - set(BRANCHES))
        if unknown:
            raise InputError(f"{p}: unknown field(s) {', '.join(unknown)} in the branch mapping; valid: {', '.join(BRANCHES)}")
        mapping.update({k: str(v) for k, v in branches.items()})
    if not p.exists():
        raise _fail(p, "no such file")
    if p.is_dir():
        raise _fail(p, "is a directory, not a ROOT file")
    _check_header(p)
    f = _open(p)
    try:
        return _read(p, f, tree, mapping, max_events, min_deposit)
    finally:
        try:
            f.close()
        except Exception:
            pass


def _read(p, f, tree, mapping, max_events, min_deposit):
    try:
        present = tree in f
    except Exception as exc:
        raise _fail(p, f"truncated or corrupt ROOT file ({_one_line(exc)})") from None
    if not present:
        trees = _tree_keys(f)
        where = f"trees in the file: {_short(trees)}" if trees else f"keys in the file: {_short(_all_keys(f))}"
        raise _fail(p, f"no tree {tree!r}; {where}")
    try:
        t = f[tree]
    except Exception as exc:
        raise _fail(p, f"truncated or corrupt ROOT file; cannot read tree {tree!r} ({_one_line(exc)})") from None
    if not hasattr(t, "num_entries") or not hasattr(t, "keys"):
        raise _fail(p, f"{tree!r} is a {type(t).__name__}, not a TTree; trees in the file: {_short(_tree_keys(f))}")
    names = list(t.keys())
    missing = [f"{mapping[b]!r}" + (f" (for {b})" if mapping[b] != b else "") for b in BRANCHES if mapping[b] not in names]
    if missing:
        raise _fail(p, f"tree {tree!r} has no branch {', '.join(missing)}; branches: {_short(names)}")
    n_total = int(t.num_entries)
    if n_total == 0:
        raise _fail(p, f"tree {tree!r} is empty (0 entries)")
    stop = n_total if max_events is None else min(n_total, int(max_events))

    out: dict[str, np.ndarray] = {}
    for b in BRANCHES:
        name = mapping[b]
        try:
            arr = t[name].array(library="ak" if b == "deposits" else "np", entry_stop=stop)
        except Exception as exc:
            raise _fail(p, f"truncated or corrupt ROOT file; cannot read branch {name!r} ({_one_line(exc)})") from None
        out[b] = _deposits(p, name, arr, stop) if b == "deposits" else _scalar(p, name, arr, stop)

    dep = out["deposits"]
    if not np.isfinite(dep).all():
        bad = int(np.flatnonzero(~np.isfinite(dep).reshape(stop, -1).all(1))[0])
        raise _fail(p, f"branch {mapping['deposits']!r} has NaN or inf values (first at entry {bad})")
    low = dep.reshape(stop, -1).min(1)
    if (low < min_deposit).any():
        bad = int(np.flatnonzero(low < min_deposit)[0])
        raise _fail(
            p,
            f"branch {mapping['deposits']!r} has a cell of {float(low[bad]):.4g} GeV at entry {bad}; "
            f"cells below {min_deposit:g} GeV are not noise",
        )
    for b in BRANCHES[1:]:
        a = out[b]
        if not np.isfinite(a).all():
            bad = int(np.flatnonzero(~np.isfinite(a))[0])
            raise _fail(p, f"branch {mapping[b]!r} has NaN or inf values (first at entry {bad})")
    e = out["energy"]
    if (e <= 0).any():
        bad = int(np.flatnonzero(e <= 0)[0])
        raise _fail(p, f"branch {mapping['energy']!r} has a non-positive energy {float(e[bad]):.4g} at entry {bad}")
    for b in ("theta_x", "theta_y"):
        if (np.abs(out[b]) >= np.pi / 2).any():
            bad = int(np.flatnonzero(np.abs(out[b]) >= np.pi / 2)[0])
            raise _fail(p, f"branch {mapping[b]!r} has an angle of {float(out[b][bad]):.4g} rad at entry {bad}; expected radians below pi/2")
    return out


def _scalar(p, name, arr, n) -> np.ndarray:
    a = np.asarray(arr)
    if a.dtype == object or a.ndim != 1:
        raise _fail(p, f"branch {name!r} must hold one number per entry, found shape {a.shape} ({a.dtype})")
    if not np.issubdtype(a.dtype, np.number) and a.dtype != np.bool_:
        raise _fail(p, f"branch {name!r} is not numeric ({a.dtype})")
    return a.astype(np.float32)


def _deposits(p, name, arr, n) -> np.ndarray:
    """[n, 15, 15] float32 from a fixed-size ([225] or [15][15]) or jagged (225 per entry) branch."""
    import awkward as ak

    try:
        try:
            regular = ak.to_numpy(arr)  # fixed-size dimensions convert directly
        except Exception:
            regular = None
        if regular is not None:
            if regular.dtype.fields is not None or not np.issubdtype(regular.dtype, np.number):
                raise _fail(p, f"branch {name!r} is not a numeric array ({regular.dtype})")
            per = int(np.prod(regular.shape[1:])) if regular.ndim > 1 else 1
            if per != NCELLS:
                shape = tuple(regular.shape[1:])
                raise _fail(p, f"branch {name!r} has {per} values per entry (shape {shape}); expected 225 (15x15)")
            return np.ascontiguousarray(regular.reshape(n, GRID, GRID), dtype=np.float32)
        flat = arr
        while flat.ndim > 2:
            flat = ak.flatten(flat, axis=2)
        counts = ak.to_numpy(ak.num(flat, axis=1))
        bad = np.flatnonzero(counts != NCELLS)
        if bad.size:
            raise _fail(p, f"branch {name!r} has {int(counts[bad[0]])} values at entry {int(bad[0])}; expected 225 (15x15) per entry")
        return np.ascontiguousarray(ak.to_numpy(ak.flatten(flat, axis=1)).reshape(n, GRID, GRID), dtype=np.float32)
    except InputError:
        raise
    except Exception as exc:
        raise _fail(p, f"branch {name!r} cannot be read as 225 cells per entry ({_one_line(exc)})") from None


# ---------------------------------------------------------------------------------- cache


def cache_dir() -> pathlib.Path:
    """``$ROBUST_CACHE_DIR/calo`` if set, else ``~/.cache/robustcli/calo``."""
    root = os.environ.get("ROBUST_CACHE_DIR")
    base = pathlib.Path(root).expanduser() if root else pathlib.Path.home() / ".cache" / "robustcli"
    return base / "calo"


def default_data_path(
    dataset: str, n_events: int, seed: int = 0, *, units: str = "visible", noise_gev: float | None = 0.0
) -> pathlib.Path:
    """Where the default sample of ``dataset`` lives. The name carries everything that changes its
    content: the simulator version, the cell units and the noise (``lhcb``, or a fixed sigma per
    cell), so a file of another unit or noise (or one made before units were in the name) is
    never reused silently."""
    from robust_calo.simulation import DATASETS, SIM_VERSION

    ds = str(dataset).upper()
    if ds not in DATASETS:
        raise InputError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}")
    if int(n_events) <= 0:
        raise InputError(f"number of events must be positive, got {n_events}")
    if units not in UNITS:
        raise InputError(f"unknown cell units {units!r}; valid: {', '.join(UNITS)}")
    noise = "lhcb" if noise_gev is None else f"{float(noise_gev):g}gev"
    return cache_dir() / f"calo{ds}_n{int(n_events)}_seed{int(seed)}_sim{SIM_VERSION}_{units}_noise-{noise}.root"


def ensure_default_data(
    dataset: str = "A",
    n_events: int = 100_000,
    seed: int = 0,
    *,
    units: str = "visible",
    noise_gev: float | None = 0.0,
    progress: Callable[[int], None] | None = None,
) -> pathlib.Path:
    """Return the path of the default sample, simulating and writing it on first use: cells in
    ``units`` (visible by default, the paper's scale), no electronic noise (the paper's cells) unless
    ``noise_gev`` (a fixed sigma per cell in calibrated GeV; None: LHCb's).

    The file is written to a temporary name in the same folder and moved into place with
    ``os.replace``, so an interrupted run never leaves a half-written file under the final name
    (and two processes making it at once both end with a complete file).
    """
    from robust_calo.simulation import simulate

    from robust_calo.simulation import with_params

    path = default_data_path(dataset, n_events, seed, units=units, noise_gev=noise_gev)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    params = with_params(units=units, noise_gev=noise_gev)
    arrays = simulate(str(dataset).upper(), int(n_events), int(seed), progress=progress, params=params)
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_showers(tmp, arrays, units=units)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def cell_unit(path: os.PathLike | str, tree: str = TREE) -> str | None:
    """The cell units a file from :func:`write_showers` records ("visible" or "calibrated"), or
    None where it records none (a user's file, or one written before units were recorded)."""
    import uproot

    try:
        with uproot.open(os.fspath(path)) as f:
            title = str(f[tree].title)
    except Exception:  # noqa: BLE001 - unreadable files are read_showers' to report
        return None
    unit = title.partition(_UNIT_MARK)[2].strip()
    return unit if unit in UNITS else None
