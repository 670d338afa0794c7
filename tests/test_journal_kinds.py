"""Every run kind a kill could half-write goes through the journal, as instances do
(robustcli/tracking/writer.py): a process killed while it writes a baseline's, an analysis's or a NAS
trial's run leaves the run to the next command on the store, which writes it whole; resuming then
gives the store an uninterrupted run would have (one run each, FINISHED, the same numbers). A
candidate's run, written at once beside its first instance, is completed by the next command.

The process is killed with ``os._exit`` (no finally, no atexit) at three points of the write:
once the run is journaled and before anything reaches MLflow, after MLflow created the run and
before its data, and after its data and before it is ended.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from robustcli.tracking import tags as T
from robustcli.tracking.writer import JOURNAL_DIR

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--min-epochs", "2", "--window", "2", "--max-epochs", "3"]

KILLER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {root!r})
    point, kind = sys.argv[1], sys.argv[2]
    from mlflow.tracking import MlflowClient
    from robustcli.tracking import writer

    def of_kind(client, run_id):
        return client.get_run(run_id).data.tags.get("robust.kind") == kind

    if point == "journaled":  # in the journal, nothing in MLflow yet
        submit = writer.BackgroundWriter.submit
        def dying_submit(self, run):
            submit(self, run)
            if dict(run["tags"]).get("robust.kind") == kind:
                os._exit(9)
        writer.BackgroundWriter.submit = dying_submit
    elif point == "created":  # created in MLflow, no data yet
        log_batch = MlflowClient.log_batch
        def dying_log_batch(self, run_id, *a, **k):
            if of_kind(self, run_id):
                os._exit(9)
            return log_batch(self, run_id, *a, **k)
        MlflowClient.log_batch = dying_log_batch
    else:  # "ended": its data written, still RUNNING
        set_terminated = MlflowClient.set_terminated
        def dying_set_terminated(self, run_id, status=None, end_time=None):
            if status == "FINISHED" and of_kind(self, run_id):
                os._exit(9)
            return set_terminated(self, run_id, status, end_time)
        MlflowClient.set_terminated = dying_set_terminated
    sys.argv = ["robust", *sys.argv[3:]]
    from robustcli.cli.main import main
    main()
    """
)


