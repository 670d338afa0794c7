"""Shared fixtures: every test gets its own MLflow store and cache in a temporary folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

# one thread: the machines are small and shared, and results must not depend on the thread count
os.environ.setdefault("OMP_NUM_THREADS", "1")

#: early stopping that keeps the synthetic task to a second or two per instance
FAST = ["--min-epochs", "8", "--window", "4", "--max-epochs", "30"]


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite store with its schema migrated once: migrations take seconds per store."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Path) -> Path:
    """A fresh folder as the working directory, with its own (empty) default store and cache."""
    (tmp_path / "mlruns").mkdir()
    shutil.copy(empty_store, tmp_path / "mlruns" / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("ROBUST_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def app():
    from robustcli.cli.main import app

    return app


def experiments(uri: str | None = None) -> list[str]:
    """Names of the experiments a store holds besides MLflow's Default."""
    uri = uri or f"sqlite:///{Path('mlruns/mlflow.db').resolve()}"
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        return []
    from mlflow.tracking import MlflowClient

    return [e.name for e in MlflowClient(uri).search_experiments() if e.name != "Default"]
