"""The MLflow store: one experiment per study, a parent run per candidate and settings, a child run per instance.

Layout (what ``mlflow ui`` shows; the experiment opens in MLflow 3's training-runs table):

* experiment = the study's name (tags ``robust.task``, ``mlflow.experimentKind``);
* a parent run per candidate *and* settings fingerprint, named by the candidate's name or its
  readable description (:meth:`Task.describe_candidate`): params = the whole candidate plus the
  settings that tell parents apart (train size, vary...); metrics = the statistics of exactly
  the instances below it (mean, median, min, max, std, iqr, q90_q10, instances, failed), logged
  with step = the number of finished instances, so charts show the estimates settle; start and end
  = its first instance's start and its last instance's end;
* a child run per instance: params ``init_seed``, ``data_seed``, ``train_size``, ``test_size``,
  ``instance_index``; per-epoch ``train_loss``/``epoch_test_loss`` (timestamps spread over its
  training), final ``test_loss``, ``epochs``, ``seconds``; tags: stop reason, status, provenance
  and the user and source tags MLflow's own fluent API sets; its true start and end times.

Beside them: a run per baseline fit, per study (analysis), per selection and per NAS search and
trial; their tags are named in :mod:`robustcli.tracking.tags` and every layer finds them through
:meth:`MlflowStore.find_runs`.

Only MLflow's public client reads and writes. Finished runs are written by a background thread,
each journaled first so that a crash loses nothing (:mod:`robustcli.tracking.writer`); every read
through this store waits for those writes, and opening the store writes what a dead process left.
A local sqlite store is checked and created atomically before MLflow opens it
(:mod:`robustcli.tracking.local_store`); locks between processes are record locks beside it
(:mod:`robustcli.tracking.locks`).

Instances are matched by ``robust.fingerprint``: the hash of every setting that changes the
result (task, task options, study seed, sampling, early stopping...). Only instances with the
same fingerprint are reused, so asking for N instances when K are logged trains N - K.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustcli.errors import StoreError, first_line
from robustcli.tracking.local_store import LOCKS_DIR, check_sqlite_uri, ensure_store, sqlite_path
from robustcli.tracking import tags as T
from robustcli.tracking.locks import LockFile, lock_file
from robustcli.tracking.writer import (
    FINAL,
    JOURNAL_DIR,
    BackgroundWriter,
    ClientRunWriter,
    discard,
    replay_journals,
    run_record,
)

if TYPE_CHECKING:
    from robustcli.training.instance import InstanceStatus  # torch: for annotations only

__all__ = ["DEFAULT_TRACKING_URI", "STAT_METRICS", "InstanceRecord", "MlflowStore", "resolve_tracking_uri"]

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
#: the statistics a candidate's run carries as metrics (besides ``instances`` and ``failed``)
STAT_METRICS = ("mean", "median", "min", "max", "std", "iqr", "q90_q10")
#: what the UI shows of a study: MLflow 3 treats an experiment of this kind as model training, and
#: ``#/experiments/<id>/runs?viewStateShareKey=robust`` opens its runs table with the statistics
#: as columns, sorted by the mean (a shared view: MLflow shows no metric column by default)
UI_VIEW_KEY = "robust"
_COLUMNS = [f"metrics.`{k}`" for k in ("mean", "std", "median", "iqr", "q90_q10", "instances", "failed")]
EXPERIMENT_UI_TAGS = {
    "mlflow.experimentKind": "custom_model_development",
    f"mlflow.sharedViewState.{UI_VIEW_KEY}": json.dumps(
        {"selectedColumns": [*_COLUMNS, "params.`train_size`"], "orderByKey": "metrics.`mean`", "orderByAsc": True}
    ),
}


def resolve_tracking_uri(option: str | None = None, settings_uri: str | None = None) -> str:
    """--tracking-uri, else the study file's, else $MLFLOW_TRACKING_URI, else the local default.

    A relative sqlite path is made absolute: MLflow caches stores by URI, and the runs printed
    must say where they are.
    """
    uri = option or settings_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    db = sqlite_path(uri)
    if db is not None and not db.is_absolute() and str(db) != ":memory:":
        uri = f"sqlite:///{db.resolve()}"
    return uri


class _ReraisedErrors:
    """A logging filter dropping MLflow's logged database errors that it raises right after."""

    def filter(self, record: Any) -> bool:
        return not (record.exc_info and record.getMessage().startswith("SQLAlchemy database error"))


