"""The paper's analyses' figures (Figures 4-7) and their sections in ``robust report``.

An analysis run (tag ``robust.kind = "study"``) holds its table as ``KIND.json`` and its figure as
``KIND.png``; the report reads both back from MLflow.
"""

from __future__ import annotations

import base64
import html
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from robustcli.tracking import tags as T

if TYPE_CHECKING:  # matplotlib and MLflow load when a figure is drawn or a report read
    from matplotlib.figure import Figure

    from robustcli.analyses.sample_size import SampleSizeResult
    from robustcli.analyses.variance import VarianceResult
    from robustcli.tracking.mlflow_store import MlflowStore

__all__ = ["AnalysisSection", "add_analysis_sections", "analysis_sections", "sample_size_figure", "variance_figure"]


@dataclass(frozen=True)
class AnalysisSection:
    """An analysis run as the report shows it: its kind and run, the lines to print, its table (the
    run's ``KIND.json``) and its figure (PNG bytes; None if absent, and never in ``as_dict``)."""

    kind: str
    run_id: str
    lines: list[str]
    table: dict[str, Any]
    png: bytes | None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "run_id": self.run_id, "lines": self.lines, "table": self.table}


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Figure, out: Path) -> Path:
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    _pyplot().close(fig)
    return out


def sample_size_figure(out: Path, result: SampleSizeResult) -> Path:
    """Box plots of each model's losses against the training-sample size on a log axis, one colour
    per model (baselines hatched, beside the networks), the saturation size dotted."""
    from matplotlib.patches import Patch

    plt = _pyplot()
    sizes, models = result.sizes, result.models
    logs = [math.log10(s) for s in sizes]
    gap = min((b - a for a, b in zip(logs, logs[1:])), default=0.3)
    step = 0.8 * gap / max(len(models), 1)
    colours = plt.get_cmap("tab10").colors
    fig, ax = plt.subplots(figsize=(max(7.0, 0.5 * len(sizes) * len(models)), 5))
    handles = []
    for k, model in enumerate(models):
        colour = colours[k % len(colours)]
        rows = {r.size: r for r in result.rows if r.model == model.model}
        offset = (k - (len(models) - 1) / 2) * step
        pos = [10 ** (math.log10(s) + offset) for s in sizes]
        widths = [p * (10 ** (0.4 * step) - 10 ** (-0.4 * step)) for p in pos]
        data = [[x for x in rows[s].losses if math.isfinite(x)] for s in sizes]
        baseline = model.kind == "baseline"
        boxes = ax.boxplot(data, positions=pos, widths=widths, patch_artist=True, manage_ticks=False,
                           showfliers=True, flierprops={"markersize": 2, "markeredgecolor": colour})
        for box in boxes["boxes"]:
            box.set(facecolor=(*colour, 0.25 if baseline else 0.55), edgecolor=colour, hatch="//" if baseline else None)
        for part in ("whiskers", "caps", "medians"):
            for line in boxes[part]:
                line.set_color(colour)
        label = f"{model.model} (baseline)" if baseline else model.model
        saturated = result.saturation.get(model.model)
        if saturated is not None:
            ax.axvline(saturated, color=colour, linestyle=":", linewidth=1)
            label += f", saturates at {saturated:,}"
        handles.append(Patch(facecolor=(*colour, 0.4), edgecolor=colour, hatch="//" if baseline else None, label=label))
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{s:,}" for s in sizes], rotation=90 if len(sizes) > 8 else 0, fontsize=8)
    ax.minorticks_off()
    finite = [x for r in result.rows for x in r.losses if math.isfinite(x) and x > 0]
    if finite and max(finite) / min(finite) > 20:
        ax.set_yscale("log")
    ax.set_xlabel("training-sample size")
    ax.set_ylabel(f"test {result.loss_name} per instance")
    ax.set_title(f"{result.task}: loss against training-sample size, {result.instances} instances per box")
    ax.legend(handles=handles, fontsize=8)
    return _save(fig, out)


