"""The CLI's face: help everywhere, fast start, task listing, plugin discovery."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def _commands(app):
    import typer.main

    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        subs = getattr(cmd, "commands", {})
        yield [name], not subs or name == "tasks"  # `robust tasks` itself lists
        for sub in subs:
            yield [name, sub], True


def test_every_command_has_help_with_an_example(app, runner):
    for path, leaf in _commands(app):
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        if leaf:
            assert "Example" in result.output, path


def test_help_does_not_import_torch_or_mlflow():
    code = textwrap.dedent(
        """
        import sys
        from typer.testing import CliRunner
        from robustcli.cli.main import app
        CliRunner().invoke(app, ["--help"])
        CliRunner().invoke(app, ["tasks"])
        heavy = [m for m in ("torch", "mlflow") if m in sys.modules]
        print(",".join(heavy))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_tasks_lists_builtin_with_distribution_and_size(app, runner):
    result = runner.invoke(app, ["tasks", "--json"])
    assert result.exit_code == 0, result.output
    import json

    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["synthetic"]["status"] == "ok"
    assert rows["synthetic"]["distribution"] == "robustcli"
    assert rows["synthetic"]["candidates"] == 96


def test_tasks_show(app, runner):
    result = runner.invoke(app, ["tasks", "show", "synthetic"])
    assert result.exit_code == 0, result.output
    assert "96 candidates" in result.output
    assert "small" in result.output


