"""The study report as one self-contained HTML page: no CDN, the figure embedded, opens offline."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from robustcli.tracking import tags as T

if TYPE_CHECKING:
    from robustcli.robustness.decomposition import Spread, SpreadBySource

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
code { background: #f4f4f4; padding: 0.1em 0.3em; }
img { max-width: 100%; }
"""


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) and math.isfinite(x) else str(x)


def study_page(
    *,
    title: str,
    png: bytes,
    summary: Sequence[Mapping[str, Any]],
    baselines: Mapping[str, Mapping[str, float]],
    selection: Mapping[str, str] | None,
    survivors_per_step: Sequence[int] | None,
    fingerprint: str,
    decomposition: Sequence[SpreadBySource] = (),
    selected: str | None = None,
    searches: Sequence[Mapping[str, Any]] = (),
    confidence: Mapping[str, Any] | None = None,
    label: Callable[[str], str] | None = None,
) -> str:
    """The page. A row of ``summary`` or ``decomposition`` names its candidate by ``candidate`` (the
    id) and, where given, ``description`` (readable); ``selected`` is the selected one's description."""

    def shown(candidate: str, description: str | None) -> str:
        return f"{description} ({candidate})" if description else str(candidate)

    def name(row: Mapping[str, Any]) -> str:
        return shown(row["candidate"], row.get("description"))

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    if selection is not None:
        parts.append(
            "<p>Selection: <b>{}</b>, selected <code>{}</code> with {} trainings versus {} exhaustive; "
            "survivors per step {}.</p>".format(
                html.escape(selection.get(T.STATE, "?")),
                html.escape(selection.get(T.SELECTED, "-") + (f" ({selected})" if selected else "")),
                html.escape(selection.get(T.TRAININGS, "?")),
                html.escape(selection.get(T.EXHAUSTIVE_TRAININGS, "?")),
                html.escape(str(list(survivors_per_step or []))),
            )
        )
    if selection is not None and confidence:
        parts.append(_confidence_section(confidence, selection.get(T.SELECTED, ""), label))
    parts.append("<h2>Systematic uncertainty of the best candidates</h2>")
    parts.append(
        "<p>The spread of a candidate's test loss over its instances (other training samples, other "
        "initialisations) is the systematic uncertainty of its loss. The line to quote:</p>"
    )
    parts.append("<ul>" + "".join(f"<li><code>{html.escape(name(r))}</code>: {html.escape(r['quote'])}</li>" for r in summary) + "</ul>")
    parts.append(
        _table(
            ["candidate", "instances", "failed", "mean [95% CI]", "std", "Q90-Q10"],
            [[name(r), r["instances"], r["failed"], r["mean_ci"], _num(r["std"]), _num(r["q90_q10"])] for r in summary],
        )
    )
    if baselines:
        parts.append("<h2>Baselines on the same training samples</h2>")
        parts.append(
            _table(
                ["baseline", "mean", "std", "min", "max"],
                [[n, *(_num(m.get(f"loss_{k}", float("nan"))) for k in ("mean", "std", "min", "max"))] for n, m in baselines.items()],
            )
        )
    parts.append("<h2>Where the spread comes from</h2>")
    if decomposition:
        parts.append(
            "<p>Standard deviation of the loss over instances (instances in brackets) when both seeds vary, "
            "when only the initialisation varies (every instance on one training sample) and when only the "
            "training sample varies (every instance from one initialisation): <code>robust assess --vary "
            "init|data</code>.</p>"
        )
        parts.append(
            _table(
                ["candidate", "both vary", "only the initialisation", "only the training sample"],
                [[shown(r.candidate, r.description), *map(_spread_cell, r.by_source())] for r in decomposition],
            )
        )
    else:
        parts.append(
            "<p>Not measured: run <code>robust assess --candidate ID --vary init</code> and "
            "<code>--vary data</code> with this study's settings to split the spread into its two sources.</p>"
        )
    parts.append(f"<img alt='study figure' src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    for search in searches:
        parts.append(_search_section(search))
    parts.append(f"<p><small>settings fingerprint {html.escape(fingerprint)}; read back from MLflow by robust report</small></p>")
    parts.append("</body></html>")
    return "".join(parts)


def _spread_cell(spread: Spread) -> str:
    return "-" if spread.std is None else f"{spread.std:.3g} ({spread.instances})"


def _confidence_section(confidence: Mapping[str, Any], pick: str, label: Callable[[str], str] | None = None) -> str:
    """How sure the selection is of its pick: P(best) per contender, which the data cannot tell
    from the pick, and how many more instances would separate them."""
    from robustcli.reporting.confidence import confidence_rows

    level = float(confidence.get("level", 0.95))
    indist = set(confidence.get("indistinguishable", []))

    def name(cid: str) -> str:
        text = label(cid) if label is not None else cid
        return f"{text} ({cid})" if text != cid else cid

    rows = [[name(cid) + (" *" if cid == pick else ""), f"{p:.1%}", "yes" if tied else "no", sep]
            for cid, p, tied, sep in confidence_rows(confidence.get("p_best", {}), indist,
                                                     confidence.get("more_instances", {}), pick)]
    others = len(indist - {pick})
    # runs written before the method was recorded used a plain paired bootstrap
    method = html.escape(str(confidence.get("method", "paired bootstrap over instances")))
    text = (f"<h2>How sure is the pick?</h2><p>Over the {confidence.get('instances', '?')} instances of the "
            f"{confidence.get('contenders', '?')} candidates of the selection's last step, a {method} "
            f"(the instances paired, every candidate alike) gives each the probability of being the best. "
            f"{'No other candidate' if not others else f'{others} other candidate(s)'} cannot be told from the pick "
            f"at {level:.0%} confidence; the last column estimates how many more instances would tell them "
            f"apart.</p>")
    return text + _table(["candidate (* = pick)", "P(best)", f"indistinguishable at {level:.0%}", "more instances"], rows)


def _search_section(search: Mapping[str, Any]) -> str:
    """A `robust nas` search: its best trials over fresh instances beside the reference, and its figure."""
    rows = list(search["top"]) + ([search["against"]] if search.get("against") and search["against"]["role"] == "against" else [])
    parts = [
        f"<h2>Neural-architecture search ({html.escape(str(search['sampler']))}, {search['trials']} trials, "
        f"seed {search['sampler_seed']})</h2>",
        "<p>One training per trial, as a NAS does; then fresh instances of the best trials and of the "
        f"reference (<code>robust nas</code>). {html.escape(search['verdict'])}.</p>",
        _table(
            ["candidate", "trial", "trial loss", "instances", "mean", "std", "median"],
            [[r["name"], "-" if r["trial"] is None else r["trial"], _num(r["trial_loss"]) if r["trial_loss"] is not None else "-",
              r["instances"], _num(r["mean"]), _num(r["std"]), _num(r["median"])] for r in rows],
        ),  # fmt: skip
        f"<img alt='NAS figure' src='data:image/png;base64,{base64.b64encode(search['png']).decode()}'>",
    ]
    return "".join(parts)
