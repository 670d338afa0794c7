"""The paper's studies (`robust study sample-size`, `robust study variance`, `robust nas`) on this
task, through the library the commands call: their results' shapes, and a second run trains nothing."""

from __future__ import annotations

import pytest

#: a small generated sample (the task's cache is the test's own)
TASK, OPTIONS, CANDIDATE, SIZES, BASELINES = "calo-energy", {"events": 1200}, "model2", [100, 200], True

#: early stopping that keeps an instance to a few seconds
FAST = {"min_epochs": 2, "window": 2, "max_epochs": 3}


@pytest.fixture
def study(tmp_path, monkeypatch):
    from robustcli.api import Study

    monkeypatch.setenv("ROBUST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)

    def make(**settings):
        return Study(TASK, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", task_options=OPTIONS, **FAST, **settings)

    return make


@pytest.mark.slow  # a minute or two on 2 cores; `make test-all` runs it (docs/reproduction.md ran these at scale)
def test_sample_size_variance_and_nas_run_and_resume(study):
    sizes = study().sample_size([CANDIDATE], SIZES, instances=2, baselines=BASELINES)
    rows = sizes.as_dict()["rows"]
    assert {(r["size"], r["kind"]) for r in rows} >= {(s, "candidate") for s in SIZES}
    assert all({"size", "model", "n", "mean", "std"} <= set(r) for r in rows)
    assert study().sample_size([CANDIDATE], SIZES, instances=2, baselines=BASELINES).trained_now == 0

    spread = study(train_size=SIZES[0]).variance(CANDIDATE, instances=2).as_dict()
    assert spread["instances"] == 2 and {"std_both", "std_init", "std_data"} <= set(spread)

    nas = study(train_size=SIZES[0]).nas(trials=3, top=1, instances=2)
    report = nas.as_dict()
    assert report["trials"] == 3 and report["sampler"] == "tpe" and len(report["top"]) == 1
    assert {"params", "mean"} <= set(report["top"][0])
    assert study(train_size=SIZES[0]).nas(trials=3, top=1, instances=2).as_dict()["trained_trials"] == 0
