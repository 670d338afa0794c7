"""The MLflow store: one experiment per study, a parent run per candidate, a child run per instance.

Layout (what ``mlflow ui`` shows):

* experiment = the study's name;
* a parent run per candidate: params = the whole candidate, tags ``robust.kind=candidate``,
  ``robust.task``, ``robust.candidate_id`` and the running statistics of its instances;
* a child run per instance: params ``init_seed``, ``data_seed``, ``train_size``,
  ``instance_index`` (and the settings), per-epoch ``train_loss``/``test_loss``, final
  ``test_loss``, ``epochs``, ``seconds``; tags: stop reason, status, provenance (versions, git
  commit, device, host). An instance's run is written once it has finished, already closed.

How runs are written: to a local sqlite store, in one transaction per batch of finished runs from
a background thread, each run first journaled next to the store so that a crash loses nothing
(see :mod:`robustcli.tracking.writer`; every read through this store waits for those writes
first, and opening the store writes what a dead process left in its journal). To any other
store (a server), synchronously through ``MlflowClient`` in three calls (create_run with the
tags, log_batch, set_terminated), the run deleted on error; readers ignore a run that is not
FINISHED/FAILED, so an interrupted process leaves nothing that looks finished either way.
``ROBUST_TRACKING_WRITE=sync`` forces the synchronous way for a sqlite store too.

Instances are matched by ``robust.fingerprint``: the hash of every setting that changes the
result (task, task options, study seed, sampling, early stopping...). Only instances with the
same fingerprint are reused, so asking for N instances when K are logged trains N - K.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustcli.errors import StoreError
from robustcli.tracking.writer import JOURNAL_DIR, BackgroundWriter, RunRows, SqlRunWriter, replay_journals

__all__ = ["DEFAULT_TRACKING_URI", "InstanceRecord", "MlflowStore", "resolve_tracking_uri"]

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
_MAX_BATCH = 900  # MLflow accepts at most 1000 entries (metrics + params + tags) per log_batch


def resolve_tracking_uri(option: str | None = None, settings_uri: str | None = None) -> str:
    """--tracking-uri, else the study file's, else $MLFLOW_TRACKING_URI, else the local default.

    A relative sqlite path is made absolute: MLflow caches stores by URI, and the runs printed
    must say where they are.
    """
    uri = option or settings_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    db = _sqlite_path(uri)
    if db is not None and not db.is_absolute():
        uri = f"sqlite:///{db.resolve()}"
    return uri


@dataclass(frozen=True)
class InstanceRecord:
    """An instance as read back from MLflow."""

    run_id: str
    candidate_id: str
    index: int
    loss: float  # NaN for a failed instance
    status: str
    stop_reason: str
    epochs: int
    seconds: float
    spiked: bool
    init_seed: int
    data_seed: int

    @classmethod
    def from_run(cls, run: Any) -> InstanceRecord:
        """The record of an instance run read from MLflow."""
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        failed = tags.get("robust.status") == "failed"
        return cls(
            run_id=run.info.run_id,
            candidate_id=tags["robust.candidate_id"],
            index=int(tags["robust.instance_index"]),
            loss=math.nan if failed else float(metrics.get("test_loss", math.nan)),
            status=tags.get("robust.status", "finished"),
            stop_reason=tags.get("robust.stop_reason", ""),
            epochs=int(metrics.get("epochs", 0)),
            seconds=float(metrics.get("seconds", 0.0)),
            spiked=tags.get("robust.spiked") == "true",
            init_seed=int(params.get("init_seed", -1)),
            data_seed=int(params.get("data_seed", -1)),
        )

    @classmethod
    def from_result(cls, run_id: str, candidate_id: str, result: Any) -> InstanceRecord:
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
        )


def _sqlite_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :])
    return None


class MlflowStore:
    """Reads and writes a study's runs. Only the coordinating process holds one."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._client: Any = None
        self._sql: Any = None  # a SqlRunWriter when runs are written as rows (a sqlite store)
        self._writer: Any = None  # its BackgroundWriter, started on the first run
        self._artifacts: dict[str, str] = {}
        self._created_parents: dict[tuple[str, str], str] = {}
        #: runs found in dead processes' journals when this store was opened (written unless already there)
        self.replayed = 0

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

    def flush(self) -> None:
        """Wait until every run handed to :meth:`log_instance` is committed (raise StoreError if not)."""
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
            writer, self._writer = self._writer, None
            writer.close()

    @property
    def writer_stats(self) -> dict[str, float]:
        """What the background writer did so far (for the benchmark)."""
        w = self._writer
        if w is None:
            return {}
        return {"runs": w.written, "transactions": w.transactions, "seconds": w.write_seconds, "cpu": w.write_cpu}

    def _journal_dir(self) -> Path | None:
        db = _sqlite_path(self.uri)
        return None if db is None else db.parent / JOURNAL_DIR

    def _setup_fast_writes(self, client: Any) -> None:
        if os.environ.get("ROBUST_TRACKING_WRITE", "").lower() == "sync" or _sqlite_path(self.uri) is None:
            return
        try:
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            store = client._tracking_client.store
            if not isinstance(store, SqlAlchemyStore):
                return
            self._sql = SqlRunWriter(store.engine)
        except Exception as exc:  # noqa: BLE001 - another MLflow: the client's (slower) way still works
            import logging

            logging.getLogger(__name__).debug("fast MLflow writes off: %s", exc)
            self._sql = None
            return
        journal = self._journal_dir()
        if journal is not None:
            self.replayed = replay_journals(journal, self._sql)

    def _connect(self) -> Any:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        db = _sqlite_path(self.uri)
        if db is not None:
            try:
                db.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the tracking store {self.uri}: {exc}") from None
        import logging

        from mlflow.tracking import MlflowClient

        # MLflow configures its loggers on import and logs its migrations at INFO: noise for a CLI
        for name in ("alembic", "mlflow"):
            logging.getLogger(name).setLevel(logging.WARNING)

        try:
            client = MlflowClient(tracking_uri=self.uri)
            client.search_experiments(max_results=1)
        except Exception as exc:  # MLflow raises many types for an unreachable or bad store
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"cannot reach tracking URI {self.uri!r}: {first[:300]}") from None
        self._setup_fast_writes(client)
        return client

    def _artifact_location(self, name: str) -> str | None:
        db = _sqlite_path(self.uri)
        if db is None:
            return None  # a server decides where artifacts go
        return (db.parent.resolve() / "artifacts" / name).as_uri()

    def exists(self) -> bool:
        """False only for a local sqlite store not created yet: reading it needs no connection."""
        db = _sqlite_path(self.uri)
        return db is None or db.exists()

    # -- experiments ----------------------------------------------------------------------
    def find_experiment(self, name: str) -> str | None:
        exp = self.client.get_experiment_by_name(name)
        return exp.experiment_id if exp is not None else None

    def ensure_experiment(self, name: str, tags: Mapping[str, str] | None = None) -> str:
        exp_id = self.find_experiment(name)
        if exp_id is None:
            exp_id = self.client.create_experiment(name, artifact_location=self._artifact_location(name), tags=dict(tags or {}))
        return exp_id

    def list_experiments(self) -> list[Any]:
        return list(self.client.search_experiments())

    # -- runs -----------------------------------------------------------------------------
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

    def candidate_run(self, exp_id: str, task: str, candidate: Any) -> str:
        """The candidate's parent run, created on first use."""
        key = (exp_id, candidate.id)
        if key in self._created_parents:
            return self._created_parents[key]
        # a parent this process created is in _created_parents: the search needs no flush
        self._raw  # noqa: B018 - connect: decides how runs are written and read here
        if self._sql is not None:
            found = self._sql.find_run(exp_id, {"robust.kind": "candidate", "robust.candidate_id": candidate.id})
            if found is not None:
                return found
        else:
            runs = self.search(
                exp_id,
                f"tags.`robust.kind` = 'candidate' and tags.`robust.candidate_id` = '{candidate.id}'",
                wait=False,
            )
            if runs:
                return runs[0].info.run_id
        tags = {
            "robust.kind": "candidate",
            "robust.task": task,
            "robust.candidate_id": candidate.id,
            "robust.candidate_json": candidate.to_json(),
        }
        if candidate.name:
            tags["robust.candidate_name"] = candidate.name
        params = {k: str(v)[:6000] for k, v in sorted(candidate.params.items())}
        run_id = self._write_run(exp_id, candidate.name or candidate.id, "FINISHED", tags, params, [])
        self._created_parents[key] = run_id
        return run_id

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_instance(
        self,
        exp_id: str,
        parent_run_id: str,
        *,
        candidate: Any,
        result: Any,
        fingerprint: str,
        settings_json: str,
        provenance: Mapping[str, str],
        extra_tags: Mapping[str, str] | None = None,
    ) -> str:
        """Hand over one finished (or failed) instance as a child run, written whole and closed.

        Returns its run id at once; on a sqlite store the run is committed by the background
        writer (journaled first), see :meth:`flush`.
        """
        spec = result.spec
        name = f"{candidate.name or candidate.id}/{spec.index}"
        tags = {
            "mlflow.parentRunId": parent_run_id,
            "robust.kind": "instance",
            "robust.candidate_id": candidate.id,
            "robust.instance_index": str(spec.index),
            "robust.fingerprint": fingerprint,
            "robust.status": result.status,
            "robust.stop_reason": result.stop_reason,
            "robust.spiked": str(bool(result.spiked)).lower(),
            "robust.engine": result.engine,
            "robust.stack": ",".join(map(str, result.stack)),
            "robust.settings_json": settings_json,
            "robust.candidate_json": candidate.to_json(),
            **provenance,
            **(extra_tags or {}),
        }
        if result.failure:
            tags["robust.failure"] = result.failure[:5000]
        if getattr(result, "plain_reason", None):
            tags["robust.plain_reason"] = result.plain_reason[:5000]
        params = {
            "init_seed": str(spec.init_seed),
            "data_seed": str(spec.data_seed),
            "train_size": str(spec.train_size),
            "test_size": str(spec.test_size) if spec.test_size else "all",
            "instance_index": str(spec.index),
        }
        ts = int(time.time() * 1000)
        metrics = [("train_loss", v, ts, i + 1) for i, v in enumerate(result.train_curve) if math.isfinite(v)]
        metrics += [("epoch_test_loss", v, ts, i + 1) for i, v in enumerate(result.test_curve) if math.isfinite(v)]
        final = {"epochs": result.epochs, "seconds": result.seconds, "spiked": float(result.spiked)}
        if not result.failed:
            final["test_loss"] = result.test_loss
        metrics += [(k, float(v), ts, 0) for k, v in final.items()]
        return self._write_run(exp_id, name, "FAILED" if result.failed else "FINISHED", tags, params, metrics)

    def _write_run(
        self,
        exp_id: str,
        name: str,
        status: str,
        tags: Mapping[str, str],
        params: Mapping[str, str],
        metrics: list[tuple[str, float, int, int]],
    ) -> str:
        """Write a whole run, closed with ``status``; its id."""
        client = self._raw
        if self._sql is not None:
            if exp_id not in self._artifacts:
                exp = client.get_experiment(exp_id)
                if exp.lifecycle_stage != "active":
                    raise StoreError(f"experiment {exp.name!r} ({exp_id}) is deleted: restore it or choose another --study")
                self._artifacts[exp_id] = exp.artifact_location
            run = RunRows(
                experiment_id=exp_id,
                artifact_location=self._artifacts[exp_id],
                name=name,
                status=status,
                tags=tags,
                params=params,
                metrics=metrics,
            )
            if self._writer is None:
                self._writer = BackgroundWriter(self._sql, self._journal_dir())
            self._writer.submit(run)
            return run["run_uuid"]
        return self._write_run_client(exp_id, name, status, tags, params, metrics)

    def _write_run_client(
        self,
        exp_id: str,
        name: str,
        status: str,
        tags: Mapping[str, str],
        params: Mapping[str, str],
        metrics: list[tuple[str, float, int, int]],
    ) -> str:
        """The synchronous way, through MLflow's client: three calls for up to 1000 metrics."""
        from mlflow.entities import Metric, Param

        client = self.client
        run = client.create_run(exp_id, tags=dict(tags), run_name=name)
        run_id = run.info.run_id
        try:
            ms = [Metric(k, v, ts, step) for k, v, ts, step in metrics]
            ps = [Param(k, v) for k, v in params.items()]
            for lo in range(0, max(len(ms), 1), _MAX_BATCH):
                client.log_batch(run_id, metrics=ms[lo : lo + _MAX_BATCH], params=ps if lo == 0 else [])
            client.set_terminated(run_id, status)
        except BaseException:
            # never leave a half-written run that looks finished
            client.delete_run(run_id)
            raise
        return run_id

    def instances(
        self, exp_id: str, fingerprint: str, candidate_ids: Iterable[str] | None = None
    ) -> dict[str, dict[int, InstanceRecord]]:
        """Finished and failed instances with this fingerprint, by candidate then index."""
        filt = f"tags.`robust.kind` = 'instance' and tags.`robust.fingerprint` = '{fingerprint}'"
        wanted = set(candidate_ids) if candidate_ids is not None else None
        if wanted is not None and len(wanted) == 1:
            filt += f" and tags.`robust.candidate_id` = '{next(iter(wanted))}'"
        out: dict[str, dict[int, InstanceRecord]] = {}
        for run in self.search(exp_id, filt):
            if run.info.status not in ("FINISHED", "FAILED"):
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
            raise StoreError(f"no run {run_id!r} in {self.uri}: {str(exc).splitlines()[0][:200]}") from None
