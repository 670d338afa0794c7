"""Where a candidate's spread comes from (the paper's "impact of model initialisation", Fig. 7):
N instances with both seeds varying, N with only the initialisation varying (instance 0's
training sample for all) and N with only the training sample varying (instance 0's
initialisation for all).

The three sets are the settings ``robust assess --vary both|init|data`` uses, so the instances
either command logged are reused, and a second run trains nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustcli.errors import InputError
from robustcli.wording import opt
from robustcli.results import TableResult, flat_statistics
from robustcli.robustness.decomposition import SOURCES, Decomposition, decompose
from robustcli.robustness.statistics import Estimate
from robustcli.analyses._common import OnInstance, Part, log_analysis_run, loss_statistics, train_parts

if TYPE_CHECKING:
    from robustcli.session import StudySession

__all__ = ["VarianceAnalysis", "VarianceResult"]

#: what each set holds fixed, in words
HELD = {
    "both": "both seeds vary (the paper's instances)",
    "init": "only the initialisation varies (instance 0's training sample for all)",
    "data": "only the training sample varies (instance 0's initialisation for all)",
}


@dataclass(frozen=True, repr=False)
class VarianceResult(TableResult):
    """``Study.variance``: the spread with both seeds varying, only the initialisation, only the sample."""

    task: str
    study: str
    candidate: str
    candidate_name: str
    loss_name: str
    train_size: int
    instances: int
    losses: dict[str, list[float]]  # by set: both, init, data
    statistics: dict[str, dict[str, Estimate]]  # by set, mean/median/std/iqr/q90_q10
    failed: dict[str, int]
    decomposition: Decomposition
    trained_now: int
    tracking_uri: str
    fingerprints: dict[str, str]
    run_id: str = ""
    #: by set: each instance's epochs and why it stopped (the early stopping the shares were measured at)
    epochs: dict[str, list[int]] = field(default_factory=dict)
    stop_reasons: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = self.decomposition
        std = {k: d.std[k] for k in SOURCES}
        return {
            "task": self.task,
            "study": self.study,
            "candidate": self.candidate,
            "candidate_name": self.candidate_name,
            "loss": self.loss_name,
            "train_size": self.train_size,
            "instances": self.instances,
            **{f"std_{k}": std[k].value for k in SOURCES},
            "intervals": {f"std_{k}": [std[k].low, std[k].high] for k in SOURCES},
            "shares": {k: v.as_dict() for k, v in d.shares.items()},
            "ratio": d.ratio.as_dict(),
            "verdict": d.verdict,
            "note": d.note,
            "sets": {
                k: {
                    "varies": HELD[k],
                    "failed": self.failed[k],
                    "statistics": {name: est.as_dict() for name, est in self.statistics[k].items()},
                    "losses": self.losses[k],
                    "epochs": self.epochs.get(k, []),
                    "stop_reasons": self.stop_reasons.get(k, {}),
                    "fingerprint": self.fingerprints[k],
                }
                for k in SOURCES
            },
            "trained_now": self.trained_now,
            "tracking_uri": self.tracking_uri,
            "run_id": self.run_id,
        }

    def summary_line(self) -> str:
        std = self.decomposition.std
        shown = ", ".join(f"std {k} {std[k].value:.3g}" for k in SOURCES)
        name = self.candidate_name or self.candidate
        return f"{name} ({self.candidate}), {self.instances} instances per set: {shown}; {self.decomposition.verdict}"

    def records(self) -> list[dict[str, Any]]:
        """One record per set (both, init, data): instances, failed, the loss's mean and std with intervals."""
        return [
            {"candidate": self.candidate, "name": self.candidate_name, "set": k, "varies": HELD[k],
             "train_size": self.train_size, "instances": self.instances, "failed": self.failed[k],
             "fingerprint": self.fingerprints[k],
             **flat_statistics({"mean": self.statistics[k]["mean"], "std": self.decomposition.std[k]})}
            for k in SOURCES
        ]  # fmt: skip


class VarianceAnalysis:
    """Validated on construction (nothing trained or written); :meth:`run` trains what is missing."""

    def __init__(self, session: StudySession, candidate: str | None, instances: int) -> None:
        if instances < 2:
            raise InputError(f"{opt('instances', instances)}: expected at least 2 (a spread needs two instances)")
        if not candidate:
            raise InputError(f"no candidate given: pass {opt('candidate')} (an id or name; see `robust tasks show {session.settings.task}`)")
        if session.settings.vary != "both":
            raise InputError(f"{opt('vary')} does not apply: the analysis trains all three sets (both, init, data)")
        self.session = session
        self.candidate = session.candidate(candidate)
        self.instances = instances
        session.validate_sizes()
        self.parts = [Part(v, session.variant(vary=v), [self.candidate], instances).read() for v in SOURCES]

    @property
    def missing(self) -> int:
        return sum(len(p.jobs) for p in self.parts)

    def run(self, on_instance: OnInstance | None = None) -> VarianceResult:
        trained = train_parts(self.session, self.parts, on_instance)
        s, cid, seed = self.session, self.candidate.id, self.session.settings.seed
        losses = {p.label: p.losses(cid) for p in self.parts}
        stats, failed = {}, {}
        for k, values in losses.items():
            _, failed[k], stats[k] = loss_statistics(values, seed)
        return VarianceResult(
            task=str(s.settings.task),
            study=s.settings.study_name,
            candidate=cid,
            candidate_name=s.candidate_label(self.candidate),
            loss_name=s.task.loss.name,
            train_size=s.train_size,
            instances=self.instances,
            losses=losses,
            statistics=stats,
            failed=failed,
            decomposition=decompose(losses, seed=seed),
            trained_now=trained,
            tracking_uri=s.store.uri,
            fingerprints={p.label: p.session.fingerprint for p in self.parts},
            epochs={p.label: [r.epochs for _, r in sorted(p.records[cid].items())] for p in self.parts},
            stop_reasons={p.label: dict(Counter(r.stop_reason for r in p.records[cid].values())) for p in self.parts},
        )

    def log(self, result: VarianceResult, out: Path | None = None) -> VarianceResult:
        """The analysis's run in MLflow (table, figure, the three stds as metrics); ``out``: the PNG here too."""
        from dataclasses import replace

        from robustcli.reporting.analyses import variance_figure

        description = {
            "candidate": self.candidate.id,
            "instances": self.instances,
            "train_size": self.session.train_size,
            "fingerprints": [p.session.fingerprint for p in self.parts],
        }
        table = result.as_dict()
        metrics = {k: table[k] for k in ("std_both", "std_init", "std_data")}
        metrics.update({f"share_{k}": v["value"] for k, v in table["shares"].items()})
        draw = lambda path: variance_figure(path, result)  # noqa: E731
        run_id = log_analysis_run(self.session, "variance", description, table, draw, metrics, out)
        return replace(result, run_id=run_id)
