"""The results the API returns: plain dataclasses with ``as_dict()`` (what ``--json`` prints),
``records()`` and ``to_frame()`` (see :class:`robustcli.results.TableResult`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from robustcli.reporting.analyses import AnalysisSection
from robustcli.results import TableResult, flat_statistics, plain
from robustcli.robustness.decomposition import Spread, SpreadBySource
from robustcli.robustness.statistics import LossSummary
from robustcli.selection.loop import SelectionResult

if TYPE_CHECKING:
    from robustcli.execution.baselines import BaselineFit
    from robustcli.analyses.nas import NasReport, NasRow

__all__ = [
    "AnalysisSection",
    "Assessment",
    "BaselineFits",
    "CandidateInfo",
    "CandidateSummary",
    "NasOutcome",
    "ReplayOutcome",
    "SelectionOutcome",
    "Spread",
    "SpreadBySource",
    "StudyInfo",
    "StudyReport",
    "StudyRuns",
]


@dataclass(repr=False)
class CandidateInfo(TableResult):
    """A candidate of a task: its id, name (if it has one), readable description and parameters."""

    id: str
    name: str | None
    description: str
    params: dict[str, Any]

    def records(self) -> list[dict[str, Any]]:
        return [{"id": self.id, "name": self.name, "description": self.description, **self.params}]

    def summary_line(self) -> str:
        return f"{self.name or self.description} ({self.id})" + (f": {self.description}" if self.name else "")


@dataclass(repr=False)
class CandidateSummary(TableResult):
    """The spread of one candidate's instance losses: the systematic uncertainty every command shows."""

    candidate: str
    name: str | None
    description: str
    summary: LossSummary
    losses: list[float] = field(default_factory=list)
    loss_name: str = "loss"

    @property
    def mean(self) -> float:
        return self.summary.statistics["mean"].value

    @property
    def std(self) -> float:
        return self.summary.systematic_abs

    def quote(self) -> str:
        """The line a physicist quotes: the instance-to-instance spread as a training systematic."""
        finished = self.summary.instances - self.summary.failed
        if finished > 1:
            return f"{self.loss_name} = {self.mean:.4g} +- {self.std:.2g} (training syst., {finished} instances)"
        return f"{self.loss_name} = {self.mean:.4g} ({finished} finished instance: no spread yet)"

    def headline(self) -> dict[str, Any]:
        """What a report shows beside the summary: the mean with its interval, std, Q90-Q10, the quote."""
        mean = self.summary.statistics["mean"]
        ci = "" if math.isnan(mean.low) else f" [{mean.low:.4g}, {mean.high:.4g}]"
        return {"mean": self.mean, "mean_ci": f"{self.mean:.4g}{ci}", "std": self.std,
                "q90_q10": self.summary.statistics["q90_q10"].value, "quote": self.quote()}  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "name": self.name, "description": self.description, **self.summary.as_dict()}

    def summary_line(self) -> str:
        return f"{self.name or self.description} ({self.candidate}): {self.quote()}"

    def records(self) -> list[dict[str, Any]]:
        d = self.as_dict()
        stats = d.pop("statistics")
        return [{**d, **flat_statistics(stats)}]


@dataclass(repr=False)
class Assessment(TableResult):
    """``Study.assess``: N instances of one candidate and the statistics of their test losses.

    ``candidate`` is the id, ``candidate_name`` its name (None for an unnamed one),
    ``candidate_description`` the task's description of its parameters (never the name)."""

    task: str
    study: str
    candidate: str
    candidate_name: str | None
    candidate_description: str
    loss: dict[str, str]
    instances: int
    trained_now: int
    failed: int
    spiked: int
    stop_reasons: dict[str, int]
    train_size: int
    mean_epochs: float
    mean_seconds: float
    losses: list[float | None]
    run_ids: list[str | None]
    #: statistic -> {"value", "low", "high"} (the bootstrap interval)
    statistics: dict[str, dict[str, float]]
    tracking_uri: str
    mlflow_ui: str | None
    fingerprint: str
    vary: str
    seed: int = 0
    init_seeds: list[int] = field(default_factory=list)
    data_seeds: list[int] = field(default_factory=list)
    test_size: int | None = None

    @property
    def label(self) -> str:
        """What people read for the candidate: its name, else its description."""
        return self.candidate_name or self.candidate_description

    def records(self) -> list[dict[str, Any]]:
        """One row per instance: the candidate (id, name), the instance, its seeds, its settings
        (train size, what varied, fingerprint), its test loss and MLflow run."""
        n = len(self.losses)
        init = self.init_seeds or [None] * n
        data = self.data_seeds or [None] * n
        return [{"candidate": self.candidate, "name": self.candidate_name, "instance": i, "init_seed": init[i],
                 "data_seed": data[i], "train_size": self.train_size, "vary": self.vary, "loss": loss,
                 "run_id": run, "fingerprint": self.fingerprint}
                for i, (loss, run) in enumerate(zip(self.losses, self.run_ids))]  # fmt: skip

    def summary_line(self) -> str:
        mean = self.statistics.get("mean", {})
        low, high = mean.get("low"), mean.get("high")
        ci = f" [{low:.4g}, {high:.4g}]" if isinstance(low, float) and isinstance(high, float) and low == low else ""
        value = mean.get("value")
        shown = f"{value:.4g}{ci}" if isinstance(value, float) else "n/a"
        vary = "" if self.vary == "both" else f", {self.vary} varies"
        return (f"{self.label} ({self.candidate}): {self.loss.get('name', 'loss')} mean {shown} over {self.instances} "
                f"instances (train size {self.train_size}{vary}; {self.trained_now} trained now, {self.failed} failed)")  # fmt: skip

    def html_rows(self) -> list[dict[str, Any]]:
        """The statistics with their 95% intervals (the instances: ``to_frame()``)."""
        return [{"statistic": k, "value": v.get("value"), "value_low": v.get("low"), "value_high": v.get("high")}
                for k, v in self.statistics.items()]  # fmt: skip


