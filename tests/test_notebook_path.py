"""A notebook user's path (issue 21): a task defined where the user works, classification
baselines, results that display well, and errors in Python's words at the API's door."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from conftest import experiments
from robustcli.task import Baseline, Loss, SearchSpace, Task, TaskData

#: early stopping that keeps a tiny task to a fraction of a second per instance
FAST = {"min_epochs": 3, "window": 2, "max_epochs": 6, "train_size": 64}


class Nearest(Baseline):
    """Class scores from the distance to each class's mean: log-probabilities, shaped (n, 2)."""

    name = "nearest-mean"
    description = "nearest class mean (scores: -squared distance, log-softmaxed)"

    def fit_predict(self, train_x, train_y, test_x, seed):
        import torch

        means = torch.stack([train_x[train_y == k].mean(0) for k in (0, 1)])
        return torch.log_softmax(-torch.cdist(test_x, means) ** 2, dim=1)


class Blobs(Task):
    """Two Gaussian blobs in 4 dimensions: a classification task defined in a test module, as a
    notebook would define it (not installed, no entry point)."""

    name: ClassVar[str] = "blobs"
    description: ClassVar[str] = "two Gaussian blobs, cross-entropy"
    loss: ClassVar[Loss] = Loss("xent", "cross_entropy(logits, y[label])")
    default_train_size: ClassVar[int] = 64

    def __init__(self, **options: Any) -> None:
        self.options = options
        self._data: TaskData | None = None

    def load_data(self) -> TaskData:
        if self._data is None:
            import torch

            gen = torch.Generator().manual_seed(0)
            y = torch.randint(0, 2, (300,), generator=gen)
            x = torch.randn(300, 4, generator=gen) + 1.5 * y[:, None].float()
            self._data = TaskData(x[:200], y[:200], x[200:], y[200:])
        return self._data

    def search_space(self) -> SearchSpace:
        return SearchSpace.from_grid({"hidden": [4, 8], "lr": [1e-2]}, named={"tiny": {"hidden": 4, "lr": 1e-2}})

    def build_model(self, candidate):
        from torch import nn

        h = int(candidate.params["hidden"])
        return nn.Sequential(nn.Linear(4, h), nn.ReLU(), nn.Linear(h, 2))

    def test_loss(self, pred, y):
        import torch

        return torch.nn.functional.cross_entropy(pred, y)

    def baselines(self):
        return {"nearest-mean": Nearest()}


def _edited(test_loss: Any) -> type[Task]:
    """Blobs as a notebook cell edited and re-run: the same name, another test_loss."""
    return type("Blobs", (Blobs,), {"test_loss": test_loss, "__module__": __name__})


def test_a_task_defined_in_code_runs_every_method_without_packaging(workdir: Path) -> None:
    from robustcli.api import Study

    study = Study(Blobs, **FAST)
    first = study.assess("tiny", instances=2)
    assert first.trained_now == 2 and first.task == "blobs" and first.candidate_name == "tiny"
    # an instance, a class or the keyword: one task, one fingerprint, nothing trained twice
    assert Study(task=Blobs(), **FAST).assess("tiny", instances=2).trained_now == 0
    assert Study(task=Blobs(), **FAST).fingerprint == study.fingerprint
    fits = study.fit_baselines(instances=2)  # class scores (n, 2) scored by test_loss, as a model's output
    assert fits.baselines[0].fitted_now and all(0 < x < 1 for x in fits.baselines[0].losses)
    chosen = study.select(rule="paper", candidates=["tiny", study.candidates()[1].id], max_steps=1)
    assert chosen.baseline_loss == pytest.approx(fits.baselines[0].mean)
    sizes = study.sample_size(["tiny"], [32, 64], instances=2)
    assert {r["model"] for r in sizes.records()} == {"tiny", "nearest-mean"}
    assert study.variance("tiny", instances=2).records()[0]["set"] == "both"
    nas = study.nas(trials=2, top=1, against="tiny", instances=2)
    assert nas.trials == 2
    report = study.report(workdir / "blobs.html")
    assert Path(report.out).exists() and report.summary


