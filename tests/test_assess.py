"""`robust assess`: trains what is missing, logs everything, reads it back, same numbers twice."""

from __future__ import annotations

import json

import pytest
from conftest import FAST, experiments


def _assess(app, runner, *args):
    return runner.invoke(app, ["assess", "--task", "synthetic", *FAST, "--json", *args])


def test_assess_trains_logs_and_reports(app, runner, workdir):
    result = _assess(app, runner, "--candidate", "small", "-n", "3")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["instances"] == 3 and report["trained_now"] == 3 and report["failed"] == 0
    assert set(report["statistics"]) == {"mean", "median", "min", "max", "std", "iqr", "q90_q10"}
    stats = report["statistics"]["mean"]
    assert stats["low"] <= stats["value"] <= stats["high"]
    assert experiments() == ["synthetic"]

    from mlflow.tracking import MlflowClient

    run = MlflowClient(report["tracking_uri"]).get_run(report["run_ids"][0])
    assert {"init_seed", "data_seed", "train_size", "instance_index"} <= set(run.data.params)
    assert {"test_loss", "epochs", "seconds"} <= set(run.data.metrics)
    for tag in ("robust.stop_reason", "robust.version.torch", "robust.version.robustcli", "robust.device", "robust.host"):
        assert tag in run.data.tags
    assert run.data.tags["mlflow.parentRunId"]


def test_a_lone_instance_trained_plainly_by_the_stacked_engine_says_why(app, runner, workdir):
    from mlflow.tracking import MlflowClient

    report = json.loads(_assess(app, runner, "--candidate", "small", "-n", "1").stdout)  # the default engine: stacked
    tags = MlflowClient(report["tracking_uri"]).get_run(report["run_ids"][0]).data.tags
    assert tags["robust.engine"] == "plain"
    assert tags["robust.plain_reason"] == "a lone instance: a stack of one trains slower than the plain loop for this model"


def test_resume_trains_only_what_is_missing(app, runner, workdir):
    first = json.loads(_assess(app, runner, "--candidate", "small", "-n", "2").stdout)
    second = json.loads(_assess(app, runner, "--candidate", "small", "-n", "3").stdout)
    assert second["trained_now"] == 1
    assert second["losses"][:2] == first["losses"]
    again = json.loads(_assess(app, runner, "--candidate", "small", "-n", "3").stdout)
    assert again["trained_now"] == 0 and again["losses"] == second["losses"]


def test_same_command_same_numbers_on_cpu(app, runner, workdir, empty_store):
    import shutil

    shutil.copy(empty_store, workdir / "other.db")
    a = json.loads(_assess(app, runner, "--candidate", "small", "-n", "2").stdout)
    b = json.loads(_assess(app, runner, "--candidate", "small", "-n", "2", "--tracking-uri", f"sqlite:///{workdir}/other.db").stdout)
    assert b["trained_now"] == 2
    assert a["losses"] == b["losses"]


def test_other_settings_are_another_experiment_of_instances(app, runner, workdir):
    a = json.loads(_assess(app, runner, "--candidate", "small", "-n", "1").stdout)
    b = json.loads(_assess(app, runner, "--candidate", "small", "-n", "1", "--train-size", "128").stdout)
    assert b["trained_now"] == 1 and a["fingerprint"] != b["fingerprint"]


def test_diverging_instance_is_recorded_as_failed(app, runner, workdir):
    result = _assess(app, runner, "--candidate", "unstable", "-n", "2")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["failed"] == 2 and report["stop_reasons"] == {"diverged": 2}
    from mlflow.tracking import MlflowClient

    run = MlflowClient(report["tracking_uri"]).get_run(report["run_ids"][0])
    assert run.info.status == "FAILED"
    assert "non-finite" in run.data.tags["robust.failure"]


