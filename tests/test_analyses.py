"""The paper's analyses, `robust study sample-size` and `robust study variance`: JSON shapes, resume, bad input, report."""

from __future__ import annotations

import json
import math

import pytest
from conftest import experiments

#: smaller still than FAST: these tests train 20-odd instances in all
TINY = ["--min-epochs", "2", "--window", "2", "--max-epochs", "3"]


def _study(app, runner, *args):
    result = runner.invoke(app, ["study", *args, "--task", "synthetic", *TINY, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_sample_size_json_resume_mlflow_and_report(app, runner, workdir):
    args = ["sample-size", "--candidate", "small", "--sizes", "50,100,200", "--instances", "3", "--out", "sizes.png"]
    first = _study(app, runner, *args)
    assert first["sizes"] == [50, 100, 200] and first["instances"] == 3
    assert first["trained_now"] == 9 and first["fitted_now"] == 3
    assert "paper" in first["test_sample"]
    assert [(r["size"], r["model"], r["kind"]) for r in first["rows"]] == [
        (s, m, k) for s in (50, 100, 200) for m, k in (("small", "candidate"), ("least-squares", "baseline"))
    ]
    for row in first["rows"]:
        assert row["n"] == 3 and len(row["losses"]) == 3
        assert all(isinstance(row[k], float) for k in ("mean", "median", "std", "iqr", "q90_q10"))
        low, high = row["intervals"]["mean"]
        assert low <= row["mean"] <= high
    assert set(first["saturation"]) == {"small", "least-squares"}
    assert (workdir / "sizes.png").stat().st_size > 0

    again = _study(app, runner, *args)  # everything is in MLflow: nothing trains or fits again
    assert again["trained_now"] == 0 and again["fitted_now"] == 0
    assert again["rows"] == first["rows"] and again["run_id"] == first["run_id"]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(first["tracking_uri"])
    run = client.get_run(first["run_id"])
    assert run.data.tags["robust.kind"] == "study" and run.data.tags["robust.study_kind"] == "sample-size"
    assert {a.path for a in client.list_artifacts(first["run_id"])} == {"sample-size.json", "sample-size.png"}
    # each size is the setting `robust assess --train-size S --test-size train` uses
    result = runner.invoke(app, ["assess", "--task", "synthetic", "-C", "small", "-n", "3", "--train-size", "100",
                                 "--test-size", "train", *TINY, "--json"])  # fmt: skip
    assess = json.loads(result.stdout)
    assert assess["trained_now"] == 0 and assess["fingerprint"] == first["fingerprints"]["100"]

    report = runner.invoke(app, ["report", "--study", "synthetic", "--json", "--out", "r.html"])
    assert report.exit_code == 0, report.output
    analyses = json.loads(report.stdout)["studies"]  # the JSON key scripts read
    assert [s["kind"] for s in analyses] == ["sample-size"] and "saturat" in " ".join(analyses[0]["lines"])
    assert "data:image/png" in (workdir / "r.html").read_text()


def test_variance_reuses_assess_vary_and_resumes(app, runner, workdir):
    result = runner.invoke(app, ["assess", "--task", "synthetic", "-C", "small", "-n", "2", "--vary", "init", *TINY, "--json"])
    assert result.exit_code == 0, result.output
    init = json.loads(result.stdout)
    first = _study(app, runner, "variance", "--candidate", "small", "--instances", "2")
    assert first["trained_now"] == 4  # the init set came from `assess --vary init`
    assert first["sets"]["init"]["fingerprint"] == init["fingerprint"]
    assert first["sets"]["init"]["losses"] == init["losses"]
    assert first["instances"] == 2
    # the early stopping the shares were measured at: each instance's epochs and why it stopped
    for k in ("both", "init", "data"):
        assert len(first["sets"][k]["epochs"]) == 2 and all(e >= 1 for e in first["sets"][k]["epochs"])
        assert sum(first["sets"][k]["stop_reasons"].values()) == 2
    assert init["mean_epochs"] == sum(first["sets"]["init"]["epochs"]) / 2
    for key in ("std_both", "std_init", "std_data"):
        assert isinstance(first[key], float) and first[key] >= 0
    assert set(first["shares"]) == {"init", "data"}
    assert first["verdict"] in ("adds up", "does not add up", "too few instances to tell")
    again = _study(app, runner, "variance", "--candidate", "small", "--instances", "2")
    assert again["trained_now"] == 0 and again["std_both"] == first["std_both"]
    from mlflow.tracking import MlflowClient

    run = MlflowClient(first["tracking_uri"]).get_run(first["run_id"])
    assert run.data.tags["robust.study_kind"] == "variance"
    assert math.isclose(run.data.metrics["std_init"], first["std_init"])


def test_sample_size_takes_its_sizes_from_the_study_file(app, runner, workdir):
    (workdir / "sizes.toml").write_text('task = "synthetic"\ncandidate = "small"\ninstances = 2\n'
                                        '[sample_size]\nsizes = [50, 100]\n')  # fmt: skip
    from_file = _study(app, runner, "sample-size", "-c", "sizes.toml", "--no-baselines")
    assert from_file["sizes"] == [50, 100] and from_file["trained_now"] == 4
    overridden = _study(app, runner, "sample-size", "-c", "sizes.toml", "--no-baselines", "--sizes", "100,200")
    assert overridden["sizes"] == [100, 200] and overridden["trained_now"] == 2  # 100's were logged
    (workdir / "bad.toml").write_text('task = "synthetic"\ncandidate = "small"\nsizes = "fifty"\n')
    bad = runner.invoke(app, ["study", "sample-size", "-c", "bad.toml"])
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert bad.stderr.startswith("error: bad.toml: --sizes 'fifty': 'fifty' is not a positive whole number"), bad.stderr
    assert experiments() == ["synthetic"]  # no other study written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sample-size", "-C", "nosuch", "--sizes", "50"], "nosuch"),
        (["sample-size", "-C", "small", "--sizes", "fifty"], "--sizes 'fifty'"),
        (["sample-size", "-C", "small", "--sizes", "200:100:3"], "START <= STOP"),
        (["sample-size", "-C", "small", "--sizes", "0,50"], "positive whole number"),
        (["sample-size", "-C", "small"], "no --sizes"),
        (["sample-size", "-C", "small", "--sizes", "50,5000"], "training pool of 2,000"),
        (["sample-size", "-C", "small", "--sizes", "1500"], "test set of 1,000"),
        (["sample-size", "-C", "small", "-C", "small", "--sizes", "50"], "same candidate twice"),
        (["variance", "-C", "small", "-n", "1"], "at least 2"),
        (["variance", "-n", "2"], "no candidate given"),
        (["variance", "-C", "nosuch", "-n", "2"], "nosuch"),
    ],
)
def test_bad_input_is_refused_in_one_line_before_anything_trains(app, runner, workdir, args, message):
    result = runner.invoke(app, ["study", *args, "--task", "synthetic"])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert experiments() == []


