"""The training-sample-size analysis (the paper's Figures 4-6): candidates and the task's baselines
trained at each of several sizes, N instances each, and where each stops improving.

Each size is its own setting (``train_size``, and with the paper's test sample ``test_size``):
its own fingerprint, so its instances are the same ones ``robust assess --train-size S`` logs and
a second run trains only what is missing. Instance j at every size draws from the study's seeds
for j, as everywhere in ``robust``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from robustcli.errors import InputError
from robustcli.parsing import MOST_SIZES, parse_sizes  # noqa: F401 - an analysis's sizes, read in the settings' leaf
from robustcli.wording import opt
from robustcli.results import TableResult, flat_statistics, plain
from robustcli.robustness.statistics import Estimate
from robustcli.analyses._common import ANALYSIS_STATISTICS, OnInstance, Part, log_analysis_run, loss_statistics, train_parts

if TYPE_CHECKING:
    from robustcli.session import StudySession

__all__ = ["SampleSizeAnalysis", "SampleSizeResult", "SizeModel", "SizeRow", "parse_sizes", "saturation_size"]

def saturation_size(medians: Sequence[tuple[int, Estimate]]) -> int | None:
    """The smallest size beyond which the median no longer improves beyond its interval: no larger
    size has a median below the lower end of this size's bootstrap interval. None when it still
    improves at the last size but one (the last size alone cannot show it) or intervals are missing."""
    pts = [(s, m) for s, m in sorted(medians, key=lambda t: t[0]) if math.isfinite(m.value)]
    for k, (size, med) in enumerate(pts[:-1]):
        if not math.isfinite(med.low):
            return None
        if all(later.value >= med.low for _, later in pts[k + 1 :]):
            return size
    return None


#: what a model of the analysis is: one of the candidates, or one of the task's baselines
ModelKind = Literal["candidate", "baseline"]


@dataclass(frozen=True)
class SizeModel:
    """A model of the analysis: its label (the candidate's name or description, the baseline's name),
    what it is and its id (the candidate's id, the baseline's name)."""

    model: str
    kind: ModelKind
    id: str


@dataclass(frozen=True)
class SizeRow:
    """The statistics of one model's losses at one training-sample size."""

    size: int
    model: str  # the candidate's name or description, or the baseline's name
    kind: ModelKind
    id: str  # the candidate's id or the baseline's name
    n: int
    failed: int
    statistics: dict[str, Estimate]
    losses: list[float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "model": self.model,
            "kind": self.kind,
            "id": self.id,
            "n": self.n,
            "failed": self.failed,
            **{k: self.statistics[k].value for k in ANALYSIS_STATISTICS},
            "intervals": {k: [self.statistics[k].low, self.statistics[k].high] for k in ANALYSIS_STATISTICS},
            "losses": self.losses,
        }


@dataclass(frozen=True, repr=False)
class SampleSizeResult(TableResult):
    """``Study.sample_size``: each model's loss statistics at each training-sample size."""

    task: str
    study: str
    loss_name: str
    sizes: list[int]
    instances: int
    test_sample: str  # how each instance's test sample is drawn, in words
    models: list[SizeModel]  # candidates first
    rows: list[SizeRow]
    saturation: dict[str, int | None]  # model -> size (None: still improving, or cannot tell)
    trained_now: int
    fitted_now: int  # baseline fits (baselines are read back when logged)
    tracking_uri: str
    run_id: str = ""
    fingerprints: dict[int, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "study": self.study,
            "loss": self.loss_name,
            "sizes": self.sizes,
            "instances": self.instances,
            "test_sample": self.test_sample,
            "models": plain(self.models),
            "rows": [r.as_dict() for r in self.rows],
            "saturation": self.saturation,
            "trained_now": self.trained_now,
            "fitted_now": self.fitted_now,
            "tracking_uri": self.tracking_uri,
            "run_id": self.run_id,
            "fingerprints": {str(k): v for k, v in self.fingerprints.items()},
        }

    def records(self) -> list[dict[str, Any]]:
        """One record per (size, model): its statistics and their 95% intervals."""
        return [
            {**{k: v for k, v in row.as_dict().items() if k not in ("intervals", "losses")},
             **flat_statistics({k: row.statistics[k] for k in ANALYSIS_STATISTICS})}
            for row in self.rows
        ]  # fmt: skip

    def summary_line(self) -> str:
        models = ", ".join(m.model for m in self.models)
        sat = "; ".join(f"{m}: {'saturates at ' + format(v, ',') if v else 'still improving'}" for m, v in self.saturation.items())
        return (f"{models} at {len(self.sizes)} sizes ({self.sizes[0]:,}-{self.sizes[-1]:,}), {self.instances} instances each "
                f"({self.trained_now} trained now); {sat}")  # fmt: skip

    def saturation_lines(self) -> list[str]:
        out = []
        for model, size in self.saturation.items():
            if size is None:
                out.append(f"{model}: the median still improves beyond its interval at the largest sizes "
                           f"(no saturation up to {self.sizes[-1]:,})")
            else:
                out.append(f"{model}: saturates at {size:,}: beyond it the median no longer improves "
                           f"beyond its 95% interval")
        return out


