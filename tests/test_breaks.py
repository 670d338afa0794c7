"""What once broke around the commands (issue 20): each case ends in one line, its documented exit
code, and nothing written to the store or a run ended as failed (never RUNNING); and the guard that
turns any exception a command did not expect into one line and a log file."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from _broken_tasks import install_broken_tasks
from conftest import experiments

#: the issue's `Q`: a training of a second or less
Q = ["--train-size", "50", "--max-epochs", "2", "--min-epochs", "1"]
NO_PLACE = "/proc/robust-nowhere/x"  # a folder no one can create files in, root included


def one_line(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output, result.output
    lines = result.stderr.splitlines()  # notes and progress may come first; one error line, the last
    assert lines and lines[-1].startswith("error: ") and sum(line.startswith("error") for line in lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def runs_by_status(study: str) -> dict[str, int]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")
    exp = client.get_experiment_by_name(study)
    counts: dict[str, int] = {}
    for run in client.search_runs([exp.experiment_id]):
        counts[run.info.status] = counts.get(run.info.status, 0) + 1
    return counts


# -- output that cannot be written: refused before training ----------------------------------------
@pytest.mark.parametrize(
    "args, fragment",
    [
        (["study", "sample-size", "--task", "synthetic", "-C", "small", "-n", "2", "--sizes", "50", "--out", f"{NO_PLACE}.png"],
         f"--out '{NO_PLACE}.png': cannot write there"),
        (["study", "sample-size", "--task", "synthetic", "-C", "small", "-n", "2", "--sizes", "50", "--out", "."],
         "--out '.' is a folder: give a file name"),
        (["study", "variance", "--task", "synthetic", "-C", "small", "-n", "2", "--out", f"{NO_PLACE}.png"],
         f"--out '{NO_PLACE}.png': cannot write there"),
    ],
    ids=["sample-size-proc", "sample-size-folder", "variance-proc"],
)
def test_a_study_output_that_cannot_be_written_is_refused_before_training(app, runner, workdir, args, fragment):
    one_line(runner.invoke(app, [*args, *Q]), 2, fragment)
    assert experiments() == []


def test_export_and_report_to_unwritable_paths_are_one_line(app, runner, workdir):
    one_line(runner.invoke(app, ["export", "--study", "S", f"{NO_PLACE}.csv"]), 2,
             f"the output file '{NO_PLACE}.csv': cannot write there")  # fmt: skip
    one_line(runner.invoke(app, ["report", "--study", "S", "--out", f"{NO_PLACE}.html"]), 2,
             f"--out '{NO_PLACE}.html': cannot write there")  # fmt: skip


def test_an_analysis_run_whose_writing_fails_anyway_ends_failed(app, runner, workdir, monkeypatch):
    from robustcli.outputs import write_failed
    from robustcli.analyses import _common

    def full_disk(png: Path, out: Path) -> None:
        raise write_failed(out, OSError(28, "No space left on device"))

    copy = _common._copy
    monkeypatch.setattr(_common, "_copy", full_disk)
    result = runner.invoke(app, ["study", "sample-size", "--task", "synthetic", "-C", "small", "-n", "2", "--sizes", "50",
                                 "--no-baselines", "--out", "fig.png", *Q])  # fmt: skip
    one_line(result, 1, "--out 'fig.png': cannot write there (No space left on device)")
    assert runs_by_status("synthetic") == {"FINISHED": 3, "FAILED": 1}  # the candidate, 2 instances; the analysis run
    monkeypatch.setattr(_common, "_copy", copy)
    again = runner.invoke(app, ["study", "sample-size", "--task", "synthetic", "-C", "small", "-n", "2", "--sizes", "50",
                                "--no-baselines", "--out", "fig.png", "--json", *Q])  # fmt: skip
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["trained_now"] == 0 and Path("fig.png").stat().st_size > 0
    assert runs_by_status("synthetic") == {"FINISHED": 4}  # the same analysis run, now complete


# -- a broken task ---------------------------------------------------------------------------------
@pytest.fixture
def broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    site = install_broken_tasks(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    yield
    sys.modules.pop("robust_t_broken_tasks", None)


TRAINING = {
    "select": ["select", "--max-steps", "1"],
    "assess": ["assess", "-C", "small", "-n", "2"],
    "sample-size": ["study", "sample-size", "-C", "small", "-n", "2", "--sizes", "50"],
    "variance": ["study", "variance", "-C", "small", "-n", "2"],
    "nas": ["nas", "--trials", "2", "--top", "1", "-n", "2"],
}


@pytest.mark.parametrize("command", list(TRAINING))
@pytest.mark.parametrize("task, fragment", [
    ("broken-load", "task 'broken-load' could not load its data: load_data() raised OSError: the data disk is gone"),
    ("broken-nan", "task 'broken-nan': its data's pool_x holds 1 NaN or infinite values of 12,000"),
])  # fmt: skip
def test_a_task_whose_data_fails_is_one_line_and_nothing_written(app, runner, workdir, broken, command, task, fragment):
    one_line(runner.invoke(app, [*TRAINING[command], "--task", task, *Q]), 1, fragment)
    assert experiments() == []


@pytest.mark.parametrize("args", [
    ["check", "broken-init"], ["candidates", "--task", "broken-init"], ["tasks", "show", "broken-init"],
    ["select", "--task", "broken-init", "--max-steps", "1", *Q],
], ids=["check", "candidates", "tasks-show", "select"])  # fmt: skip
def test_a_task_whose_constructor_raises_is_one_line(app, runner, workdir, broken, args):
    one_line(runner.invoke(app, args), 2, "task 'broken-init' (robust_t_broken_tasks:InitRaises) failed when built: "
                                          "ZeroDivisionError: division by zero")  # fmt: skip
    assert experiments() == []


def test_the_api_refuses_nan_data_before_training(workdir, broken):
    from robustcli.api import Study
    from robustcli.errors import TaskError

    with pytest.raises(TaskError, match="NaN or infinite"):
        Study("broken-nan", train_size=50, max_epochs=2, min_epochs=1).assess("small", instances=2)
    assert experiments() == []


# -- a hostile environment -------------------------------------------------------------------------
def test_mlflow_database_tracebacks_are_not_logged(workdir, caplog):
    """On a full disk MLflow logged each failed commit with its traceback (98 lines) before raising it."""
    from robustcli.tracking.mlflow_store import MlflowStore

    MlflowStore(f"sqlite:///{Path('mlruns/mlflow.db').resolve()}").client  # noqa: B018 - connects
    log = logging.getLogger("mlflow.store.db.utils")
    with caplog.at_level(logging.ERROR, logger="mlflow.store.db.utils"):
        try:
            raise OSError("database or disk is full")
        except OSError:
            log.exception("SQLAlchemy database error. The following exception is caught.\ndisk full")
        log.error("another error")
    assert [r.getMessage() for r in caplog.records] == ["another error"]


def test_a_study_name_mlflow_refuses_is_bad_input_not_an_outage(app, runner, workdir):
    one_line(runner.invoke(app, ["assess", "--task", "synthetic", "-C", "small", "-n", "1", "--study", "s" * 10_000, *Q]),
             2, "--study: a name of 10,000 characters is longer than the 500 MLflow takes")  # fmt: skip
    assert experiments() == []


def test_a_cache_that_is_a_file_is_named(app, runner, workdir, monkeypatch):
    (workdir / "afile").write_text("")
    monkeypatch.setenv("ROBUST_CACHE_DIR", str(workdir / "afile"))
    result = runner.invoke(app, ["assess", "--task", "calo-energy", "-C", "model1", "-n", "1", *Q])
    one_line(result, 1, "task 'calo-energy' could not load its data", f"$ROBUST_CACHE_DIR='{workdir / 'afile'}' must be a folder")
    assert experiments() == []


# -- counting and small things ---------------------------------------------------------------------
@pytest.mark.parametrize("args, code, fragment", [
    (["study", "variance", "--task", "synthetic", "-C", "small", "-C", "wide", "-n", "2"], 2,
     "--candidate given 2 times (small, wide): the variance analysis splits one candidate's spread"),
    (["nas", "--task", "synthetic", "--against", "", "--trials", "2", "--top", "1"], 2,
     "--against '': give a candidate's name or id, or 'selected'"),
    (["candidates", "--task", "synthetic", "--where", "hidden=16", "--where", "hidden=32"], 2,
     "--where hidden=16 and --where hidden=32 give 'hidden' two values; give one"),
    (["select", "--task", "synthetic", "--where", "hidden=16", "--where", "hidden=32", "--max-steps", "1"], 2,
     "--where hidden=16 and --where hidden=32 give 'hidden' two values; give one"),
    (["study", "sample-size", "--task", "synthetic", "-C", "small", "--sizes", "²"], 2,
     "--sizes '²': '²' is not a positive whole number"),
], ids=["variance-two-C", "nas-against-empty", "candidates-where-twice", "select-where-twice", "sizes-superscript"])  # fmt: skip
def test_small_refusals(app, runner, workdir, args, code, fragment):
    one_line(runner.invoke(app, [*args, *Q] if args[0] != "candidates" else args), code, fragment)
    assert experiments() == []


def test_the_same_where_twice_is_fine(app, runner):
    result = runner.invoke(app, ["candidates", "--task", "synthetic", "--where", "hidden=16", "--where", "hidden=16", "--json"])
    assert result.exit_code == 0 and len(json.loads(result.stdout)["candidates"]) == 34  # 32 of the grid, small and unstable


def test_replay_budget_too_small_is_refused_before_any_note(app, runner, workdir):
    table = workdir / "T.csv"
    table.write_text("candidate,instance,loss\na,0,1\nb,0,2\nc,0,3\na,1,1.1\nb,1,2.1\nc,1,3.1\n")
    result = runner.invoke(app, ["select", "--replay", "T.csv", "--budget", "1"])
    assert result.exit_code == 2 and result.stderr == (
        "error: --budget 1 is below the 3 trainings the first step needs (3 candidates in T.csv)\n"
    )


def test_trained_now_counts_only_what_this_process_trained():
    """A second `study sample-size` at once waited for the first's instances and read them: 0 trained, not 18."""
    from robustcli.analyses._common import Part, train_parts

    class Rec:
        def __init__(self, index: int, fresh: bool) -> None:
            self.index, self.fresh = index, fresh

    class Cand:
        id = "c"

    class Session:
        def prepare_executor(self):
            return None

        def train(self, jobs, executor=None):
            for cand, index in jobs:
                yield cand, Rec(index, fresh=index == 0)  # instance 1 came from another process

    part = Part("size 50", Session(), [Cand()], 2, records={"c": {}}, jobs=[(Cand(), 0), (Cand(), 1)])
    assert train_parts(Session(), [part]) == 1
    assert sorted(part.records["c"]) == [0, 1]


