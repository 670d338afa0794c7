"""Every command's cheap path with standard output on /dev/full, then with a cache that is a file
(issue 20): never a traceback; a command that writes to stdout ends with one line and exit 1.

One Python process runs them all (torch and MLflow load once): ``robustcli.cli.main.main`` is
called with file descriptor 1 on /dev/full (or /dev/null) and 2 on a file per command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

Q = ["--train-size", "50", "--max-epochs", "2", "--min-epochs", "1"]

#: (command line, whether it trains); {RUN} is an instance's run id, found by the driver. Every one
#: writes to stdout. The studies go to their own study: `export` takes one study's settings
COMMANDS: list[tuple[list[str], bool]] = [
    (["--help"], False),
    (["--version"], False),
    (["tasks"], False),
    (["tasks", "--json"], False),
    (["tasks", "show", "synthetic"], False),
    (["tasks", "show", "synthetic", "--json"], False),
    (["candidates", "--task", "synthetic", "--where", "hidden=8"], False),
    (["candidates", "--task", "synthetic", "--json"], False),
    (["check", "synthetic", "--sample", "0"], True),
    (["assess", "--task", "synthetic", "-C", "small", "-n", "2", *Q], True),
    (["assess", "--task", "synthetic", "-C", "small", "-n", "2", "--json", *Q], True),
    (["baseline", "--task", "synthetic", "-n", "2", "--train-size", "50"], True),
    (["select", "--replay", "T.csv"], False),
    (["select", "--replay", "T.csv", "--json"], False),
    (["select", "--task", "synthetic", "--candidates", "small,wide", "--max-steps", "1", *Q], True),
    (["study", "sample-size", "--task", "synthetic", "-C", "small", "-n", "2", "--sizes", "50", "--no-baselines", "--study", "other", *Q], True),
    (["study", "variance", "--task", "synthetic", "-C", "small", "-n", "2", "--study", "other", *Q], True),
    (["nas", "--task", "synthetic", "--trials", "2", "--top", "1", "-n", "2", "--study", "other", *Q], True),
    (["reproduce", "{RUN}"], True),
    (["studies"], False),
    (["studies", "--json"], False),
    (["export", "--study", "synthetic", "out.csv"], True),
    (["report", "--study", "synthetic", "--out", "report.html"], True),
    (["data", "--help"], False),
]

DRIVER = r'''
import io, json, os, sys
from mlflow.tracking import MlflowClient  # noqa: F401 - loaded before the first command, as robust would

from robustcli.cli.main import main

cases, stdout_path, folder = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
results, kept = [], []
for i, args in enumerate(cases):
    if "{RUN}" in args:
        client = MlflowClient(f"sqlite:///{os.path.abspath('mlruns/mlflow.db')}")
        exp = client.get_experiment_by_name("synthetic")
        run = client.search_runs([exp.experiment_id], "tags.`robust.kind` = 'instance'", max_results=1)[0]
        args = [run.info.run_id if a == "{RUN}" else a for a in args]
    fd = os.open(stdout_path, os.O_WRONLY)
    os.dup2(fd, 1)
    os.close(fd)
    # a fresh sys.stdout per command: what the last one could not write must not reach the next
    # (the old ones are kept, never flushed again: os._exit below)
    kept.append(sys.stdout)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8")
    err = os.path.join(folder, f"err{i}.txt")
    fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    sys.argv = ["robust", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    sys.stderr.flush()
    with open(err) as fh:
        results.append({"args": args, "code": code, "stderr": fh.read()})
with open(os.path.join(folder, "results.json"), "w") as fh:
    json.dump(results, fh)
os._exit(0)
'''

FULL = "error: cannot write the output to standard output (No space left on device)"


def _run_all(workdir: Path, commands: list[list[str]], stdout: str, env: dict[str, str], name: str) -> list[dict]:
    folder = workdir / name
    folder.mkdir()
    driver = folder / "driver.py"
    driver.write_text(DRIVER)
    cases = json.dumps(commands)
    done = subprocess.run([sys.executable, str(driver), cases, stdout, str(folder)], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((folder / "results.json").read_text())


def _check(workdir: Path, commands: list[list[str]]) -> None:
    (workdir / "T.csv").write_text("candidate,instance,loss\na,0,1\nb,0,2\na,1,1.1\nb,1,2.1\n")
    env = {**os.environ, "COLUMNS": "100", "ROBUST_CACHE_DIR": str(workdir / "cache")}
    env.pop("ROBUST_DEBUG", None)
    for row in _run_all(workdir, commands, "/dev/full", env, "full"):
        shown = f"robust {' '.join(row['args'])} > /dev/full: exit {row['code']}\n{row['stderr']}"
        assert "Traceback" not in row["stderr"], shown
        lines = row["stderr"].splitlines()  # every command here writes to stdout
        assert row["code"] == 1 and lines[-1] == FULL, shown
        assert sum(line.startswith("error") for line in lines) == 1, shown
    assert not (workdir / "cache" / "logs").exists()  # nothing counted as a crash

    (workdir / "afile").write_text("")
    env["ROBUST_CACHE_DIR"] = str(workdir / "afile")  # a file: no folder can be made in it
    for row in _run_all(workdir, commands, os.devnull, env, "cache"):  # the store holds it all now: nothing trains
        shown = f"ROBUST_CACHE_DIR=file robust {' '.join(row['args'])}: exit {row['code']}\n{row['stderr']}"
        assert "Traceback" not in row["stderr"] and row["code"] == 0, shown
        assert not any(line.startswith("error") for line in row["stderr"].splitlines()), shown


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_the_commands_that_train_nothing_with_stdout_on_dev_full_then_with_a_cache_that_is_a_file(workdir):
    _check(workdir, [args for args, trains in COMMANDS if not trains])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_every_command_with_stdout_on_dev_full_then_with_a_cache_that_is_a_file(workdir):
    """About a minute on a shared 2-core machine: every training command trains a little."""
    _check(workdir, [args for args, _ in COMMANDS])
