"""The MLflow side of a selection: what is known (instances), the history (the selection run), the lock.

The selection run (tag ``robust.kind=selection``) holds the selection's own history: per step the
number of survivors, trainings so far, the exhaustive cost and the leader's criterion value as
metrics, and the whole history as the artifact ``history.json``. It is identified by a key made
of the instance fingerprint and the selection settings, so re-running the same command finds it
and resumes; another rule or criterion is another selection run in the same experiment (and reuses
the same instances).

Only one process selects a study at a time: a record lock beside the store, which the kernel
releases when its owner dies (see :meth:`MlflowSelectionStore.check_not_running_elsewhere`). The
selection run that is RUNNING names its owner (``robust.owner`` = host:pid, ``robust.owner_start``);
a run left RUNNING by a dead owner is taken over by the next select.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustcli.errors import InputError
from robustcli.selection import SelectionStore, StepRecord
from robustcli.tracking import tags as T
from robustcli.tracking.processes import owner_alive, parse_owner, process_start, started_in_words, this_owner

if TYPE_CHECKING:
    from robustcli.session import StudySession

__all__ = ["MlflowSelectionStore", "last_selected", "selection_key"]


def selection_key(fingerprint: str, selection: Mapping[str, Any], candidates: list[str]) -> str:
    text = json.dumps({"fp": fingerprint, "sel": selection, "cands": sorted(candidates)}, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def last_selected(store: Any, exp_id: str | None, fingerprint: str) -> str | None:
    """The candidate the last finished selection under ``fingerprint`` picked; None if none finished."""
    if exp_id is None:
        return None
    runs = store.find_runs(exp_id, T.SELECTION, {T.FINGERPRINT: fingerprint, T.STATE: "finished"})
    return runs[-1].data.tags[T.SELECTED] if runs else None


def _read_owner(path: Path) -> str:
    """The owner a lock's holder wrote (it writes it just after taking the lock: wait a moment)."""
    for _ in range(40):
        try:
            text = path.read_text().strip()
        except OSError:
            text = ""
        if text:
            host, pid, start = parse_owner(text)
            words = started_in_words(start) if host == socket.gethostname() else None
            return f"{host}:{pid}" + (f", running {words}" if words else "")
        time.sleep(0.05)
    return "owner not recorded yet"


def _alive(owner: str, start: str | None) -> bool:
    host, pid, in_owner = parse_owner(owner)
    return owner_alive(host, pid, start or in_owner)