def test_sizes_and_saturation():
    from robustcli.robustness.statistics import Estimate
    from robustcli.analyses import parse_sizes, saturation_size

    paper = parse_sizes("100:32000:45")
    assert len(paper) == 45 and paper[0] == 100 and paper[-1] == 32000
    assert parse_sizes("200, 50,100,50") == [50, 100, 200]
    m = lambda v, w=0.05: Estimate(v, v - w, v + w)  # noqa: E731
    assert saturation_size([(100, m(1.0)), (200, m(0.8)), (400, m(0.78)), (800, m(0.77))]) == 200
    assert saturation_size([(100, m(1.0)), (200, m(0.8)), (400, m(0.6))]) is None  # still improving
    assert saturation_size([(100, m(1.0))]) is None


def test_decomposition_verdicts():
    import numpy as np

    from robustcli.robustness.decomposition import decompose

    rng = np.random.default_rng(0)
    init, data = rng.normal(0, 1.0, 400), rng.normal(0, 0.5, 400)
    adds = decompose({"both": rng.normal(0, math.sqrt(1.25), 400), "init": init, "data": data})
    assert adds.verdict == "adds up" and adds.note is None
    assert adds.shares["init"].low < 0.8 < adds.shares["init"].high
    interaction = decompose({"both": rng.normal(0, 3.0, 400), "init": init, "data": data})
    assert interaction.verdict == "does not add up" and "interaction" in interaction.note
    few = decompose({"both": [1.0, 1.2, 0.9], "init": [1.0, 1.1, 1.05], "data": [0.9, 1.0, 1.3]})
    assert few.verdict == "too few instances to tell" and "too few" in few.note


def test_an_analysis_at_another_size_keeps_the_tasks_implied_data_options(monkeypatch, workdir):
    """A sample-size or variance analysis's settings fingerprint the same as `assess` at that size,
    also for a task whose data is decided by a default it implies (the calorimeter's cell unit):
    so the analyses reuse what `assess` logged."""
    from robustcli.builtin.synthetic import SyntheticTask
    from robustcli.config import load_settings
    from robustcli.session import StudySession

    monkeypatch.setattr(SyntheticTask, "data_options", lambda self: {"population_seed": 0})
    base = StudySession(load_settings(task="synthetic"))
    at_64 = StudySession(load_settings(task="synthetic", train_size=64))
    assert base.variant(train_size=64).fingerprint == at_64.fingerprint
    assert base.variant(vary="init").settings.task_options == {"population_seed": 0}
