"""`robust select` on a real (tiny) study: trains, logs, resumes, locks, exports, replays."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import FAST

ROOT = Path(__file__).resolve().parents[1]



def _grid_ids(n):
    from robustcli.builtin.synthetic import SyntheticTask

    return [c.id for c in list(SyntheticTask().search_space())[:n]]


def _select(app, runner, *args):
    cands = ",".join(["small", "wide", *_grid_ids(2)])
    return runner.invoke(
        app, ["select", "--task", "synthetic", *FAST, "--candidates", cands, "--rule", "halving", "--json", *args]
    )


def test_select_trains_then_resumes_without_retraining(app, runner, workdir):
    first = _select(app, runner, "--budget", "5")
    assert first.exit_code == 0, first.output
    partial = json.loads(first.stdout)
    assert partial["reason"] == "budget" and partial["trained"] == 4
    done = json.loads(_select(app, runner).stdout)
    assert done["reason"] == "one-left"
    assert done["trainings"] == done["trained"] + 4  # the first step came from MLflow
    again = json.loads(_select(app, runner).stdout)
    assert again["trained"] == 0
    assert again["selected"] == done["selected"]
    assert again["survivors_per_step"] == done["survivors_per_step"]
    assert len(done["summary"]) == 1 and done["summary"][0]["candidate"] == done["selected"]


def test_a_running_selection_refuses_a_second_one(app, runner, workdir):
    """The selection lock is a record lock beside the store: held by a live process, a second
    select is refused naming it; once that process is killed, nothing is left to block the next."""
    assert _select(app, runner, "--budget", "4").exit_code == 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("synthetic")
    key = client.search_runs([exp.experiment_id], "tags.`robust.kind` = 'selection'")[0].data.tags["robust.selection_key"]
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import os, socket, sys, time
            from pathlib import Path
            sys.path.insert(0, {str(ROOT)!r})
            from robustcli.tracking.locks import lock_file
            from robustcli.tracking.processes import process_start
            folder = Path("mlruns/robust-locks")
            assert lock_file(folder / "mlflow.db.lock").try_lock("select:synthetic:{key}")
            (folder / "select-{key}.owner").write_text(f"{{socket.gethostname()}}:{{os.getpid()}}:{{process_start(os.getpid())}}")
            print("holding", flush=True)
            time.sleep(120)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        result = _select(app, runner)
        assert result.exit_code == 2
        assert "being selected by another process" in result.stderr and f"{socket.gethostname()}:{holder.pid}" in result.stderr
        assert ", running since " in result.stderr and " ago)" in result.stderr  # since when, in words
        # refused at once: before the data load (the API's progress would show it)
        from robustcli.api import InputError, Study

        seen: list[str] = []

        class Seen:
            def start(self, *a, **k): ...
            def update(self, *a, **k): ...
            def line(self, text): ...
            def note(self, text): ...
            def __enter__(self): return self  # noqa: E704
            def __exit__(self, *exc): ...

            def working(self, text):
                from contextlib import nullcontext

                seen.append(text)
                return nullcontext()

        study = Study("synthetic", progress=Seen(), min_epochs=8, window=4, max_epochs=30)
        with pytest.raises(InputError, match="being selected by another process"):
            study.select(rule="halving", candidates=["small", "wide", *_grid_ids(2)])
        assert seen == []
    finally:
        holder.kill()
        holder.wait()
    assert _select(app, runner).exit_code == 0


def test_studies_lists_and_export_writes_a_loss_table(app, runner, workdir):
    done = json.loads(_select(app, runner).stdout)
    listing = json.loads(runner.invoke(app, ["studies", "--json"]).stdout)
    row = listing["studies"][0]
    assert row["study"] == "synthetic" and row["instances"] == done["trainings"]
    assert any(s.startswith("finished") for s in row["selections"])
    out = runner.invoke(app, ["export", "--study", "synthetic", "losses.csv"])
    assert out.exit_code == 0, out.output
    header = (workdir / "losses.csv").read_text().splitlines()[0]
    assert header.startswith("candidate,instance,loss")


def test_unknown_rule_is_refused_before_training(app, runner, workdir):
    result = _select(app, runner, "--rule", "halfing")
    assert result.exit_code == 2 and "unknown rule 'halfing'" in result.stderr
    from conftest import experiments

    assert experiments() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "cuda"], "--device cuda"),
        (["--executor", "ray", "--address", "127.0.0.1:9"], "nothing answers at 127.0.0.1:9"),
    ],
)
def test_an_executor_that_cannot_run_is_refused_before_the_selection_run(app, runner, workdir, args, message):
    import torch

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = _select(app, runner, *args)
    assert result.exit_code == 2 and message in result.stderr
    from conftest import experiments

    assert experiments() == []  # no experiment, no selection run left "interrupted"


def test_report_draws_the_study(app, runner, workdir):
    assert _select(app, runner).exit_code == 0
    result = runner.invoke(app, ["report", "--study", "synthetic", "--out", "fig.png"])
    assert result.exit_code == 0, result.output
    assert (workdir / "fig.png").read_bytes()[:4] == b"\x89PNG"
    page = runner.invoke(app, ["report", "--study", "synthetic", "--out", "report.html", "--json"])
    assert page.exit_code == 0, page.output
    text = (workdir / "report.html").read_text()
    assert "data:image/png;base64," in text and "training syst." in text and "http" not in text
    assert json.loads(page.stdout)["summary"][0]["quote"].startswith("rmse = ")


def test_the_picks_confidence_is_in_the_json_the_report_and_mlflow(app, runner, workdir):
    import mlflow

    result = _select(app, runner, "--rule", "race", "--max-steps", "3")
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)
    assert done["selected"] in done["indistinguishable"]
    assert set(done["survivors"]) <= set(done["p_best"]) and abs(sum(done["p_best"].values()) - 1) < 1e-3
    page = runner.invoke(app, ["report", "--study", "synthetic", "--out", "report.html", "--json"])
    assert page.exit_code == 0, page.output
    assert json.loads(page.stdout)["selection_confidence"]["indistinguishable"] == done["indistinguishable"]
    assert "How sure is the pick?" in (workdir / "report.html").read_text()
    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("synthetic")
    (run,) = client.search_runs([exp.experiment_id], "tags.`robust.kind` = 'selection'")
    assert run.data.metrics["p_best_selected"] == pytest.approx(done["p_best"][done["selected"]], abs=1e-6)
    assert run.data.metrics["indistinguishable"] == len(done["indistinguishable"])
    assert f"p_best.{done['selected']}" in run.data.metrics


def test_final_instances_complete_the_survivors_summary(app, runner, workdir):
    result = _select(app, runner, "--final-instances", "4")
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)
    assert done["summary"][0]["instances"] == 4


def test_where_filters_candidates(app, runner, workdir):
    result = runner.invoke(
        app,
        ["select", "--task", "synthetic", *FAST, "--where", "hidden=8", "--where", "layers=1", "--where", "optimizer=adam",
         "--where", "activation=relu", "--where", "batch_size=64", "--rule", "halving", "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["candidates"] == 2  # the two learning rates


def test_a_step_stacks_candidates_that_differ_only_in_optimiser_settings(app, runner, workdir):
    """One instance each of two candidates differing only in lr train as one stack, record it,
    and `robust reproduce` rebuilds that stack bit for bit."""
    from mlflow.tracking import MlflowClient

    where = ["--where", "hidden=8", "--where", "layers=1", "--where", "optimizer=adam", "--where", "activation=relu",
             "--where", "batch_size=64"]  # fmt: skip
    result = runner.invoke(app, ["select", "--task", "synthetic", *FAST, *where, "--rule", "halving", "--json"])
    assert result.exit_code == 0, result.output
    client = MlflowClient(json.loads(result.stdout)["tracking_uri"])
    exp = client.get_experiment_by_name("synthetic")
    runs = client.search_runs([exp.experiment_id], "tags.`robust.kind` = 'instance' and tags.`robust.instance_index` = '0'")
    assert len(runs) == 2
    ids = {r.data.tags["robust.candidate_id"] for r in runs}
    for run in runs:
        tags = run.data.tags
        other = (ids - {tags["robust.candidate_id"]}).pop()
        assert tags["robust.engine"] == "stacked"
        assert sorted(tags["robust.stack"].split(",")) == sorted(["0", f"{other}:0"])
    out = runner.invoke(app, ["reproduce", runs[0].info.run_id, "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["bitwise_equal"] is True


BAD = [
    (["--where", "hidden=7"], "no candidate matches --where hidden=7"),
    (["--candidates", "small,wide", "--warmup", "3", "--budget", "4"], "--warmup 3 needs 6 trainings"),
    (["--candidates", "small,wide", "--criterion", "meen"], "unknown criterion 'meen'"),
    (["--candidates", "small"], "at least 2 candidates"),
    (["--candidates", "small,wide", "--train-size", "2001"], "--train-size 2001 exceeds the training pool of 2000"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_selection_input(app, runner, workdir, args, message):
    from conftest import experiments

    result = runner.invoke(app, ["select", "--task", "synthetic", *FAST, *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert experiments() == []


def test_a_study_of_another_task_is_refused(app, runner, workdir):
    from robustcli.tracking.mlflow_store import MlflowStore

    MlflowStore(f"sqlite:///{workdir}/mlruns/mlflow.db").ensure_experiment("mine", tags={"robust.task": "digits"})
    result = runner.invoke(app, ["select", "--task", "synthetic", *FAST, "--study", "mine", "--candidates", "small,wide"])
    assert result.exit_code == 2 and "belongs to task 'digits'" in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(
    not any(__import__("shutil").which(b) for b in ("chromium", "chromium-browser", "google-chrome")),
    reason="headless Chromium is not installed (apt-get install chromium)",
)
def test_report_page_renders_in_a_browser(app, runner, workdir):
    import shutil
    import subprocess

    assert _select(app, runner).exit_code == 0
    assert runner.invoke(app, ["report", "--study", "synthetic", "--out", "report.html"]).exit_code == 0
    browser = next(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b))
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         f"--screenshot={workdir / 'shot.png'}", "--window-size=1400,1000", (workdir / "report.html").as_uri()],
        check=True, capture_output=True, timeout=60,
    )
    assert (workdir / "shot.png").stat().st_size > 10_000


def test_a_candidate_with_one_instance_is_quoted_without_a_spread():
    import math

    from robustcli.api import CandidateSummary
    from robustcli.robustness import summarize_instances

    one, three = (CandidateSummary(c, None, c, summarize_instances(losses, seed=0), losses, "rmse").headline()
                  for c, losses in (("a", [0.5]), ("b", [0.4, 0.5, 0.6])))
    assert one["quote"] == "rmse = 0.5 (1 finished instance: no spread yet)" and math.isnan(one["std"])
    assert three["quote"] == "rmse = 0.5 +- 0.1 (training syst., 3 instances)"


def test_the_paper_rule_says_when_it_has_no_baseline_and_where_it_cuts(app, runner, workdir):
    args = ["select", "--task", "synthetic", *FAST, "--candidates", "small,wide", "--rule", "paper", "--max-steps", "1"]
    alone = runner.invoke(app, args)
    assert alone.exit_code == 0, alone.output
    notes = [line for line in alone.stderr.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: no baseline loss, so --rule paper skips its cut at baseline + 20% and only halves; log them first: "
        "robust baseline --task synthetic --study synthetic --train-size 256 (with this selection's --seed, "
        "--test-size, --sampling and -o)"
    ]
    assert runner.invoke(app, ["baseline", "--task", "synthetic", "-n", "2", "--json"]).exit_code == 0
    cut = runner.invoke(app, args)
    assert cut.exit_code == 0, cut.output
    assert "note:" not in cut.stderr
    step = " ".join(cut.stderr.split())
    assert "step 1: 2 -> " in step and "candidates; baseline cut at " in step and "(baseline " in step
    payload = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert payload["baseline_cut"].startswith("baseline cut at ") and payload["baseline_cut"].endswith(" + 20%)")


def test_every_command_shows_the_same_interval_and_a_readable_description(app, runner, workdir):
    """Bootstrap intervals come from one function with the study's seed (report used seed 0), and a
    candidate shows its name or readable description beside its id in every command."""
    grid = "c086df9b2b1"  # adam, lr 1e-2, batch 16, relu, 16 hidden, 1 layer
    described = f"adam-lr1e-2-bs16-activation=relu-hidden=16-layers=1 ({grid})"
    args = ["select", "--task", "synthetic", *FAST, "--seed", "3", "--candidates", f"small,{grid}", "--rule", "halving",
            "--final-instances", "5"]  # fmt: skip
    sel = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    (row,) = sel["summary"]
    label = f"{row['description']} ({row['candidate']})"
    assert label in {described, f"small ({sel['selected']})"} and sel["selected_description"] == row["description"]
    shown = runner.invoke(app, args)  # replayed from the store: the step lines and the table
    assert shown.exit_code == 0, shown.output
    assert described in " ".join(shown.stderr.split()) and label in " ".join(shown.stdout.split())

    assessed = json.loads(runner.invoke(app, ["assess", "--task", "synthetic", *FAST, "--seed", "3", "-C", row["candidate"],
                                              "-n", "5", "--json"]).stdout)  # fmt: skip
    assert assessed["trained_now"] == 0 and assessed["candidate_description"] == row["description"]
    reported = json.loads(runner.invoke(app, ["report", "--study", "synthetic", "--out", "r.html", "--json"]).stdout)
    (same,) = [r for r in reported["summary"] if r["candidate"] == row["candidate"]]
    assert assessed["statistics"] == row["statistics"] == same["statistics"]
    from robustcli.robustness import summarize_instances

    seed_0 = summarize_instances(assessed["losses"], seed=0).as_dict()["statistics"]
    assert same["statistics"] != seed_0  # the test would see the report's old seed 0
    # the name beside the description of the parameters (issue 21: ids, names and descriptions agree)
    assert {r["name"] or r["description"] for r in reported["summary"]} == {"small", described.split(" (")[0]}
    assert {r["name"] for r in reported["summary"]} == {"small", None}
    assert described in (workdir / "r.html").read_text()
    studies = runner.invoke(app, ["studies", "--json"])
    (study,) = json.loads(studies.stdout)["studies"]
    assert study["selections"] == [f"finished -> {label}"]
