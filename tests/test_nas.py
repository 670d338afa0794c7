"""`robust nas`: the JSON the checks read, MLflow's record of the search, resume, bad input."""

from __future__ import annotations

import json

import pytest
from conftest import FAST, experiments

pytest.importorskip("optuna")

#: a tiny search: small samples, few epochs
TINY = ["--task", "synthetic", *FAST, "--train-size", "64", "--json"]


def _nas(app, runner, *args):
    return runner.invoke(app, ["nas", *TINY, *args])


def test_nas_json_mlflow_and_resume(app, runner, workdir):
    result = _nas(app, runner, "--trials", "4", "--top", "2", "--instances", "2", "--against", "small")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["trials"] == 4 and report["sampler"] == "tpe" and report["sampler_seed"] == 0
    assert len(report["top"]) == 2
    for row in report["top"]:
        assert isinstance(row["params"], dict) and isinstance(row["mean"], float)
        assert row["instances"] == 2 and row["trial"] in range(4)
    assert report["against"]["name"] == "small" and report["against"]["role"] == "against"
    assert report["trained_trials"] <= 4 and report["trained_instances"] == 3 * 2
    assert experiments() == ["synthetic"]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(report["tracking_uri"])
    exp = client.get_experiment_by_name("synthetic").experiment_id
    trials = client.search_runs([exp], "tags.`robust.kind` = 'nas-trial'")
    assert len(trials) == 4
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {report["run_id"]}
    assert all("loss" in t.data.metrics for t in trials)
    assert {a.path for a in client.list_artifacts(report["run_id"])} >= {"nas.png", "nas.json"}

    again = json.loads(_nas(app, runner, "--trials", "4", "--top", "2", "--instances", "2", "--against", "small").stdout)
    assert again["trained_trials"] == 0 and again["trained_instances"] == 0
    assert again["trial_table"] == report["trial_table"] and again["top"] == report["top"]
    assert len(client.search_runs([exp], "tags.`robust.kind` = 'nas-trial'")) == 4

    drawn = runner.invoke(app, ["report", "--study", "synthetic", "--out", str(workdir / "r.html"), "--json"])
    assert drawn.exit_code == 0, drawn.output
    assert [s["top"] for s in json.loads(drawn.stdout)["nas"]] == [report["top"]]
    assert "Neural-architecture search" in (workdir / "r.html").read_text()


def test_more_trials_continue_the_search_as_if_uninterrupted(app, runner, workdir, empty_store):
    import shutil

    _nas(app, runner, "--trials", "2", "--top", "1", "--instances", "1")
    resumed = json.loads(_nas(app, runner, "--trials", "4", "--top", "1", "--instances", "1").stdout)
    assert resumed["trained_trials"] <= 2
    shutil.copy(empty_store, workdir / "other.db")
    fresh = json.loads(_nas(app, runner, "--trials", "4", "--top", "1", "--instances", "1",
                            "--tracking-uri", f"sqlite:///{workdir}/other.db").stdout)  # fmt: skip
    assert [t["candidate"] for t in fresh["trial_table"]] == [t["candidate"] for t in resumed["trial_table"]]
    assert [t["loss"] for t in fresh["trial_table"]] == [t["loss"] for t in resumed["trial_table"]]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--trials", "2", "--top", "3"], "--top 3 exceeds --trials 2"),
        (["--trials", "0"], "--trials must be a positive count"),
        (["--instances", "0"], "--instances must be a positive count"),
        (["--sampler", "grid"], "--sampler"),
        (["--against", "nosuch"], "--against"),
        (["--against", "selected"], "no finished selection"),
        (["--train-size", "5000", "--sampling", "without-replacement"], "exceeds the training pool of 2000"),
    ],
)
def test_bad_input_is_refused_in_one_line_before_anything_trains(app, runner, workdir, args, words):
    result = _nas(app, runner, *args)
    assert result.exit_code == 2, result.output
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == "" and experiments() == []


def test_a_grid_is_a_categorical_space_and_a_list_one_categorical_over_ids():
    import optuna

    from robustcli.task import Candidate, SearchSpace

    grid = SearchSpace.from_grid({"hidden": [(8,), (8, 4)], "lr": [1e-3, 1e-2]}, fixed={"optimizer": "adam"})
    trial = optuna.trial.FixedTrial({"hidden": "[8, 4]", "lr": 1e-2})
    assert grid.suggest(trial) == {"optimizer": "adam", "hidden": (8, 4), "lr": 1e-2}
    assert Candidate.from_params(grid.suggest(trial)).id in grid
    listed = SearchSpace([Candidate.from_params({"a": 1}), Candidate.from_params({"a": 2})])
    ids = sorted(c.id for c in listed)
    assert listed.suggest(optuna.trial.FixedTrial({"candidate": ids[1]})) == listed.get(ids[1]).params


def test_assess_takes_the_id_of_a_logged_candidate_outside_the_grid(app, runner, workdir):
    """A NAS pick need not lie on the task's grid: `robust assess` finds its id among the study's
    logged candidates (and an id the study never logged is still refused)."""
    from robustcli.config import load_settings
    from robustcli.session import StudySession
    from robustcli.task import Candidate

    settings = load_settings(task="synthetic", min_epochs=8, window=4, max_epochs=30)
    session = StudySession(settings)
    small = session.candidate("small")
    pick = Candidate.from_params({**small.params, "hidden": 24})  # 24 hidden units: not on the grid
    list(session.train([(pick, 0)]))
    result = runner.invoke(app, ["assess", "--task", "synthetic", *FAST, "-C", pick.id, "-n", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["trained_now"] == 1  # instance 0 was logged: reused
    unknown = runner.invoke(app, ["assess", "--task", "synthetic", *FAST, "-C", "c0123456789", "-n", "2"])
    assert unknown.exit_code == 2 and "unknown candidate" in unknown.stderr