def _cache_dir(kind: str, uri: str) -> Path:
    """A folder of this user's cache for a server's journals and locks (by the server's URI):
    ``$ROBUST_CACHE_DIR`` if set, else ``~/.cache/robustcli``."""
    root = os.environ.get("ROBUST_CACHE_DIR")
    base = (Path(root) if root else Path.home() / ".cache" / "robustcli") / kind
    return base / hashlib.blake2b(uri.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class InstanceRecord:
    """An instance as read back from MLflow."""

    run_id: str
    candidate_id: str
    index: int
    loss: float  # NaN for a failed instance
    status: InstanceStatus
    stop_reason: str
    epochs: int
    seconds: float
    spiked: bool
    init_seed: int
    data_seed: int
    end_time: int = 0  # ms since the epoch, when it stopped training
    #: trained by this process just now (not read back: logged earlier or by another process)
    fresh: bool = False

    @classmethod
    def from_run(cls, run: Any) -> InstanceRecord:
        """The record of an instance run read from MLflow."""
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        failed = tags.get(T.STATUS) == "failed"
        return cls(
            run_id=run.info.run_id,
            candidate_id=tags[T.CANDIDATE_ID],
            index=int(tags[T.INSTANCE_INDEX]),
            loss=math.nan if failed else float(metrics.get("test_loss", math.nan)),
            status=tags.get(T.STATUS, "finished"),
            stop_reason=tags.get(T.STOP_REASON, ""),
            epochs=int(metrics.get("epochs", 0)),
            seconds=float(metrics.get("seconds", 0.0)),
            spiked=tags.get(T.SPIKED) == "true",
            init_seed=int(params.get("init_seed", -1)),
            data_seed=int(params.get("data_seed", -1)),
            end_time=int(run.info.end_time or 0),
        )

    @classmethod
    def from_result(cls, run_id: str, candidate_id: str, result: Any, end_time: int = 0) -> InstanceRecord:
        """The record of a result just logged, without reading it back."""
        return cls(
            run_id=run_id,
            candidate_id=candidate_id,
            index=result.spec.index,
            loss=result.test_loss,
            status=result.status,
            stop_reason=result.stop_reason,
            epochs=result.epochs,
            seconds=result.seconds,
            spiked=result.spiked,
            init_seed=result.spec.init_seed,
            data_seed=result.spec.data_seed,
            end_time=end_time,
            fresh=True,
        )


def _run_context_tags() -> dict[str, str]:
    """The user and source tags MLflow's fluent ``start_run`` sets (mlflow.user, mlflow.source.*),
    from MLflow's run-context providers; the user alone if they cannot be had."""
    try:
        from mlflow.tracking.context.registry import resolve_tags

        tags = {k: str(v) for k, v in resolve_tags({}).items() if k.startswith(("mlflow.user", "mlflow.source"))}
    except Exception:  # noqa: BLE001 - another MLflow: the essentials by hand
        import getpass
        import sys

        tags = {"mlflow.user": getpass.getuser(), "mlflow.source.name": sys.argv[0], "mlflow.source.type": "LOCAL"}
    return tags


class MlflowStore:
    """Reads and writes a study's runs. Only the coordinating process holds one."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        # a URI that cannot work is refused now, in one line, before anything is trained or written
        self._db = check_sqlite_uri(uri)
        self._client: Any = None
        self._writer: BackgroundWriter | None = None  # started on the first run
        self._parents: dict[tuple[str, str], dict[str, str]] = {}  # (experiment, fingerprint) -> candidate -> run
        self._parent_mutex = threading.RLock()
        self._context: dict[str, str] | None = None
        self._run_ids: dict[str, str] = {}  # write key -> run id of the runs written by this store
        self._stats: dict[str, float] = {}  # what the last background writer did
        #: runs found in dead processes' journals when this store was opened (written unless already there)
        self.replayed = 0
        #: while replaying: the candidate runs its instances went to ((experiment, fingerprint, candidate) -> run)
        self._replayed_parents: dict[tuple[str, str, str], str] | None = None

    # -- connection -----------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """MLflow's client, once every run handed to this store is written: reads see them all."""
        if self._client is None:
            self._client = self._connect()
        if self._writer is not None and self._writer.pending:
            self.flush()
        return self._client

    @property
    def _raw(self) -> Any:
        """The client without waiting for queued writes (for reads that cannot depend on them)."""
        if self._client is None:
            self._client = self._connect()
        return self._client

    def connect(self) -> None:
        """Open the store now (created if new; dead processes' journals written): see :attr:`replayed`."""
        self._raw  # noqa: B018

    def flush(self) -> None:
        """Wait until every run handed to :meth:`log_instance` is written (raise StoreError if not)."""
        if self._writer is not None:
            try:
                self._writer.flush()
            except StoreError:
                # said once; its journal stays for the next process, later runs get a new writer
                writer, self._writer = self._writer, None
                writer.abandon()
                raise

    def close(self) -> None:
        """Flush and stop the background writer (a later write starts a new one)."""
        if self._writer is not None:
            self.writer_stats  # noqa: B018 - kept for the benchmark
            writer, self._writer = self._writer, None
            writer.close()

    def run_id(self, key: str) -> str:
        """The MLflow run id of a run handed over as ``key`` (what :meth:`log_instance` returned)."""
        self.flush()
        return self._run_ids.get(key, key)

    @property
    def writer_stats(self) -> dict[str, float]:
        """What the background writer did so far (for the benchmark)."""
        w = self._writer
        if w is not None:
            self._stats.update(runs=w.written, seconds=w.write_seconds, cpu=w.write_cpu)
        return dict(self._stats)

    def _journal_dir(self) -> Path:
        return self._db.parent / JOURNAL_DIR if self._db is not None else _cache_dir("journals", self.uri)

    @property
    def locks_path(self) -> Path:
        """Where :attr:`locks` lives (nothing created)."""
        if self._db is not None:
            return self._db.parent / LOCKS_DIR / f"{self._db.name}.lock"
        return _cache_dir("locks", self.uri).with_suffix(".lock")

    @property
    def locks(self) -> LockFile:
        """The record locks of this store (beside a local store; for a server, this machine's cache)."""
        return lock_file(self.locks_path)

    def _connect(self) -> Any:
        # a team server that is down answers at once, not after minutes of retries; MLflow's
        # "View run ..." lines would break --json on stdout
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        if self._db is not None:
            ensure_store(self.uri, self._db)
        import logging

        from mlflow.tracking import MlflowClient

        # MLflow configures its loggers on import and logs its migrations at INFO: noise for a CLI
        for name in ("alembic", "mlflow"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # its session wrapper logs every database error with its traceback (30 lines each, several per
        # failed write on a full disk) and then raises it: the command's own error line reports it
        db_log = logging.getLogger("mlflow.store.db.utils")
        if not any(isinstance(f, _ReraisedErrors) for f in db_log.filters):
            db_log.addFilter(_ReraisedErrors())
        try:
            client = MlflowClient(tracking_uri=self.uri)
            client.search_experiments(max_results=1)
        except Exception as exc:  # MLflow raises many types for an unreachable or bad store
            raise StoreError(f"cannot reach tracking URI {self.uri!r}: {first_line(exc)}") from None
        self._client = client  # the replay below finds candidate runs through this store
        self._replayed_parents = {}
        try:
            self.replayed = replay_journals(self._journal_dir(), client, self._parent_of)
        finally:
            touched, self._replayed_parents = self._replayed_parents, None
        self._restate_candidates(touched)
        return client

    def _restate_candidates(self, touched: Mapping[tuple[str, str, str], str]) -> None:
        """The statistics of the candidates whose instances a replay wrote (their process died
        before it could state them), as the training process does after its instances."""
        import logging

        for (exp_id, fingerprint, cid), run_id in sorted(touched.items()):
            try:
                records = self.instances(exp_id, fingerprint, [cid]).get(cid)
                if records:
                    self.log_candidate_statistics(run_id, records.values())
            except Exception as exc:  # noqa: BLE001 - the next training of the candidate states them
                logging.getLogger(__name__).warning("could not update candidate %s's statistics after the replay: %s",
                                                    cid, first_line(exc))

    def _artifact_location(self, name: str) -> str | None:
        if self._db is None:
            return None  # a server decides where artifacts go
        return (self._db.parent.resolve() / "artifacts" / name).as_uri()

    def exists(self) -> bool:
        """False only for a local sqlite store not created yet: reading it needs no connection."""
        return self._db is None or self._db.exists()

    @property
    def context_tags(self) -> dict[str, str]:
        if self._context is None:
            self._context = _run_context_tags()
        return self._context

    # -- experiments ----------------------------------------------------------------------
    def find_experiment(self, name: str) -> str | None:
        exp = self.client.get_experiment_by_name(name)
        return exp.experiment_id if exp is not None else None

    def ensure_experiment(self, name: str, tags: Mapping[str, str] | None = None) -> str:
        """The study's experiment, created on first use (two processes creating it: one wins)."""
        wanted = {**EXPERIMENT_UI_TAGS, **(tags or {})}
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            try:
                return self.client.create_experiment(name, artifact_location=self._artifact_location(name), tags=wanted)
            except Exception:  # noqa: BLE001 - created by another process meanwhile?
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
        if exp.lifecycle_stage != "active":
            raise StoreError(f"experiment {name!r} ({exp.experiment_id}) is deleted: restore it "
                             f"(mlflow experiments restore --experiment-id {exp.experiment_id}) or choose another --study")
        for key, value in EXPERIMENT_UI_TAGS.items():  # studies made by earlier versions get the view too
            if exp.tags.get(key) != value:
                self.client.set_experiment_tag(exp.experiment_id, key, value)
        return exp.experiment_id

    def ui_path(self, exp_id: str) -> str:
        """Where MLflow's UI shows the study's candidates side by side: on a tracking server its
        address; for a local store that of ``mlflow ui --backend-store-uri URI`` (its default port)."""
        page = f"#/experiments/{exp_id}/runs?viewStateShareKey={UI_VIEW_KEY}"
        if self.uri.startswith(("http://", "https://")):
            return f"{self.uri.rstrip('/')}/{page}"
        return f"http://127.0.0.1:5000/{page}"

    def list_experiments(self) -> list[Any]:
        return list(self.client.search_experiments())

    # -- runs -----------------------------------------------------------------------------
    def logged_candidates(self, exp_id: str, candidate_id: str | None = None) -> dict[str, Any]:
        """id -> Candidate from the study's candidate runs, as logged (one id only if given): the
        candidates a study trained, grid or not (a NAS trial's included)."""
        if candidate_id is not None and not candidate_id.isalnum():  # ids are hex hashes: nothing to quote
            return {}
        wanted = {T.CANDIDATE_ID: candidate_id} if candidate_id is not None else None
        return candidates_of_runs(self.find_runs(exp_id, T.CANDIDATE, wanted))

    def find_runs(
        self, exp_id: str, kind: str | None, tags: Mapping[str, str] | None = None, *, wait: bool = True
    ) -> list[Any]:
        """The runs of ``kind`` (a :mod:`~robustcli.tracking.tags` kind; None: every kind) whose
        ``tags`` have these values, oldest first: how every layer finds a run robust wrote."""
        return self.search(exp_id, T.run_filter(kind, tags), wait=wait)

    def find_run(self, exp_id: str | None, kind: str, tags: Mapping[str, str]) -> Any | None:
        """The first logged run of ``kind`` with these tags (a run's key), or None (also for no experiment)."""
        if exp_id is None:
            return None
        runs = self.find_runs(exp_id, kind, tags)
        return runs[0] if runs else None

    def search(self, exp_id: str, filter_string: str, *, wait: bool = True) -> list[Any]:
        """Runs matching ``filter_string``, oldest first (after the queued writes unless ``wait=False``)."""
        client = self.client if wait else self._raw
        runs: list[Any] = []
        token = None
        while True:
            page = client.search_runs(
                [exp_id],
                filter_string=filter_string,
                max_results=5000,
                page_token=token,
                order_by=["attributes.start_time ASC"],  # oldest first: "the first logged wins" holds
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    @staticmethod
    def candidate_spec(
        *,
        task: str,
        candidate: Any,
        fingerprint: str,
        name: str,
        settings_params: Mapping[str, Any],
        start_time: int | None = None,
    ) -> dict[str, Any]:
        """What a candidate's run is made of (plain data: it travels in the journal with its instances)."""
        tags = {
            T.KIND: T.CANDIDATE,
            T.TASK: task,
            T.CANDIDATE_ID: candidate.id,
            T.CANDIDATE_JSON: candidate.to_json(),
            T.FINGERPRINT: fingerprint,
            T.DESCRIPTION: name,
        }
        if candidate.name:
            tags[T.CANDIDATE_NAME] = candidate.name
        params = {k: str(v)[:6000] for k, v in sorted(candidate.params.items())}
        params.update({k: str(v) for k, v in settings_params.items() if k not in params})
        return {"candidate_id": candidate.id, "fingerprint": fingerprint, "name": name, "tags": tags,
                "params": params, "start_time": start_time or _now_ms()}

    def candidate_run(self, exp_id: str, spec: Mapping[str, Any]) -> str:
        """The run of the candidate of ``spec`` (:meth:`candidate_spec`) under its settings, created on
        first use. Two processes creating it at once: a record lock makes the second find the first's;
        the writer thread and this thread: a mutex. A run still RUNNING is being written by another
        process (waited for by the lock) or was left so by a process killed while it wrote it:
        completed from ``spec`` then, as its instances may already point at it."""
        fingerprint, cid = spec["fingerprint"], spec["candidate_id"]
        with self._parent_mutex:
            parents = self._parents.get((exp_id, fingerprint))
            if parents is None:
                whole = self._find_parents(exp_id, fingerprint).items()
                parents = self._parents[(exp_id, fingerprint)] = {c: r.info.run_id for c, r in whole
                                                                  if r.info.status != "RUNNING"}  # fmt: skip
            if cid in parents:
                return parents[cid]
            key = f"parent:{exp_id}:{fingerprint}:{cid}"
            self.locks.lock(key)
            try:
                found = self._find_parents(exp_id, fingerprint, cid).get(cid)
                if found is None:
                    run_id = self.write_run(exp_id, spec["name"], {**spec["tags"], **self.context_tags},
                                            spec["params"], start=spec["start_time"])
                elif found.info.status == "RUNNING":
                    run_id = self._complete_candidate_run(found, spec)
                else:
                    run_id = found.info.run_id
                parents[cid] = run_id
                return run_id
            finally:
                self.locks.unlock(key)

    def _complete_candidate_run(self, run: Any, spec: Mapping[str, Any]) -> str:
        """A candidate's run half-written by a killed process: its missing params, then FINISHED."""
        from mlflow.entities import Param

        missing = [Param(k, str(v)) for k, v in spec["params"].items() if k not in run.data.params]
        for i in range(0, len(missing), 100):  # MLflow's limit of params per log_batch
            self._raw.log_batch(run.info.run_id, params=missing[i : i + 100])
        self._raw.set_terminated(run.info.run_id, "FINISHED", end_time=spec["start_time"])
        return run.info.run_id

    def _parent_of(self, run: Mapping[str, Any]) -> str:
        """The writer's hook: the id of the candidate run a journaled instance belongs to."""
        run_id = self.candidate_run(run["experiment_id"], run["parent"])
        if self._replayed_parents is not None:
            spec = run["parent"]
            self._replayed_parents[(str(run["experiment_id"]), spec["fingerprint"], spec["candidate_id"])] = run_id
        return run_id

    def _find_parents(self, exp_id: str, fingerprint: str, candidate_id: str | None = None) -> dict[str, Any]:
        """candidate id -> its run under ``fingerprint`` (the first logged)."""
        wanted = {T.FINGERPRINT: fingerprint, **({T.CANDIDATE_ID: candidate_id} if candidate_id is not None else {})}
        out: dict[str, Any] = {}
        for run in self.find_runs(exp_id, T.CANDIDATE, wanted, wait=False):  # written at once, never queued
            out.setdefault(run.data.tags[T.CANDIDATE_ID], run)
        return out

    def write_run(
        self,
        exp_id: str,
        name: str,
        tags: Mapping[str, str],
        params: Mapping[str, str],
        *,
        metrics: Mapping[str, float] | None = None,
        start: int | None = None,
        end: int | None = None,
    ) -> str:
        """Write one finished run whole, at once (not through the background writer), and return
        its id: a run half-written is deleted again. ``metrics`` are final values (step 0)."""
        start = start or _now_ms()
        end = end or start
        rows = [(k, float(v), end, 0) for k, v in (metrics or {}).items() if math.isfinite(v)]
        run = run_record(experiment_id=exp_id, name=name, status="FINISHED", tags=tags, params=params, metrics=rows,
                         start_time=start, end_time=end)
        return ClientRunWriter(self._raw, "").write(run)

    def log_candidate_statistics(self, run_id: str, records: Iterable[InstanceRecord]) -> None:
        """The candidate run's statistics of exactly these instances, as metrics at step = finished
        instances; its end time moved to its last instance's end."""
        from mlflow.entities import Metric

        from robustcli.robustness.statistics import STATISTICS

        recs = list(records)
        finite = [r.loss for r in recs if math.isfinite(r.loss)]
        step, now = len(finite), _now_ms()
        values: dict[str, float] = {"instances": float(len(recs)), "failed": float(len(recs) - len(finite))}
        if finite:
            import numpy as np

            arr = np.asarray(finite, dtype=float)
            values.update({k: float(STATISTICS[k](arr)) for k in STAT_METRICS})
        metrics = [Metric(k, v, now, step) for k, v in values.items() if math.isfinite(v)]
        client = self.client
        client.log_batch(run_id, metrics=metrics)
        client.set_terminated(run_id, "FINISHED", end_time=max((r.end_time for r in recs), default=0) or now)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_instance(
        self,
        exp_id: str,
        parent: Mapping[str, Any],
        *,
        candidate: Any,
        name: str,
        result: Any,
        end_time: int,
        fingerprint: str,
        settings_json: str,
        provenance: Mapping[str, str],
        extra_tags: Mapping[str, str] | None = None,
    ) -> str:
        """Hand over one finished (or failed) instance as a child run, written whole and closed.

        ``parent`` is its candidate's :meth:`candidate_spec`: the writer finds or creates that run, off
        the training thread. Returns at once a key for the run (:meth:`run_id` turns it into the
        run's id once written); the background writer writes it (journaled first), see :meth:`flush`.
        """
        spec = result.spec
        tags = {
            T.KIND: T.INSTANCE,
            T.CANDIDATE_ID: candidate.id,
            T.INSTANCE_INDEX: str(spec.index),
            T.FINGERPRINT: fingerprint,
            T.STATUS: result.status,
            T.STOP_REASON: result.stop_reason,
            T.SPIKED: str(bool(result.spiked)).lower(),
            T.ENGINE: result.engine,
            T.STACK: ",".join(map(str, result.stack)),
            T.SETTINGS_JSON: settings_json,
            T.CANDIDATE_JSON: candidate.to_json(),
            **self.context_tags,
            **provenance,
            **(extra_tags or {}),
        }
        if result.failure:
            tags[T.FAILURE] = result.failure[:5000]
        if getattr(result, "plain_reason", None):
            tags[T.PLAIN_REASON] = result.plain_reason[:5000]
        params = {
            "init_seed": str(spec.init_seed),
            "data_seed": str(spec.data_seed),
            "train_size": str(spec.train_size),
            "test_size": str(spec.test_size) if spec.test_size else "all",
            "instance_index": str(spec.index),
        }
        start_time = int(getattr(result, "started_at", 0) * 1000) or end_time - int(round(max(result.seconds, 0.0) * 1000))
        metrics = _curve("train_loss", result.train_curve, start_time, end_time)
        metrics += _curve("epoch_test_loss", result.test_curve, start_time, end_time)
        final = {"epochs": result.epochs, "seconds": result.seconds, "spiked": float(result.spiked)}
        if not result.failed:
            final["test_loss"] = result.test_loss
        metrics += [(k, float(v), end_time, 0) for k, v in final.items()]
        run = run_record(experiment_id=exp_id, name=name, status="FAILED" if result.failed else "FINISHED", tags=tags,
                         params=params, metrics=metrics, start_time=start_time, end_time=end_time,
                         parent={**parent, "start_time": start_time})
        self._submit(run)
        return run["write_key"]

    def _submit(self, run: dict[str, Any]) -> None:
        """Journal ``run`` and hand it to the background writer."""
        self.connect()  # and replay dead journals before this process journals its own
        if self._writer is None:
            self._writer = BackgroundWriter(self._raw, self._journal_dir(), self._run_ids, self._parent_of)
        self._writer.submit(run)

    def write_journaled(
        self,
        exp_id: str,
        name: str,
        tags: Mapping[str, str],
        params: Mapping[str, Any] | None = None,
        *,
        metrics: Iterable[tuple[str, float, int, int]] = (),
        artifacts: Mapping[str, bytes] | None = None,
        start: int | None = None,
        end: int | None = None,
        status: str = "FINISHED",
        run_id: str | None = None,
    ) -> str:
        """Write a finished run whole through the journal, as instances are (or, with ``run_id``,
        complete that run: its tags, metrics and artifacts added, then ended with ``status``): a
        kill at any point leaves it to the next command on this store to write, never half-written.
        Returns once it is written: the run's id. ``metrics``: (key, value, timestamp ms, step);
        ``artifacts``: file name -> content (small files)."""
        end = end or _now_ms()
        start = start or end
        rows = list(metrics)
        if run_id is None:
            tags = {**self.context_tags, **tags}
        run = run_record(experiment_id=exp_id, name=name, status=status, tags=tags,
                         params={k: str(v) for k, v in (params or {}).items()}, metrics=rows, start_time=start,
                         end_time=end, artifacts=artifacts, run_id=run_id)
        self._submit(run)
        return self.run_id(run["write_key"])

    def start_run(self, exp_id: str, name: str, tags: Mapping[str, str], params: Mapping[str, Any]) -> str:
        """Create a run left RUNNING (a search's, ended later): created with its tags, then its
        params; deleted again if the params cannot be written."""
        created = self._raw.create_run(exp_id, run_name=name, tags={**tags, **self.context_tags})
        run_id = created.info.run_id
        if params:
            from mlflow.entities import Param

            try:
                self._raw.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
            except BaseException:
                try:
                    discard(self._raw, run_id)
                except Exception:  # noqa: BLE001 - the first error is the one to report
                    pass
                raise
        return run_id

    def resume_run(self, run: Any, params: Mapping[str, Any] | None = None) -> None:
        """A run ended before (a search resumed) is RUNNING again, with the ``params`` it lacks (a
        process killed between its creation and its params left it without them)."""
        from mlflow.entities import Param

        missing = [Param(k, str(v)) for k, v in (params or {}).items() if k not in run.data.params]
        if missing:
            self.client.log_batch(run.info.run_id, params=missing)
        self.client.update_run(run.info.run_id, status="RUNNING")

    def end_run(self, run_id: str, status: str = "FINISHED", end_time: int | None = None) -> None:
        self.client.set_terminated(run_id, status, end_time=end_time)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        """Metrics of a RUNNING run (a selection's steps), at this time and ``step``."""
        from mlflow.entities import Metric

        now = _now_ms()
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def download_artifacts(self, run_id: str, path: str, dst: str | Path) -> Path:
        """The run's artifact ``path`` ("" for all of them) copied under ``dst``: where it is."""
        return Path(self.client.download_artifacts(run_id, path, str(dst)))

    def metric_history(self, run_id: str, key: str) -> list[Any]:
        """Every logged value of the run's metric ``key`` (MLflow ``Metric`` objects)."""
        return list(self.client.get_metric_history(run_id, key))

    def instances(
        self, exp_id: str, fingerprint: str, candidate_ids: Iterable[str] | None = None
    ) -> dict[str, dict[int, InstanceRecord]]:
        """Finished and failed instances with this fingerprint, by candidate then index."""
        wanted = set(candidate_ids) if candidate_ids is not None else None
        filt = {T.FINGERPRINT: fingerprint}
        if wanted is not None and len(wanted) == 1:
            filt[T.CANDIDATE_ID] = next(iter(wanted))
        out: dict[str, dict[int, InstanceRecord]] = {}
        for run in self.find_runs(exp_id, T.INSTANCE, filt):
            if run.info.status not in FINAL:
                continue  # interrupted mid-write: as if never trained
            rec = InstanceRecord.from_run(run)
            if wanted is not None and rec.candidate_id not in wanted:
                continue
            # two runs of the same instance (a race between processes): keep the first logged
            out.setdefault(rec.candidate_id, {}).setdefault(rec.index, rec)
        return out

    def get_run(self, run_id: str) -> Any:
        try:
            return self.client.get_run(run_id)
        except Exception as exc:
            raise StoreError(f"no run {run_id!r} in {self.uri}: {first_line(exc)}") from None


def _curve(key: str, values: list[float], start: int, end: int) -> list[tuple[str, float, int, int]]:
    """Per-epoch points (step = epoch, from 1), their timestamps spread evenly over the training:
    the epochs of one instance cost about the same, and time-axis charts need distinct times."""
    n = len(values)
    return [(key, v, start + (end - start) * (i + 1) // n, i + 1) for i, v in enumerate(values) if math.isfinite(v)]


def _now_ms() -> int:
    return int(time.time() * 1000)


def candidates_of_runs(runs: Any) -> dict[str, Any]:
    """id -> Candidate from candidate (parent) runs, as the store logged them."""
    from robustcli.task import Candidate

    out = {}
    for run in runs:
        tags = run.data.tags
        if tags.get(T.KIND) == T.CANDIDATE and T.CANDIDATE_ID in tags:
            params = json.loads(tags.get(T.CANDIDATE_JSON, "{}"))
            out[tags[T.CANDIDATE_ID]] = Candidate(tags[T.CANDIDATE_ID], params, tags.get(T.CANDIDATE_NAME))
    return out
