"""Candidates compared in `mlflow ui` (issue 12, item 2): a real `mlflow ui` on a loopback port,
headless Chromium opens the experiment's training runs, and the page shows the candidates by name
and their `mean` column. Slow (a browser and a server start); skipped where Chromium is absent
(Debian: `apt-get install chromium`).

What MLflow 3.17 does, found while writing this test:
- `#/experiments/<id>` in a fresh browser opens the GenAI overview whatever the experiment's
  `mlflow.experimentKind` tag says: the GenAI / Model training switch comes from the browser's
  local storage or `?workflowType=machine_learning`. `#/experiments/<id>/runs` opens the training
  runs whatever the switch, so that is the address a README can give.
- The runs table shows no metric column until someone picks one (Columns) or the page is a shared
  view: an experiment tag `mlflow.sharedViewState.<key>` holding the view as JSON (for example
  `{"selectedColumns": ["metrics.`mean`"], "orderByKey": "metrics.`mean`", "orderByAsc": true}`),
  opened as `#/experiments/<id>/runs?viewStateShareKey=<key>`. Where the study carries such a tag,
  this test opens it.
- `?compareRunsMode=CHART` opens the chart view, one chart per metric of the listed runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from _mlflow_server import MlflowServer
from conftest import FAST

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium not on PATH (Debian: apt-get install chromium)"),
]

#: where the screenshots are copied for a person to look at
SHOTS = Path(os.environ.get("ROBUST_UI_SHOTS", "/tmp/ui-shots"))

NAMES = ("small", "wide")  # named candidates of the synthetic task


def _chromium(url: str, png: Path, profile: Path) -> str:
    """The page's DOM after 15 s of virtual time, and a 1600x1000 screenshot of it."""
    done = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
            f"--user-data-dir={profile}",  # a fresh profile: no GenAI / Model training switch remembered
            "--window-size=1600,1000", "--virtual-time-budget=15000", f"--screenshot={png}", "--dump-dom", url,
        ],
        stdin=subprocess.DEVNULL,  # with a pipe or a terminal there, headless Chromium never returns
        capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0 and png.exists(), done.stderr[-2000:]
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(png, SHOTS / png.name)
    return done.stdout


def _shown(dom: str, text: str) -> bool:
    """`text` is the whole text of some element of the page."""
    return re.search(rf">\s*{re.escape(text)}\s*<", dom) is not None


def test_the_runs_page_shows_candidates_by_name_and_their_mean(app, runner, workdir, tmp_path):
    db = workdir / "mlruns" / "mlflow.db"
    uri = f"sqlite:///{db}"
    for name in NAMES:
        result = runner.invoke(
            app, ["assess", "--task", "synthetic", *FAST, "--candidate", name, "-n", "3", "--tracking-uri", uri, "--json"]
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["instances"] == 3

    ui = MlflowServer(db, command="ui").start()
    try:
        from mlflow.tracking import MlflowClient

        exp = MlflowClient(uri).get_experiment_by_name("synthetic")
        shared = sorted(k for k in exp.tags if k.startswith("mlflow.sharedViewState."))
        query = f"?viewStateShareKey={shared[0].split('.', 2)[2]}" if shared else ""
        ui.wait()
        page = f"{ui.uri}/#/experiments/{exp.experiment_id}/runs"

        table = _chromium(page + query, tmp_path / "mlflow-ui-runs.png", tmp_path / "profile-table")
        charts = _chromium(f"{page}?compareRunsMode=CHART", tmp_path / "mlflow-ui-charts.png", tmp_path / "profile-charts")
    finally:
        ui.kill()

    assert "Training runs" in table or _shown(table, "Runs"), "not the training-runs page"
    for name in NAMES:  # the candidate run is named with its setting, e.g. 'small [train 256]'
        assert re.search(rf">\s*{re.escape(name)} \[train \d+\]\s*<", table), (
            f"candidate {name!r} is not a run name on the page (screenshots in {SHOTS})"
        )
    assert "col-id=\"metrics.`mean`\"" in table and _shown(table, "mean"), (
        f"no `mean` column in the runs table (tags{'' if shared else ' (none)'}: {shared}; screenshots in {SHOTS})"
    )
    # the chart view: one chart per statistic of the candidates' runs
    assert _shown(charts, "mean"), f"no `mean` chart in the chart view (screenshots in {SHOTS})"
