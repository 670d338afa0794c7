"""Crash-safe writing of finished runs through MLflow's public client, from a background thread.

The coordinating process hands each finished run to :class:`BackgroundWriter` and goes on
training at once; a thread writes it with ``MlflowClient`` (``create_run`` with the run's true
start time and tags, ``log_batch`` of its params and metrics, ``set_terminated`` with its end
time and status). A real instance trains for seconds to minutes, so the ~30 ms this costs per run
overlaps the next training (``benchmarks/tracking_overhead.py`` measures the share).

So that a crash (an exception, Ctrl-C, SIGKILL, a tracking server gone away) cannot lose a run
that was handed over but not yet written, each run is first appended as one JSON line to a
journal of its process (``<journal folder>/<host>-<pid>-<start>.<id>.jsonl``; written to the OS,
not fsynced: it survives the process, not a power cut). The process holds a record lock on its
journal (:mod:`robustcli.tracking.locks`) for as long as it lives, so whoever opens the store
next (:func:`replay_journals`) can tell a dead writer's journal, whatever host name it ran under
(containers get a new one each start), and writes what it left, before reading.

Replays are idempotent: every run carries the tags ``robust.journal`` (its journal) and
``robust.write_key`` (chosen before it is journaled). A replay looks the journal's runs up by
those tags: a run already ``FINISHED``/``FAILED`` is left alone, one left ``RUNNING`` half-written
(the writer died between its calls) is deleted and written again whole. Readers ignore runs
that are not FINISHED/FAILED, so a half-written run never counts in the meantime.

A record may carry artifacts (small files: an analysis's table and figure, inline in the journal)
and may *complete* a run that exists (``run_id``: a NAS search's run, an analysis run written
again): the run is set RUNNING and tagged with the record's keys first, so a replay finds it
half-done and completes it again (metrics and artifacts written twice are the same).
"""

from __future__ import annotations

import atexit
import base64
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from robustcli.errors import StoreError, StoreWriteError, first_line
from robustcli.tracking.locks import try_lock_whole
from robustcli.tracking.processes import process_start
from robustcli.tracking.tags import JOURNAL, PARENT_RUN_ID, WRITE_KEY

__all__ = ["BackgroundWriter", "ClientRunWriter", "JOURNAL_DIR", "replay_journals", "run_record"]

log = logging.getLogger(__name__)

JOURNAL_DIR = "robust-journal"
#: this process's own journals: record locks do not keep a process out of its own files, and
#: opening and closing one of them would even drop the lock that tells other processes it lives
_OWN: set[str] = set()
_MAX_PARAMS = 100  # MLflow's limits per log_batch
_MAX_METRICS = 1000
FINAL = ("FINISHED", "FAILED")


