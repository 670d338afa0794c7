"""Cluster features: conventions, windows, the S-curve and the XGBoost feature matrix."""

from __future__ import annotations

import numpy as np
import pytest

from robust_calo import features as f

PITCH = 4.04


def one_cell(ix: int, iy: int, e: float = 10.0, n: int = 15) -> np.ndarray:
    c = np.zeros((1, n, n))
    c[0, iy, ix] = e  # rows along y, columns along x
    return c


def test_cell_centres_are_symmetric_around_the_central_cell():
    c = f.cell_centres(15, PITCH)
    assert c[7] == 0.0
    assert c[0] == pytest.approx(-7 * PITCH)
    assert c[14] == pytest.approx(7 * PITCH)


def test_rows_are_y_and_columns_are_x():
    dep = one_cell(9, 6)
    x, y = f.barycenter(dep, PITCH)
    assert x[0] == pytest.approx(2 * PITCH)
    assert y[0] == pytest.approx(-1 * PITCH)
    ix, iy = f.hottest_cell(dep)
    assert (ix[0], iy[0]) == (9, 6)
    sx, sy = f.seed_centre(dep[:, None], PITCH)  # a channel axis is accepted
    assert (sx[0], sy[0]) == pytest.approx((2 * PITCH, -PITCH))


def test_barycenter_matches_the_simulators_layout():
    from robust_calo.simulation import simulate

    d = simulate("A", 600, 11)
    mask = d["energy"] > 20  # little noise
    lx, ly = f.local_barycenter(d["deposits"], 3, 1.0)
    assert np.corrcoef(lx[mask], d["x"][mask])[0, 1] > 0.9
    assert np.corrcoef(ly[mask], d["y"][mask])[0, 1] > 0.9
    assert abs(np.corrcoef(lx[mask], d["y"][mask])[0, 1]) < 0.2


def test_energy_sum_and_empty_cluster():
    dep = np.zeros((2, 15, 15))
    dep[0, 7, 7], dep[0, 7, 8] = 3.0, 1.0
    assert f.energy_sum(dep).tolist() == [4.0, 0.0]
    x, y = f.barycenter(dep, 1.0)
    assert x.tolist() == [0.25, 0.0]
    assert y.tolist() == [0.0, 0.0]


def test_window_sums_pad_outside_the_grid():
    dep = np.ones((1, 15, 15))
    dep[0, 0, 0] = 5.0  # hottest in a corner: only 2x2 of the 3x3 and 3x3 of the 5x5 exist
    assert f.window_sum(dep, 3)[0] == pytest.approx(5 + 3)
    assert f.window_sum(dep, 5)[0] == pytest.approx(5 + 8)
    dep[0, 0, 0] = 1.0
    dep[0, 7, 7] = 5.0
    assert f.window_sum(dep, 3)[0] == pytest.approx(5 + 8)
    assert f.window_sum(dep, 5)[0] == pytest.approx(5 + 24)
    with pytest.raises(ValueError):
        f.window_sum(dep, 4)


def test_local_barycenter_is_bounded_and_defined_when_empty():
    dep = np.zeros((3, 15, 15))
    dep[0, 7, 7], dep[0, 7, 8] = 1.0, 1.0  # half way between two cells along x
    dep[1, 7, 7], dep[1, 7, 8], dep[1, 7, 6] = 1.0, 0.5, -1.4  # noise: sum 0.1, raw offset 19 cells
    x, y = f.local_barycenter(dep, 3, PITCH)
    assert x[0] == pytest.approx(0.5 * PITCH)
    assert abs(x[1]) <= 1.5 * PITCH + 1e-12
    sx, sy = f.seed_centre(dep[2:], PITCH)
    assert (x[2], y[2]) == (sx[0], sy[0])  # empty: the hottest cell's centre
    assert np.all(np.isfinite(x))


def test_s_curve_correction_inverts_the_exponential_profile_barycentre():
    b = 0.144 * PITCH
    x0 = np.linspace(-PITCH / 2, PITCH / 2, 101)
    seed = np.zeros_like(x0)
    bar = f.s_curve_forward(x0, seed, b, PITCH)
    assert bar[0] == pytest.approx(-PITCH / 2) and bar[-1] == pytest.approx(PITCH / 2)
    inner = (np.abs(x0) > 1e-9) & (np.abs(x0) < PITCH / 2 - 1e-9)
    assert np.all(np.abs(bar[inner]) < np.abs(x0[inner]))  # pulled toward the cell centre
    np.testing.assert_allclose(f.s_curve_correct(bar, seed, b, PITCH), x0, atol=1e-9)
    # around another seed cell too
    np.testing.assert_allclose(f.s_curve_correct(bar + PITCH, seed + PITCH, b, PITCH), x0 + PITCH, atol=1e-9)


def test_fit_s_curve_recovers_b():
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-PITCH / 2, PITCH / 2, 4000)
    seed = np.zeros_like(x0)
    for ratio in (0.1, 0.144, 0.2):
        bar = f.s_curve_forward(x0, seed, ratio * PITCH, PITCH)
        fit = f.fit_s_curve(bar, seed, x0, PITCH)
        assert fit.b / PITCH == pytest.approx(ratio, rel=0.01)
        assert fit.slope == pytest.approx(1.0, abs=0.01)
        np.testing.assert_allclose(fit.apply(bar, seed), x0, atol=1e-3)


def test_polynomial_features_count_and_names():
    x = np.array([[1.0, 2.0, 3.0]])
    poly, names = f.polynomial_features(x, ["a", "b", "c"], degree=2)
    assert poly.shape == (1, 3 + 6)
    assert names[:4] == ["a", "b", "c", "a*a"]
    assert dict(zip(names, poly[0], strict=True))["b*c"] == 6.0


def test_xgb_feature_matrix():
    rng = np.random.default_rng(1)
    dep = rng.exponential(0.1, (5, 15, 15))
    dep[:, 7, 7] += 10.0
    fe, ne = f.xgb_features(dep, "energy")
    assert fe.shape == (5, 4 + 10) and len(ne) == 14
    assert {"e_sum", "e_3x3", "e_5x5", "e_3x3*e_5x5"} <= set(ne)
    fp, npos = f.xgb_features(dep, "position", PITCH)
    assert fp.shape == (5, 10 + 55) and "bary3_x" in npos
    with pytest.raises(ValueError):
        f.xgb_features(dep, "angle")