class SampleSizeAnalysis:
    """Validated on construction (nothing trained or written); :meth:`run` trains what is missing.

    ``session`` is a :class:`~robustcli.session.StudySession` whose settings give
    everything but the size; its test size as given decides the test sample (``"train"``: as many
    as the training sample, from the test set, the paper's; otherwise the task's default or a
    fixed number)."""

    def __init__(
        self, session: StudySession, candidates: Sequence[str], sizes: Sequence[int], instances: int, *, baselines: bool = True
    ) -> None:
        if instances < 1:
            raise InputError(f"{opt('instances', instances)}: expected a positive whole number")
        if not candidates:
            raise InputError(f"no candidate given: pass {opt('candidate')} (an id or name; see `robust tasks show {session.settings.task}`)")
        self.session = session
        self.candidates = [session.candidate(c.strip()) for c in candidates]
        if len({c.id for c in self.candidates}) != len(self.candidates):
            raise InputError(f"{opt('candidate')} names the same candidate twice")
        if not sizes:
            raise InputError(f"{opt('sizes')}: no size given")
        self.sizes = sorted(set(int(s) for s in sizes))
        self.instances = instances
        self.baselines = dict(session.task.baselines()) if baselines else {}
        session.check_study_task()
        data = session.data  # a bad task option or data file fails here, before any training
        paper = session.given.training.test_size == "train"
        for size in self.sizes:
            if size > data.pool_size:
                raise InputError(
                    f"{opt('sizes')}: {size:,} exceeds the training pool of {data.pool_size:,} examples of task "
                    f"{session.settings.task!r} (largest size allowed: {data.pool_size:,})"
                )
            if paper and size > data.test_size:
                raise InputError(
                    f"{opt('sizes')}: {size:,} exceeds the test set of {data.test_size:,} examples of task "
                    f"{session.settings.task!r}, from which the paper's test sample (as large as the training "
                    f"sample) is drawn; pass {opt('test-size', 'all')} to score every size on the whole test set"
                )
        self.parts = [
            Part(f"size {s:,}", session.variant(train_size=s), self.candidates, instances) for s in self.sizes
        ]
        for part in self.parts:
            part.session.validate_sizes()
            part.read()
        self.test_sample = _test_sample(session, data.test_size)

    @property
    def missing(self) -> int:
        """Instances to train (those not yet in MLflow under the same settings)."""
        return sum(len(p.jobs) for p in self.parts)

    def run(self, on_instance: OnInstance | None = None) -> SampleSizeResult:
        from robustcli.execution.baselines import baseline_losses

        trained = train_parts(self.session, self.parts, on_instance)
        rows: list[SizeRow] = []
        fitted = 0
        seed = self.session.settings.seed
        labels = {c.id: self.session.candidate_label(c) for c in self.candidates}
        for size, part in zip(self.sizes, self.parts):
            for cand in self.candidates:
                rows.append(_row(size, labels[cand.id], "candidate", cand.id, part.losses(cand.id), seed))
            for name, base in self.baselines.items():
                losses, now = baseline_losses(part.session, name, base, self.instances)
                fitted += now
                rows.append(_row(size, name, "baseline", name, losses, seed))
        models = [SizeModel(labels[c.id], "candidate", c.id) for c in self.candidates]
        models += [SizeModel(n, "baseline", n) for n in self.baselines]
        saturation = {
            m.model: saturation_size([(r.size, r.statistics["median"]) for r in rows if r.model == m.model])
            for m in models
        }
        s = self.session
        return SampleSizeResult(
            task=str(s.settings.task),
            study=s.settings.study_name,
            loss_name=s.task.loss.name,
            sizes=self.sizes,
            instances=self.instances,
            test_sample=self.test_sample,
            models=models,
            rows=rows,
            saturation=saturation,
            trained_now=trained,
            fitted_now=fitted,
            tracking_uri=s.store.uri,
            fingerprints={size: p.session.fingerprint for size, p in zip(self.sizes, self.parts)},
        )

    def log(self, result: SampleSizeResult, out: Path | None = None) -> SampleSizeResult:
        """The analysis's run in MLflow (its table and figure as artifacts); ``out``: the figure's PNG here too."""
        from dataclasses import replace

        from robustcli.reporting.analyses import sample_size_figure

        description = {
            "candidates": [c.id for c in self.candidates],
            "baselines": list(self.baselines),
            "sizes": self.sizes,
            "instances": self.instances,
            "test_size": str(self.session.given.training.test_size),
            "fingerprints": [p.session.fingerprint for p in self.parts],
        }
        draw = lambda path: sample_size_figure(path, result)  # noqa: E731
        run_id = log_analysis_run(self.session, "sample-size", description, result.as_dict(), draw, out=out)
        return replace(result, run_id=run_id)


def _row(size: int, model: str, kind: ModelKind, key: str, losses: list[float], seed: int) -> SizeRow:
    n, failed, stats = loss_statistics(losses, seed)
    return SizeRow(size, model, kind, key, n, failed, stats, losses)


def _test_sample(session: StudySession, test_set: int) -> str:
    given = session.given.training.test_size
    if given == "train":
        return "as many examples as the training sample, drawn from the test set (the paper's)"
    size = session.settings.training.test_size
    origin = "" if given is not None else "the task's default: "
    if isinstance(size, int) and size < test_set:
        return f"{origin}{size:,} examples drawn from the test set of {test_set:,}"
    return f"{origin}the whole test set ({test_set:,} examples)"
