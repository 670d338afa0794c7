"""The fast photon-shower simulator: API, determinism, kinematics and the physics it must show."""

from __future__ import annotations

import numpy as np
import pytest

from robust_calo.simulation import BLOCK, CELL_MM, GRID, CaloParams, simulate, with_params

KEYS = ("deposits", "energy", "x", "y", "theta_x", "theta_y")
NO_NOISE = with_params(noise_gev=0.0)


@pytest.fixture(scope="module")
def sample_a() -> dict[str, np.ndarray]:
    return simulate("A", 4 * BLOCK, 11, params=NO_NOISE)


@pytest.fixture(scope="module")
def sample_b() -> dict[str, np.ndarray]:
    return simulate("B", 4 * BLOCK, 12, params=NO_NOISE)


@pytest.mark.parametrize("dataset", ["A", "B"])
def test_shapes_and_types(dataset: str) -> None:
    out = simulate(dataset, 300, 0)
    assert set(out) == set(KEYS)
    assert out["deposits"].shape == (300, GRID, GRID)
    for k in KEYS:
        assert out[k].dtype == np.float32
        assert out[k].shape[0] == 300
        assert np.isfinite(out[k]).all()
    assert GRID == 15 and CELL_MM == pytest.approx(40.4)


def test_zero_events_and_bad_input() -> None:
    out = simulate("A", 0, 0)
    assert out["deposits"].shape == (0, 15, 15)
    with pytest.raises(ValueError, match="dataset"):
        simulate("C", 10, 0)
    with pytest.raises(ValueError):
        simulate("A", -1, 0)


def test_deterministic_and_independent_of_chunk_workers_and_length() -> None:
    a = simulate("B", 1500, 5, chunk=20000, workers=1)
    b = simulate("B", 1500, 5, chunk=BLOCK, workers=2)
    c = simulate("B", 700, 5)
    d = simulate("B", 700, 6)
    for k in KEYS:
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_array_equal(a[k][:700], c[k])  # the first k events of a larger sample
    assert not np.array_equal(c["deposits"], d["deposits"])
    assert not np.array_equal(simulate("A", 50, 5)["energy"], c["energy"][:50])  # datasets have own streams


def test_progress_reports_counts() -> None:
    seen: list[int] = []
    simulate("A", 2 * BLOCK + 10, 0, chunk=BLOCK, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 2 * BLOCK + 10 and len(seen) == 3


def test_kinematics_a(sample_a) -> None:
    e, half = sample_a["energy"], CELL_MM / 2
    assert e.min() >= 1.0 and e.max() <= 100.0 and 45 < e.mean() < 56  # uniform 1-100 GeV
    assert (sample_a["theta_x"] == 0).all() and (sample_a["theta_y"] == 0).all()
    for k in ("x", "y"):
        assert np.abs(sample_a[k]).max() <= half and sample_a[k].std() == pytest.approx(2 * half / 12**0.5, rel=0.1)


def test_kinematics_b_falling_spectrum_tied_to_angle(sample_b) -> None:
    e = sample_b["energy"]
    tx, ty = sample_b["theta_x"], sample_b["theta_y"]
    assert np.abs(tx).max() < 0.3 and np.abs(ty).max() < 0.3 and np.abs(tx).max() > 0.29
    assert e.min() >= 1.0 and e.max() <= 100.0
    counts, _ = np.histogram(e, bins=[1, 10, 20, 40, 100])
    assert counts[0] > counts[1] > counts[2]  # falls steeply
    theta = np.hypot(tx, ty)
    assert e[theta < 0.1].mean() > 2 * e[theta > 0.25].mean()  # larger angle, lower energy


def test_energy_sum_and_containment(sample_a) -> None:
    dep, e = sample_a["deposits"].astype(np.float64), sample_a["energy"]
    ratio = dep.sum((1, 2)) / e
    # visible units (the default, the paper's scale): 0.159 of the deposit, ~1 % leakage
    assert ratio.mean() == pytest.approx(0.99 * CaloParams().visible_fraction, abs=0.0025)
    centred = (np.abs(sample_a["x"]) < 5) & (np.abs(sample_a["y"]) < 5)
    frac = dep[centred, 7, 7] / dep[centred].sum((1, 2))
    assert 0.78 < frac.mean() < 0.9  # GFlash average for a centred inner cell: ~0.85
    assert dep.min() >= 0.0  # no noise: cells are non-negative
    assert 12 < dep.max() < 15  # visible hottest cell at 100 GeV ~ 0.85 x 0.159 E: the paper's 0-14 GeV


def test_resolution_scales_like_stochastic_term(sample_a) -> None:
    e = sample_a["energy"]
    ratio = sample_a["deposits"].sum((1, 2)) / e
    low = ratio[(e > 2) & (e < 6)]
    high = ratio[e > 60]
    s_low, s_high = low.std() / low.mean(), high.std() / high.mean()
    assert 0.03 < s_low < 0.07  # ~ 9.5 %/sqrt(4 GeV)
    assert 0.008 < s_high < 0.03
    assert s_low > 2 * s_high


def test_inclined_showers_shift_along_the_axis(sample_b) -> None:
    dep = sample_b["deposits"].clip(min=0).astype(np.float64)
    centres = (np.arange(GRID) - GRID // 2) * CELL_MM
    xb = (dep.sum(1) * centres).sum(1) / dep.sum((1, 2))  # deposits[k, row=y, column=x]
    yb = (dep.sum(2) * centres).sum(1) / dep.sum((1, 2))
    sx = np.polyfit(np.tan(sample_b["theta_x"]), xb - sample_b["x"], 1)[0]
    sy = np.polyfit(np.tan(sample_b["theta_y"]), yb - sample_b["y"], 1)[0]
    # barycentre depth ~ conversion + centre of gravity ~ 100-150 mm for these energies
    assert 60 < sx < 220 and 60 < sy < 220


def test_noise_and_units() -> None:
    calibrated = simulate("A", 200, 3, params=with_params(units="calibrated"))
    visible = simulate("A", 200, 3)  # the default: the paper's scale
    f = CaloParams().visible_fraction
    np.testing.assert_allclose(visible["deposits"], calibrated["deposits"] * f, rtol=1e-5, atol=1e-6)
    assert visible["deposits"].min() >= 0  # no electronic noise by default: the paper's cells
    noisy = simulate("A", 200, 3, params=with_params(units="calibrated", noise_gev=None))  # LHCb's
    far = noisy["deposits"][:, 0, :]  # edge row: mostly noise
    assert far.min() < 0 and 0.03 < far.std() < 0.12  # ~63 MeV per cell at the reference angle
    with pytest.raises(ValueError, match="units"):
        simulate("A", 10, 0, params=with_params(units="adc"))