def test_a_baseline_claimed_by_another_process_is_read_not_fitted_again(workdir, monkeypatch):
    """Two studies at once: the second waits for the baseline's lock, then finds the first's run."""
    from robustcli.config import load_settings
    from robustcli.execution import baselines
    from robustcli.session import StudySession

    session = StudySession(load_settings(task="synthetic", train_size=50))
    reads = iter([None, [0.5, 0.6]])  # before the lock: nothing yet; after it: the other's fit
    monkeypatch.setattr(baselines, "logged_baseline_losses", lambda *a: next(reads))
    monkeypatch.setattr(baselines, "fit_baseline", lambda *a: pytest.fail("fitted twice"))
    key = f"baseline:synthetic:{session.settings.data_fingerprint()}:least-squares"
    assert baselines.baseline_losses(session, "least-squares", None, 2) == ([0.5, 0.6], False)
    assert session.store.locks.try_lock(key)  # let go again
    session.store.locks.unlock(key)


# -- the guard -------------------------------------------------------------------------------------
@pytest.fixture
def crashing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """`robust tasks` with a bug: discovering plugins raises."""
    from robustcli import plugins

    def bug(*args, **kwargs):
        raise RuntimeError("a bug on purpose")

    monkeypatch.setattr(plugins, "discover", bug)
    monkeypatch.setenv("ROBUST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ROBUST_DEBUG", raising=False)
    return tmp_path / "cache" / "logs"


