"""Every Python example of the README and of the API's docstrings runs as written (so none can rot),
and the example notebook runs as a notebook user takes it (nbclient, a real kernel)."""

from __future__ import annotations

import inspect
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_blocks() -> list[str]:
    """The README's ```python blocks, in order."""
    import textwrap

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.S)
    return [textwrap.dedent(b) for b in blocks]


def _docstring_examples(doc: str | None) -> list[str]:
    """``Example::`` blocks (the indented lines after it) and inline ``Example: ``code```` spans."""
    if not doc:
        return []
    doc = inspect.cleandoc(doc)
    out = []
    for match in re.finditer(r"Example::\n\n((?:(?: {4}.*)?\n)+)", doc + "\n"):
        out.append(inspect.cleandoc(match.group(1)))
    for match in re.finditer(r"Example: (.*?)(?:\n\n|$)", doc, flags=re.S):
        out += re.findall(r"``(.+?)``", match.group(1))
    return out


#: the order in which the docstrings' examples run in one namespace (the module's creates ``study``;
#: export_losses needs one study under one setting, so it runs before the studies add others)
ORDER = [
    "robustcli.api", "Study", "Study.assess", "Study.select", "Study.fit_baselines", "Study.candidates",
    "Study.candidate_info", "Study.runs", "Study.report", "build_report", "export_losses", "replay_selection",
    "list_studies", "list_candidates", "list_tasks", "reproduce_run", "Study.sample_size", "Study.variance", "Study.nas",
]  # fmt: skip


def api_examples() -> list[tuple[str, str]]:
    """(where, code) for every example of robustcli.api's docstrings, in :data:`ORDER` then the rest."""
    import robustcli.api as api

    found: dict[str, list[str]] = {"robustcli.api": _docstring_examples(api.__doc__)}
    for name in api.__all__:
        obj = getattr(api, name)
        found[name] = _docstring_examples(obj.__doc__)
        if isinstance(obj, type) and obj.__module__.startswith("robustcli.api"):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and callable(member):
                    found[f"{name}.{attr}"] = _docstring_examples(member.__doc__)
    ordered = [k for k in ORDER if k in found] + sorted(k for k in found if k not in ORDER)
    return [(k, code) for k in ordered for code in found[k]]


def test_the_examples_are_found() -> None:
    where = {w for w, _ in api_examples()}
    assert {"robustcli.api", "Study", "Study.assess", "Study.select", "Study.sample_size", "Study.variance", "Study.nas",
            "Study.report", "Study.runs", "build_report", "replay_selection", "reproduce_run", "list_tasks"} <= where  # fmt: skip
    assert len(readme_blocks()) >= 3 and "Study(" in readme_blocks()[0]


def test_every_api_docstring_example_runs(workdir: Path) -> None:
    namespace: dict[str, object] = {}
    exec("from robustcli.api import *", namespace)  # noqa: S102 - the examples' own names
    for where, code in api_examples():
        try:
            exec(compile(code, f"<example of {where}>", "exec"), namespace)  # noqa: S102
        except Exception as exc:  # noqa: BLE001 - name the example that broke
            pytest.fail(f"the example of {where} fails: {type(exc).__name__}: {exc}\n{code}")


def test_every_readme_python_example_runs(workdir: Path) -> None:
    namespace: dict[str, object] = {"__name__": "readme"}
    for i, code in enumerate(readme_blocks()):
        try:
            exec(compile(code, f"<README python block {i + 1}>", "exec"), namespace)  # noqa: S102
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"README python block {i + 1} fails: {type(exc).__name__}: {exc}\n{code}")
    assert (workdir / "synthetic.html").exists()


def test_the_example_notebook_runs_in_a_kernel(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/notebook.ipynb, cell by cell in an IPython kernel, as a notebook user runs it."""
    # the `test` extra installs them: a missing one fails here rather than skipping the notebook
    import nbclient
    import nbformat
    notebook = nbformat.read(ROOT / "examples" / "notebook.ipynb", as_version=4)
    _install_kernel(workdir / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(workdir / "jupyter"))
    client = nbclient.NotebookClient(notebook, timeout=240, kernel_name="robustcli-test",
                                     resources={"metadata": {"path": str(workdir)}})  # fmt: skip
    client.execute()
    text = "".join(
        o.get("text", "") + "".join(str(v) for v in o.get("data", {}).values())
        for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
    )  # fmt: skip
    assert "Traceback" not in text and "<table>" in text  # the results drew their tables
    assert (workdir / "notebook-study.html").exists()


def _install_kernel(where: Path) -> None:
    """A kernelspec `python3` that runs this interpreter (the venv's), found through JUPYTER_PATH."""
    import json

    spec = where / "kernels" / "robustcli-test"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "robustcli", "language": "python",
    }))  # fmt: skip