def test_unknown_task_is_one_line_exit_2(app, runner):
    result = runner.invoke(app, ["tasks", "show", "synthetik"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "unknown task 'synthetik'" in result.stderr and "did you mean 'synthetic'" in result.stderr


@pytest.fixture
def broken_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A really installed distribution (dist-info on sys.path) whose task module fails to import."""
    site = tmp_path / "site"
    dist = site / "robust_broken-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: robust-broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[robustcli.tasks]\nbroken-task = robust_broken_mod:Task\n")
    (site / "robust_broken_mod.py").write_text("raise RuntimeError('this plugin is broken on purpose')\n")
    monkeypatch.syspath_prepend(str(site))
    return "broken-task"


def test_broken_plugin_is_listed_and_others_still_work(app, runner, broken_plugin):
    import json

    result = runner.invoke(app, ["tasks", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows[broken_plugin]["status"] == "broken"
    assert "broken on purpose" in rows[broken_plugin]["error"]
    assert rows[broken_plugin]["distribution"] == "robust-broken"
    assert rows["synthetic"]["status"] == "ok"


def test_disabled_plugin_is_hidden(app, runner, broken_plugin, monkeypatch):
    monkeypatch.setenv("ROBUST_DISABLE_PLUGINS", broken_plugin)
    result = runner.invoke(app, ["tasks"])
    assert broken_plugin not in result.output


def test_version_lists_plugins(app, runner):
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert "robustcli" in result.output and "synthetic" in result.output


def test_candidates_lists_ids_names_descriptions_and_parameters(app, runner):
    result = runner.invoke(app, ["candidates", "--task", "synthetic", "--where", "hidden=16", "--where", "layers=1",
                                 "--where", "activation=relu", "--where", "optimizer=adam", "--json"])  # fmt: skip
    assert result.exit_code == 0 and result.stderr == "", result.output
    payload = json.loads(result.stdout)
    rows = payload["candidates"]
    assert payload["task"] == "synthetic" and len(rows) == 5  # small, and the grid's 2 lr x 2 batch sizes
    assert rows[0] == {"id": rows[0]["id"], "name": "small", "description": "adam-lr1e-2-bs32-activation=relu-hidden=16-layers=1",
                       "params": {"hidden": 16, "layers": 1, "activation": "relu", "optimizer": "adam", "lr": 0.01,
                                  "batch_size": 32}}  # fmt: skip
    assert {r["description"] for r in rows[1:]} == {f"adam-lr{lr}-bs{bs}-activation=relu-hidden=16-layers=1"
                                                     for lr in ("1e-3", "1e-2") for bs in (16, 64)}  # fmt: skip
    table = runner.invoke(app, ["candidates", "--task", "synthetic", "--where", "lr=0.01", "--where", "hidden=16"])
    assert table.exit_code == 0 and "synthetic: 17 candidates with lr=0.01 hidden=16" in table.stdout
    assert "small" in table.stdout and rows[0]["id"] in table.stdout
    none = runner.invoke(app, ["candidates", "--task", "synthetic", "--where", "hiden=16"])
    assert none.exit_code == 2 and none.stderr == (
        "error: no candidate matches --where hiden=16 (parameters: activation, batch_size, hidden, layers, lr, optimizer)\n"
    )
    help_text = runner.invoke(app, ["candidates", "--help"]).stdout
    assert "Example: robust candidates --task synthetic" in help_text


# -- plugins that misbehave, names that clash (issue 15, items 4 and 9) -------------------------
TINY_TASKS = '''
import torch
from torch import nn
from robustcli.task import Loss, SearchSpace, Task, TaskData


class Tiny(Task):
    name = "tiny"
    description = "A tiny regression for the CLI's tests"
    loss = Loss("mse", "mean((y_pred - y_true)^2)")
    default_train_size = 32

    def load_data(self):
        x = torch.randn(100, 4, generator=torch.Generator().manual_seed(0))
        return TaskData(x[:60], x[:60].sum(1, keepdim=True), x[60:], x[60:].sum(1, keepdim=True))

    def search_space(self):
        return SearchSpace.from_grid({"hidden": [4], "lr": [1e-2]}, fixed={"optimizer": "adam", "batch_size": 16})

    def build_model(self, candidate):
        h = candidate.params["hidden"]
        return nn.Sequential(nn.Linear(4, h), nn.ReLU(), nn.Linear(h, 1))

    def test_loss(self, pred, y):
        return ((pred - y) ** 2).mean()


class Misnamed(Tiny):
    name = "misnamed"


class Impostor(Tiny):
    name = "synthetic"
'''


def _distribution(site: Path, name: str, entry_points: str, modules: dict[str, str] | None = None) -> None:
    """A really installed distribution: a dist-info folder (and its modules) in ``site``."""
    dist = site / f"{name.replace('-', '_')}-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(entry_points)
    for module, source in (modules or {}).items():
        (site / f"{module}.py").write_text(source)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for module in [m for m in sys.modules if m.startswith("robust_t_")]:
        del sys.modules[module]


def test_a_plugin_that_exits_at_import_stops_nothing(tmp_path):
    """sys.exit() in a plugin module once ended every command (`--help` included, exit 5, no output)."""
    site = tmp_path / "site"
    _distribution(site, "robust-exit", "[robustcli.commands]\nexitcmd = robust_t_exitcmd:app\n"
                  "[robustcli.tasks]\nexit-task = robust_t_exittask:Task\n",
                  {"robust_t_exitcmd": "import sys\nsys.exit(5)\n", "robust_t_exittask": "import sys\nsys.exit('bye')\n"})  # fmt: skip
    env = {**__import__("os").environ, "PYTHONPATH": __import__("os").pathsep.join([str(site), *sys.path])}

    def robust(*args: str) -> subprocess.CompletedProcess:
        code = "from robustcli.cli.main import main; main()"
        return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)

    helped = robust("--help")
    assert helped.returncode == 0, helped.stderr
    assert "exitcmd" in helped.stdout and "(broken plugin: run it for the error)" in helped.stdout
    listed = robust("tasks", "--json")
    assert listed.returncode == 0, listed.stderr
    row = next(r for r in json.loads(listed.stdout) if r["name"] == "exit-task")
    assert row["status"] == "broken" and row["error"] == (
        "failed to load plugin 'exit-task' from robust-exit 1.0 (robust_t_exittask:Task) due to SystemExit: bye"
    )
    ran = robust("exitcmd")
    assert ran.returncode == 2 and ran.stderr == (
        "error: failed to load plugin 'exitcmd' from robust-exit 1.0 (robust_t_exitcmd:app) due to SystemExit: 5\n"
    )


def test_a_task_that_exits_when_built_is_one_error_line(site):
    """sys.exit() in a task's constructor (not at import): `tasks show`, `check` and `assess` say so in one line."""
    _distribution(site, "robust-exitinit", "[robustcli.tasks]\nexit-init = robust_t_exitinit:Task\n",
                  {"robust_t_exitinit": "import sys\nfrom robustcli.builtin.synthetic import SyntheticTask\n\n"
                   "class Task(SyntheticTask):\n    name = 'exit-init'\n\n    def __init__(self, **options):\n"
                   "        sys.exit('no')\n"})  # fmt: skip
    env = {**__import__("os").environ, "PYTHONPATH": __import__("os").pathsep.join([str(site), *sys.path])}
    for args in (["tasks", "show", "exit-init"], ["check", "exit-init"], ["assess", "--task", "exit-init", "-C", "small"]):
        ran = subprocess.run([sys.executable, "-c", "from robustcli.cli.main import main; main()", *args],
                             capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
        assert ran.returncode != 0 and ran.stderr.count("\n") == 1, (args, ran.stderr)
        assert "called sys.exit('no') when built" in ran.stderr, (args, ran.stderr)


def test_a_name_already_taken_is_listed_broken_naming_both_distributions(app, runner, site):
    _distribution(site, "robust-impostor", "[robustcli.tasks]\nsynthetic = robust_t_tasks:Impostor\n",
                  {"robust_t_tasks": TINY_TASKS})  # fmt: skip
    _distribution(site, "robust-tiny", "[robustcli.tasks]\ntiny = robust_t_tasks:Tiny\n")
    _distribution(site, "robust-copycat", "[robustcli.tasks]\ntiny = robust_t_tasks:Tiny\n")
    rows = json.loads(runner.invoke(app, ["tasks", "--json"]).stdout)
    synthetic = {r["distribution"]: r for r in rows if r["name"] == "synthetic"}
    assert synthetic["robustcli"]["status"] == "ok" and synthetic["robustcli"]["candidates"] == 96
    assert synthetic["robust-impostor"]["status"] == "broken"
    assert synthetic["robust-impostor"]["error"].startswith(
        "name 'synthetic' of robust-impostor 1.0 (robust_t_tasks:Impostor) is already taken by robustcli "
    )
    assert "the built-in one stays and this one is ignored" in synthetic["robust-impostor"]["error"]
    tiny = sorted((r["status"], r["distribution"], r.get("error", "")) for r in rows if r["name"] == "tiny")
    assert [t[0] for t in tiny] == ["broken", "ok"]
    assert f"is already taken by {tiny[1][1]} 1.0" in tiny[0][2] and f"of {tiny[0][1]} 1.0" in tiny[0][2]
    shown = json.loads(runner.invoke(app, ["tasks", "show", "synthetic", "--json"]).stdout)
    assert shown["distribution"].startswith("robustcli ") and shown["candidates"] == 96


def test_an_entry_point_named_otherwise_warns_and_fails_the_check(app, runner, site):
    _distribution(site, "robust-tiny", "[robustcli.tasks]\ntiny = robust_t_tasks:Tiny\nother-name = robust_t_tasks:Misnamed\n",
                  {"robust_t_tasks": TINY_TASKS})  # fmt: skip
    rows = {r["name"]: r for r in json.loads(runner.invoke(app, ["tasks", "--json"]).stdout)}
    assert rows["other-name"]["status"] == "ok" and "warning" not in rows["tiny"]
    assert rows["other-name"]["warning"] == (
        "entry point 'other-name' of robust-tiny registers a task named 'misnamed' (robust_t_tasks:Misnamed); "
        "--task takes 'other-name': give both one name"
    )
    table = runner.invoke(app, ["tasks"])
    assert "warning:" in table.stdout and "misnamed" in table.stdout

    bad = runner.invoke(app, ["check", "other-name", "--json", "--sample", "1"])
    assert bad.exit_code == 1, bad.output
    report = json.loads(bad.stdout)
    assert report["passed"] is False and report["distribution"] == "robust-tiny 1.0"
    failed = {c["check"]: c["message"] for c in report["checks"] if c["status"] == "failed"}
    assert failed == {"check_documentation": "check_documentation: task 'misnamed': the entry point 'other-name' of "
                      "robust-tiny (robust_t_tasks:Misnamed) differs from the task's name 'misnamed'; `--task` takes "
                      "the entry point's name: give both the same name"}  # fmt: skip


def test_check_runs_the_conformance_kit_on_an_installed_task(app, runner, site):
    _distribution(site, "robust-tiny", "[robustcli.tasks]\ntiny = robust_t_tasks:Tiny\n", {"robust_t_tasks": TINY_TASKS})
    from robustcli.testing import CHECKS

    good = runner.invoke(app, ["check", "tiny", "--json"])
    assert good.exit_code == 0, good.output
    report = json.loads(good.stdout)
    assert [c["check"] for c in report["checks"]] == list(CHECKS)
    assert report["passed"] is True and {c["status"] for c in report["checks"]} == {"passed"}
    table = runner.invoke(app, ["check", "tiny", "--sample", "1"])
    assert table.exit_code == 0 and "check_pickle" in table.stdout and "task tiny conforms: 11 passed" in table.stdout
    unknown = runner.invoke(app, ["check", "tinny"])
    assert unknown.exit_code == 2 and unknown.stderr.startswith("error: unknown task 'tinny' (robust check); did you mean 'tiny'?")
    assert unknown.stderr.count("\n") == 1
    option = runner.invoke(app, ["check", "synthetic", "-o", "bogus=1"])
    assert option.exit_code == 2 and option.stderr.startswith("error: unknown option 'bogus' for task 'synthetic'")


def test_json_before_a_tasks_subcommand_counts(app, runner):
    """`robust tasks --json show X` once printed the table: --json is taken at the group level too."""
    result = runner.invoke(app, ["tasks", "--json", "show", "synthetic"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["name"] == "synthetic"


# -- an 80-column terminal (issue 15, item 12) ---------------------------------------------------
@pytest.mark.parametrize("group", [[], ["study"], ["tasks"]])
def test_every_command_summary_is_one_line_at_80_columns(app, runner, group):
    result = runner.invoke(app, [*group, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    panel = result.stdout.split("Commands")[1].splitlines()[1:]
    rows = [line for line in panel if line.startswith("│")]
    assert rows and all(len(line) <= 80 for line in result.stdout.splitlines())
    continued = [line for line in rows if line.startswith("│  ")]  # a summary's second line: no command name
    assert continued == [], "\n".join(continued)


def test_tables_keep_their_numbers_and_ids_whole_at_80_columns(app, runner, workdir):
    from conftest import FAST

    ran = runner.invoke(app, ["select", "--task", "synthetic", *FAST, "--train-size", "64", "--candidates", "small,wide",
                              "--rule", "halving", "--study", "a-study-with-a-rather-long-name"])  # fmt: skip
    assert ran.exit_code == 0, ran.output
    listed = runner.invoke(app, ["studies"])
    assert listed.exit_code == 0, listed.output
    for out in (ran.stdout.split("history in MLflow")[0], listed.stdout):
        assert "…" not in out, out
    assert "(c26933455cd)" in listed.stdout or "(c7f0aafa175)" in listed.stdout
    assert "std/mean" in ran.stdout and "Q90-Q10" in ran.stdout


def test_tasks_show_prints_brackets_of_the_task_s_own_words(app, runner, site):
    """rich read `[label]` in a loss formula as markup and dropped it (issue 21, point 9)."""
    bracketed = TINY_TASKS.replace('Loss("mse", "mean((y_pred - y_true)^2)")', 'Loss("xent", "cross_entropy(logits, y[label])")')
    _distribution(site, "robust-tiny", "[robustcli.tasks]\ntiny = robust_t_brackets:Tiny\n", {"robust_t_brackets": bracketed})
    result = runner.invoke(app, ["tasks", "show", "tiny"])
    assert result.exit_code == 0, result.output
    assert "cross_entropy(logits, y[label])" in result.stdout