def run_record(
    *,
    experiment_id: str,
    name: str,
    status: str,
    tags: Mapping[str, str],
    params: Mapping[str, str],
    metrics: Sequence[tuple[str, float, int, int]],
    start_time: int,
    end_time: int,
    parent: Mapping[str, Any] | None = None,
    artifacts: Mapping[str, bytes] | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """A finished run as plain JSON-able data, its write key chosen now.

    ``parent`` describes the run it nests under (a candidate's run), found or created by the
    writer's ``parent_of`` hook when the run is written: off the training thread, and again on a replay.
    ``artifacts``: file name -> content, logged at the run's root. ``run_id``: the record completes
    that run (it exists) instead of creating one.

    ``metrics`` are (key, value, timestamp_ms, step); exact duplicates are dropped (MLflow keeps
    one of them anyway); NaN and infinities are kept as strings so the journal stays strict JSON.
    """
    seen: set[tuple[Any, ...]] = set()
    rows = []
    for key, value, ts, step in metrics:
        row = (str(key), _json_float(float(value)), int(ts), int(step))
        if row not in seen:
            seen.add(row)
            rows.append(row)
    return {
        "write_key": uuid.uuid4().hex,
        "experiment_id": str(experiment_id),
        "name": name,
        "status": status,
        "start_time": int(start_time),
        "end_time": int(end_time),
        "tags": sorted((k, str(v)) for k, v in tags.items()),
        "params": sorted((k, str(v)) for k, v in params.items()),
        "metrics": rows,
        **({"parent": dict(parent)} if parent is not None else {}),
        **({"artifacts": sorted((k, base64.b64encode(v).decode("ascii")) for k, v in artifacts.items())}
           if artifacts else {}),
        **({"run_id": run_id} if run_id else {}),
    }


def _json_float(value: float) -> float | str:
    return value if math.isfinite(value) else repr(value)  # 'nan', 'inf', '-inf'


# -- writing one run --------------------------------------------------------------------------
ParentOf = Callable[[Mapping[str, Any]], str]


class ClientRunWriter:
    """Writes :func:`run_record` runs with ``MlflowClient``; each run is tagged with its journal."""

    def __init__(self, client: Any, journal_id: str, parent_of: ParentOf | None = None) -> None:
        self.client = client
        self.journal_id = journal_id
        self.parent_of = parent_of

    def write(self, run: Mapping[str, Any]) -> str:
        """Write ``run`` whole; its MLflow run id. A run that fails half-way is deleted again."""
        if run.get("run_id"):
            return self._complete(run)
        tags = dict(run["tags"])
        if "parent" in run and self.parent_of is not None:
            tags[PARENT_RUN_ID] = self.parent_of(run)
        if self.journal_id:  # a run written at once (a candidate's) has no journal
            tags[JOURNAL] = self.journal_id
            tags[WRITE_KEY] = run["write_key"]
        created = self.client.create_run(
            run["experiment_id"], start_time=run["start_time"], tags=tags, run_name=run["name"]
        )
        run_id = created.info.run_id
        try:
            self._log_data(run_id, run)
            self.client.set_terminated(run_id, run["status"], end_time=run["end_time"])
        except BaseException:
            try:  # never leave a half-written run behind where it can be helped
                discard(self.client, run_id)
            except Exception:  # noqa: BLE001 - the server is gone: the replay deletes it later
                pass
            raise
        return run_id

    def _complete(self, run: Mapping[str, Any]) -> str:
        """Complete the run that exists: RUNNING and tagged with this record first (a replay then
        finds it half-done), its data, then ended. Left as it is on an error: the journal retries."""
        from mlflow.entities import RunTag
        from mlflow.exceptions import MlflowException

        run_id = run["run_id"]
        try:
            there = self.client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return run_id  # removed for good meanwhile: nothing to complete
            raise
        if there.info.lifecycle_stage != "active":
            return run_id  # deleted meanwhile (from the UI): left so
        tags = dict(run["tags"])
        if self.journal_id:
            tags[JOURNAL] = self.journal_id
            tags[WRITE_KEY] = run["write_key"]
        self.client.update_run(run_id, status="RUNNING")
        if tags:
            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        self._log_data(run_id, {**run, "tags": []})
        self.client.set_terminated(run_id, run["status"], end_time=run["end_time"])
        return run_id

    def _log_data(self, run_id: str, run: Mapping[str, Any]) -> None:
        """Params and metrics in chunks within MLflow's limits per ``log_batch``, then the artifacts."""
        from mlflow.entities import Metric, Param

        params = [Param(k, v) for k, v in run["params"]]
        # float() reads back the 'nan' / 'inf' the journal holds for non-finite values
        metrics = [Metric(k, float(v), ts, step) for k, v, ts, step in run["metrics"]]
        while params or metrics:
            ps, params = params[:_MAX_PARAMS], params[_MAX_PARAMS:]
            ms, metrics = metrics[: _MAX_METRICS - len(ps)], metrics[_MAX_METRICS - len(ps) :]
            self.client.log_batch(run_id, metrics=ms, params=ps)
        if run.get("artifacts"):
            import tempfile

            with tempfile.TemporaryDirectory(prefix="robust-artifacts-") as tmp:
                for name, data in run["artifacts"]:
                    path = Path(tmp) / name
                    path.write_bytes(base64.b64decode(data))
                    self.client.log_artifact(run_id, str(path))


def discard(client: Any, run_id: str) -> None:
    """Remove a half-written run: ended first (KILLED), so that nothing stays RUNNING, even in the trash."""
    client.set_terminated(run_id, "KILLED")
    client.delete_run(run_id)


# -- journals ----------------------------------------------------------------------------------
def _journal_name() -> str:
    """``<host>-<pid>-<start>.<id>.jsonl``: who wrote it, for a person looking at the folder."""
    pid = os.getpid()
    start = process_start(pid)
    return f"{socket.gethostname()}-{pid}-{start + '.' if start else ''}{uuid.uuid4().hex[:8]}.jsonl"


def _read_all(fd: int) -> bytes:
    # through the locked descriptor itself: closing any other descriptor of the file would drop the lock
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _read_journal(lines: Iterable[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            break  # a line cut short by the crash: its run was never handed over as written
    return out


def replay_journals(folder: Path, client: Any, parent_of: ParentOf | None = None) -> int:
    """Write the runs that dead processes left in their journals; the number of runs written."""
    if not folder.is_dir():
        return 0
    done = 0
    for path in sorted(folder.glob("*.jsonl")):
        if str(path.resolve()) in _OWN:
            continue
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # replayed by another process meanwhile
        except OSError as exc:
            log.warning("cannot open the journal %s: %s", path, exc)
            continue
        try:
            if not try_lock_whole(fd):
                continue  # its writer is alive (or another process is replaying it now)
            if not path.exists():
                continue  # replayed and removed by another process before this one locked it
            runs = _read_journal(_read_all(fd).decode("utf-8", errors="replace").splitlines())
            try:
                written, waiting = _replay(path.stem, runs, client, parent_of)
            except Exception as exc:  # noqa: BLE001 - a replay must not stop the command that opens the store
                log.warning("could not replay the journal %s now (%s); the next command tries again", path, f"{type(exc).__name__}: {first_line(exc)}")
                continue
            done += written
            if not waiting:
                path.unlink(missing_ok=True)
        finally:
            os.close(fd)  # releases the lock
    return done


def _replay(journal_id: str, runs: list[dict[str, Any]], client: Any, parent_of: ParentOf | None) -> tuple[int, int]:
    """Write the runs of one journal that are not in the store whole: (written, still waiting).
    Runs of a deleted experiment wait in the journal until it is restored."""
    from mlflow.entities import ViewType

    if not runs:
        return 0, 0
    experiments = sorted({r["experiment_id"] for r in runs})
    live = [e for e in experiments if _experiment_active(client, e)]
    found: dict[str, Any] = {}
    if live:
        for run in _search_all(client, live, f"tags.`{JOURNAL}` = '{journal_id}'", ViewType.ACTIVE_ONLY):
            found[run.data.tags.get(WRITE_KEY, "")] = run
    writer = ClientRunWriter(client, journal_id, parent_of)
    written = waiting = 0
    for run in runs:
        if run["experiment_id"] not in live:
            waiting += 1
            continue
        there = found.get(run["write_key"])
        if there is not None and there.info.status in FINAL:
            continue
        if there is not None and not run.get("run_id"):
            discard(client, there.info.run_id)  # half-written by the dead process (one completed: done again)
        writer.write(run)
        written += 1
    if waiting:
        log.warning("the journal %s keeps %d runs of deleted experiments (%s): restore them (mlflow experiments "
                    "restore) and the next command writes the runs", journal_id, waiting, ", ".join(sorted(set(experiments) - set(live))))
    return written, waiting


def _experiment_active(client: Any, exp_id: str) -> bool:
    try:
        return client.get_experiment(exp_id).lifecycle_stage == "active"
    except Exception:  # noqa: BLE001 - gone for good
        return False


def _search_all(client: Any, experiments: list[str], filter_string: str, view: Any) -> Iterable[Any]:
    token = None
    while True:
        page = client.search_runs(experiments, filter_string=filter_string, run_view_type=view, max_results=5000,
                                  page_token=token)
        yield from page
        token = page.token
        if not token:
            return


# -- the thread --------------------------------------------------------------------------------
class BackgroundWriter:
    """Journals each run at once, writes it from a thread; :meth:`flush` waits for all of them."""

    def __init__(
        self, client: Any, journal_dir: Path, run_ids: dict[str, str] | None = None, parent_of: ParentOf | None = None
    ) -> None:
        self.journal_dir = journal_dir
        self.journal_path = journal_dir / _journal_name()
        self.writer = ClientRunWriter(client, self.journal_path.stem, parent_of)
        self._fh: Any = None
        self._pending: list[dict[str, Any]] = []
        self._busy = 0  # runs taken by the thread and not yet written
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        #: write key -> MLflow run id of every run written so far
        self.run_ids: dict[str, str] = {} if run_ids is None else run_ids
        self.written = 0
        #: seconds the thread spent writing (wall) and its CPU time, for the benchmark
        self.write_seconds = 0.0
        self.write_cpu = 0.0
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
                _OWN.add(str(self.journal_path.resolve()))
                if not try_lock_whole(self._fh.fileno()):  # a fresh name: nobody else can hold it
                    raise OSError(f"the journal {self.journal_path} is locked by another process")
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
        """Wait until everything submitted is written; raise StoreError if the thread could not."""
        with self._cond:
            while (self._pending or self._busy) and self._error is None:
                self._cond.wait()
            error = self._error
        if error is not None:
            raise StoreWriteError(
                f"could not write finished runs to MLflow ({type(error).__name__}: {first_line(error)}); they are kept in "
                f"{self.journal_path} and the next command on this store writes them"
            ) from error
        if self._fh is not None and self._fh.tell():
            self._fh.seek(0)
            self._fh.truncate()  # all written: nothing to replay

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
                if self._error is None:
                    self.journal_path.unlink(missing_ok=True)
                self._fh.close()  # releases the lock: a kept journal is replayed from now on
                self._fh = None

    def abandon(self) -> None:
        """Stop without writing: the journal is kept and replayed by the next command."""
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
                run = self._pending.pop(0)
                self._busy = 1
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                run_id = self.writer.write(run)
            except BaseException as exc:  # noqa: BLE001 - handed to the coordinator by flush()
                with self._cond:
                    self._error = exc
                    self._busy = 0
                    self._cond.notify_all()
                return
            with self._cond:
                self.run_ids[run["write_key"]] = run_id
                self.write_seconds += time.perf_counter() - t0
                self.write_cpu += time.thread_time() - c0
                self.written += 1
                self._busy = 0
                self._cond.notify_all()


def _close_at_exit(ref: weakref.ref) -> None:
    writer = ref()
    if writer is not None:
        try:
            writer.close()
        except Exception as exc:  # noqa: BLE001 - the journal keeps the runs for the next command
            log.warning("%s", exc)