def test_an_edited_task_does_not_reuse_the_instances_of_its_old_code(workdir: Path) -> None:
    import torch

    from robustcli.api import Study

    before = Study(Blobs, **FAST)
    before.assess("tiny", instances=2)
    edited = Study(_edited(lambda self, pred, y: torch.nn.functional.cross_entropy(pred, y, label_smoothing=0.1)), **FAST)
    assert edited.fingerprint != before.fingerprint
    assert edited.assess("tiny", instances=2).trained_now == 2
    # what the hash covers: the class's own code, and a `version` it sets
    from robustcli.task_code import task_code

    assert task_code(Blobs) == task_code(Blobs) and task_code(type("Blobs", (Blobs,), {"version": "2"})) != task_code(Blobs)
    # a class defined by exec (no source kept): its bytecode, the same wherever and whenever it is defined
    source = "class Exec(Blobs):\n    def test_loss(self, pred, y):\n        return (lambda p: p.sum())(pred)\n"
    made = [{"Blobs": Blobs} for _ in range(2)]
    exec(compile("\n" + source, "<cell 1>", "exec"), made[0])  # noqa: S102
    exec(compile(source, "<cell 2>", "exec"), made[1])  # noqa: S102
    assert task_code(made[0]["Exec"]) == task_code(made[1]["Exec"]) != task_code(Blobs)


def test_fit_baselines_reads_back_what_mlflow_holds(workdir: Path) -> None:
    from mlflow.tracking import MlflowClient

    from robustcli.api import Study

    study = Study(Blobs, **FAST)
    first = study.fit_baselines(instances=2)
    again = study.fit_baselines(instances=2)
    assert not again.baselines[0].fitted_now and again.baselines[0].losses == first.baselines[0].losses
    client = MlflowClient(study.tracking_uri)
    exp = client.get_experiment_by_name("blobs")
    assert len(client.search_runs([exp.experiment_id], "tags.`robust.kind` = 'baseline'")) == 1


class _WrongShape(Baseline):
    name = "wrong"
    description = "returns one value per example for class labels"

    def fit_predict(self, train_x, train_y, test_x, seed):
        import torch

        return torch.zeros(test_x.shape[0], 3, 1)


class BadBaselines(Blobs):
    name: ClassVar[str] = "bad-baselines"

    def baselines(self):
        return {"wrong": _WrongShape()}


def test_the_kit_fits_and_scores_every_baseline() -> None:
    from robustcli.testing import check_baselines, check_task

    assert check_baselines(Blobs()) is None
    results = {r.check: r for r in check_task(BadBaselines(), raise_on_failure=False)}
    assert results["check_baselines"].status == "failed"
    assert "baseline 'wrong' returned predictions of shape (8, 3, 1)" in results["check_baselines"].message
    assert results["check_forward_backward"].status == "passed"


def test_results_display_in_one_line_and_as_html(workdir: Path) -> None:
    from robustcli.api import Study, list_tasks

    study = Study(Blobs, name="shown", **FAST)
    assessed = study.assess("tiny", instances=2)
    chosen = study.select(rule="halving", candidates=["tiny", study.candidates()[1].id], max_steps=1)
    report = study.report(workdir / "shown.html")
    runs = study.runs()
    for result in (assessed, chosen, report, runs, study.fit_baselines(instances=2), list_tasks()[0]):
        text = repr(result)
        assert text.startswith(f"<{type(result).__name__}: ") and len(text) <= 300 and "\n" not in text
        page = result._repr_html_()
        assert page.startswith("<p><b>") and len(page) < 20_000
    assert "tiny" in repr(assessed) and "[" in assessed._repr_html_()  # the mean with its interval
    assert html.escape("tiny") in report._repr_html_()
    frame = assessed.to_frame()
    assert {"candidate", "name", "instance", "init_seed", "data_seed", "train_size", "vary", "loss", "run_id"} <= set(frame.columns)
    assert list(frame["name"]) == ["tiny", "tiny"] and frame["init_seed"].nunique() == 2
    whole = runs.to_frame()
    assert len(whole) == 3 and {"candidate", "name", "init_seed", "data_seed", "loss", "status", "fingerprint"} <= set(whole.columns)
    assert chosen.selected_name in ("tiny", None) and chosen.as_dict()["selected_name"] == chosen.selected_name
    assert report.summary[0].name in ("tiny", None) and any(s.name == "tiny" for s in report.summary)


