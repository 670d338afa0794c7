"""A local sqlite store: refused at once when it cannot work, created whole or not at all.

Why: MLflow builds a new sqlite store's schema in a series of migrations, and a process killed
in the middle (or a second process migrating the same new file) leaves a store that every later
command refuses (``table _alembic_tmp_experiments already exists``). So a new store is built in
a temporary file under a lock, then renamed into place: the store's path holds either nothing
or a complete store, and a second process waits for the lock, then finds the store made.

The checks before MLflow opens a file answer in one line what MLflow would answer after minutes
of retries or with a traceback (a folder, a read-only place), or not at all (an in-memory store
where every run vanishes; a database of something else, which MLflow would add its tables to).
They read sqlite's own catalogue (``sqlite_master``), never MLflow's tables.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from robustcli.errors import InputError, StoreError
from robustcli.tracking.locks import lock_file

__all__ = ["LOCKS_DIR", "check_sqlite_uri", "ensure_store", "sqlite_path"]

LOCKS_DIR = "robust-locks"
_MLFLOW_TABLES = {"alembic_version", "experiments", "runs"}
_CREATE_WAIT = 120.0  # seconds a process waits for another to finish creating the store


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` URI (None for any other store)."""
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :].split("?", 1)[0]
        return Path(path) if path else None
    return None


#: the schemes MLflow's own tracking stores take (a database's may add a driver: postgresql+psycopg2)
_MLFLOW_SCHEMES = {"file", "sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc"}


def check_scheme(uri: str) -> None:
    """Refuse a URI whose scheme no tracking store takes (MLflow's, or a plugin's registered in the
    entry-point group ``mlflow.tracking_store``), naming them; a plain path is a local folder."""
    import re
    from importlib.metadata import entry_points

    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", uri)
    if match is None or len(match.group(1)) == 1:  # a path, or a Windows drive letter
        return
    scheme = match.group(1).lower()
    known = _MLFLOW_SCHEMES | {ep.name for ep in entry_points(group="mlflow.tracking_store")}
    if scheme.split("+", 1)[0] not in known:
        raise InputError(f"tracking URI {uri!r}: no tracking store takes the scheme {scheme!r}; MLflow takes "
                         f"{', '.join(sorted(known))} (e.g. sqlite:///mlruns/mlflow.db or http://host:5000)")  # fmt: skip


def check_sqlite_uri(uri: str) -> Path | None:
    """Refuse a sqlite URI that cannot hold a study; its file (None for a non-sqlite store)."""
    check_scheme(uri)
    if not uri.startswith("sqlite:"):
        return None
    path = sqlite_path(uri)
    if path is None or str(path) == ":memory:" or "mode=memory" in uri:
        raise InputError(
            f"tracking URI {uri!r} is an in-memory sqlite store: every run would vanish when the command ends; "
            f"give a file, e.g. sqlite:///mlruns/mlflow.db"
        )
    if path.is_dir():
        raise InputError(f"tracking URI {uri!r}: {path} is a folder, not a store file (e.g. {path / 'mlflow.db'})")
    if path.exists():
        _check_writable(uri, path.parent, path)
        _check_is_mlflow_store(uri, path)
    else:  # to be created: its nearest folder that exists must take it (nothing is made now)
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise InputError(f"tracking URI {uri!r}: {folder} is not a folder")
        _check_writable(uri, folder)
    return path


def _check_is_mlflow_store(uri: str, path: Path) -> None:
    if path.stat().st_size == 0:
        raise InputError(f"tracking URI {uri!r}: {path} is an empty file, not an MLflow store; remove it or choose another")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise InputError(f"tracking URI {uri!r}: {path} is not an MLflow store ({exc})") from None
    if not _MLFLOW_TABLES <= tables:
        raise InputError(
            f"tracking URI {uri!r}: {path} is a sqlite database but not an MLflow store (no MLflow tables); "
            f"it is left untouched: choose another file"
        )


def _check_writable(uri: str, folder: Path, store: Path | None = None) -> None:
    """sqlite writes a journal beside the store: the folder must take a new file, the store writes."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".robust-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"tracking URI {uri!r}: cannot write to {folder} ({exc.strerror or exc})") from None
    # access(), not open(): closing a descriptor of the store would drop the sqlite locks this
    # process may hold on it (POSIX locks belong to the process, not the descriptor)
    if store is not None and not os.access(store, os.W_OK):
        raise InputError(f"tracking URI {uri!r}: cannot write to {store} (read-only)")


def ensure_store(uri: str, path: Path) -> None:
    """Make sure ``path`` holds a complete MLflow store: create it atomically if it does not exist."""
    if path.exists():
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"tracking URI {uri!r}: cannot create the folder {path.parent} ({exc.strerror or exc})") from None
    _check_writable(uri, path.parent)
    locks = lock_file(path.parent / LOCKS_DIR / f"{path.name}.lock")
    if not locks.lock("create", timeout=_CREATE_WAIT):
        raise StoreError(f"another process has been creating the store {path} for {_CREATE_WAIT:.0f} s; try again")
    try:
        if path.exists():
            return  # made by the process this one waited for
        for stale in path.parent.glob(f".{path.name}.*.creating*"):
            stale.unlink(missing_ok=True)  # a creator killed mid-way: we hold the lock, it is dead
        tmp = path.parent / f".{path.name}.{os.getpid()}.creating"
        _build_schema(tmp, path)
        os.replace(tmp, path)
        _write_ahead_log(path)
    finally:
        locks.unlock("create")


def _write_ahead_log(path: Path) -> None:
    """sqlite's write-ahead log for a new store: each of MLflow's commits costs one sequential
    append instead of a rollback journal's several syncs (about half the time per run written,
    ``benchmarks/tracking_overhead.py``). A setting of sqlite's file, not of MLflow's tables;
    where the file system cannot (some network file systems), the store keeps its rollback journal."""
    try:
        conn = sqlite3.connect(path, timeout=20)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
    except sqlite3.Error:
        pass


def _build_schema(tmp: Path, path: Path) -> None:
    """MLflow's own creation and migrations of a store, into ``tmp``, unsynced, then synced once.

    Each of MLflow's ~70 migrations commits, and sqlite syncs every commit and its rollback
    journal to disk: most of a new store's 7-10 s on a small machine. The temporary file is
    renamed into place only once complete, so its connections skip that (``synchronous=OFF``,
    journal in memory) and the file is synced once before the rename. MLflow runs the same
    statements: the same tables, indexes and rows (``benchmarks/first_assess.py``).
    """
    import logging

    from mlflow.tracking import MlflowClient
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)

    def ours(file: str) -> bool:
        try:
            return bool(file) and os.path.samefile(file, tmp)
        except OSError:
            return False

    def unsynced(dbapi_conn: Any, _record: Any) -> None:
        # every engine of this process passes here while the listener is on: touch only ours
        try:
            files = [row[2] for row in dbapi_conn.execute("PRAGMA database_list")]
        except Exception:  # noqa: BLE001 - not a sqlite connection
            return
        if any(ours(f) for f in files):
            dbapi_conn.execute("PRAGMA synchronous=OFF")
            dbapi_conn.execute("PRAGMA journal_mode=MEMORY")

    event.listen(Engine, "connect", unsynced)
    try:
        # opening the store is what makes MLflow create and migrate its schema
        MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - one line, whatever MLflow raised
        tmp.unlink(missing_ok=True)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(f"cannot create the MLflow store {path}: {first[:300]}") from None
    finally:
        event.remove(Engine, "connect", unsynced)
    with open(tmp, "rb+") as fh:  # on disk before it takes the store's name
        os.fsync(fh.fileno())