class MlflowSelectionStore(SelectionStore):
    """A :class:`SelectionStore` over a study session; the executor adds losses as it logs them."""

    def __init__(self, session: StudySession, key: str, description: Mapping[str, Any]) -> None:
        self.session = session
        self.key = key
        self.description = dict(description)
        self._known: dict[str, dict[int, float]] = {
            cid: {i: r.loss for i, r in recs.items()} for cid, recs in session.known().items()
        }
        self._history: dict[int, StepRecord] = {}
        self._run_id: str | None = None
        self._lock: tuple[str, Path] | None = None

    # -- SelectionStore -----------------------------------------------------------------------
    def known_losses(self) -> Mapping[str, Mapping[int, float]]:
        return self._known

    def add(self, candidate_id: str, index: int, loss: float) -> None:
        self._known.setdefault(candidate_id, {})[index] = loss

    def record_step(self, record: StepRecord) -> None:
        self._history[record.step] = record
        run_id = self.open_run()
        values = [v[0] for cid, v in record.values.items() if cid in record.survivors and v and math.isfinite(v[0])]
        metrics = {
            "survivors": len(record.survivors),
            "trainings": record.trainings,
            "exhaustive_trainings": record.exhaustive_trainings,
        }
        if values:
            metrics["best_criterion"] = min(values)
        self.session.store.log_metrics(run_id, metrics, step=record.step)
        self._write_history()

    def baseline_loss(self) -> float | None:
        """The best baseline's mean loss logged by `robust baseline` under the same settings."""
        exp_id = self.session.existing_experiment()
        if exp_id is None:
            return None
        runs = self.session.store.find_runs(exp_id, T.BASELINE, {T.DATA_FINGERPRINT: self.session.settings.data_fingerprint()})
        means = [r.data.metrics["loss_mean"] for r in runs if "loss_mean" in r.data.metrics]
        return min(means) if means else None

    # -- the selection run and its lock ------------------------------------------------------
    def find_run(self) -> Any | None:
        return self.session.store.find_run(self.session.existing_experiment(), T.SELECTION, {T.SELECTION_KEY: self.key})

    def refuse_if_held(self) -> None:
        """Refuse at once, before the data load, when another process holds the selection's lock
        (it left its owner file); nothing is created when none does. The lock itself is taken by
        :meth:`check_not_running_elsewhere`, once the input is checked."""
        store = self.session.store
        owner_file = store.locks_path.parent / f"select-{self.key}.owner"
        if not owner_file.exists():
            return
        key = f"select:{self.session.settings.study_name}:{self.key}"
        if store.locks.try_lock(key):
            store.locks.unlock(key)
            return
        raise InputError(
            f"study {self.session.settings.study_name!r} is being selected by another process "
            f"({_read_owner(owner_file)}); wait for it to finish, or stop it: re-running then resumes"
        )

    def check_not_running_elsewhere(self) -> None:
        """Take the study's selection lock, or refuse naming the process that holds it.

        The lock is a record lock beside the store (:mod:`robustcli.tracking.locks`): granted to
        one process at a time and released by the kernel when it dies, so two selects started at
        any offset cannot both run. For a local store it is the whole answer; a tracking server
        can also be shared by other machines, whose running selection is told by the run's tags."""
        store = self.session.store
        key = f"select:{self.session.settings.study_name}:{self.key}"
        owner_file = store.locks.path.parent / f"select-{self.key}.owner"
        if not store.locks.try_lock(key):
            raise InputError(
                f"study {self.session.settings.study_name!r} is being selected by another process "
                f"({_read_owner(owner_file)}); wait for it to finish, or stop it: re-running then resumes"
            )
        self._lock = (key, owner_file)
        owner_file.write_text(f"{this_owner()}:{process_start(os.getpid()) or ''}\n")
        if store.exists() and not store.uri.startswith("sqlite:"):
            self._check_other_hosts()

    def _check_other_hosts(self) -> None:
        run = self.find_run()
        if run is None or run.info.status != "RUNNING":
            return
        owner = run.data.tags.get(T.OWNER, "")
        start = run.data.tags.get(T.OWNER_START) or None
        host = parse_owner(owner)[0] if owner else ""
        if owner and host != socket.gethostname() and _alive(owner, start):
            self.release()
            raise InputError(
                f"study {self.session.settings.study_name!r} is being selected by another process ({owner}, "
                f"run {run.info.run_id}); wait for it to finish, or stop it: re-running then resumes"
            )

    def release(self) -> None:
        """Give the selection lock back (the kernel does it anyway when this process ends)."""
        if self._lock is not None:
            key, owner_file = self._lock
            self._lock = None
            owner_file.unlink(missing_ok=True)
            self.session.store.locks.unlock(key)

    def open_run(self) -> str:
        if self._run_id is not None:
            return self._run_id
        client = self.session.store.client
        run = self.find_run()
        tags = {T.OWNER: this_owner(), T.OWNER_START: process_start(os.getpid()) or "", T.STATE: "running"}
        if run is None:
            exp_id = self.session.experiment()
            run = client.create_run(
                exp_id,
                run_name=f"selection-{self.key}",
                tags={
                    T.KIND: T.SELECTION,
                    T.SELECTION_KEY: self.key,
                    T.TASK: str(self.session.settings.task),
                    T.FINGERPRINT: self.session.fingerprint,
                    T.SELECTION_JSON: json.dumps(self.description, sort_keys=True, default=str)[:7900],
                    **tags,
                },
            )
        else:
            client.update_run(run.info.run_id, status="RUNNING")
            self.session.store.set_tags(run.info.run_id, tags)
        self._run_id = run.info.run_id
        return self._run_id

    def finish(self, result: Any) -> None:
        run_id = self.open_run()
        done = result.reason == "one-left"
        self.session.store.set_tags(
            run_id,
            {
                T.STATE: "finished" if done else f"stopped ({result.reason})",
                T.SELECTED: result.selected,
                T.TRAININGS: result.trainings,
                T.EXHAUSTIVE_TRAININGS: result.exhaustive_trainings,
                **self._confidence_tags(result),
            },
        )
        self._log_confidence(run_id, result)
        self._write_history(result)
        self.session.store.client.set_terminated(run_id, "FINISHED")
        self.release()

    #: contenders whose P(best) is logged as a metric each (the best first)
    _P_BEST_METRICS = 20

    @classmethod
    def _top_p_best(cls, result: Any) -> list[tuple[str, float]]:
        return sorted(result.p_best.items(), key=lambda kv: (-kv[1], kv[0]))[: cls._P_BEST_METRICS]

    @classmethod
    def _confidence_tags(cls, result: Any) -> dict[str, str]:
        """The pick's confidence as one JSON tag (the report reads it back; a tag holds 8,000 characters)."""
        sure = result.confidence
        if sure is None:
            return {}
        payload = {
            "level": sure.level,
            "instances": sure.instances,
            "contenders": len(sure.contenders),
            "indistinguishable": list(sure.indistinguishable)[:50],
            "p_best": dict(cls._top_p_best(result)),
            "more_instances": dict(list(sure.more_instances.items())[:20]),
            "method": sure.method,
        }
        return {T.CONFIDENCE: json.dumps(payload, sort_keys=True)[:7900]}

    def _log_confidence(self, run_id: str, result: Any) -> None:
        """What `mlflow ui` charts: the pick's P(best), the size of the indistinguishable set, and
        P(best) of the likeliest contenders (``p_best.<id>``)."""
        from mlflow.entities import Metric

        sure = result.confidence
        if sure is None:
            return
        now = int(time.time() * 1000)
        step = result.steps
        metrics = {
            "p_best_selected": result.p_best.get(result.selected, 0.0),
            "indistinguishable": len(sure.indistinguishable),
            "confidence_level": sure.level,
        }
        metrics.update({f"p_best.{cid}": p for cid, p in self._top_p_best(result)})
        self.session.store.client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def abandon(self) -> None:
        """An interrupted selection: leave the run resumable, not running."""
        try:
            if self._run_id is not None:
                self.session.store.set_tags(self._run_id, {T.STATE: "interrupted"})
                self.session.store.client.set_terminated(self._run_id, "KILLED")
        except Exception:  # noqa: BLE001 - the store is gone: the next select takes the run over
            pass
        finally:
            self.release()

    def _write_history(self, result: Any = None) -> None:
        payload = {
            "selection": self.description,
            "steps": [self._history[s].as_dict() for s in sorted(self._history)],
        }
        if result is not None:
            payload["result"] = result.as_dict()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "history.json"
            path.write_text(json.dumps(payload, indent=1, default=str))
            self.session.store.client.log_artifact(self.open_run(), str(path))
