"""Fast, crash-safe writing of finished runs to a local (sqlite) MLflow store.

Why not MLflow's client: writing one instance through ``MlflowClient`` (create_run, log_batch,
set_terminated) costs about ten SQLite transactions, each with its own fsync, plus ~30 ms of
Python per instance: ~100 ms per instance on the 2-core machines, half of a quick study's wall
time (``benchmarks/tracking_overhead.py``). Here a finished run is written as plain rows in the
tables of the installed MLflow's own schema (its ORM tables, which MLflow checks against its
migrations when it opens the store), already ``FINISHED``/``FAILED``, in **one transaction**: a
run is in the store whole or not at all, so nothing half-written can ever look finished.

Why a background thread and a journal: the coordinating process hands each finished run to
:class:`BackgroundWriter` and goes on at once; the thread writes whatever has queued up in one
transaction (one fsync for a whole stack of instances) while the coordinator trains. So that a
crash (an exception, Ctrl-C, SIGKILL, the OOM killer) cannot lose a run that was handed over but
not yet committed, each run is first appended, as one JSON line, to a journal file of its own
process next to the store (``<store folder>/robust-journal/<host>-<pid>-<start>.<id>.jsonl``; written to
the OS, not fsynced: it survives the process, not a power cut). The journal is emptied once
everything in it is committed and removed when the writer closes; whoever opens the store next
(:func:`replay_journals`) writes what a dead process left in its journal, before reading.
Writes are idempotent (a run's id is chosen before it is journaled; ``INSERT OR IGNORE``), so a
replay of runs that were in fact committed changes nothing.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from robustcli.errors import StoreError
from robustcli.tracking.processes import owner_alive, process_start

__all__ = ["BackgroundWriter", "RunRows", "SqlRunWriter", "replay_journals", "JOURNAL_DIR"]

log = logging.getLogger(__name__)

JOURNAL_DIR = "robust-journal"
_MAX_PER_TRANSACTION = 256  # runs per transaction: bounds the time a transaction holds sqlite's lock
_LINGER = 0.02  # seconds the writer waits for more runs before a transaction (not when flushed)


# -- the rows of one run ----------------------------------------------------------------------
def _sanitize(value: float) -> tuple[float, bool]:
    """As MLflow stores a metric value: NaN as 0 with is_nan, infinities clipped."""
    if math.isnan(value):
        return 0.0, True
    if math.isinf(value):
        return (1.7976931348623157e308 if value > 0 else -1.7976931348623157e308), False
    return value, False


def RunRows(  # noqa: N802 - a constructor of plain data
    *,
    experiment_id: str,
    artifact_location: str,
    name: str,
    status: str,
    tags: Mapping[str, str],
    params: Mapping[str, str],
    metrics: Sequence[tuple[str, float, int, int]],
    start_time: int | None = None,
) -> dict[str, Any]:
    """A finished run as plain JSON-able data: validated by MLflow's own rules, id chosen now.

    ``metrics`` are (key, value, timestamp_ms, step). Raises MLflow's exception for a bad key or
    a value over MLflow's limits, as ``MlflowClient.log_batch`` would.
    """
    from mlflow.utils.uri import append_to_uri_path
    from mlflow.utils.validation import _validate_metric, _validate_param, _validate_tag

    run_id = uuid.uuid4().hex
    now = int(time.time() * 1000)
    tags = {"mlflow.runName": name, **{k: str(v) for k, v in tags.items()}}
    params = {k: str(v) for k, v in params.items()}
    for k, v in tags.items():
        _validate_tag(k, v)
    for k, v in params.items():
        _validate_param(k, v)
    if len(tags) > 100 or len(params) > 100:
        raise StoreError(f"run {name!r}: {len(tags)} tags / {len(params)} params, MLflow's limit is 100 each")
    rows = []
    seen = set()
    for key, value, ts, step in metrics:
        v, is_nan = _sanitize(float(value))
        ident = (key, v, int(ts), int(step), is_nan)
        if ident not in seen:  # MLflow drops exact duplicates too (they would break the primary key)
            seen.add(ident)
            rows.append(ident)
    for key in {r[0] for r in rows}:
        _validate_metric(key, 0.0, now, 0)
    return {
        "run_uuid": run_id,
        "experiment_id": str(experiment_id),
        "artifact_uri": append_to_uri_path(artifact_location, run_id, "artifacts"),
        "name": name,
        "status": status,
        "start_time": start_time or now,
        "end_time": now,
        "user_id": tags.get("mlflow.user", "unknown"),
        "tags": sorted(tags.items()),
        "params": sorted(params.items()),
        "metrics": rows,
    }


def _latest(metrics: list[Any]) -> dict[str, Any]:
    """Per key the row MLflow keeps as the latest: the greatest (step, timestamp, value)."""
    out: dict[str, Any] = {}
    for m in metrics:
        key, value, ts, step, _ = m
        cur = out.get(key)
        if cur is None or (step, ts, value) > (cur[3], cur[2], cur[1]):
            out[key] = m
    return out


# -- one transaction per batch ------------------------------------------------------------------
#: the columns written, in the order of the tuples built by SqlRunWriter.write
_COLUMNS = {
    "runs": ("run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id", "status", "start_time",
             "end_time", "deleted_time", "source_version", "lifecycle_stage", "artifact_uri", "experiment_id"),
    "tags": ("key", "value", "run_uuid"),
    "params": ("key", "value", "run_uuid"),
    "metrics": ("key", "value", "timestamp", "step", "is_nan", "run_uuid"),
    "latest_metrics": ("key", "value", "timestamp", "step", "is_nan", "run_uuid"),
}

class SqlRunWriter:
    """Writes :func:`RunRows` into a SQLAlchemy MLflow store in one transaction per batch."""

    def __init__(self, engine: Any) -> None:
        from mlflow.store.tracking.dbmodels.models import (
            SqlExperiment, SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag,
        )  # fmt: skip

        self.engine = engine
        self.tables = {
            "runs": SqlRun.__table__,
            "tags": SqlTag.__table__,
            "params": SqlParam.__table__,
            "metrics": SqlMetric.__table__,
            "latest_metrics": SqlLatestMetric.__table__,
        }
        self.experiments = SqlExperiment.__table__
        self._sql_cache: dict[tuple[str, str], str] = {}
        self._check_schema()

    def _check_schema(self) -> None:
        """Refuse (so the caller falls back to the client) a schema this writer does not fill."""
        for name, table in self.tables.items():
            ours = set(_COLUMNS[name])
            required = {c.name for c in table.columns if not c.nullable and c.default is None and c.server_default is None}
            if table.name != name or not required <= ours or not ours <= {c.name for c in table.columns}:
                raise StoreError(f"unexpected MLflow schema for table {name!r}")
        if not {"experiment_id", "name", "lifecycle_stage"} <= {c.name for c in self.experiments.columns}:
            raise StoreError("unexpected MLflow schema for table 'experiments'")

    def find_run(self, experiment_id: str, tags: Mapping[str, str]) -> str | None:
        """The oldest active run of the experiment with all these tag values, as
        ``MlflowClient.search_runs`` would find it, in one indexed query instead of a search."""
        from sqlalchemy import and_, select

        runs, tag_table = self.tables["runs"], self.tables["tags"]
        query = select(runs.c.run_uuid).where(
            runs.c.experiment_id == int(experiment_id),
            runs.c.lifecycle_stage == "active",
        )
        for i, (k, v) in enumerate(tags.items()):
            t = tag_table.alias(f"t{i}")
            query = query.join(t, and_(t.c.run_uuid == runs.c.run_uuid, t.c.key == k, t.c.value == v))
        query = query.order_by(runs.c.start_time.asc()).limit(1)
        with self.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA busy_timeout = 20000")
            row = conn.execute(query).first()
        return row[0] if row else None

    def write(self, batch: Sequence[Mapping[str, Any]]) -> None:
        """All of ``batch`` in one transaction; runs already there (by id) are left as they are."""
        if not batch:
            return
        runs, tags, params, metrics, latest = [], [], [], [], []
        for r in batch:
            rid = r["run_uuid"]
            runs.append(
                (rid, r["name"], "UNKNOWN", "", "", r["user_id"], r["status"], r["start_time"], r["end_time"], None,
                 "", "active", r["artifact_uri"], int(r["experiment_id"]))
            )
            tags += [(k, v, rid) for k, v in r["tags"]]
            params += [(k, v, rid) for k, v in r["params"]]
            ms = [tuple(m) for m in r["metrics"]]
            metrics += [(k, v, ts, step, int(nan), rid) for k, v, ts, step, nan in ms]
            latest += [(k, v, ts, step, int(nan), rid) for k, v, ts, step, nan in _latest(ms).values()]
        with self.engine.begin() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                conn.exec_driver_sql("PRAGMA busy_timeout = 20000")
                conn.exec_driver_sql("PRAGMA foreign_keys = ON")
            for name, rows in (("runs", runs), ("tags", tags), ("params", params), ("metrics", metrics),
                               ("latest_metrics", latest)):
                if rows:
                    # plain executemany: SQLAlchemy's per-row parameter processing doubles the CPU
                    conn.exec_driver_sql(self._insert_sql(name, conn.dialect), rows)
            # after the inserts: sqlite's driver begins the transaction at the first one, so the
            # check and the rows commit (or roll back) together
            self._refuse_deleted_experiments(conn, {int(r["experiment_id"]) for r in batch})

    def _refuse_deleted_experiments(self, conn: Any, ids: set[int]) -> None:
        """As MLflow's client refuses a run in a deleted experiment: checked in the transaction,
        so an experiment deleted while a study runs gets none of its later runs."""
        from sqlalchemy import select

        exps = self.experiments
        query = select(exps.c.experiment_id, exps.c.name).where(
            exps.c.experiment_id.in_(sorted(ids)), exps.c.lifecycle_stage != "active"
        )
        row = conn.execute(query).first()
        if row is not None:
            raise StoreError(
                f"experiment {row[1]!r} ({row[0]}) is deleted: restore it (mlflow experiments restore "
                f"--experiment-id {row[0]}) to keep its runs, or choose another --study"
            )

    def _insert_sql(self, name: str, dialect: Any) -> str:
        key = (name, dialect.name)
        if key not in self._sql_cache:
            cols = _COLUMNS[name]
            mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
            if mark is None:
                raise StoreError(f"unsupported paramstyle {dialect.paramstyle!r}")
            verb = "INSERT OR IGNORE INTO" if dialect.name == "sqlite" else "INSERT INTO"
            self._sql_cache[key] = f"{verb} {name} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
        return self._sql_cache[key]


# -- the journal and the thread -----------------------------------------------------------------
def _journal_name() -> str:
    """``<host>-<pid>-<start>.<id>.jsonl`` (``<host>-<pid>-<id>`` where the start cannot be told):
    a version that knows no start still reads host and pid from it."""
    pid = os.getpid()
    start = process_start(pid)
    return f"{socket.gethostname()}-{pid}-{start + '.' if start else ''}{uuid.uuid4().hex[:8]}.jsonl"


def _owner_alive(path: Path) -> bool:
    parts = path.stem.rsplit("-", 2)  # host-pid-[start.]id
    if len(parts) != 3:
        return False
    start, dot, _ = parts[2].partition(".")
    return owner_alive(parts[0], parts[1], start if dot else None)


def _read_journal(path: Path) -> list[dict[str, Any]]:
    out = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                out.append(json.loads(line))
            except ValueError:
                break  # a line cut short by the crash: its run was never handed over as written
    return out


def replay_journals(folder: Path, writer: SqlRunWriter) -> int:
    """Write the runs that dead processes left in their journals; the number of runs replayed."""
    if not folder.is_dir():
        return 0
    done = 0
    for path in sorted(folder.glob("*.jsonl")):
        if _owner_alive(path):
            continue
        try:
            runs = _read_journal(path)
            for lo in range(0, len(runs), _MAX_PER_TRANSACTION):
                writer.write(runs[lo : lo + _MAX_PER_TRANSACTION])
        except FileNotFoundError:
            continue  # another process replayed it first
        except Exception as exc:  # noqa: BLE001 - a replay must not stop the command that opens the store
            from sqlalchemy.exc import IntegrityError

            if isinstance(exc, IntegrityError):  # e.g. its experiment is gone: it never will replay
                bad = path.with_suffix(".unreplayable")
                log.warning("cannot replay the journal %s (%s); kept as %s", path, str(exc).splitlines()[0], bad)
                try:
                    path.rename(bad)
                except OSError:
                    pass
            else:  # e.g. the store is locked: the next command tries again
                log.warning("could not replay the journal %s now: %s", path, str(exc).splitlines()[0])
            continue
        done += len(runs)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    return done


class BackgroundWriter:
    """Journals each run at once, writes it from a thread, in batches; :meth:`flush` waits."""

    def __init__(self, writer: SqlRunWriter, journal_dir: Path) -> None:
        self.writer = writer
        self.journal_dir = journal_dir
        self.journal_path = journal_dir / _journal_name()
        self._fh: Any = None
        self._pending: list[dict[str, Any]] = []
        self._busy = 0  # runs taken by the thread and not yet committed
        self._flushing = 0  # coordinators waiting in flush(): write at once
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.written = 0
        #: seconds the thread spent writing (wall) and its CPU time, for the benchmark
        self.write_seconds = 0.0
        self.write_cpu = 0.0
        self.transactions = 0
        atexit.register(_close_at_exit, weakref.ref(self))

    # -- coordinator side -------------------------------------------------------------------
    def submit(self, run: dict[str, Any]) -> None:
        """Journal ``run`` (so a crash cannot lose it) and queue it for the thread."""
        if self._closed:
            raise StoreError("the MLflow writer is closed")
        line = json.dumps(run, separators=(",", ":"), allow_nan=False) + "\n"
        try:
            if self._fh is None:
                self.journal_dir.mkdir(parents=True, exist_ok=True)
                self._fh = self.journal_path.open("a", encoding="utf-8")
            self._fh.write(line)
            self._fh.flush()  # in the OS's hands: survives the death of this process
        except OSError as exc:
            raise StoreError(f"cannot write the MLflow journal {self.journal_path}: {exc.strerror or exc}") from None
        with self._cond:
            self._pending.append(run)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="robust-mlflow-writer", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self) -> None:
        """Wait until everything submitted is committed; raise if the thread could not write it."""
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while (self._pending or self._busy) and self._error is None:
                    self._cond.wait()
            finally:
                self._flushing -= 1
            error = self._error
        if error is not None:
            raise StoreError(
                f"could not write finished runs to MLflow ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
                f"they are kept in {self.journal_path} and the next command on this store writes them"
            ) from error
        if self._fh is not None and self._fh.tell():
            self._fh.seek(0)
            self._fh.truncate()  # all committed: nothing to replay

    def close(self) -> None:
        """Flush, stop the thread and remove the (empty) journal."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            with self._cond:
                self._cond.notify_all()
            if self._fh is not None:
                self._fh.close()
                self._fh = None
                if self._error is None:
                    try:
                        self.journal_path.unlink()
                    except FileNotFoundError:
                        pass

    def abandon(self) -> None:
        """Stop without writing: the journal is kept (it is replayed once this process is gone)."""
        self._closed = True
        with self._cond:
            self._pending.clear()
            self._cond.notify_all()
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._pending) + self._busy

    # -- the thread -------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                # results come in bursts (a stack finishes together): gather the burst into one
                # transaction, unless the coordinator is waiting for it
                deadline = time.monotonic() + _LINGER
                while not (self._flushing or self._closed or len(self._pending) >= _MAX_PER_TRANSACTION):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch = self._pending[:_MAX_PER_TRANSACTION]
                del self._pending[: len(batch)]
                self._busy = len(batch)
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                self.writer.write(batch)
            except BaseException as exc:  # noqa: BLE001 - handed to the coordinator by flush()
                with self._cond:
                    self._error = exc
                    self._busy = 0
                    self._cond.notify_all()
                return
            with self._cond:
                self.write_seconds += time.perf_counter() - t0
                self.write_cpu += time.thread_time() - c0
                self.transactions += 1
                self.written += len(batch)
                self._busy = 0
                self._cond.notify_all()


def _close_at_exit(ref: weakref.ref) -> None:
    writer = ref()
    if writer is not None:
        try:
            writer.close()
        except Exception as exc:  # noqa: BLE001 - the journal keeps the runs for the next command
            log.warning("%s", exc)
