"""MLflow is written from robustcli/tracking/ only, and run kinds and tags are named there once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from robustcli.tracking import tags as T

ROOT = Path(__file__).resolve().parents[1]
#: MLflow's client and fluent calls that write (a store method of the same name is fine: ``store.log_artifact``)
WRITES = re.compile(r"MlflowClient|mlflow\.(start_run|log_\w+|set_tag\w*|end_run)|\b(log_batch|create_run|set_terminated|"
                    r"update_run|delete_run|create_experiment|set_experiment_tag)\(")


def test_no_code_outside_tracking_writes_mlflow():
    files = [*(ROOT / "robustcli").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]
    outside = [p for p in files if (ROOT / "robustcli" / "tracking") not in p.parents and "tests" not in p.parts]
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in outside
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if WRITES.search(line)]  # fmt: skip
    assert hits == []


def test_run_filters_name_the_kind_and_the_tags():
    assert T.run_filter(T.ANALYSIS, {T.ANALYSIS_KEY: "abc"}) == "tags.`robust.kind` = 'study' and tags.`robust.study_key` = 'abc'"
    assert T.run_filter(None) == "tags.`robust.kind` != ''"
    with pytest.raises(ValueError, match="quote"):
        T.run_filter(T.BASELINE, {T.BASELINE_NAME: "it's"})
    assert len(set(T.RUN_KINDS)) == 7
