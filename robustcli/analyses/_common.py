"""What the analyses share: parts of an analysis (one setting's missing instances), training them
with one executor, the statistics of a set of losses, and the analysis's own MLflow run."""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustcli.reporting import strict_json
from robustcli.robustness.statistics import Estimate, summarize

if TYPE_CHECKING:
    from robustcli.session import StudySession
    from robustcli.task import Candidate
    from robustcli.tracking.mlflow_store import InstanceRecord

__all__ = ["ANALYSIS_STATISTICS", "Part", "log_analysis_run", "loss_statistics", "train_parts"]

#: the statistics an analysis's table shows per set of losses (each with its bootstrap interval)
ANALYSIS_STATISTICS = ("mean", "median", "std", "iqr", "q90_q10")

#: called after each instance trained: (the part's label, the record logged)
OnInstance = Callable[[str, "InstanceRecord"], None]


@dataclass
class Part:
    """One setting of an analysis (a training-sample size, a kind of variation): its session, the
    candidates' instances logged so far (index < N) and the (candidate, index) pairs still missing."""

    label: str
    session: StudySession
    candidates: Sequence[Candidate]
    instances: int
    records: dict[str, dict[int, InstanceRecord]] = field(default_factory=dict)
    jobs: list[tuple[Candidate, int]] = field(default_factory=list)

    def read(self) -> Part:
        """What MLflow already holds under this setting (instances are reused), and what is missing."""
        known = self.session.known([c.id for c in self.candidates])
        self.records = {c.id: {i: r for i, r in known.get(c.id, {}).items() if i < self.instances} for c in self.candidates}
        self.jobs = [(c, i) for c in self.candidates for i in range(self.instances) if i not in self.records[c.id]]
        return self

    def losses(self, candidate_id: str) -> list[float]:
        recs = self.records[candidate_id]
        return [recs[i].loss for i in sorted(recs)]


def train_parts(base: StudySession, parts: Sequence[Part], on_instance: OnInstance | None = None) -> int:
    """Train every part's missing instances with one executor (the base session's); returns how
    many this process trained (one another process trained meanwhile is waited for and read, not
    counted). Each is logged by its part's session as it finishes."""
    if not any(p.jobs for p in parts):
        return 0
    executor = base.prepare_executor()  # a device or cluster that cannot train: refused before any write
    trained = 0
    for part in parts:
        if not part.jobs:
            continue
        for cand, rec in part.session.train(part.jobs, executor=executor):
            part.records[cand.id][rec.index] = rec
            trained += rec.fresh
            if on_instance is not None:
                on_instance(part.label, rec)
        part.jobs = []
    return trained


def loss_statistics(losses: Sequence[float], seed: int) -> tuple[int, int, dict[str, Estimate]]:
    """(instances, failed, statistics of the finite losses with bootstrap intervals from ``seed``)."""
    finite = [x for x in losses if math.isfinite(x)]
    return len(losses), len(losses) - len(finite), summarize(finite, names=ANALYSIS_STATISTICS, seed=seed)


def analysis_key(kind: str, description: Mapping[str, Any]) -> str:
    text = json.dumps({"kind": kind, **description}, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def log_analysis_run(
    session: StudySession,
    kind: str,
    description: Mapping[str, Any],
    table: Mapping[str, Any],
    figure: Callable[[Path], Any] | None,
    metrics: Mapping[str, float] | None = None,
    out: Path | None = None,
) -> str:
    """The analysis's run (tag ``robust.kind = "study"``, ``robust.study_kind = kind``) with
    ``description`` as params, ``table`` as ``KIND.json`` and the figure drawn by ``figure(path)``
    as ``KIND.png`` (and copied to ``out`` if given). The same analysis run again updates its run
    rather than adding one. Written through the store's journal (:mod:`robustcli.tracking.analysis_runs`)."""
    import time

    from robustcli.tracking.analysis_runs import write_analysis_run

    started = int(time.time() * 1000)
    artifacts = {f"{kind}.json": (json.dumps(strict_json.finite(table), indent=2, default=str, allow_nan=False) + "\n").encode()}
    with tempfile.TemporaryDirectory(prefix="robust-analysis-") as tmp:
        png = Path(tmp) / f"{kind}.png"
        if figure is not None:
            figure(png)
            artifacts[png.name] = png.read_bytes()
        params = {k: _param(v) for k, v in sorted(description.items())}
        values = {k: float(v) for k, v in (metrics or {}).items() if v is not None and math.isfinite(v)}
        run_id = write_analysis_run(session, kind, analysis_key(kind, description), params, values, artifacts, started)
        if figure is not None and out is not None:
            try:
                _copy(png, out)
            except BaseException:  # the analysis is not done: its run says so, the next run completes it
                session.store.end_run(run_id, "FAILED")
                raise
    return run_id


def _copy(png: Path, out: Path) -> None:
    """The figure to ``out`` (checked before training; a disk that filled since is one line)."""
    from robustcli.outputs import write_failed

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(png.read_bytes())
    except OSError as exc:
        raise write_failed(out, exc) from None


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]