def killed(point: str, kind: str, args: list[str]) -> None:
    """Run `robust ARGS` in a new process that dies at ``point`` of writing its first run of ``kind``."""
    script = KILLER.format(root=str(ROOT))
    out = subprocess.run([sys.executable, "-c", script, point, kind, *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 9, out.stdout + out.stderr


def invoke(app, runner, args: list[str]) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def runs_of(kind: str, study: str) -> list:
    """Every run of ``kind`` in ``study``, deleted ones included."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")
    exp = client.get_experiment_by_name(study).experiment_id
    return client.search_runs([exp], f"tags.`{T.KIND}` = '{kind}'", run_view_type=ViewType.ALL)


def journals() -> list[Path]:
    return sorted((Path("mlruns") / JOURNAL_DIR).glob("*.jsonl"))


@pytest.mark.parametrize("point", ["journaled", "created", "ended"])
def test_a_baseline_killed_while_written_is_written_by_the_next_command_and_not_fitted_again(app, runner, workdir, point):
    args = ["baseline", "--task", "synthetic", "-n", "3", "--train-size", "64"]
    killed(point, T.BASELINE, [*args, "--study", "crash"])
    (dead,) = journals()
    resumed = invoke(app, runner, [*args, "--study", "crash"])
    assert not dead.exists()  # replayed, then removed
    reference = invoke(app, runner, [*args, "--study", "whole"])  # the same samples, never killed
    first = resumed["baselines"][0]["name"]
    assert not next(b for b in resumed["baselines"] if b["name"] == first)["fitted_now"]  # written, not refitted
    drop = ("fitted_now",)
    assert [{k: v for k, v in b.items() if k not in drop} for b in resumed["baselines"]] == \
        [{k: v for k, v in b.items() if k not in drop} for b in reference["baselines"]]  # fmt: skip
    live = [r for r in runs_of(T.BASELINE, "crash") if r.info.lifecycle_stage == "active"]
    assert sorted(r.data.tags[T.BASELINE_NAME] for r in live) == sorted(b["name"] for b in resumed["baselines"])
    assert all(r.info.status == "FINISHED" for r in live)
    whole = {r.data.tags[T.BASELINE_NAME]: r.data.metrics for r in runs_of(T.BASELINE, "whole")}
    assert {r.data.tags[T.BASELINE_NAME]: r.data.metrics for r in live} == whole


@pytest.mark.parametrize("point", ["ended"])
def test_an_analysis_run_killed_while_written_is_written_by_the_next_command_and_resumes_to_one_run(app, runner, workdir, point):
    args = ["study", "variance", "--task", "synthetic", "--candidate", "small", "--instances", "2", *TINY]
    killed(point, T.ANALYSIS, [*args, "--study", "crash"])
    (dead,) = journals()
    resumed = invoke(app, runner, [*args, "--study", "crash"])
    assert not dead.exists()  # replayed, then removed
    assert resumed["trained_now"] == 0  # every instance was logged before the kill
    reference = invoke(app, runner, [*args, "--study", "whole"])
    assert {k: v for k, v in resumed.items() if k not in ("run_id", "tracking_uri", "study", "trained_now")} == \
        {k: v for k, v in reference.items() if k not in ("run_id", "tracking_uri", "study", "trained_now")}  # fmt: skip
    live = [r for r in runs_of(T.ANALYSIS, "crash") if r.info.lifecycle_stage == "active"]
    assert [r.info.run_id for r in live] == [resumed["run_id"]] and live[0].info.status == "FINISHED"
    assert live[0].data.metrics == next(iter(runs_of(T.ANALYSIS, "whole"))).data.metrics
    from mlflow.tracking import MlflowClient

    client = MlflowClient(resumed["tracking_uri"])
    assert {a.path for a in client.list_artifacts(resumed["run_id"])} == {"variance.json", "variance.png"}


@pytest.mark.parametrize(("kind", "point"), [(T.NAS_TRIAL, "created"), (T.NAS, "ended")])
def test_a_nas_trial_or_report_killed_while_written_resumes_to_the_uninterrupted_search(app, runner, workdir, kind, point):
    pytest.importorskip("optuna")
    args = ["nas", "--task", "synthetic", *TINY, "--train-size", "64", "--trials", "3", "--top", "1", "--instances", "1"]
    killed(point, kind, [*args, "--study", "crash"])
    (dead,) = journals()
    resumed = invoke(app, runner, [*args, "--study", "crash"])
    assert not dead.exists()  # replayed, then removed
    reference = invoke(app, runner, [*args, "--study", "whole"])
    same = ("trial_table", "top", "against", "verdict", "trials", "failed_trials", "distinct_candidates", "key")
    assert {k: resumed[k] for k in same} == {k: reference[k] for k in same}
    trials = [r for r in runs_of(T.NAS_TRIAL, "crash") if r.info.lifecycle_stage == "active"]
    assert sorted(int(r.data.tags[T.TRIAL_NUMBER]) for r in trials) == [0, 1, 2]
    assert all(r.info.status == "FINISHED" and r.data.tags[T.PARENT_RUN_ID] == resumed["run_id"] for r in trials)
    (search,) = [r for r in runs_of(T.NAS, "crash") if r.info.lifecycle_stage == "active"]
    assert search.info.run_id == resumed["run_id"] and search.info.status == "FINISHED"
    assert search.data.tags[T.STATE] == "finished"


@pytest.mark.parametrize("point", ["created"])
def test_a_candidate_run_killed_while_written_is_completed_and_its_instances_resume(app, runner, workdir, point):
    """The candidate's run is written by the writer thread just before its first instance: a kill
    between its creation and its params leaves it RUNNING; the next command completes it and
    attaches the journaled instance to it."""
    args = ["assess", "--task", "synthetic", "-C", "small", "-n", "2", *TINY, "--train-size", "64"]
    killed(point, T.CANDIDATE, [*args, "--study", "crash"])
    (half,) = runs_of(T.CANDIDATE, "crash")
    assert half.info.status == "RUNNING" and not half.data.params
    resumed = invoke(app, runner, [*args, "--study", "crash"])
    reference = invoke(app, runner, [*args, "--study", "whole"])
    assert resumed["losses"] == reference["losses"] and resumed["trained_now"] <= 1  # instance 0 came from the journal
    (run,) = runs_of(T.CANDIDATE, "crash")
    (whole,) = runs_of(T.CANDIDATE, "whole")
    assert run.info.run_id == half.info.run_id and run.info.status == "FINISHED"
    assert run.data.params == whole.data.params and run.data.metrics == whole.data.metrics
    instances = runs_of(T.INSTANCE, "crash")
    assert len(instances) == 2 and {r.data.tags[T.PARENT_RUN_ID] for r in instances} == {run.info.run_id}
