"""What a first `robust assess` pays before it trains (issue 15, item 11): a new local store is
MLflow's own schema, built without a disk sync per migration; the stacked engine's torch checks
import no sympy. `benchmarks/first_assess.py` measures both."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from robustcli.tracking.local_store import ensure_store


def _catalogue(db: Path) -> tuple[set, list, list]:
    conn = sqlite3.connect(db)
    try:
        # MLflow's own migrations list a table's constraints in no fixed order: compare the names
        objects = {(kind, name, table) for kind, name, table in conn.execute("SELECT type, name, tbl_name FROM sqlite_master")}
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        default = conn.execute("SELECT experiment_id, name, lifecycle_stage FROM experiments").fetchall()
    finally:
        conn.close()
    return objects, revision, default


def test_a_new_store_is_mlflows_schema_synced_and_usable(tmp_path, empty_store):
    db = tmp_path / "mlruns" / "mlflow.db"
    ensure_store(f"sqlite:///{db}", db)
    assert _catalogue(db) == _catalogue(empty_store)  # the store MLflow's client creates itself
    assert sorted(p.name for p in db.parent.iterdir() if not p.name.startswith("mlflow.db")) == ["robust-locks"]
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA synchronous").fetchone() == (2,)  # a later connection syncs as usual
    conn.close()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    run = client.create_run(client.create_experiment("study"))
    client.log_metric(run.info.run_id, "loss", 0.5)
    assert client.get_run(run.info.run_id).data.metrics == {"loss": 0.5}


def test_the_stacked_engines_torch_checks_import_no_sympy():
    code = (
        "import sys; from robustcli.training.stacked import _torch; "
        "assert _torch.problems() == (), _torch.problems(); print('sympy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"  # importing it costs 1-2 s of every first stacked training
