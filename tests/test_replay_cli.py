"""`robust select --replay`: JSON and table output, and every malformed table refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from robustcli.cli.select import select
from robustcli.errors import InputError
from robustcli.selection import read_loss_table, write_loss_table

app = typer.Typer()
app.command()(select)
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def good_table(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    data = 0.003 * rng.standard_normal(10)
    rows = []
    for i in range(12):
        mu = 0.05 if i == 7 else 0.06 + 0.005 * i
        for j in range(10):
            rows.append({"candidate": f"cand-{i:02d}", "instance": j, "loss": mu + data[j] + 0.001 * rng.standard_normal(),
                         "seconds": 1.5})
    path = tmp_path / "losses.csv"
    write_loss_table(path, rows)
    return path


def test_json_output_has_the_keys(good_table: Path) -> None:
    result = invoke("--replay", good_table, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    for key in ("selected", "trainings", "exhaustive_trainings", "steps", "survivors_per_step", "rule", "criterion",
                "values"):
        assert key in payload
    assert payload["selected"] == "cand-07"
    assert payload["exhaustive_trainings"] == 12 * 10
    assert payload["survivors_per_step"][-1] == 1
    assert payload["rule"] == "paper" and payload["criterion"] == ["mean"]


@pytest.mark.parametrize("rule", ["paper", "halving", "quantile", "race", "race-strict"])
def test_every_rule_replays(good_table: Path, rule: str) -> None:
    result = invoke("--replay", good_table, "--rule", rule, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["selected"] == "cand-07"


def test_rich_output(good_table: Path) -> None:
    result = invoke("--replay", good_table)
    assert result.exit_code == 0, result.output
    assert "selected cand-07" in result.stdout and "exhaustive" in result.stdout


def test_options_reach_the_loop(good_table: Path) -> None:
    result = invoke("--replay", good_table, "--candidates", "cand-01,cand-02,cand-03", "--rule", "halving",
                    "--max-steps", "3", "--criterion", "mean", "--criterion", "std", "--warmup", "2", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["candidates"] == 3 and payload["criterion"] == ["mean", "std"]
    assert payload["survivors_per_step"][:2] == [3, 3]  # warm-up of two steps
    sampled = json.loads(invoke("--replay", good_table, "--sample", "5", "--seed", "1", "--json").stdout)
    assert sampled["candidates"] == 5


def test_baseline_loss_cut(good_table: Path) -> None:
    result = invoke("--replay", good_table, "--baseline-loss", "0.06", "--json")
    payload = json.loads(result.stdout)
    assert payload["survivors_per_step"][0] < 12 and payload["baseline_loss"] == 0.06
    assert payload["baseline_cut"] == "baseline cut at 0.072 (baseline 0.06 + 20%)" and result.stderr == ""
    assert "step 1: baseline cut at 0.072 (baseline 0.06 + 20%)" in " ".join(invoke("--replay", good_table, "--baseline-loss", "0.06").stdout.split())
    skipped = invoke("--replay", good_table, "--json")
    assert skipped.stderr == ("note: no baseline loss, so --rule paper skips its cut at baseline + 20% and only halves; "
                              "pass --baseline-loss X (the best baseline's mean loss)\n")  # fmt: skip
    assert json.loads(skipped.stdout)["baseline_cut"] is None


def test_budget_stops_early(good_table: Path) -> None:
    payload = json.loads(invoke("--replay", good_table, "--budget", "30", "--json").stdout)
    assert payload["reason"] == "budget" and payload["trainings"] <= 30


def one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("candidate,instance\na,0\n", ["line 1", "missing column 'loss'"]),
        ("", ["empty file"]),
        ("candidate,instance,loss\n", ["no data rows"]),
        ("candidate,instance,loss\na,0,0.1\na,1,nan\n", ["line 3", "NaN", "'a' instance 1"]),
        ("candidate,instance,loss\na,0,\n", ["line 2", "empty loss"]),
        ("candidate,instance,loss\na,0,abc\n", ["line 2", "'abc'", "not a number"]),
        ("candidate,instance,loss\na,x,0.1\n", ["line 2", "instance 'x'", "not an integer"]),
        ("candidate,instance,loss\na,1.5,0.1\n", ["line 2", "'1.5'", "not an integer"]),
        ("candidate,instance,loss\na,-1,0.1\n", ["line 2", "negative"]),
        ("candidate,instance,loss\na,0,0.1\nb,0,0.2\na,0,0.3\n", ["line 4", "duplicate", "first on line 2"]),
        ("candidate,instance,loss\na,0,0.1\na,1,0.1\nb,0,0.2\n", ["candidate 'b' has 1 instance", "'a' has 2"]),
        ("candidate,instance,loss\na,0,0.1\na,2,0.1\n", ["lacks instance 1"]),
        ("candidate,instance,loss\n,0,0.1\n", ["line 2", "empty candidate"]),
    ],
)
def test_malformed_tables(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = write(tmp_path, text)
    one_line_error(invoke("--replay", path), str(path), *fragments)


def test_too_few_instances_for_max_steps(good_table: Path) -> None:
    one_line_error(invoke("--replay", good_table, "--max-steps", "11"), str(good_table), "--max-steps 11",
                   "'cand-00'", "has 10")


def test_missing_file(tmp_path: Path) -> None:
    one_line_error(invoke("--replay", tmp_path / "nope.csv"), "nope.csv", "not found")


def test_unknown_names(good_table: Path) -> None:
    one_line_error(invoke("--replay", good_table, "--rule", "rase"), "unknown rule 'rase'", "did you mean 'race'")
    one_line_error(invoke("--replay", good_table, "--criterion", "meen"), "unknown criterion 'meen'")
    one_line_error(invoke("--replay", good_table, "--candidates", "cand-99"), "unknown candidate 'cand-99'")
    one_line_error(invoke("--replay", good_table, "--sample", "50"), "--sample 50", "12 candidates")
    one_line_error(invoke("--replay", good_table, "--combine", "sum"), "combine")
    one_line_error(invoke("--replay", good_table, "--rule", "race", "--criterion", "mean,std", "--combine", "pareto"),
                   "cannot race a Pareto front", "--combine lexicographic")
    one_line_error(invoke("--replay", good_table, "--rule", "race", "--confidence", "1.5"), "confidence")
    one_line_error(invoke("--replay", good_table, "--rule", "race", "--confidence", "0"), "confidence")


@pytest.mark.parametrize("criterion", [["--criterion", "mean"], ["--criterion", "std"], ["--criterion", "q90_q10"],
                                       ["--criterion", "mean,std", "--combine", "lexicographic"]])
@pytest.mark.parametrize("baseline", [[], ["--baseline-loss", "0.06"]])
def test_race_json_states_the_picks_confidence(good_table: Path, criterion: list[str], baseline: list[str]) -> None:
    result = invoke("--replay", good_table, "--rule", "race", "--warmup", "1", *criterion, *baseline, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {"selected", "trainings", "exhaustive_trainings", "indistinguishable", "p_best"} <= set(payload)
    assert payload["selected"] in payload["indistinguishable"]
    assert payload["p_best"] and abs(sum(payload["p_best"].values()) - 1.0) < 1e-3
    assert set(payload["survivors"]) <= set(payload["p_best"])
    assert payload["trainings"] <= payload["exhaustive_trainings"]


def test_replay_table_of_one_instance_is_refused_for_the_race(tmp_path: Path) -> None:
    path = write(tmp_path, "candidate,instance,loss\na,0,0.1\nb,0,0.2\n")
    one_line_error(invoke("--replay", path, "--rule", "race"), "instance")


def test_inf_loss_is_a_failed_instance(tmp_path: Path) -> None:
    path = write(tmp_path, "loss,candidate,instance,extra\n0.1,a,0,x\ninf,a,1,y\n0.2,b,0,z\n0.2,b,1,w\n")
    table = read_loss_table(path)
    assert table.candidates == ("a", "b") and table.losses[0, 1] == np.inf
    payload = json.loads(invoke("--replay", path, "--json").stdout)
    assert payload["selected"] == "b"


def test_write_read_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.csv"
    n = write_loss_table(path, [("b", 1, 0.2), ("b", 0, float("nan")), ("a", 0, 0.1), ("a", 1, 1 / 3)])
    assert n == 4
    assert path.read_text().splitlines()[0] == "candidate,instance,loss"
    table = read_loss_table(path)
    assert table.candidates == ("a", "b")
    assert table.losses[0, 1] == 1 / 3 and table.losses[1, 0] == np.inf  # a failed instance is written inf
    assert not list(path.parent.glob(".*tmp"))


def test_writer_refuses_bad_rows(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="lacks 'loss'"):
        write_loss_table(tmp_path / "x.csv", [{"candidate": "a", "instance": 0}])
    with pytest.raises(InputError, match="negative"):
        write_loss_table(tmp_path / "x.csv", [("a", -1, 0.1)])
    assert not (tmp_path / "x.csv").exists()


def test_training_mode_hands_the_options_to_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    from robustcli.api import Study

    calls = []
    monkeypatch.setattr(Study, "select", lambda self, **kw: calls.append(self.session.given))
    result = invoke("--task", "synthetic", "--study", "s1", "--rule", "race", "--criterion", "mean,std",
                    "--warmup", "3", "--budget", "100", "--candidates", "a,b", "--sample", "2", "--json")
    assert result.exit_code == 0, result.output
    (settings,) = calls
    assert settings.task == "synthetic" and settings.study == "s1"
    sel = settings.selection
    assert (sel.rule, sel.criterion, sel.warmup, sel.budget, sel.candidates, sel.sample) == (
        "race", ["mean", "std"], 3, 100, ["a", "b"], 2)


def test_baseline_loss_needs_replay() -> None:
    one_line_error(invoke("--task", "synthetic", "--baseline-loss", "0.1"), "--baseline-loss applies to --replay")


def test_the_race_zone_is_a_share_of_the_leaders_mean_by_default(tmp_path: Path, good_table: Path) -> None:
    table = read_loss_table(good_table)
    scaled = tmp_path / "scaled.csv"  # the same study in other units: a loss 100 times larger
    write_loss_table(scaled, [(c, j, 100 * float(table.losses[i, j])) for i, c in enumerate(table.candidates)
                              for j in range(table.instances)])  # fmt: skip
    runs = [json.loads(invoke("--replay", path, "--rule", "race", "--json").stdout) for path in (good_table, scaled)]
    assert runs[0]["rule_description"] == "race (confidence 0.95, indifference zone 1% of the leader's mean)"
    assert [(r["selected"], r["trainings"], r["survivors_per_step"]) for r in runs[1:]] == [
        (runs[0]["selected"], runs[0]["trainings"], runs[0]["survivors_per_step"])
    ]
    absolute = json.loads(invoke("--replay", scaled, "--rule", "race", "--delta", "0.005", "--json").stdout)
    assert absolute["rule_description"].endswith("indifference zone 0.005)")
    help_text = invoke("--help").stdout
    assert "Default: 1%" in " ".join(help_text.split())
    one_line_error(invoke("--replay", good_table, "--rule", "race", "--delta", "1 percent"), "--delta '1 percent'")


def test_a_spread_of_one_instance_shows_as_undefined_not_failed(tmp_path: Path) -> None:
    """Step 1 of a mean,std selection has one instance per candidate: its std is not yet defined."""
    rows = [(c, i, base + 0.01 * i) for c, base in (("a", 0.1), ("b", 0.2), ("c", 0.3)) for i in range(4)]
    write_loss_table(tmp_path / "t.csv", rows)
    result = invoke("--replay", str(tmp_path / "t.csv"), "--rule", "halving", "--criterion", "mean,std")
    assert result.exit_code == 0, result.output
    step_one = next(line for line in result.stdout.splitlines() if line.startswith("│    1 "))
    assert "0.1, -" in step_one and "failed" not in step_one