def variance_figure(out: Path, result: VarianceResult) -> Path:
    """Box plots of the three sets: both seeds vary, only the initialisation, only the sample."""
    from robustcli.robustness.decomposition import SOURCES

    plt = _pyplot()
    names = {"both": "both vary", "init": "initialisation only", "data": "training sample only"}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    data = [[x for x in result.losses[k] if math.isfinite(x)] for k in SOURCES]
    std = result.decomposition.std
    labels = [f"{names[k]}\nstd {std[k].value:.3g}" for k in SOURCES]
    ax.boxplot(data, tick_labels=labels, showmeans=True)
    ax.set_ylabel(f"test {result.loss_name} per instance")
    ax.set_title(f"{result.candidate_name}: where the spread comes from ({result.instances} instances per set)")
    return _save(fig, out)


# -- robust report ---------------------------------------------------------------------------
def analysis_sections(store: MlflowStore, exp_id: str) -> list[AnalysisSection]:
    """The analysis runs of an experiment, latest first per kind and settings: kind, run id, the
    lines to print, the table (its JSON) and the figure (PNG bytes, None if absent)."""
    runs = store.find_runs(exp_id, T.ANALYSIS)
    out = []
    for run in sorted(runs, key=lambda r: -(r.info.end_time or r.info.start_time or 0)):
        kind = run.data.tags.get(T.ANALYSIS_KIND, "")
        with tempfile.TemporaryDirectory(prefix="robust-report-") as tmp:
            try:
                table = json.loads(Path(store.download_artifacts(run.info.run_id, f"{kind}.json", tmp)).read_text())
            except Exception:  # noqa: BLE001 - an analysis run without its table (interrupted): skipped
                continue
            try:
                png: bytes | None = Path(store.download_artifacts(run.info.run_id, f"{kind}.png", tmp)).read_bytes()
            except Exception:  # noqa: BLE001
                png = None
        out.append(AnalysisSection(kind, run.info.run_id, _lines(kind, table), table, png))
    return out


def _lines(kind: str, table: dict[str, Any]) -> list[str]:
    if kind == "sample-size":
        sat = table.get("saturation", {})
        head = (f"sample-size analysis: {len(table.get('models', []))} models at {len(table.get('sizes', []))} sizes "
                f"({_span(table.get('sizes', []))}), {table.get('instances')} instances each; test sample: "
                f"{table.get('test_sample')}")
        tail = [f"  {m}: " + (f"saturates at {s:,}" if s else "no saturation within the sizes") for m, s in sat.items()]
        return [head, *tail]
    if kind == "variance":
        std = "; ".join(f"{k} {_num(table.get(f'std_{k}'))}" for k in ("both", "init", "data"))
        shares = table.get("shares", {})
        line = (f"variance analysis of {table.get('candidate_name')}: std {std} ({table.get('instances')} instances each); "
                f"shares init {_pct(shares.get('init', {}).get('value'))}, data {_pct(shares.get('data', {}).get('value'))}")
        return [line] + ([f"  {table['note']}"] if table.get("note") else [])
    return [f"{kind} analysis"]


def _span(sizes: list[int]) -> str:
    return f"{sizes[0]:,} to {sizes[-1]:,}" if sizes else "-"


def _num(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, (int, float)) and math.isfinite(x) else "-"


def _pct(x: Any) -> str:
    return f"{100 * x:.0f}%" if isinstance(x, (int, float)) and math.isfinite(x) else "-"


def add_analysis_sections(page: str, sections: list[AnalysisSection]) -> str:
    """``page`` (a report's HTML) with a section per analysis: its lines and its figure, embedded."""
    if not sections:
        return page
    parts = ["<h2>Analyses</h2>"]
    for s in sections:
        parts.append(f"<h3>{html.escape(s.kind)} <small><code>{html.escape(s.run_id)}</code></small></h3>")
        parts.append("<pre>" + html.escape("\n".join(s.lines)) + "</pre>")
        if s.png:
            parts.append(f"<img alt='{html.escape(s.kind)}' src='data:image/png;base64,"
                         f"{base64.b64encode(s.png).decode()}'>")
    block = "".join(parts)
    return page.replace("</body>", block + "</body>") if "</body>" in page else page + block
