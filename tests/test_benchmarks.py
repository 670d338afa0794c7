"""The benchmarks' common contract: each takes --quick and ends with one `ratio=<number>` line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def test_there_are_benchmarks():
    assert {"train_throughput.py", "tracking_overhead.py", "selection_wall_time.py"} <= {b.name for b in BENCHMARKS}


@pytest.mark.parametrize("bench", BENCHMARKS, ids=lambda p: p.name)
def test_every_benchmark_offers_quick_and_prints_a_ratio(bench):
    text = bench.read_text()
    assert '"--quick"' in text, f"{bench.name} has no --quick"
    assert "ratio=" in text, f"{bench.name} prints no ratio= line"


def test_a_quick_benchmark_ends_with_its_ratio(tmp_path):
    """`selection_efficiency.py --quick`: every table, our rules and Optuna's pruners, a verdict per
    table, every row in --json (a smoke run of seconds)."""
    bench = next(b for b in BENCHMARKS if b.name == "selection_efficiency.py")
    rows = tmp_path / "rows.json"
    out = subprocess.run([sys.executable, str(bench), "--quick", "--jobs", "1", "--json", str(rows)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert re.fullmatch(r"ratio=[0-9.]+", lines[-1])
    assert any(line.startswith("=== tails:") for line in lines)
    assert any(line.strip().startswith("optuna-wilcoxon") for line in lines)
    assert any(re.match(r"\s+close\s+mean\s+race: (MET|not met)", line) for line in lines)
    data = json.loads(rows.read_text())
    rules = {r["rule"] for r in data["rows"]}
    assert {"exhaustive", "paper", "race", "optuna-median", "optuna-halving", "optuna-wilcoxon"} <= rules
    assert {r["baseline"] for r in data["rows"]} == {False, True}


def test_selection_efficiency_refuses_a_bad_race_option():
    bench = next(b for b in BENCHMARKS if b.name == "selection_efficiency.py")
    out = subprocess.run([sys.executable, str(bench), "--quick", "--race-option", "confidence=2"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "confidence" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_first_assess_quick_prints_its_phases_and_ratio():
    """`first_assess.py --quick`: 3 first assessments and 3 reruns as whole CLI processes (minutes)."""
    bench = next(b for b in BENCHMARKS if b.name == "first_assess.py")
    out = subprocess.run([sys.executable, str(bench), "--quick"], capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert any(line.strip().startswith("create a store (ensure_store)") for line in lines)
    assert re.fullmatch(r"ratio=[0-9.]+", lines[-1])


@pytest.mark.slow
def test_main_job_quick_prints_every_setting_and_its_ratio():
    """`main_job.py --quick`: the reduced demo selection, new default / old default / --threads 1,
    as whole CLI processes into fresh stores (minutes)."""
    bench = next(b for b in BENCHMARKS if b.name == "main_job.py")
    out = subprocess.run([sys.executable, str(bench), "--quick"], capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    for name in ("new", "old", "t1"):
        assert any(re.match(rf"{name}\s+wall [0-9.]+ s", line.strip()) for line in lines), out.stdout
    assert any(line.strip().startswith("old / new, wall") for line in lines), out.stdout
    assert re.fullmatch(r"ratio=[0-9.]+", lines[-1])