def test_the_report_draws_no_mlflow_bars_when_progress_is_off(workdir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from robustcli.api import Study

    study = Study(Blobs, name="quiet", **FAST)
    study.sample_size(["tiny"], [32, 64], instances=2, baselines=False)
    capfd.readouterr()
    study.report(workdir / "quiet.html")
    out, err = capfd.readouterr()
    assert "Downloading" not in err and out == ""


#: the API's doors (issue 20): refused in Python's words before anything is written
DOORS = [
    (lambda s: s.sample_size(["tiny"], [0], instances=2), "sizes=[0]: 0 is not a positive whole number"),
    (lambda s: s.sample_size(["tiny"], [-5]), "sizes=[-5]: -5 is not a positive whole number"),
    (lambda s: s.sample_size(["tiny"], ["50", "x"]), "sizes=['50', 'x']: '50' is not a positive whole number"),
    (lambda s: s.sample_size(["tiny"], "0:5:2"), "sizes='0:5:2': a range needs"),
    (lambda s: s.assess("tiny", instances=2, vary="both-ish"), "vary='both-ish': expected one of 'both', 'init', 'data'"),
    (lambda s: s.assess("tiny", instances=0), "instances=0: expected a positive whole number"),
    (lambda s: s.assess("tiny", instance=2), "Study.assess() got an unknown keyword 'instance'; did you mean 'instances'?"),
    (lambda s: s.assess(["tiny", "wide"]), "candidate=['tiny', 'wide']: expected one candidate's id or name"),
    (lambda s: s.assess("tiny", n_instances=2), "unknown keyword 'n_instances'"),
    (lambda s: s.select(rules="race"), "Study.select() got an unknown keyword 'rules'; did you mean 'rule'?"),
    (lambda s: s.select(fraction=2.0), "fraction=2.0: Input should be less than 1"),
    (lambda s: s.select(candidates=["tiny", 3]), "candidates=['tiny', 3]: 3 is not a str"),
    (lambda s: s.variance("tiny", instances=1), "instances=1: expected a whole number of at least 2"),
    (lambda s: s.report(123), "out=123: expected a path"),
    (lambda s: s.report("x.txt"), "out='x.txt': write a .html or a .png file"),
    (lambda s: s.nas(trials=0), "trials=0: expected a positive whole number"),
    (lambda s: s.fit_baselines(instances="5"), "instances='5': expected a positive whole number"),
]


@pytest.mark.parametrize(("call", "words"), DOORS, ids=[w.split(":")[0][:40] for _, w in DOORS])
def test_the_api_refuses_bad_input_in_python_words_before_writing(workdir: Path, call: Any, words: str) -> None:
    from robustcli.api import InputError, Study

    study = Study(Blobs, **FAST)
    with pytest.raises(InputError) as err:
        call(study)
    assert words in str(err.value) and "--" not in str(err.value)
    assert experiments() == [] and not (workdir / "mlruns" / "robust-locks").exists()


def test_settings_that_conflict_name_the_fix_in_the_words_of_the_caller(workdir: Path, app, runner) -> None:
    from robustcli.api import InputError, Study

    with pytest.raises(InputError, match=r"max_epochs=30 is below min_epochs=100 .*: pass min_epochs=30 or lower"):
        Study("synthetic", max_epochs=30)
    with pytest.raises(InputError, match="tracking URI 'foo://bar': no tracking store takes the scheme 'foo'"):
        Study("synthetic", tracking_uri="foo://bar")
    with pytest.raises(InputError) as err:
        Study("synthetic", max_epoch=3)
    assert str(err.value).startswith("Study() got an unknown keyword 'max_epoch'; did you mean 'max_epochs'? valid: ")
    with pytest.raises(InputError, match="task=3: expected a task's name"):
        Study(3)
    with pytest.raises(InputError, match="train_size='256': expected a positive whole number"):
        Study("synthetic", train_size="256")
    with pytest.raises(InputError, match="seed=-1: expected a whole number of at least 0"):
        Study("synthetic", seed=-1)
    cli = runner.invoke(app, ["assess", "--task", "synthetic", "-C", "small", "--max-epochs", "30"])
    assert cli.exit_code == 2 and "--max-epochs 30 is below --min-epochs 100" in cli.stderr and "--min-epochs 30" in cli.stderr
    assert experiments() == []


def test_a_selection_without_baselines_says_what_to_call_in_python(workdir: Path) -> None:
    from robustcli.api import Study

    notes: list[str] = []

    class Notes:
        def start(self, *a, **k): ...
        def update(self, *a, **k): ...
        def line(self, text): ...
        def note(self, text): notes.append(text)  # noqa: E704
        def working(self, text):
            from contextlib import nullcontext

            return nullcontext()

        def __enter__(self):
            return self

        def __exit__(self, *exc): ...

    study = Study(Blobs, progress=Notes(), **FAST)
    study.select(rule="paper", candidates=["tiny", study.candidates()[1].id], max_steps=1)
    assert notes and "study.fit_baselines()" in notes[0] and "rule='paper'" in notes[0] and "robust baseline" not in notes[0]


def test_the_public_names_are_exactly_these() -> None:
    import robustcli.api as api

    expected = {
        "Assessment", "Baseline", "BaselineFits", "Candidate", "CandidateInfo", "CandidateSummary", "InputError", "Loss",
        "NasOutcome", "Progress", "ReplayOutcome", "Reproduction", "RobustError", "SampleSizeResult", "SearchSpace",
        "SelectionOutcome", "Silent", "Study", "StudyInfo", "StudyReport", "StudyRuns", "Task", "TaskData", "TaskInfo",
        "VarianceResult", "build_report", "export_losses", "list_candidates", "list_studies", "list_tasks",
        "replay_selection", "reproduce_run",
    }  # fmt: skip
    assert set(api.__all__) == expected and len(api.__all__) == len(expected)
    public = {n for n in dir(api) if not n.startswith("_") and not isinstance(getattr(api, n), type(api))}
    assert public - {"annotations"} == expected  # nothing public that __all__ leaves out
    import inspect
    import typing

    for name in ("sample_size", "variance", "report", "runs", "assess", "select", "fit_baselines", "nas"):
        hints = typing.get_type_hints(getattr(api.Study, name), localns=vars(api))
        assert hints["return"] is not typing.Any and inspect.signature(getattr(api.Study, name))
    assert "rule" in inspect.signature(api.Study.select).parameters  # keywords shown to help() and completion


def test_list_tasks_and_candidates_of_a_task_in_code() -> None:
    from robustcli.api import TaskInfo, list_candidates, list_tasks

    tasks = {t.name: t for t in list_tasks()}
    assert isinstance(tasks["synthetic"], TaskInfo) and tasks["synthetic"].status == "ok" and tasks["synthetic"].candidates == 96
    assert [c.name for c in list_candidates(Blobs)][:1] == ["tiny"]


def test_tasks_show_keeps_brackets_in_the_task_s_words(app, runner) -> None:
    result = runner.invoke(app, ["tasks", "show", "synthetic"])
    assert result.exit_code == 0
    from robustcli.cli import tasks

    assert "escape(" in Path(tasks.__file__).read_text()  # every text of the task's is escaped
    from rich.console import Console
    from rich.markup import escape

    console = Console(record=True, width=200)
    console.print(escape("loss: xent = cross_entropy(logits, y[label])"))
    assert "y[label]" in console.export_text()


def test_study_runs_of_a_store_as_json_ready_rows(workdir: Path) -> None:
    from robustcli.api import Study

    study = Study(Blobs, **FAST)
    study.assess("tiny", instances=2)
    study.assess("tiny", instances=2, vary="init")
    rows = study.runs().records()
    assert len(rows) == 4 and {r["vary"] for r in rows} == {"both", "init"}
    assert sum(bool(r["current"]) for r in rows) == 2
    json.dumps(rows)
