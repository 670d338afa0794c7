"""Print the tables of docs/reproduction.md from the --json outputs beside this file (run.sh writes
them): every figure of the document comes from here, none is typed by hand.

    python docs/reproduction/summarise.py            # markdown on stdout
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).parent


def _load(name: str) -> dict | None:
    path = HERE / f"{name}.json"
    if not path.exists() or path.stat().st_size == 0:
        return None
    return json.loads(path.read_text())


def _f(x: float | None, digits: int = 4) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _iv(row: dict, key: str) -> str:
    low, high = row["intervals"][key]
    return f"{_f(row[key])} [{_f(low)}, {_f(high)}]"


def sample_size(name: str) -> list[str]:
    d = _load(name)
    if d is None:
        return [f"({name}.json missing: the step did not finish)"]
    out = [
        f"`{name}.json`: {d['task']}, study `{d['study']}`, {d['instances']} instances per model and size, "
        f"loss {d['loss']}; test sample: {d['test_sample']}",
        "",
        "| size | model | n | mean [95% CI] | median | std [95% CI] | Q90-Q10 |",
        "| ---: | --- | ---: | --- | ---: | --- | ---: |",
    ]
    for r in d["rows"]:
        kind = " (baseline)" if r["kind"] == "baseline" else ""
        failed = f" ({r['failed']} failed)" if r["failed"] else ""
        out.append(f"| {r['size']:,} | {r['model']}{kind} | {r['n']}{failed} | {_iv(r, 'mean')} | {_f(r['median'])} | "
                   f"{_iv(r, 'std')} | {_f(r['q90_q10'])} |")
    sat = ", ".join(f"{m}: {s:,}" if s else f"{m}: not within these sizes" for m, s in d["saturation"].items())
    out += ["", f"Saturation (the smallest size beyond which the median never falls below its interval): {sat}."]
    return out


def variance(name: str) -> list[str]:
    d = _load(name)
    if d is None:
        return [f"({name}.json missing: the step did not finish)"]
    sh = d["shares"]

    def share(k: str) -> str:
        s = sh[k]
        return f"{100 * s['value']:.0f}% [{100 * s['low']:.0f}%, {100 * s['high']:.0f}%]" if math.isfinite(s["value"]) else "-"

    means = {k: d["sets"][k]["statistics"]["mean"]["value"] for k in ("both", "init", "data")}
    epochs = [e for k in ("both", "init", "data") for e in d["sets"][k].get("epochs", [])]
    stops: dict[str, int] = {}
    for k in ("both", "init", "data"):
        for reason, n in d["sets"][k].get("stop_reasons", {}).items():
            stops[reason] = stops.get(reason, 0) + n
    trained = (f"{sum(epochs) / len(epochs):.0f} ({min(epochs)}-{max(epochs)}); "
               + ", ".join(f"{r} {n}" for r, n in sorted(stops.items())) if epochs else "-")
    return [
        f"| {d['candidate_name']} | {d['train_size']:,} | {d['instances']} | "
        + " | ".join(f"{_f(d[f'std_{k}'])} [{_f(d['intervals'][f'std_{k}'][0])}, {_f(d['intervals'][f'std_{k}'][1])}]"
                     for k in ("both", "init", "data"))
        + f" | {share('init')} | {share('data')} | {d['verdict']} | "
        + " / ".join(_f(means[k]) for k in ("both", "init", "data")) + f" | {trained} |"
    ]


def nas(name: str) -> list[str]:
    d = _load(name)
    if d is None:
        return [f"({name}.json missing: the step did not finish)"]
    out = [
        f"`{name}.json`: {d['trials']} trials ({d['sampler']}, seed {d['sampler_seed']}; {d['distinct_candidates']} distinct "
        f"candidates, {d['failed_trials']} failed), train size {d['train_size']:,}, {d['instances']} fresh instances each",
        "",
        "| candidate | trial | trial's own loss | mean | std [95% CI] | median | min | max |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    rows = d["top"] + ([d["against"]] if d["against"] and d["against"]["role"] == "against" else [])
    for r in rows:
        s = r["statistics"]
        role = " (against)" if r["role"] == "against" else ""
        out.append(
            f"| {r['name']}{role} | {'-' if r['trial'] is None else r['trial']} | {_f(r['trial_loss'])} | {_f(r['mean'])} | "
            f"{_f(r['std'])} [{_f(s['std']['low'])}, {_f(s['std']['high'])}] | {_f(r['median'])} | "
            f"{_f(s['min']['value'])} | {_f(s['max']['value'])} |"
        )
    out += ["", f"Verdict line: {d['verdict']}"]
    return out


def assessed(names: list[str]) -> list[str]:
    out = [
        "| file | candidate | train size | n | mean | std [95% CI] | median | min | max | mean epochs |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for name in names:
        d = _load(name)
        if d is None:
            out.append(f"| {name}.json | (missing: the step did not finish) |")
            continue
        s = d["statistics"]

        def v(k: str) -> str:
            return _f(s[k]["value"])

        failed = f" ({d['failed']} failed)" if d["failed"] else ""
        out.append(
            f"| {name}.json | {d['candidate_description']} ({d['candidate']}) | {d['train_size']:,} | {d['instances']}{failed} | "
            f"{v('mean')} | {v('std')} [{_f(s['std']['low'])}, {_f(s['std']['high'])}] | {v('median')} | {v('min')} | "
            f"{v('max')} | {d['mean_epochs']:.1f} |"
        )
    return out


def selection(name: str = "select-demo", baseline: str = "select-baseline", model2: str | None = "select-model2") -> list[str]:
    d = _load(name)
    if d is None:
        return [f"({name}.json missing: the step did not finish)"]
    n = len(d["candidates"]) if isinstance(d["candidates"], list) else d["candidates"]
    out = [
        f"`{name}.json`: {n} candidates, rule {d['rule']} ({', '.join(d['criterion'])}); selected "
        f"**{d['selected_description']}** ({d['selected']}) after {d['steps']} steps ({d['reason']}); {d['baseline_cut']}; "
        f"survivors per step {d['survivors_per_step']}; {d['trainings']} trainings (exhaustive: {d['exhaustive_trainings']}).",
        "",
    ]
    if d.get("confidence_level"):
        p_best = ", ".join(f"{k} {100 * v:.0f}%" for k, v in sorted(d["p_best"].items(), key=lambda kv: -kv[1])[:4])
        out += [f"How sure is the pick: indistinguishable from it at {100 * d['confidence_level']:.0f}%: "
                f"{', '.join(d['indistinguishable'])}; P(best) {p_best}.", ""]
    b = _load(baseline)
    if b is not None:
        out.append(f"Baselines on the same {len(b['baselines'][0]['losses'])} samples of " + f"{b['train_size']:,} (`{baseline}.json`): "
                   + ", ".join(f"{r.get('name', r.get('baseline'))} {_f(r['mean'])} (std {_f(r['std'])})" for r in b["baselines"]) + ".")
        out.append("")
    out += ["| candidate | instances | mean [95% CI] | std [95% CI] | median |", "| --- | ---: | --- | --- | ---: |"]
    for row in d.get("summary") or []:
        st = row["statistics"]
        out.append(f"| {row['description']} (selected) | {row['instances']} | {_f(st['mean']['value'])} [{_f(st['mean']['low'])}, "
                   f"{_f(st['mean']['high'])}] | {_f(st['std']['value'])} [{_f(st['std']['low'])}, {_f(st['std']['high'])}] | "
                   f"{_f(st['median']['value'])} |")
    m = _load(model2) if model2 else None
    if m is not None:
        st = m["statistics"]
        out.append(f"| model2 (`{model2}.json`) | {m['instances']} | {_f(st['mean']['value'])} [{_f(st['mean']['low'])}, "
                   f"{_f(st['mean']['high'])}] | {_f(st['std']['value'])} [{_f(st['std']['low'])}, {_f(st['std']['high'])}] | "
                   f"{_f(st['median']['value'])} |")
    return out


def timings() -> list[str]:
    path = HERE / "timings.tsv"
    if not path.exists():
        return ["(timings.tsv missing)"]
    from datetime import datetime, timedelta

    out = ["| step | start (UTC) | wall time | load average at start / end | exit |", "| --- | --- | ---: | --- | ---: |"]
    spans = []
    with path.open() as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            s = int(row["wall_s"])
            out.append(f"| {row['step']} | {row['start']} | {s // 60} min {s % 60:02d} s | {row['load_start']} / {row['load_end']} | {row['rc']} |")
            if row["step"] != "total":
                start = datetime.fromisoformat(row["start"])
                spans.append((start, start + timedelta(seconds=s)))
    for day in sorted({a.date() for a, _ in spans}):  # one pass per day
        first = min(a for a, _ in spans if a.date() == day)
        last = max(b for a, b in spans if a.date() == day)
        wall = int((last - first).total_seconds())
        out += ["", f"{day}: from the first step's start to the last one's end: {wall // 60} min {wall % 60:02d} s "
                    f"({first:%H:%M} to {last:%H:%M} UTC)."]
    loads: dict[str, list[float]] = {}
    with path.open() as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            loads.setdefault(row["start"][:10], []).extend(
                float(row[k]) for k in ("load_start", "load_end") if row[k] not in ("", "-"))
    for day, day_loads in sorted(loads.items()):
        out += ["", f"{day}: load average (1 min) at the steps' starts and ends ({len(day_loads)} readings): mean "
                    f"{sum(day_loads) / len(day_loads):.1f}, min {min(day_loads):.1f}, max {max(day_loads):.1f}, "
                    "on 2 cores shared with other users."]
    cpu = HERE / "cpu.tsv"
    if cpu.exists():
        out += ["", "CPU time of each step's process (user + system, read from /proc every 5 s by `sample-cpu.sh`; `cpu.tsv`):", "",
                "| step | CPU seconds |", "| --- | ---: |"]
        total = 0.0
        with cpu.open() as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                if row["pid"] == "pid":  # the header of a later pass's rows
                    out.append(f"| total sampled | {total:.0f} ({total / 60:.1f} CPU minutes) |")
                    total = 0.0
                    continue
                total += float(row["cpu_s"])
                out.append(f"| `{row['command']}` | {float(row['cpu_s']):.0f} |")
        out.append(f"| total sampled | {total:.0f} ({total / 60:.1f} CPU minutes) |")
    return out


def main() -> None:
    parts = [
        "### The first pass: reduced early stopping (15-30 epochs), LHCb's noisy cells", "",
        "#### Figures 4-5: loss against training-sample size (dataset A)", "", *sample_size("sample-size-A"), "",
        "#### Figure 6: Model 2 against the baselines at the larger sizes (dataset A)", "", *sample_size("sample-size-A-large"), "",
        "#### Figure 7: initialisation or training sample (dataset B)", "",
        "| model | train size | instances per set | std both [95% CI] | std init only | std data only | share init | "
        "share data | verdict | mean both / init / data | epochs: mean (range); stops |",
        "| --- | ---: | ---: | --- | --- | --- | --- | --- | --- | --- | --- |",
        *variance("variance-B-model1"), *variance("variance-B-model2"), "",
        "#### Figure 18: the NAS picks against Model 2 (dataset B)", "", *nas("nas-B"), "",
        "The paper's NAS 1 and NAS 2 (its Table 3) and Model 2 on samples of 4,000 (`robust assess`, instances 0-5):", "",
        *assessed(["nas-B-4000-nas1", "nas-B-4000-nas2", "nas-B-4000-model2"]), "",
        "#### The selection (Algorithm 1) at the demo's scale (dataset A)", "", *selection(), "",
        "### The second pass: the paper's early stopping, the paper's noiseless cells", "",
        "#### Figure 7 at the paper's early stopping (min 100 epochs, window 30, 10 %, max 500)", "",
        "| model | train size | instances per set | std both [95% CI] | std init only | std data only | share init | "
        "share data | verdict | mean both / init / data | epochs: mean (range); stops |",
        "| --- | ---: | ---: | --- | --- | --- | --- | --- | --- | --- | --- |",
        *variance("variance-B-model2-paper"), *variance("variance-B-model1-paper"), "",
        "Dataset A:", "",
        "| model | train size | instances per set | std both [95% CI] | std init only | std data only | share init | "
        "share data | verdict | mean both / init / data | epochs: mean (range); stops |",
        "| --- | ---: | ---: | --- | --- | --- | --- | --- | --- | --- | --- |",
        *variance("variance-A-model2-paper"), "",
        "#### Figure 6 on noiseless cells (dataset A, the first pass's reduced early stopping)", "",
        *sample_size("sample-size-A-large-noiseless"), "",
        "Model 2 at the paper's early stopping (the baselines are fitted, not trained: the same as above):", "",
        *sample_size("sample-size-A-large-noiseless-paper"), "",
        "#### Figure 18 at the paper's early stopping (dataset B, noiseless cells)", "",
        *assessed([f"nas-B-{size}-{c}-paper" for size in (4000, 16000) for c in ("nas1", "nas2", "model2")]), "",
        "#### The selection on a slice of the grid (dataset A, noiseless cells, 64 candidates drawn with seed 1)", "",
        *selection("grid-select-paper", "grid-baseline", None), "", *selection("grid-select-race", "grid-baseline", None), "",
        "Each pick and Model 2 over 10 fresh instances (study seed 2; the selection's was 1):", "",
        *assessed(["grid-fresh-paper", "grid-fresh-race", "grid-fresh-model2"]), "",
        "### Wall time of every step", "", *timings(),
    ]
    sys.stdout.write("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
