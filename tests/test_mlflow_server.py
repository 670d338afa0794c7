"""A team's tracking server: a real `mlflow server` on a loopback port, a study end to end against it,
and the server going away mid-study (issue 12, item 4).

One server (sqlite backend and artifacts in a temporary folder) serves the whole module, and one
uninterrupted `robust select` on it is both checked (JSON only, every instance there) and the
reference the interrupted study must end equal to. The second test kills the server with SIGKILL
while `robust select` trains, then restarts it on the same port and database. Commands whose
stdout, stderr and exit code are the point run as real processes; the others run in-process
(CliRunner) to spare two cores a torch and MLflow import each.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _mlflow_server import MlflowServer
from conftest import FAST

#: the installed console script, next to the interpreter that runs the tests
ROBUST = [str(Path(sys.executable).with_name("robust"))]

#: seconds `robust` may take to give up once the server is gone (on main: 4-9 s, then a traceback)
EXIT_AFTER_LOSS_S = 60

#: four candidates of the synthetic task that never share a stack (each its own architecture or
#: batch size), so a resumed step trains exactly what an uninterrupted one would
CANDIDATES = "small,wide,c36b12850b1,cd632115eb0"


def _select_args(study: str, uri: str) -> list[str]:
    return [
        "select", "--task", "synthetic", *FAST, "--candidates", CANDIDATES, "--rule", "halving",
        "--study", study, "--tracking-uri", uri, "--json",
    ]


def _env() -> dict[str, str]:
    """The environment of a user's shell: no tracking URI, nothing that silences MLflow."""
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", None)
    return env


def _one_json(stdout: str) -> dict:
    """stdout as exactly one JSON document, or a failure that says what else was printed."""
    try:
        return json.loads(stdout)
    except json.JSONDecodeError as exc:
        stray = [line for line in stdout.splitlines() if "View run" in line or "View experiment" in line]
        pytest.fail(
            f"stdout is not one JSON document ({exc}); {len(stray)} of its {len(stdout.splitlines())} lines "
            f"are MLflow's 'View run/experiment' lines, e.g. {stray[:2]}; stdout starts {stdout[:200]!r}"
        )


def _runs(uri: str, study: str) -> list:
    """Every run of a study on the server, deleted ones included."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(study)
    assert exp is not None, f"no experiment {study!r} on {uri}"
    return client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=5000)


def _json_at_end(stdout: str) -> dict:
    """The JSON document that ends stdout, whatever came before it (for the reference's values only)."""
    start = stdout.find("{") if stdout.startswith("{") else stdout.find("\n{") + 1
    return json.loads(stdout[start:])


def _running(uri: str, study: str) -> list[str]:
    """Runs of the study whose status is RUNNING, deleted ones included (a deleted husk still says RUNNING)."""
    return [
        f"{r.info.run_name} ({r.info.run_id}, {r.info.lifecycle_stage})"
        for r in _runs(uri, study) if r.info.status == "RUNNING"
    ]


def _losses(app, runner, uri: str, study: str, out: Path) -> list[tuple[str, int, str]]:
    """The study's instance losses as `robust export` writes them: (candidate, instance, loss)."""
    result = runner.invoke(app, ["export", "--study", study, "--tracking-uri", uri, str(out)])
    assert result.exit_code == 0, result.output
    with out.open(newline="") as f:
        return sorted((r["candidate"], int(r["instance"]), r["loss"]) for r in csv.DictReader(f))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, empty_store: Path):
    folder = tmp_path_factory.mktemp("mlflow-server")
    shutil.copy(empty_store, folder / "server.db")  # a migrated schema: the server starts without migrating
    (folder / "artifacts").mkdir()
    srv = MlflowServer(folder / "server.db", folder / "artifacts").start()
    # while the server boots: the in-process commands' imports (torch, MLflow, the CLI), once
    import mlflow.tracking  # noqa: F401
    import torch  # noqa: F401

    import robustcli.cli.main  # noqa: F401

    try:
        srv.wait()
        yield srv
    finally:
        srv.kill()  # the store is thrown away: no need for uvicorn's seconds-long clean shutdown


