"""Bad input that once got through (issue 15, items 1-3 and 5): each is one line on stderr, exit
code 2, and nothing trained or written to the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import FAST, experiments

SELECT = ["select", "--task", "synthetic", *FAST, "--candidates", "small,wide", "--rule", "halving"]


def refused(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.output


@pytest.fixture
def table(workdir: Path) -> Path:
    path = workdir / "losses.csv"
    path.write_text("candidate,instance,loss\na,0,0.1\na,1,0.12\nb,0,0.2\nb,1,inf\nc,0,inf\nc,1,inf\n")
    return path


# -- item 1: criteria are checked whole before anything trains ----------------------------------
@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("..:x", "criterion '..:x' (--criterion): '..' is not an absolute module name"),
        ("os:getcwd", "criterion 'os:getcwd' (--criterion) failed on losses [0.3, 0.1, 0.2] (tried before anything "
                      "trains; it takes a numpy array of one candidate's losses and returns a number): TypeError"),
        ("numpy:sort", "criterion 'numpy:sort' (--criterion) returned array([0.1, 0.2, 0.3]) (ndarray) on losses "
                       "[0.3, 0.1, 0.2], not a number"),
        ("os:sep", "'sep' is not callable"),
    ],
)
def test_a_bad_criterion_is_refused_before_anything_trains(app, runner, workdir, table, spec, fragment):
    refused(runner.invoke(app, [*SELECT, "--criterion", spec]), fragment)
    assert experiments() == []
    refused(runner.invoke(app, ["select", "--replay", str(table), "--criterion", spec]), fragment.replace("(--criterion)", "(from --criterion)"))


def test_a_working_criterion_by_import_path_still_selects(app, runner, table):
    result = runner.invoke(app, ["select", "--replay", str(table), "--criterion", "numpy:median", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["selected"] == "a"


# -- item 2: seeds ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "seed, fragment",
    [("-1", "invalid value -1 for --seed: Input should be greater than or equal to 0"),
     (str(2**63), f"invalid value {2**63} for --seed: Input should be less than or equal to {2**63 - 1}")],
)  # fmt: skip
def test_a_seed_out_of_range_is_refused(app, runner, workdir, table, seed, fragment):
    refused(runner.invoke(app, [*SELECT, "--seed", seed]), fragment)
    refused(runner.invoke(app, ["select", "--replay", str(table), "--seed", seed]), fragment)
    refused(runner.invoke(app, ["assess", "--task", "synthetic", "-C", "small", "--seed", seed]), fragment)
    assert experiments() == []


# -- item 3: every count has a ceiling, every size the task's pool ------------------------------
@pytest.mark.parametrize(
    "args, fragment",
    [
        (["assess", "--task", "synthetic", "-C", "small", "-n", "1000000000000"],
         "invalid value 1000000000000 for --instances: Input should be less than or equal to 100000"),
        (["assess", "--task", "synthetic", "-C", "small", "--max-epochs", "10000000000"], "for --max-epochs"),
        (["assess", "--task", "synthetic", "-C", "small", "--test-size", "10000000000000"], "for --test-size"),
        ([*SELECT, "--budget", "100000000000"], "invalid value 100000000000 for --budget: Input should be less than or equal to 10000000"),
        ([*SELECT, "--warmup", "1000000"], "for --warmup"),
        ([*SELECT, "--max-steps", "1000000"], "for --max-steps"),
        ([*SELECT, "--final-instances", "1000000"], "for --final-instances"),
        ([*SELECT, "--sample", "100000000000"], "for --sample"),
        (["nas", "--task", "synthetic", "--trials", "1000000000"], "invalid value 1000000000 for --trials"),
        (["nas", "--task", "synthetic", "--trials", "2", "--top", "1", "-n", "2", *FAST, "--train-size", "100000000"],
         "--train-size 100000000 exceeds the training pool of 2000 examples of task 'synthetic'"),
        (["study", "variance", "--task", "synthetic", "-C", "small", "-n", "2", *FAST, "--train-size", "5000"],
         "--train-size 5000 exceeds the training pool of 2000 examples"),
        (["study", "sample-size", "--task", "synthetic", "-C", "small", "--sizes", "1:100:100000000000"],
         "--sizes '1:100:100000000000': COUNT 100,000,000,000 exceeds 1,000 sizes"),
    ],
)  # fmt: skip
def test_a_count_beyond_its_ceiling_or_the_pool_is_refused(app, runner, workdir, args, fragment):
    refused(runner.invoke(app, args), fragment)
    assert experiments() == []


def test_a_huge_train_size_in_a_study_file_is_refused(app, runner, workdir):
    (workdir / "study.toml").write_text('task = "synthetic"\ncandidate = "small"\ntrain_size = 99999999999999999999999\n')
    for command in (["assess"], ["select", "--candidates", "small,wide"], ["nas", "--trials", "2", "--top", "1"]):
        refused(
            runner.invoke(app, [*command, "-c", "study.toml"]),
            "study.toml: invalid value 99999999999999999999999 for 'train_size' (--train-size): "
            "Input should be less than or equal to 1000000000",
        )
    assert experiments() == []


# -- item 5: replay tables and the baseline loss ------------------------------------------------
def test_a_non_finite_baseline_loss_is_refused(app, runner, table):
    for value in ("nan", "inf", "-inf"):
        refused(runner.invoke(app, ["select", "--replay", str(table), "--baseline-loss", value]),
                f"error: --baseline-loss {value}: expected a finite loss")  # fmt: skip


def test_a_loss_too_large_for_a_float_is_refused_naming_its_line(app, runner, workdir):
    (workdir / "big.csv").write_text("candidate,instance,loss\na,0,0.1\na,1,1e400\nb,0,0.2\nb,1,INF\n")
    refused(
        runner.invoke(app, ["select", "--replay", "big.csv"]),
        "error: big.csv: line 3: loss '1e400' of candidate 'a' instance 1 is too large for a float "
        "(it would read as inf, a failed instance); write a failed instance as inf",
    )


def test_a_table_of_failed_instances_only_is_refused(app, runner, workdir, table):
    (workdir / "failed.csv").write_text("candidate,instance,loss\na,0,inf\na,1,Infinity\nb,0,+inf\nb,1,inf\n")
    refused(runner.invoke(app, ["select", "--replay", "failed.csv"]),
            "error: failed.csv: every loss is inf (a failed instance): no candidate has a finite loss to select on")  # fmt: skip
    refused(runner.invoke(app, ["select", "--replay", str(table), "--candidates", "c"]),
            "every loss of the chosen candidates is inf")  # fmt: skip
    ok = runner.invoke(app, ["select", "--replay", str(table), "--json"])  # one failed candidate among others: fine
    assert ok.exit_code == 0 and json.loads(ok.stdout)["selected"] == "a", ok.output
