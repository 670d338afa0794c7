"""ROOT files: round trip, the strict loader's one-line refusals, and the default-data cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from robust_calo import rootio
from robust_calo.rootio import BRANCHES, TREE, default_data_path, ensure_default_data, read_showers, write_showers
from robust_calo.simulation import simulate
from robustcli.errors import InputError

uproot = pytest.importorskip("uproot")


@pytest.fixture(scope="module")
def sample() -> dict[str, np.ndarray]:
    return simulate("B", 64, 1)


@pytest.fixture
def good(tmp_path: Path, sample) -> Path:
    path = tmp_path / "good.root"
    write_showers(path, sample)
    return path


def refused(path, match: str, **kw) -> str:
    with pytest.raises(InputError) as info:
        read_showers(path, **kw)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg, msg
    assert match in msg, msg
    assert info.value.exit_code == 2
    return msg


def write_tree(path: Path, arrays: dict, tree: str = TREE) -> None:
    with uproot.recreate(path) as f:
        f.mktree(tree, {k: (v.dtype if v.ndim == 1 else np.dtype((v.dtype, v.shape[1:]))) for k, v in arrays.items()})
        if len(next(iter(arrays.values()))):
            f[tree].extend(arrays)


def test_round_trip(good: Path, sample) -> None:
    back = read_showers(good)
    assert set(back) == set(BRANCHES)
    for k in BRANCHES:
        assert back[k].dtype == np.float32
        np.testing.assert_array_equal(back[k], sample[k])
    f = uproot.open(good)
    assert f.classnames() == {f"{TREE};1": "TTree"}
    assert f[TREE]["deposits"].typename == "float[15][15]"
    assert read_showers(good, max_events=5)["deposits"].shape == (5, 15, 15)


def test_flat_225_and_jagged_user_branches(tmp_path: Path, sample) -> None:
    import awkward as ak

    n = len(sample["energy"])
    flat = {"cells": sample["deposits"].reshape(n, 225), "E": sample["energy"], "px": sample["x"],
            "py": sample["y"], "ax": sample["theta_x"], "ay": sample["theta_y"]}
    path = tmp_path / "user.root"
    write_tree(path, flat, tree="calo")
    mapping = {"deposits": "cells", "energy": "E", "x": "px", "y": "py", "theta_x": "ax", "theta_y": "ay"}
    back = read_showers(path, tree="calo", branches=mapping)
    np.testing.assert_array_equal(back["deposits"], sample["deposits"])
    jag = tmp_path / "jagged.root"
    with uproot.recreate(jag) as f:
        f["calo"] = {"cells": ak.Array(sample["deposits"].reshape(n, 225).tolist()), **{k: v for k, v in flat.items() if k != "cells"}}
    np.testing.assert_allclose(read_showers(jag, tree="calo", branches=mapping)["deposits"], sample["deposits"])


def test_missing_not_root_empty_and_directory(tmp_path: Path) -> None:
    refused(tmp_path / "nope.root", "no such file")
    text = tmp_path / "notes.root"
    text.write_text("hello, not a ROOT file\n")
    refused(text, "not a ROOT file")
    empty = tmp_path / "empty.root"
    empty.write_bytes(b"")
    refused(empty, "not a ROOT file")
    refused(tmp_path, "directory")


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.001])
def test_truncated_copies(tmp_path: Path, good: Path, fraction: float) -> None:
    data = good.read_bytes()
    cut = tmp_path / "cut.root"
    cut.write_bytes(data[: max(4, int(len(data) * fraction))])
    refused(cut, "truncated")


def test_corrupt_directory(tmp_path: Path, good: Path) -> None:
    data = bytearray(good.read_bytes())
    data[100:400] = b"\xff" * 300  # the top directory and the first keys
    bad = tmp_path / "corrupt.root"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError) as info:
        read_showers(bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_missing_tree_lists_trees(good: Path) -> None:
    msg = refused(good, "no tree 'events'", tree="events")
    assert "showers" in msg


def test_missing_branch_lists_branches(good: Path) -> None:
    msg = refused(good, "no branch 'E' (for energy)", branches={"energy": "E"})
    assert "deposits, energy, x, y, theta_x, theta_y" in msg
    refused(good, "unknown field", branches={"charge": "q"})


def test_wrong_shape(tmp_path: Path, sample) -> None:
    arrays = {k: sample[k] for k in BRANCHES}
    arrays["deposits"] = sample["deposits"].reshape(-1, 225)[:, :100].copy()
    path = tmp_path / "shape.root"
    write_tree(path, arrays)
    refused(path, "100 values per entry")


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [("deposits", np.nan, "NaN or inf"), ("deposits", -5.0, "below -1"), ("energy", 0.0, "non-positive"),
     ("energy", np.inf, "NaN or inf"), ("x", np.nan, "NaN or inf"), ("theta_x", 2.0, "radians")],
)
def test_bad_values(tmp_path: Path, sample, field: str, value: float, match: str) -> None:
    arrays = {k: sample[k].copy() for k in BRANCHES}
    if field == "deposits":
        arrays[field][3, 7, 7] = value
    else:
        arrays[field][3] = value
    path = tmp_path / "bad.root"
    write_showers(path, arrays)
    assert "entry 3" in refused(path, match)


def test_small_negative_noise_is_accepted(tmp_path: Path, sample) -> None:
    arrays = {k: sample[k].copy() for k in BRANCHES}
    arrays["deposits"][0, 0, 0] = -0.3
    path = tmp_path / "noise.root"
    write_showers(path, arrays)
    assert read_showers(path)["deposits"][0, 0, 0] == pytest.approx(-0.3)


def test_empty_tree(tmp_path: Path) -> None:
    path = tmp_path / "empty_tree.root"
    write_showers(path, {k: np.zeros((0, 15, 15) if k == "deposits" else 0, np.float32) for k in BRANCHES})
    refused(path, "empty")


def test_real_root_files_without_our_tree() -> None:
    skhep = pytest.importorskip("skhep_testdata")
    for name in ("uproot-HZZ.root", "uproot-Zmumu.root"):
        try:
            path = skhep.data_path(name)
        except Exception:  # the test-data files are downloaded on first use; offline there are none
            pytest.skip("scikit-hep-testdata files not available offline")
        msg = refused(path, "no tree 'showers'")
        assert "events" in msg  # the tree those files hold


def test_foreign_root_file_without_our_tree(tmp_path: Path) -> None:
    path = tmp_path / "foreign.root"
    write_tree(path, {"Jet_Px": np.ones(3, np.float32)}, tree="events")
    refused(path, "no tree 'showers'; trees in the file: events")
    refused(path, "no branch 'deposits'", tree="events")


# ----------------------------------------------------------------------------------- cache


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ROBUST_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "calo"


def test_default_data_path(cache: Path) -> None:
    p = default_data_path("b", 1000, 3)
    assert p.parent == cache and "caloB" in p.name and "n1000" in p.name and "seed3" in p.name
    assert p.suffix == ".root"
    # the cell units and the noise are in the name: a file of another unit (or of before units were
    # in the name, all calibrated; or of LHCb's noise, the default before) is never taken for the default
    assert "_visible_noise-0gev" in p.name
    others = {default_data_path("b", 1000, 3, units="calibrated"), default_data_path("b", 1000, 3, noise_gev=None)}
    assert len(others | {p}) == 3
    with pytest.raises(InputError, match="units"):
        default_data_path("A", 10, units="adc")
    with pytest.raises(InputError):
        default_data_path("Z", 10)
    with pytest.raises(InputError):
        default_data_path("A", 0)


def test_ensure_default_data_makes_once(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    p = ensure_default_data("A", 300, 0, progress=seen.append)
    assert p.exists() and seen[-1] == 300
    assert read_showers(p)["energy"].shape == (300,)
    np.testing.assert_array_equal(read_showers(p)["deposits"], simulate("A", 300, 0)["deposits"])
    from robust_calo.rootio import cell_unit

    assert cell_unit(p) == "visible"

    def boom(*a, **k):
        raise AssertionError("simulated twice")

    monkeypatch.setattr("robust_calo.simulation.simulate", boom)
    assert ensure_default_data("A", 300, 0) == p
    assert sorted(os.listdir(cache)) == [p.name]


def test_ensure_default_data_crash_leaves_no_file(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def half_then_crash(path, arrays, tree=TREE, **kw):
        Path(path).write_bytes(b"root" + b"\0" * 100)
        raise KeyboardInterrupt

    monkeypatch.setattr(rootio, "write_showers", half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        ensure_default_data("B", 200, 0)
    assert not default_data_path("B", 200, 0).exists()
    assert os.listdir(cache) == []
