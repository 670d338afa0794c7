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