def test_an_unexpected_exception_is_one_line_and_a_log(app, runner, crashing):
    result = runner.invoke(app, ["tasks"])
    one_line(result, 1, "error: unexpected RuntimeError: a bug on purpose (the traceback is in ", "ROBUST_DEBUG=1 prints it")
    (log,) = crashing.iterdir()
    assert str(log) in result.stderr
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: a bug on purpose" in text


def test_robust_debug_prints_the_traceback(app, runner, crashing, monkeypatch):
    monkeypatch.setenv("ROBUST_DEBUG", "1")
    result = runner.invoke(app, ["tasks"])
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr and "RuntimeError: a bug on purpose" in result.stderr


def test_the_log_goes_to_the_temp_folder_when_the_cache_is_unwritable(app, runner, crashing, monkeypatch, tmp_path):
    import tempfile

    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("ROBUST_CACHE_DIR", str(tmp_path / "afile"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    one_line(runner.invoke(app, ["tasks"]), 1, f"the traceback is in {tmp_path / 'tmp'}/robust-crash-")


def test_main_guards_what_escapes_every_command(monkeypatch, capsys, crashing):
    """A plugin's command is not wrapped by handle_errors: main() catches what escapes it."""
    import typer

    from robustcli.cli import main as cli_main

    plugin_app = typer.Typer()

    @plugin_app.command()
    def boom() -> None:
        raise KeyError("plugin bug")

    monkeypatch.setattr(cli_main, "app", plugin_app)
    monkeypatch.setattr(sys, "argv", ["robust"])
    with pytest.raises(SystemExit) as exit_:
        cli_main.main()
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unexpected KeyError: 'plugin bug' (the traceback is in ") and err.count("\n") == 1


@pytest.mark.slow
def test_two_sample_size_studies_at_once_fit_one_baseline_and_count_right(workdir):
    """Two `robust study sample-size` at once on one store: once 2 of 3 stores got a duplicate
    baseline run, and the process that trained nothing said it trained 18."""
    import os
    import subprocess

    from mlflow.tracking import MlflowClient

    args = ["study", "sample-size", "--task", "synthetic", "-C", "small", "-C", "wide", "-n", "3", "--sizes", "50,100",
            "--json", *Q]  # fmt: skip
    code = "import sys; from robustcli.cli.main import main; sys.argv = ['robust', *sys.argv[1:]]; main()"
    env = {**os.environ, "ROBUST_DEBUG": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    trained = [json.loads(out)["trained_now"] for out, _ in outs]
    fitted = [json.loads(out)["fitted_now"] for out, _ in outs]
    assert sum(trained) == 2 * 2 * 3 and sum(fitted) == 2  # 2 candidates x 2 sizes x 3; a baseline per size
    client = MlflowClient(f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")
    exp = client.get_experiment_by_name("synthetic")
    baselines = client.search_runs([exp.experiment_id], "tags.`robust.kind` = 'baseline'")
    instances = client.search_runs([exp.experiment_id], "tags.`robust.kind` = 'instance'")
    assert len(baselines) == 2 and len(instances) == 12
