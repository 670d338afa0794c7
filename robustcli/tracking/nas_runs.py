"""A NAS search's record in MLflow: the search's run, its trials, its report, read back for resume.

The search's run (``robust.kind = "nas"``) is found by its key (:func:`robustcli.analyses.nas.search_key`)
and stays RUNNING while the search runs; each trial is a child run (``robust.kind = "nas-trial"``)
with Optuna's answers as a tag and params and its loss as a metric, written whole through the
store's journal; the report (``nas.json``, ``nas.png``) completes the search's run, also through
the journal. MLflow is the search's one record: :meth:`NasRuns.logged_trials` is what a resumed
search replays into Optuna.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from robustcli.tracking import tags as T

if TYPE_CHECKING:
    from robustcli.session import StudySession

__all__ = ["LoggedTrial", "NasRuns", "logged_searches"]

REPORT = "nas.json"
FIGURE = "nas.png"


@dataclass(frozen=True)
class LoggedTrial:
    """A trial as MLflow holds it."""

    number: int
    answers: dict[str, Any]
    candidate_id: str
    loss: float  # NaN: its training failed
    instance_run: str


class NasRuns:
    """The runs of the search with ``key`` in a study session's experiment."""

    def __init__(self, session: StudySession, key: str) -> None:
        self.session = session
        self.store = session.store
        self.key = key
        self.run_id: str | None = None

    def find(self) -> Any | None:
        """The search's run, if logged."""
        return self.store.find_run(self.session.existing_experiment(), T.NAS, {T.NAS_KEY: self.key})

    def open(self, params: Mapping[str, Any]) -> str:
        """The search's run, RUNNING: created with ``params`` on first use, else the logged one resumed."""
        if self.run_id is not None:
            return self.run_id
        run = self.find()
        if run is None:
            tags = {
                T.KIND: T.NAS,
                T.NAS_KEY: self.key,
                T.TASK: str(self.session.settings.task),
                T.FINGERPRINT: self.session.fingerprint,
            }
            self.run_id = self.store.start_run(self.session.experiment(), f"nas-{self.key}", tags, params)
        else:
            self.store.resume_run(run, params)
            self.run_id = run.info.run_id
        return self.run_id

    def logged_trials(self) -> list[LoggedTrial]:
        """The trials logged, in order: only the unbroken prefix (trial n was asked knowing 0..n-1)."""
        exp_id = self.session.existing_experiment()
        if exp_id is None:
            return []
        by_number: dict[int, Any] = {}
        for run in self.store.find_runs(exp_id, T.NAS_TRIAL, {T.NAS_KEY: self.key}):
            # two runs of one trial (a race): the first logged wins, as for instances
            by_number.setdefault(int(run.data.tags[T.TRIAL_NUMBER]), run)
        out = []
        while len(out) in by_number:
            run = by_number[len(out)]
            tags = run.data.tags
            out.append(LoggedTrial(len(out), json.loads(tags[T.TRIAL_ANSWERS]), tags[T.CANDIDATE_ID],
                                   float(run.data.metrics.get("loss", math.nan)), tags.get(T.INSTANCE_RUN, "")))
        return out

    def log_trial(
        self,
        *,
        number: int,
        answers: Mapping[str, Any],
        candidate: Any,
        loss: float,
        instance_run: str,
        name: str,
        params: Mapping[str, str],
        run_params: Mapping[str, Any],
    ) -> str:
        """Write trial ``number`` whole, as a child of the search's run (opened with ``run_params``)."""
        tags = {
            T.PARENT_RUN_ID: self.open(run_params),
            T.KIND: T.NAS_TRIAL,
            T.NAS_KEY: self.key,
            T.TRIAL_NUMBER: str(number),
            T.TRIAL_ANSWERS: json.dumps(dict(answers), sort_keys=True),
            T.CANDIDATE_ID: candidate.id,
            T.CANDIDATE_JSON: candidate.to_json(),
            T.INSTANCE_RUN: instance_run,
            T.TASK: str(self.session.settings.task),
            T.FINGERPRINT: self.session.fingerprint,
        }
        now = int(time.time() * 1000)
        metrics = [("loss", loss, now, 0)] if math.isfinite(loss) else []
        return self.store.write_journaled(self.session.experiment(), name, tags, params, metrics=metrics, start=now, end=now)

    def finish(self, report: bytes, figure: bytes, metrics: Mapping[str, Any], step: int, verdict: str) -> None:
        """Complete the search's run: its report and figure, its headline metrics at ``step``, FINISHED."""
        assert self.run_id is not None, "the search's run is opened by its first trial"
        now = int(time.time() * 1000)
        rows = [(k, float(v), now, step) for k, v in metrics.items() if v is not None and math.isfinite(v)]
        self.store.write_journaled(self.session.experiment(), f"nas-{self.key}", {T.STATE: "finished", T.VERDICT: verdict[:5000]},
                                   metrics=rows, artifacts={FIGURE: figure, REPORT: report}, run_id=self.run_id, end=now)

    def kill(self) -> None:
        """The search stopped before its report: its run is KILLED (resumed by the next search)."""
        if self.run_id is not None:
            try:
                self.store.end_run(self.run_id, "KILLED")
            except Exception:  # noqa: BLE001 - the store is gone: the report says why already
                pass


def logged_searches(store: Any, exp_id: str) -> list[dict[str, Any]]:
    """The finished searches of an experiment as ``robust report`` draws them: each one's report
    (``nas.json``) and figure (``nas.png``, as bytes under ``png``), read back from MLflow."""
    out = []
    for run in store.find_runs(exp_id, T.NAS, {T.STATE: "finished"}):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                folder = store.download_artifacts(run.info.run_id, "", tmp)
                report = json.loads((folder / REPORT).read_text())
                report["png"] = (folder / FIGURE).read_bytes()
            except (OSError, ValueError):  # a search whose artifacts are gone: nothing to draw
                continue
        out.append(report)
    return out