def test_reproduce_is_bit_for_bit(app, runner, workdir):
    report = json.loads(_assess(app, runner, "--candidate", "small", "-n", "1").stdout)
    result = runner.invoke(app, ["reproduce", report["run_ids"][0], "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["bitwise_equal"] is True
    assert out["reproduced_test_loss"] == report["losses"][0]
    assert out["candidate_description"] == "small"


def test_study_file_with_cli_override(app, runner, workdir):
    (workdir / "study.toml").write_text(
        'task = "synthetic"\ncandidate = "small"\ninstances = 2\ntrain_size = 100\n'
        "[early_stopping]\nmin_epochs = 8\nwindow = 4\nmax_epochs = 30\n"
    )
    result = runner.invoke(app, ["assess", "-c", "study.toml", "--train-size", "64", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["instances"] == 2 and report["train_size"] == 64


BAD = [
    (["--task", "nope", "--candidate", "small"], "unknown task 'nope'"),
    (["--task", "synthetic", "--candidate", "nope"], "unknown candidate 'nope'"),
    (["--task", "synthetic", "--candidate", "small", "-n", "0"], "--instances must be a positive count"),
    (["--task", "synthetic", "--candidate", "small", "--train-size", "0"], "invalid value 0 for --train-size"),
    (["--task", "synthetic", "--candidate", "small", "--train-size", "5000", "--sampling", "without-replacement"], "exceeds the training pool of 2000"),
    (["--task", "synthetic", "--candidate", "small", "--train-size", "5000"],
     "--train-size 5000 exceeds the training pool of 2000 examples of task 'synthetic': a bootstrap sample larger"),
    (["--task", "synthetic", "--candidate", "small", "--sampling", "sometimes"], "for --sampling"),
    (["--task", "synthetic", "--candidate", "small", "--test-size", "most"], "for --test-size"),
    (["--task", "synthetic", "--candidate", "small", "--test-size", "5000"], "exceeds the test set of 1000"),
    (["--task", "synthetic", "--candidate", "small", "-o", "colour=red"], "unknown option 'colour'"),
    (["--task", "synthetic", "--candidate", "small", "--tracking-uri", "http://127.0.0.1:9"], "cannot reach tracking URI"),
    (["--task", "synthetic", "--candidate", "small", "--executor", "inprocess", "--workers", "2"], "--workers applies to --executor local"),
    (["--task", "synthetic", "--candidate", "small", "--address", "auto"], "--address applies to --executor ray"),
    (["--task", "synthetic", "--candidate", "small", "--threads", str(10**20)], "for --threads"),
    (["--task", "synthetic", "--candidate", "small", "--executor", "ray", "--address", "127.0.0.1:9"], "nothing answers at"),
    (["--task", "synthetic", "--candidate", "small", "--executor", "ray", "--address", "no-port"], "expected host:port"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_input_one_line_exit_2_nothing_written(app, runner, workdir, args, message):
    result = runner.invoke(app, ["assess", *FAST, *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert experiments() == []


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('task = "synthetic"\ncandidate = "small"\ncolour = 3\n', "unknown field 'colour'"),
        ('task = "synthetic"\n[early_stopping]\nwindow = "x"\n', "invalid value 'x' for 'early_stopping.window' (--window)"),
        ("task = \n", "not valid TOML"),
        ('task = "synthetic"\nexecutor = "local"\nworkers = true\n', "invalid value True for 'workers' (--workers)"),
        ('\udcff = 1\n', "not a text file in UTF-8"),
    ],
)
def test_bad_study_file(app, runner, workdir, toml, message):
    (workdir / "bad.toml").write_bytes(toml.encode("utf-8", "surrogateescape"))
    result = runner.invoke(app, ["assess", "-c", "bad.toml"])
    assert result.exit_code == 2
    assert message in result.stderr and "bad.toml" in result.stderr
    assert experiments() == []


def test_baseline_is_logged_and_found_by_the_paper_rule(app, runner, workdir):
    result = runner.invoke(app, ["baseline", "--task", "synthetic", "-n", "3", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["baselines"]
    assert rows[0]["name"] == "least-squares" and len(rows[0]["losses"]) == 3
    # the same samples give the same losses
    again = json.loads(runner.invoke(app, ["baseline", "--task", "synthetic", "-n", "3", "--json"]).stdout)
    assert again["baselines"][0]["losses"] == rows[0]["losses"]
    table = runner.invoke(app, ["baseline", "--task", "synthetic", "-n", "3"])  # the table a person reads
    assert table.exit_code == 0 and "least-squares" in table.stdout and "samples of 256" in table.stdout, table.output
    sel = runner.invoke(
        app, ["select", "--task", "synthetic", *FAST, "--candidates", "small,wide", "--rule", "paper", "--json"]
    )
    assert sel.exit_code == 0, sel.output
    assert json.loads(sel.stdout)["baseline_loss"] == min(r["mean"] for r in rows)


def test_baseline_refuses_a_bootstrap_sample_larger_than_the_pool(app, runner, workdir):
    result = runner.invoke(app, ["baseline", "--task", "synthetic", "-n", "2", "--train-size", "2001"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert result.stderr.startswith("error: --train-size 2001 exceeds the training pool of 2000 examples")
    assert experiments() == []


def test_test_size_train_scores_a_subsample_as_large_as_the_training_sample(app, runner, workdir):
    report = json.loads(_assess(app, runner, "--candidate", "small", "-n", "1", "--train-size", "100", "--test-size", "train").stdout)
    from mlflow.tracking import MlflowClient

    run = MlflowClient(report["tracking_uri"]).get_run(report["run_ids"][0])
    assert run.data.params["test_size"] == "100"


def test_stacked_instances_reproduce_bit_for_bit_and_agree_with_plain(app, runner, workdir, empty_store):
    import shutil

    stacked = json.loads(_assess(app, runner, "--candidate", "small", "-n", "3").stdout)
    from mlflow.tracking import MlflowClient

    run = MlflowClient(stacked["tracking_uri"]).get_run(stacked["run_ids"][1])
    assert run.data.tags["robust.engine"] == "stacked" and run.data.tags["robust.stack"] == "0,1,2"
    out = json.loads(runner.invoke(app, ["reproduce", stacked["run_ids"][1], "--json"]).stdout)
    assert out["bitwise_equal"] is True
    shutil.copy(empty_store, workdir / "plain.db")
    plain = json.loads(
        _assess(app, runner, "--candidate", "small", "-n", "3", "--engine", "plain", "--tracking-uri", f"sqlite:///{workdir}/plain.db").stdout
    )
    spread = max(plain["losses"]) - min(plain["losses"])
    for a, b in zip(stacked["losses"], plain["losses"], strict=True):
        assert abs(a - b) < 0.01 * spread  # floating-point reordering only: far below the spread


def test_json_output_is_strict_json_even_when_every_instance_fails(app, runner, workdir):
    result = _assess(app, runner, "--candidate", "unstable", "-n", "2")
    report = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert report["statistics"]["mean"]["value"] is None and report["losses"] == [None, None]


def test_refused_input_creates_no_store(app, runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for args in (["--test-size", "5000"], ["-o", "noise=abc"], ["--train-size", "5000", "--sampling", "without-replacement"]):
        result = runner.invoke(app, ["assess", "--task", "synthetic", "--candidate", "small", *FAST, *args])
        assert result.exit_code == 2, (args, result.output)
    assert not (tmp_path / "mlruns").exists()


def test_vary_splits_the_spread_into_initialisation_and_training_sample(app, runner, workdir):
    """--vary init holds the training sample, --vary data the initialisation; neither disturbs the
    default study's instances, and `robust report` sets the three spreads side by side."""
    from mlflow.tracking import MlflowClient

    both = json.loads(_assess(app, runner, "--candidate", "small", "-n", "3").stdout)
    seeds = {}
    for vary in ("init", "data"):
        result = _assess(app, runner, "--candidate", "small", "-n", "3", "--vary", vary)
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["trained_now"] == 3 and report["vary"] == vary and report["fingerprint"] != both["fingerprint"]
        client = MlflowClient(report["tracking_uri"])
        params = [client.get_run(r).data.params for r in report["run_ids"]]
        seeds[vary] = [(int(p["init_seed"]), int(p["data_seed"])) for p in params]
    init, data = seeds["init"], seeds["data"]
    assert len({d for _, d in init}) == 1 and len({i for i, _ in init}) == 3  # one sample, three initialisations
    assert len({i for i, _ in data}) == 1 and len({d for _, d in data}) == 3  # one initialisation, three samples
    assert init[0] == data[0]  # instance 0 is the same in every study
    # the default study is untouched: asking again trains nothing
    assert json.loads(_assess(app, runner, "--candidate", "small", "-n", "3").stdout)["trained_now"] == 0
    # a vary=init instance reproduces bit for bit
    rep = runner.invoke(app, ["reproduce", json.loads(_assess(app, runner, "--candidate", "small", "-n", "3", "--vary", "init").stdout)["run_ids"][2], "--json"])
    assert rep.exit_code == 0 and json.loads(rep.stdout)["bitwise_equal"] is True
    page = runner.invoke(app, ["report", "--study", "synthetic", "--out", "r.html", "--json"])
    assert page.exit_code == 0, page.output
    out = json.loads(page.stdout)
    assert out["fingerprint"] == both["fingerprint"]  # the report's main study is the default one
    (row,) = out["decomposition"]
    assert row["candidate"] == both["candidate"]
    assert all(row[k]["instances"] == 3 and row[k]["std"] > 0 for k in ("both", "init", "data"))
    assert "only the training sample" in (workdir / "r.html").read_text()


def test_vary_must_be_known(app, runner, workdir):
    result = _assess(app, runner, "--candidate", "small", "-n", "2", "--vary", "seed")
    assert result.exit_code == 2 and "vary" in result.output


def test_cuda_without_a_gpu_is_refused_before_anything_is_written(app, runner, workdir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = runner.invoke(app, ["assess", *FAST, "--task", "synthetic", "--candidate", "small", "--device", "cuda"])
    assert result.exit_code == 2 and "--device cuda was asked for" in result.stderr
    assert experiments() == []


def test_a_folder_as_study_file_is_refused_in_one_line(app, runner, workdir):
    (workdir / "studies").mkdir()
    result = runner.invoke(app, ["assess", "-c", "studies"])
    assert result.exit_code == 2 and "a folder, not a study file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_usage_errors_of_the_console_script_are_one_line_exit_2(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("robust")
    out = subprocess.run([str(script), "assess", "--workers", "two"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: Invalid value for '--workers'") and line.endswith("(see robust assess --help)")
    assert not (tmp_path / "mlruns").exists()
