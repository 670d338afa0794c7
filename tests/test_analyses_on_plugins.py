"""The paper's analyses (`robust study sample-size`, `robust study variance`, `robust nas`) on the
plugins' tasks (the example plugin's digits, the calorimeter's energy), through the library the
commands call: their results' shapes, and a second run trains nothing."""

from __future__ import annotations

import pytest

#: early stopping that keeps an instance to a few seconds
FAST = {"min_epochs": 2, "window": 2, "max_epochs": 3}


PLUGIN_TASKS = [
    pytest.param("digits", {}, "default", [100, 200], False, id="digits"),
    # a small generated sample (docs/reproduction.md ran these analyses at scale)
    pytest.param("calo-energy", {"events": 1200}, "model2", [100, 200], True, id="calo-energy"),
]


@pytest.fixture
def study(tmp_path, monkeypatch, request):
    task, options = request.node.callspec.params["task"], request.node.callspec.params["options"]
    from robustcli.api import Study

    monkeypatch.setenv("ROBUST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)

    def make(**settings):
        return Study(task, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", task_options=options, **FAST, **settings)

    return make


@pytest.mark.parametrize(("task", "options", "candidate", "sizes", "baselines"), PLUGIN_TASKS)
def test_sample_size_variance_and_nas_run_and_resume(study, task, options, candidate, sizes, baselines):
    plan = study().sample_size([candidate], sizes, instances=2, baselines=baselines)
    rows = plan.as_dict()["rows"]
    assert {(r["size"], r["kind"]) for r in rows} >= {(s, "candidate") for s in sizes}
    assert all({"size", "model", "n", "mean", "std"} <= set(r) for r in rows)
    assert study().sample_size([candidate], sizes, instances=2, baselines=baselines).trained_now == 0

    spread = study(train_size=sizes[0]).variance(candidate, instances=2).as_dict()
    assert spread["instances"] == 2 and {"std_both", "std_init", "std_data"} <= set(spread)

    nas = study(train_size=sizes[0]).nas(trials=3, top=1, instances=2)
    report = nas.as_dict()
    assert report["trials"] == 3 and report["sampler"] == "tpe" and len(report["top"]) == 1
    assert {"params", "mean"} <= set(report["top"][0])
    assert study(train_size=sizes[0]).nas(trials=3, top=1, instances=2).as_dict()["trained_trials"] == 0