@dataclass(repr=False)
class BaselineFits(TableResult):
    """``Study.fit_baselines``: each baseline's test losses on the instances' training samples."""

    task: str
    study: str
    train_size: int
    baselines: list[BaselineFit]

    def records(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in plain(b).items() if k != "losses"} for b in self.baselines]

    def summary_line(self) -> str:
        best = min(self.baselines, key=lambda b: b.mean, default=None)
        fitted = sum(b.fitted_now for b in self.baselines)
        lead = f"; best {best.name} mean {best.mean:.4g}" if best else ""
        n = len(best.losses) if best else 0
        return f"{len(self.baselines)} baselines of {self.task} at train size {self.train_size}, {n} samples{lead} ({fitted} fitted now)"


@dataclass(repr=False)
class SelectionOutcome(TableResult):
    """``Study.select``: Algorithm 1's result and the systematic-uncertainty summary of its survivors."""

    result: SelectionResult
    task: str
    study: str
    trained: int
    tracking_uri: str
    mlflow_ui: str | None
    selected_description: str
    baseline_loss: float | None
    baseline_cut: str | None
    summary: list[CandidateSummary]
    selected_name: str | None = None
    #: a readable label (name, or description of its parameters) per candidate of the last step
    contender_labels: dict[str, str] = field(default_factory=dict)

    @property
    def selected(self) -> str:
        """The selected candidate's id (``selected_name``: its name, ``selected_description``: its parameters)."""
        return self.result.selected

    @property
    def label(self) -> str:
        return self.selected_name or self.selected_description

    def summary_line(self) -> str:
        r = self.result
        quote = next((s.quote() for s in self.summary if s.candidate == self.selected), "")
        return (f"selected {self.label} ({self.selected}) after {r.steps} steps, {r.trainings:,} trainings "
                f"({self.trained} now), {len(r.survivors)} survivors" + (f"; {quote}" if quote else ""))  # fmt: skip

    @property
    def survivors(self) -> list[str]:
        return list(self.result.survivors)

    @property
    def indistinguishable(self) -> list[str]:
        """The candidates the data cannot tell from the pick at the selection's confidence (the pick included)."""
        return self.result.indistinguishable

    @property
    def p_best(self) -> dict[str, float]:
        """Per candidate of the last step, the probability that it is the best (a Student-t posterior
        for the mean, a t-smoothed paired bootstrap for other criteria: see ``pick_confidence``)."""
        return self.result.p_best

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.result.as_dict(),
            # trained by this process: an instance another process (an assess beside) trained is read, not counted
            "trained": self.trained,
            "task": self.task,
            "study": self.study,
            "tracking_uri": self.tracking_uri,
            "mlflow_ui": self.mlflow_ui,
            "selected_name": self.selected_name,
            "selected_description": self.selected_description,
            "baseline_loss": self.baseline_loss,
            "baseline_cut": self.baseline_cut,
            "summary": [s.as_dict() for s in self.summary],
            "contender_labels": dict(self.contender_labels),
        }

    def records(self) -> list[dict[str, Any]]:
        """One row per survivor (its summary), the selected one marked."""
        return [{"selected": s.candidate == self.selected, **s.records()[0]} for s in self.summary]


