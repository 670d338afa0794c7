"""`robust data make-calo` and `robust data show`, driven through the plugin's Typer app."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from robust_calo.data_cli import app
from robust_calo.rootio import read_showers


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "b.root"
    result = CliRunner().invoke(app, ["make-calo", "--dataset", "B", "--events", "300", "--out", str(out), "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    return out


def one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for frag in fragments:
        assert frag in result.stderr, result.stderr


def test_make_calo_writes_a_readable_file(made: Path) -> None:
    from robust_calo.rootio import read_showers
    from robust_calo.simulation import simulate

    back = read_showers(made)
    assert back["deposits"].shape == (300, 15, 15)
    assert (back["energy"] == simulate("B", 300, 2)["energy"]).all()
    assert not list(made.parent.glob("*.tmp"))


def test_make_calo_default_name_and_lowercase_dataset(runner: CliRunner, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["make-calo", "-d", "a", "-n", "100"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "calo_A_100_seed0.root").exists()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--dataset", "C"], ["unknown dataset 'C'", "valid: A, B"]),
        (["--events", "0"], ["--events", "positive"]),
        (["--events", "-5"], ["--events"]),
        (["--seed", "-1"], ["--seed"]),
        (["--units", "adc"], ["--units 'adc'", "visible, calibrated"]),
        (["--noise", "-1"], ["--noise '-1'", "lhcb"]),
        (["--noise", "abc"], ["--noise 'abc'", "0 (none)"]),
        (["--noise", "inf"], ["--noise 'inf'"]),
        (["--out", "/nonexistent-dir/x.root"], ["does not exist"]),
    ],
)
def test_make_calo_refuses_bad_input(runner: CliRunner, args: list[str], fragments: list[str]) -> None:
    one_line_error(runner.invoke(app, ["make-calo", "-n", "10", *args]), *fragments)


def test_show_writes_png(runner: CliRunner, made: Path, tmp_path: Path) -> None:
    png = tmp_path / "fig.png"
    result = runner.invoke(app, ["show", str(made), "--out", str(png)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_cells_are_noiseless_by_default_and_lhcb_noise_is_one_option_away(
    runner: CliRunner, made: Path, tmp_path: Path
) -> None:
    """The paper's GEANT4 cells carry no electronic noise; LHCb's is ``--noise lhcb``. `show` says which."""
    assert read_showers(made)["deposits"].min() >= 0
    shown = runner.invoke(app, ["show", str(made), "--out", str(tmp_path / "n.png")])
    assert shown.exit_code == 0 and "no electronic noise" in shown.stderr
    noisy = tmp_path / "lhcb.root"
    result = runner.invoke(app, ["make-calo", "-n", "300", "--noise", "LHCb", "--out", str(noisy)])
    assert result.exit_code == 0, result.output
    assert read_showers(noisy)["deposits"].min() < 0
    shown = runner.invoke(app, ["show", str(noisy), "--out", str(tmp_path / "l.png")])
    assert shown.exit_code == 0 and "electronic noise:" in shown.stderr and "--noise 0" in shown.stderr


def test_show_states_the_cell_unit(runner: CliRunner, made: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["show", str(made), "--out", str(tmp_path / "u.png")])
    assert result.exit_code == 0, result.output
    assert "visible (scintillator) energy" in result.stderr and "recorded in the file" in result.stderr
    cal = tmp_path / "cal.root"
    assert runner.invoke(app, ["make-calo", "-n", "200", "--units", "calibrated", "--out", str(cal)]).exit_code == 0
    shown = runner.invoke(app, ["show", str(cal), "--out", str(tmp_path / "c.png")])
    assert "calibrated GeV (recorded in the file)" in shown.stderr


def test_show_default_output_next_to_file(runner: CliRunner, made: Path) -> None:
    result = runner.invoke(app, ["show", str(made), "--event", "3"])
    assert result.exit_code == 0, result.output
    assert made.with_suffix(".png").exists()


def test_show_refuses_bad_files(runner: CliRunner, made: Path, tmp_path: Path) -> None:
    one_line_error(runner.invoke(app, ["show", str(tmp_path / "missing.root")]), "no such file")
    one_line_error(runner.invoke(app, ["show", str(made), "--tree", "events"]), "no tree 'events'", "showers")
    cut = tmp_path / "cut.root"
    cut.write_bytes(made.read_bytes()[: made.stat().st_size // 2])
    one_line_error(runner.invoke(app, ["show", str(cut)]), "truncated")
    one_line_error(runner.invoke(app, ["show", str(made), "--out", str(tmp_path / "x.pdf")]), ".png")
    one_line_error(runner.invoke(app, ["show", str(made), "--event", "100000"]), "out of range")


@pytest.mark.parametrize("cmd", [[], ["make-calo"], ["show"]])
def test_help_has_examples(runner: CliRunner, cmd: list[str]) -> None:
    result = runner.invoke(app, [*cmd, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.stdout and "robust data" in result.stdout


def test_module_import_is_light() -> None:
    code = (
        "import sys, robust_calo.data_cli; "
        "print(','.join(m for m in ('torch', 'uproot', 'matplotlib', 'numpy', 'awkward') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
