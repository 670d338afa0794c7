from __future__ import annotations

import math

import numpy as np

from robustcli.robustness import summarize


def test_summary_values_and_intervals():
    losses = np.random.default_rng(0).normal(0.05, 0.01, 50)
    out = summarize(losses)
    assert math.isclose(out["mean"].value, losses.mean())
    assert math.isclose(out["std"].value, losses.std(ddof=1))
    assert math.isclose(out["q90_q10"].value, np.quantile(losses, 0.9) - np.quantile(losses, 0.1))
    for est in out.values():
        assert est.low <= est.value <= est.high or math.isclose(est.low, est.value)
    assert summarize(losses) == out  # fixed bootstrap seed


def test_one_instance_has_no_interval():
    out = summarize([0.1])
    assert out["mean"].value == 0.1 and math.isnan(out["mean"].low) and math.isnan(out["std"].value)
