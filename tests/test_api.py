"""The Python API (robustcli.api): what a script or notebook gets, and that the CLI is its face."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import experiments

ROOT = Path(__file__).resolve().parents[1]
#: early stopping that keeps the synthetic task to a second or two per instance (as conftest.FAST)
FAST = {"min_epochs": 8, "window": 4, "max_epochs": 30, "train_size": 128}


def test_the_public_names_import_and_the_version_is_set() -> None:
    import robustcli
    import robustcli.api as api

    assert all(hasattr(api, name) for name in api.__all__)
    from importlib.metadata import version

    assert robustcli.__version__ == version("robustcli")
    assert "Study" in api.__all__ and api.Study.__doc__ and "Example" in api.Study.__doc__


def test_list_candidates_filters_by_parameters() -> None:
    from robustcli.api import list_candidates

    every = list_candidates("synthetic")
    adam16 = list_candidates("synthetic", where={"optimizer": "adam", "hidden": 16})
    assert every[0].name == "small" and 0 < len(adam16) < len(every)
    assert all(c.params["optimizer"] == "adam" and c.params["hidden"] == 16 for c in adam16)
    assert list_candidates("synthetic", where=["optimizer=adam", "hidden=16"]) == adam16
    frame = adam16[0].records()[0]
    assert frame["id"] == adam16[0].id and frame["hidden"] == 16


def test_assess_returns_a_dataclass_the_cli_prints_the_same(workdir: Path, capfd: pytest.CaptureFixture[str], app, runner) -> None:
    from robustcli.api import Assessment, Study

    study = Study("synthetic", **FAST)
    result = study.assess("small", instances=3)
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # the API draws nothing by default
    assert isinstance(result, Assessment) and result.trained_now == 3 and len(result.losses) == 3
    frame = result.to_frame()
    assert list(frame.columns) == ["candidate", "name", "instance", "init_seed", "data_seed", "train_size", "vary", "loss",
                                   "run_id", "fingerprint"] and len(frame) == 3  # fmt: skip
    # the command reads the same instances back and prints the same statistics
    cli = runner.invoke(app, ["assess", "--task", "synthetic", "-C", "small", "-n", "3", "--min-epochs", "8",
                              "--window", "4", "--max-epochs", "30", "--train-size", "128", "--json"])  # fmt: skip
    assert cli.exit_code == 0, cli.output
    printed = json.loads(cli.stdout)
    assert printed["trained_now"] == 0 and printed["statistics"] == json.loads(json.dumps(result.as_dict()["statistics"]))


def test_bad_input_raises_one_line_and_writes_nothing(workdir: Path) -> None:
    from robustcli.api import InputError, Study

    study = Study("synthetic", **FAST)
    with pytest.raises(InputError, match="instances=0: expected a positive whole number"):
        study.assess("small", instances=0)
    with pytest.raises(InputError, match="unknown keyword 'rules'; did you mean 'rule'"):
        study.select(rules="race")
    with pytest.raises(InputError, match="fraction=2.0: Input should be less than 1"):
        study.select(fraction=2.0)
    with pytest.raises(InputError, match="unknown candidate"):
        study.assess("no-such-candidate", instances=2)
    with pytest.raises(InputError):
        Study("synthetic", max_epochs=-1)
    assert experiments() == []


def test_progress_is_off_by_default_and_reports_to_any_progress(workdir: Path) -> None:
    from contextlib import nullcontext

    from robustcli.api import Progress, Study

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[tuple[str, object]] = []

        def start(self, key, description, total):
            self.calls.append(("start", total))

        def update(self, key, *, advance=0, completed=None, message="", description=None, total=None):
            self.calls.append(("update", message))

        def line(self, text):
            self.calls.append(("line", text))

        def note(self, text):
            self.calls.append(("note", text))

        def working(self, text):
            return nullcontext()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    recorder = Recorder()
    assert isinstance(recorder, Progress)
    Study("synthetic", progress=recorder, **FAST).assess("small", instances=2)
    assert recorder.calls[0] == ("start", 2)
    assert [kind for kind, _ in recorder.calls[1:]] == ["update", "update"]
    assert all(str(message).startswith("#") for _, message in recorder.calls[1:])


def test_select_and_report_from_python(workdir: Path) -> None:
    from robustcli.api import SelectionOutcome, Study, build_report, list_studies

    study = Study("synthetic", name="py", **FAST)
    chosen = study.select(rule="halving", candidates=["small", "wide"], max_steps=2)
    assert isinstance(chosen, SelectionOutcome) and chosen.selected in {c.candidate for c in chosen.summary}
    assert chosen.as_dict()["selected"] == chosen.selected and chosen.trained == 4
    rows = chosen.records()
    assert sum(r["selected"] for r in rows) == 1 and {"mean", "mean_low", "std"} <= set(rows[0])
    again = study.select(rule="halving", candidates=["small", "wide"], max_steps=2)
    assert again.trained == 0 and again.selected == chosen.selected  # resumed from MLflow
    report = build_report("py", out=workdir / "py.html")
    assert Path(report.out).exists() and report.summary[0].quote().startswith("rmse = ")
    assert [s.study for s in list_studies()] == ["py"]


def test_replay_selection_on_a_table(tmp_path: Path) -> None:
    from robustcli.api import replay_selection
    from robustcli.config import load_settings
    from robustcli.selection import write_loss_table

    rows = [(c, i, base + 0.01 * i) for c, base in (("a", 0.1), ("b", 0.2), ("c", 0.3)) for i in range(4)]
    table = tmp_path / "losses.csv"
    write_loss_table(table, rows)
    outcome = replay_selection(table, rule="halving")
    assert replay_selection(table, settings=load_settings(rule="halving")).selected == outcome.selected
    assert outcome.selected == "a" and outcome.instances == 4
    assert outcome.records()[0]["step"] == 1


def test_the_example_script_runs(tmp_path: Path, empty_store: Path) -> None:
    """examples/api.py, as a user would run it, on an empty store (migrated once for the suite)."""
    import shutil

    shutil.copy(empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ROBUST_CACHE_DIR": str(tmp_path / "cache")}
    first = subprocess.run([sys.executable, str(ROOT / "examples" / "api.py"), uri], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "selected " in first.stdout and "training syst." in first.stdout and (tmp_path / "api-example.html").exists()
    assert "(3 trained now)" in first.stdout


def test_the_studies_from_python_give_tables(workdir: Path) -> None:
    from robustcli.api import Study

    study = Study("synthetic", **FAST)
    sizes = study.sample_size(["small"], [64, 128], instances=2, baselines=False)
    frame = sizes.to_frame()
    assert list(frame["size"]) == [64, 128] and {"mean", "mean_low", "median_high"} <= set(frame.columns)
    spread = study.variance("small", instances=2)
    assert [r["set"] for r in spread.records()] == ["both", "init", "data"]
    assert spread.as_dict()["std_both"] == spread.records()[0]["std"]
