"""Command plugins that share a name share one group: `robust data` from two plugins, and more.

Each plugin here is a really installed distribution (a dist-info on sys.path) whose entry point
names a Typer in its own module; the CLI root is built by the code `robust` uses.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner


def _install(site: Path, dist: str, module: str, source: str, name: str) -> None:
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[robustcli.commands]\n{name} = {module}:app\n")
    (site / f"{module}.py").write_text(source)


def _plugin(help_text: str, *commands: str) -> str:
    lines = ["import typer", f"app = typer.Typer(help={help_text!r})"]
    for cmd in commands:
        fn = cmd.replace("-", "_")
        lines += [f"@app.command({cmd!r})", f"def {fn}(n: int = 1):", f"    print({cmd!r}, n)"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def robust(tmp_path, monkeypatch):
    """Install plugins with ``install(...)``, then ``run(*args)`` the CLI built from them."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("ROBUST_DISABLE_PLUGINS", "data")  # the installed ones: only the test's count

    def install(dist: str, module: str, source: str, name: str = "grp") -> None:
        _install(site, dist, module, source, name)

    def run(*args: str, width: int = 300):
        from robustcli.cli._plugin_commands import add_plugin_commands

        app = typer.Typer()
        app.command("version")(lambda: None)
        add_plugin_commands(app)
        return CliRunner().invoke(app, list(args), env={"COLUMNS": str(width)})

    return install, run


def test_two_plugins_of_one_name_share_its_group(robust):
    install, run = robust
    install("zeta-plugin", "zeta_cmds", _plugin("Zeta things.\n\nExample: robust grp fetch-z", "fetch-z", "show"))
    install("alpha-plugin", "alpha_cmds", _plugin("Alpha things.\n\nExample: robust grp make-a", "make-a", "show"))
    assert run("grp", "fetch-z", "--n", "3").stdout == "fetch-z 3\n"
    assert run("grp", "make-a").stdout == "make-a 1\n"
    helped = run("grp", "--help")
    assert helped.exit_code == 0
    # the distributions in name order: alpha's help first, alpha's `show` kept, zeta's left out
    assert "Alpha things. Zeta things." in helped.stdout
    assert "Example: robust grp make-a" in helped.stdout and "Example: robust grp fetch-z" in helped.stdout
    assert "(zeta-plugin's `grp show` is left out: alpha-plugin has one)" in helped.stdout
    assert all(cmd in helped.stdout for cmd in ("fetch-z", "make-a", "show"))


def test_a_broken_plugin_in_a_shared_group_is_named_and_the_other_works(robust):
    install, run = robust
    install("good-plugin", "good_cmds", _plugin("Good things.", "fetch-g"))
    install("bad-plugin", "bad_cmds", "raise RuntimeError('broken on purpose')\n")
    assert run("grp", "fetch-g").stdout == "fetch-g 1\n"
    helped = run("grp", "--help").stdout
    assert "Good things." in helped and "broken on purpose" in helped


def test_a_lone_plugin_keeps_its_group_and_a_lone_broken_one_is_one_error_line(robust):
    install, run = robust
    install("one-plugin", "one_cmds", _plugin("One thing.", "only"))
    assert run("grp", "only").stdout == "only 1\n"  # a group, even with a single command
    install("bad-plugin", "bad_cmds", "raise RuntimeError('broken on purpose')\n", name="other")
    broken = run("other")
    assert broken.exit_code == 2 and broken.stderr.count("\n") == 1 and "broken on purpose" in broken.stderr