@dataclass(repr=False)
class ReplayOutcome(TableResult):
    """``replay_selection``: Algorithm 1 replayed on a table of losses."""

    result: SelectionResult
    table: str
    instances: int
    combine: str
    criterion_names: list[str]
    baseline_loss: float | None
    baseline_cut: str | None

    @property
    def selected(self) -> str:
        return self.result.selected

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.result.as_dict(),
            "table": self.table,
            "instances": self.instances,
            "combine": self.combine,
            "baseline_loss": self.baseline_loss,
            "baseline_cut": self.baseline_cut,
        }

    def records(self) -> list[dict[str, Any]]:
        """One row per step: how many candidates were evaluated and survived, and the leader."""
        return list(self.result.as_dict()["history"])

    def summary_line(self) -> str:
        r = self.result
        return f"selected {self.selected} after {r.steps} steps, {r.trainings:,} trainings, on {self.table}"


@dataclass(repr=False)
class StudyInfo(TableResult):
    """One study in the store (``list_studies``)."""

    study: str
    task: str
    candidates: int
    instances: int
    failed: int
    baselines: int
    selections: list[str]

    def summary_line(self) -> str:
        sel = f"; selections: {', '.join(self.selections)}" if self.selections else ""
        return f"{self.study} ({self.task}): {self.candidates} candidates, {self.instances} instances ({self.failed} failed){sel}"


@dataclass(repr=False)
class StudyReport(TableResult):
    """``build_report``: a study read back from MLflow, its page (or figure) written to ``out``."""

    study: str
    task: str
    out: str
    candidates: list[str]
    fingerprint: str
    summary: list[CandidateSummary]
    decomposition: list[SpreadBySource]
    #: the analyses' sections (``robust study``); the JSON key stays "studies", which scripts read
    analyses: list[AnalysisSection]
    nas: list[dict[str, Any]]
    #: the study's last selection: its pick's confidence (level, indistinguishable, p_best, more_instances)
    selection_confidence: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        def no_png(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [{k: v for k, v in s.items() if k != "png"} for s in items]

        summary = [{**s.as_dict(), **s.headline()} for s in self.summary]
        return {"study": self.study, "out": self.out, "candidates": self.candidates, "fingerprint": self.fingerprint,
                "summary": summary, "decomposition": plain(self.decomposition), "studies": plain(self.analyses),
                "nas": no_png(self.nas), "selection_confidence": self.selection_confidence}  # fmt: skip

    def records(self) -> list[dict[str, Any]]:
        """One row per candidate shown, best mean first."""
        return [s.records()[0] for s in self.summary]

    def summary_line(self) -> str:
        best = f"; best {self.summary[0].summary_line()}" if self.summary else ""
        return f"{self.study} ({self.task}) written to {self.out}: {len(self.candidates)} candidates{best}"

    def html_rows(self) -> list[dict[str, Any]]:
        keep = ("candidate", "name", "description", "instances", "failed", "mean", "mean_low", "mean_high", "std",
                "std_low", "std_high", "q90_q10")  # fmt: skip
        return [{k: r.get(k) for k in keep} for r in self.records()]


@dataclass(repr=False)
class NasOutcome(TableResult):
    """``Study.nas``: the Optuna search, its best trials assessed over fresh instances, and the
    candidate they are set against."""

    report: NasReport

    @property
    def trials(self) -> int:
        return self.report.trials

    @property
    def top(self) -> list[NasRow]:
        return list(self.report.top)

    @property
    def verdict(self) -> str:
        return self.report.verdict

    def as_dict(self) -> dict[str, Any]:
        return self.report.as_dict()

    def summary_line(self) -> str:
        return f"{self.trials} trials, top {len(self.top)}: {self.verdict}"

    def records(self) -> list[dict[str, Any]]:
        """One row per assessed candidate (the best trials, then the one they are set against)."""
        out = []
        for r in self.report.assessed:
            flat = {k: v for k, v in plain(r).items() if k not in ("statistics", "params", "losses")}
            out.append({**flat, **{f"param_{k}": v for k, v in r.params.items()}})
        return out



@dataclass(repr=False)
class StudyRuns(TableResult):
    """``Study.runs``: every instance a study holds, one row each (as Optuna's ``trials_dataframe``)."""

    study: str
    task: str
    rows: list[dict[str, Any]]
    #: the fingerprint of the Study that asked (its rows have ``current`` True)
    fingerprint: str | None = None

    def records(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.rows]

    def summary_line(self) -> str:
        cands = len({r["candidate"] for r in self.rows})
        settings = len({r["fingerprint"] for r in self.rows})
        failed = sum(r["status"] != "finished" for r in self.rows)
        return f"{self.study} ({self.task}): {len(self.rows)} instances of {cands} candidates under {settings} settings ({failed} failed)"