@pytest.fixture(scope="module")
def uninterrupted(server, tmp_path_factory):
    """The study of the interruption test, run once without interruption: (exit code, stdout, output)."""
    from typer.testing import CliRunner

    from robustcli.cli.main import app

    folder = tmp_path_factory.mktemp("uninterrupted")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setenv("ROBUST_CACHE_DIR", str(folder / "cache"))
        result = CliRunner().invoke(app, _select_args("srv-uninterrupted", server.uri))
    return result.exit_code, result.stdout, result.output


def test_a_study_against_a_server_prints_json_only_and_lands_there(server, uninterrupted, workdir, app, runner):
    uri = server.uri
    # a real process: its stdout is exactly what `robust assess ... --json | jq` would read
    done = subprocess.run(
        [*ROBUST, "assess", "--task", "synthetic", *FAST, "--candidate", "small", "-n", "3",
         "--study", "srv-assess", "--tracking-uri", uri, "--json"],
        capture_output=True, text=True, env=_env(), timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = _one_json(done.stdout)
    assert report["instances"] == 3 and report["trained_now"] == 3 and report["failed"] == 0

    runs = {r.info.run_id: r for r in _runs(uri, "srv-assess")}
    for run_id, loss in zip(report["run_ids"], report["losses"], strict=True):
        assert run_id in runs, f"instance run {run_id} is not on the server"
        assert runs[run_id].info.status == "FINISHED"
        assert runs[run_id].data.metrics["test_loss"] == loss
    assert _running(uri, "srv-assess") == []

    # select, in-process: CliRunner's stdout is sys.stdout, where MLflow writes its 'View run' lines
    exit_code, stdout, output = uninterrupted
    assert exit_code == 0, output
    chosen = _one_json(stdout)
    assert chosen["reason"] == "one-left" and chosen["trained"] == chosen["trainings"]
    assert len(_losses(app, runner, uri, "srv-uninterrupted", workdir / "select.csv")) == chosen["trainings"]
    assert _running(uri, "srv-uninterrupted") == []


def test_server_lost_mid_study_one_line_then_an_identical_resume(server, uninterrupted, workdir, app, runner):
    from mlflow.tracking import MlflowClient

    uri, study = server.uri, "srv-lost"
    proc = subprocess.Popen(
        [*ROBUST, *_select_args(study, uri)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    try:
        # kill the server once the study is under way: its first instance is on the server, nine to go
        client, deadline = MlflowClient(uri), time.monotonic() + 300
        while True:
            assert proc.poll() is None, f"robust exited ({proc.returncode}) before the server was killed: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no instance reached the server within 300 s"
            exp = client.get_experiment_by_name(study)
            if exp is not None and client.search_runs([exp.experiment_id], "metrics.test_loss >= 0", max_results=1):
                break
            time.sleep(0.2)
        server.kill()
        killed = time.monotonic()
        try:
            out, err = proc.communicate(timeout=EXIT_AFTER_LOSS_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(
                f"robust still running {EXIT_AFTER_LOSS_S} s after the server went away; its stderr so far "
                f"({len(err.splitlines())} lines) ends:\n{err[-1500:]}"
            )
        gave_up_s = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    assert proc.returncode != 0, "the study finished before the server was killed: make it longer"
    assert proc.returncode > 0, f"robust died of signal {-proc.returncode}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, (
        f"wanted one line on stderr, got {len(lines)} (exit {proc.returncode}, {gave_up_s:.1f} s after the kill):\n"
        + "\n".join(lines[:8]) + ("\n...\n" + "\n".join(lines[-4:]) if len(lines) > 12 else "")
    )
    print(f"server lost: exit {proc.returncode} after {gave_up_s:.1f} s: {lines[0]}")

    # the server comes back on the same port and database; the same command finishes the study
    server.start().wait()
    resumed = runner.invoke(app, _select_args(study, uri))
    assert resumed.exit_code == 0, resumed.output
    again = _one_json(resumed.stdout)
    assert _running(uri, study) == [], "runs left RUNNING after the resume"

    # exactly what the same study gets uninterrupted, in a fresh experiment of the same server
    exit_code, stdout, output = uninterrupted
    assert exit_code == 0, output
    reference = _json_at_end(stdout)
    for key in ("selected", "reason", "trainings", "survivors_per_step", "values"):
        assert again[key] == reference[key], key
    assert _losses(app, runner, uri, study, workdir / "resumed.csv") == _losses(
        app, runner, uri, "srv-uninterrupted", workdir / "reference.csv"
    )
