"""A store no crash or race can break, and bad tracking URIs refused at once (issue 12, items 3 and 5).

Black-box: every test runs `robust` as real processes (SIGKILL included) on its own sqlite
store and judges the result through the exit codes, the output and MLflow's public search API.
Races vary in timing; what is asserted holds at every timing:

* a kill while the store is being created never leaves it unusable: the next command exits 0
  with the same result as on a fresh store;
* two commands started together on a new store both exit 0;
* two `robust select` on one study: one runs to the end, the other is refused with its owner
  named (or, if they ran one after the other, the second trained nothing); no instance run
  twice, one selection run per selection key;
* `robust assess` beside `robust select` on the same candidate: both exit 0, nothing trained
  or logged twice;
* a bad tracking URI is refused in one line, exit 2, within 5 s, nothing created or changed.

The quick tests make one try each: about 25 `robust` processes, 5 of them creating a store
(MLflow's migrations: ~20 s on 2 cores at load 3, ~50 s at load 15; the quick set took 10 min
on 2 cores at load 15-19). The `slow` ones repeat the tries over many delays and offsets and
print their counts (`-m slow -s`; ~75 min at that load). The 5 s limit of a refusal is scaled
by the load per core where it is above 1 (ROBUST_TEST_REFUSAL_LIMIT sets it).
"""

from __future__ import annotations

import collections
import os
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from _processes import (
    FAST,
    all_runs,
    duplicate_instances,
    experiment_names,
    instance_runs,
    make_read_only,
    run,
    selection_runs_per_key,
    sleep_until,
    start,
    tree,
    undo_read_only,
    wait_for_entry,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="real processes, process groups and SIGKILL: Linux")

#: tiny trainings: a synthetic instance in a second or two
TINY = [*FAST, "--train-size", "64", "--test-size", "64"]
#: a command that did not end by then is stuck (loaded 2-core machines create a store in ~20-40 s)
TIMEOUT = 300


def _grid_ids(n: int) -> list[str]:
    from robustcli.builtin.synthetic import SyntheticTask

    return [c.id for c in list(SyntheticTask().search_space())[:n]]


def assess_args(uri: str, candidate: str = "small", n: int = 1) -> list[str]:
    return ["assess", "--task", "synthetic", "--candidate", candidate, "--instances", str(n), *TINY, "--json",
            "--tracking-uri", uri]


def select_args(uri: str) -> list[str]:
    cands = ",".join(["small", "wide", *_grid_ids(2)])
    return ["select", "--task", "synthetic", *TINY, "--candidates", cands, "--rule", "halving", "--json",
            "--tracking-uri", uri]


def _uri(db: Path) -> str:
    return f"sqlite:///{db}"


def _copy_store(empty_store: Path, folder: Path) -> str:
    """A new, already migrated MLflow store (a copy of conftest's template) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(empty_store, folder / "mlflow.db")
    return _uri(folder / "mlflow.db")


def _say(line: str) -> None:
    """Counts for the person running the tests (shown with -s, or -rA on a failure)."""
    print(f"[store-safety] {line}", flush=True)


def _parent_duplicates(uri: str) -> dict[tuple[str, str], int]:
    keys = collections.Counter(
        (r.data.tags.get("robust.candidate_id", "?"), r.data.tags.get("robust.fingerprint", ""))
        for r in all_runs(uri, "tags.`robust.kind` = 'candidate'")
    )
    return {k: n for k, n in keys.items() if n > 1}


def _guarded(fn: Any, row: dict[str, Any], *args: Any) -> dict[str, Any]:
    """``fn(*args)``, or ``row`` with the exception as its problem: one try's surprise (output that
    is not JSON, say) is counted, and the other tries still run."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001
        return {**row, "problems": [f"{type(exc).__name__}: {exc}"]}


_SAME_KEYS = ("candidate", "instances", "failed", "losses", "fingerprint", "stop_reasons")


@pytest.fixture(scope="module")
def reference(empty_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`robust assess` of the named candidate `small` (1 instance) on a fresh store."""
    base = tmp_path_factory.mktemp("reference")
    uri = _copy_store(empty_store, base / "mlruns")
    proc = run(assess_args(uri), base, base / "logs", "reference", timeout=TIMEOUT)
    assert proc.rc == 0, proc.describe()
    report = proc.json()
    assert report["instances"] == 1 and report["trained_now"] == 1 and report["failed"] == 0
    return report


# -- 1. a kill while the store is being created ----------------------------------------------------------
#: (anchor, seconds): SIGKILL that long after the process started ("start"), after the first entry
#: of any name appeared in the store's folder ("folder": a lock file or folder, a temporary file,
#: the store), or after the first entry whose name holds the store's ("file": the store, or a
#: temporary file named after it, e.g. `.mlflow.db.123.creating`)
KILL_QUICK = [("file", 0.5)]
KILL_FULL = [("start", 0.3), ("start", 1.0), ("start", 2.0), ("start", 3.0), ("folder", 0.0), ("folder", 0.3),
             ("file", 0.0), ("file", 0.1), ("file", 0.3), ("file", 0.6), ("file", 1.0), ("file", 1.5),
             ("file", 3.0), ("file", 6.0)]


def _kill_then_resume(base: Path, anchor: str, delay: float, reference: dict[str, Any]) -> dict[str, Any]:
    home, logs, folder = base / "home", base / "logs", base / "mlruns"
    home.mkdir(parents=True)
    uri = _uri(folder / "mlflow.db")
    victim = start(assess_args(uri), home, logs, "victim")
    appeared = None
    if anchor == "start":
        sleep_until(victim.started, delay)
    else:
        appeared = wait_for_entry(folder, victim, timeout=TIMEOUT, match="mlflow.db" if anchor == "file" else "")
        if appeared is not None:
            sleep_until(victim.started, appeared + delay)
    killed_at = victim.seconds
    victim.kill()
    left = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    resume = run(assess_args(uri), home, logs, "resume", timeout=TIMEOUT)
    row: dict[str, Any] = {
        "try": f"{anchor}+{delay}s",
        "store_appeared_s": None if appeared is None else round(appeared, 2),
        "killed_at_s": round(killed_at, 2),
        "killed": victim.killed,  # False: it had ended by itself before the kill
        "left": left,
        "resume_rc": resume.rc,
        "resume_s": round(resume.seconds, 1),
        "usable": resume.rc == 0,
        "same": False,
        "duplicates": 0,
        "error": "" if resume.rc == 0 else resume.describe(),
    }
    if resume.rc == 0:
        report = resume.json()
        row["same"] = all(report.get(k) == reference[k] for k in _SAME_KEYS)
        if not row["same"]:
            row["error"] = f"result differs: {({k: report.get(k) for k in _SAME_KEYS})} vs {({k: reference[k] for k in _SAME_KEYS})}"
        dupes = duplicate_instances(uri)
        row["duplicates"] = sum(n - 1 for n in dupes.values())
        row["instance_runs"] = len(instance_runs(uri))
        row["experiments"] = experiment_names(uri)
    return row


def _kill_tries(tmp_path: Path, tries: list[tuple[str, float]], reference: dict[str, Any]) -> None:
    rows = []
    for i, (anchor, delay) in enumerate(tries):
        try:
            rows.append(_kill_then_resume(tmp_path / f"try{i}", anchor, delay, reference))
        except Exception as exc:  # noqa: BLE001 - one try's surprise is counted, the others still run
            rows.append({"try": f"{anchor}+{delay}s", "killed": False, "usable": False, "same": False, "duplicates": 0,
                         "error": f"{type(exc).__name__}: {exc}"})
    for row in rows:
        _say(f"kill {row}")
    unusable = sum(not r["usable"] for r in rows)
    different = sum(r["usable"] and not r["same"] for r in rows)
    dupes = sum(r["duplicates"] for r in rows)
    killed = sum(r["killed"] for r in rows)
    _say(f"kill while creating the store: tries={len(rows)} killed={killed} unusable={unusable} "
         f"different={different} duplicates={dupes}")
    bad = [r for r in rows if not r["usable"] or not r["same"] or r["duplicates"]
           or r.get("instance_runs") != 1 or r.get("experiments") != ["synthetic"]]
    assert not bad, (
        f"{len(bad)} of {len(rows)} kills left the store unusable or different (unusable={unusable}, "
        f"different={different}, duplicates={dupes}):\n" + "\n".join(f"{r['try']}: {r}" for r in bad)
    )


def test_a_kill_while_the_store_is_created_leaves_it_usable(tmp_path, reference):
    _kill_tries(tmp_path, KILL_QUICK, reference)


@pytest.mark.slow
def test_kills_at_many_moments_of_store_creation_leave_it_usable(tmp_path, reference):
    _kill_tries(tmp_path, KILL_FULL, reference)


# -- 2. two commands start together on a new store --------------------------------------------------------
def _two_starts(base: Path, offset: float, reference: dict[str, Any], list_after: bool) -> dict[str, Any]:
    home, logs, folder = base / "home", base / "logs", base / "mlruns"
    home.mkdir(parents=True)
    uri = _uri(folder / "mlflow.db")
    a = start(assess_args(uri, "small"), home, logs, "a")
    sleep_until(a.started, offset)
    b = start(assess_args(uri, "wide"), home, logs, "b")
    a.wait(TIMEOUT), b.wait(TIMEOUT)
    row: dict[str, Any] = {"offset": offset, "rc": (a.rc, b.rc), "seconds": (round(a.seconds, 1), round(b.seconds, 1))}
    problems = [p.describe() for p in (a, b) if p.rc != 0]
    if not problems:
        ra, rb = a.json(), b.json()
        if any(ra.get(k) != reference[k] for k in _SAME_KEYS):
            problems.append(f"small on a new store with a neighbour: {({k: ra.get(k) for k in _SAME_KEYS})}, "
                            f"alone on a fresh store: {({k: reference[k] for k in _SAME_KEYS})}")
        if rb["instances"] != 1 or rb["trained_now"] != 1:
            problems.append(f"wide: {rb['instances']} instances, {rb['trained_now']} trained now")
        if experiment_names(uri) != ["synthetic"]:
            problems.append(f"experiments {experiment_names(uri)}, expected one: synthetic")
        runs = instance_runs(uri)
        found = sorted(r.data.tags.get("robust.candidate_id") for r in runs)
        if found != sorted([ra["candidate"], rb["candidate"]]):
            problems.append(f"instance runs of {found}, expected one each of small and wide")
        if _parent_duplicates(uri):
            problems.append(f"duplicate candidate runs: {_parent_duplicates(uri)}")
        # the store is usable by the tool afterwards: it lists the study and its two instances
        listing = run(["studies", "--json", "--tracking-uri", uri], home, logs, "studies", timeout=TIMEOUT) if list_after else None
        if listing is None:
            pass
        elif listing.rc != 0:
            problems.append(listing.describe())
        else:
            rows = {s["study"]: s for s in listing.json()["studies"]}
            if rows.get("synthetic", {}).get("instances") != 2:
                problems.append(f"`robust studies` lists {rows}")
    row["problems"] = problems
    return row


def _two_starts_tries(tmp_path: Path, offsets: list[float], reference: dict[str, Any], list_after: bool = False) -> None:
    rows = [_guarded(_two_starts, {"offset": off}, tmp_path / f"try{i}", off, reference, list_after)
            for i, off in enumerate(offsets)]
    for row in rows:
        _say(f"two starts {row}")
    bad = [r for r in rows if r["problems"]]
    _say(f"two starts on a new store: tries={len(rows)} failed={len(bad)}")
    assert not bad, "\n\n".join(f"offset {r['offset']} s:\n" + "\n".join(r["problems"]) for r in bad)


def test_two_commands_started_together_on_a_new_store_both_succeed(tmp_path, reference):
    _two_starts_tries(tmp_path, [0.0], reference)


@pytest.mark.slow
def test_two_commands_at_small_offsets_on_a_new_store_both_succeed(tmp_path, reference):
    _two_starts_tries(tmp_path, [0.0, 0.1, 0.2, 0.35, 0.6, 1.0], reference, list_after=True)


# -- 3. two selections of one study ----------------------------------------------------------------------
def _two_selects(base: Path, offset: float, empty_store: Path | None) -> dict[str, Any]:
    """Two `robust select` of one study, the second ``offset`` s after the first; on a copy of the
    template store, or on a new store (``empty_store`` None)."""
    home, logs, folder = base / "home", base / "logs", base / "mlruns"
    home.mkdir(parents=True)
    uri = _copy_store(empty_store, folder) if empty_store is not None else _uri(folder / "mlflow.db")
    a = start(select_args(uri), home, logs, "a")
    sleep_until(a.started, offset)
    b = start(select_args(uri), home, logs, "b")
    a.wait(TIMEOUT), b.wait(TIMEOUT)
    row: dict[str, Any] = {"offset": offset, "store": "copy" if empty_store else "new", "rc": (a.rc, b.rc),
                           "seconds": (round(a.seconds, 1), round(b.seconds, 1)), "outcome": "?", "duplicates": 0}
    problems: list[str] = []
    trained = 0
    winner = None
    if sorted((a.rc, b.rc)) == [0, 2]:
        winner, loser = (a, b) if a.rc == 0 else (b, a)
        row["outcome"] = "one refused"
        lines = [ln for ln in loser.stderr.splitlines() if ln.strip()]
        if len(lines) != 1 or "another process" not in lines[0] or winner.owner not in lines[0]:
            problems.append(f"the refused select must say in one stderr line that another process ({winner.owner}) "
                            f"selects the study; it wrote {len(lines)} lines:\n" + "\n".join(lines[-8:]))
        if loser.stdout.strip():
            problems.append(f"the refused select printed on stdout: {loser.stdout[:300]!r}")
        trained = winner.json()["trained"]
    elif (a.rc, b.rc) == (0, 0):
        ra, rb = a.json(), b.json()
        row["outcome"] = "one after the other"
        if min(ra["trained"], rb["trained"]) != 0 or ra["selected"] != rb["selected"]:
            problems.append(f"both selects ran to the end and both trained ({ra['trained']} and {rb['trained']}): "
                            f"two selections ran at once")
        winner = a if ra["trained"] else b
        trained = ra["trained"] + rb["trained"]
    else:
        problems += [p.describe() for p in (a, b) if p.rc not in (0, 2)] or [
            f"exit codes {a.rc} and {b.rc}: expected one 0 and one 2 (or both 0 one after the other)",
            a.describe(), b.describe()]
    if winner is not None:
        done = winner.json()
        if done["reason"] != "one-left":
            problems.append(f"the selection ended with {done['reason']!r}, not one-left")
        dupes = duplicate_instances(uri)
        row["duplicates"] = sum(n - 1 for n in dupes.values())
        if dupes:
            problems.append(f"instances trained and logged twice (candidate, index, fingerprint): {dupes}")
        n_runs = len(instance_runs(uri))
        row["instance_runs"], row["trained"] = n_runs, trained
        if n_runs != trained:
            problems.append(f"{n_runs} instance runs in MLflow, but the selects say they trained {trained}")
        keys = selection_runs_per_key(uri)
        row["selection_runs"] = keys
        if len(keys) != 1 or set(keys.values()) != {1}:
            problems.append(f"selection runs per selection key: {keys}; expected exactly one run of one key")
        states = [r.info.status for r in all_runs(uri, "tags.`robust.kind` = 'selection'")]
        if states != ["FINISHED"]:
            problems.append(f"selection runs left {states}, expected one FINISHED")
        if _parent_duplicates(uri):
            problems.append(f"duplicate candidate runs: {_parent_duplicates(uri)}")
    row["problems"] = problems
    return row


def _select_tries(tmp_path: Path, tries: list[tuple[float, Path | None]]) -> list[dict[str, Any]]:
    rows = [_guarded(_two_selects, {"offset": off, "store": "copy" if store else "new", "outcome": "error", "duplicates": 0},
                     tmp_path / f"try{i}", off, store) for i, (off, store) in enumerate(tries)]
    for row in rows:
        _say(f"two selects {row}")
    outcomes = collections.Counter(r["outcome"] for r in rows)
    _say(f"two selects: tries={len(rows)} outcomes={dict(outcomes)} duplicates={sum(r['duplicates'] for r in rows)} "
         f"failed={sum(bool(r['problems']) for r in rows)}")
    bad = [r for r in rows if r["problems"]]
    assert not bad, "\n\n".join(f"offset {r['offset']} s ({r['store']} store):\n" + "\n".join(r["problems"]) for r in bad)
    return rows


def test_two_selects_of_one_study_one_runs_the_other_is_refused(tmp_path, empty_store):
    _select_tries(tmp_path, [(0.3, empty_store)])


@pytest.mark.slow
def test_two_selects_at_many_offsets_never_run_together(tmp_path, empty_store):
    tries = [(off, empty_store) for off in (0.0, 0.1, 0.2, 0.3, 0.35, 0.5, 1.0, 2.0)]
    tries += [(0.2, None), (0.0, None)]  # a new store: the selects also race to create it
    _select_tries(tmp_path, tries)
    # the lock is released and the store whole: the same command again reads the finished selection
    home, logs = tmp_path / "try0" / "home", tmp_path / "try0" / "logs"
    again = run(select_args(_uri(tmp_path / "try0" / "mlruns" / "mlflow.db")), home, logs, "again", timeout=TIMEOUT)
    assert again.rc == 0, again.describe()
    assert again.json()["trained"] == 0


# -- 4. assess beside select on the same candidate ---------------------------------------------------------
def _assess_beside_select(base: Path, offset: float, empty_store: Path) -> dict[str, Any]:
    """`robust select` (4 candidates, `small` among them) and, ``offset`` s after it, `robust assess
    --candidate small -n 2` with the same settings, on one store. Two lists of problems: what is in
    MLflow ("problems") and whether what each command says it trained adds up to it ("counts")."""
    home, logs, folder = base / "home", base / "logs", base / "mlruns"
    home.mkdir(parents=True)
    uri = _copy_store(empty_store, folder)
    sel = start(select_args(uri), home, logs, "select")
    sleep_until(sel.started, offset)
    ass = start(assess_args(uri, "small", 2), home, logs, "assess")
    sel.wait(TIMEOUT), ass.wait(TIMEOUT)
    row: dict[str, Any] = {"offset": offset, "rc": (sel.rc, ass.rc),
                           "seconds": (round(sel.seconds, 1), round(ass.seconds, 1)), "duplicates": 0}
    problems = [p.describe() for p in (sel, ass) if p.rc != 0]
    counts: list[str] = []
    if not problems:
        rs, ra = sel.json(), ass.json()
        dupes = duplicate_instances(uri)
        row["duplicates"] = sum(n - 1 for n in dupes.values())
        if dupes:
            problems.append(f"instances logged twice (candidate, index, fingerprint): {dupes}")
        runs = instance_runs(uri)
        fingerprints = {r.data.tags.get("robust.fingerprint") for r in runs}
        if len(fingerprints) != 1:
            problems.append(f"the two commands' settings differ (fingerprints {fingerprints}): the test is void")
        stored = {
            int(r.data.tags["robust.instance_index"]): r.data.metrics.get("test_loss")
            for r in runs if r.data.tags.get("robust.candidate_id") == ra["candidate"]
        }
        if ra["instances"] != 2 or ra["losses"] != [stored.get(0), stored.get(1)]:
            problems.append(f"assess reports {ra['losses']} for small, MLflow holds {stored}")
        if rs["reason"] != "one-left":
            problems.append(f"the selection ended with {rs['reason']!r}")
        if _parent_duplicates(uri):
            problems.append(f"duplicate candidate runs: {_parent_duplicates(uri)}")
        row.update(instance_runs=len(runs), trained=(rs["trained"], ra["trained_now"]))
        if rs["trained"] + ra["trained_now"] != len(runs):
            counts.append(
                f"select says it trained {rs['trained']} instances and assess {ra['trained_now']} (trained_now), "
                f"MLflow holds {len(runs)}: either an instance was trained twice (and logged once), or a command "
                f"counts as trained by itself instances it waited for and read"
            )
    row["problems"], row["counts"] = problems, counts
    return row


def _beside_tries(base: Path, offsets: list[float], empty_store: Path) -> list[dict[str, Any]]:
    rows = [_guarded(_assess_beside_select, {"offset": off, "duplicates": 0, "counts": []}, base / f"try{i}", off, empty_store)
            for i, off in enumerate(offsets)]
    for row in rows:
        _say(f"assess beside select {row}")
    _say(f"assess beside select: tries={len(rows)} duplicates={sum(r['duplicates'] for r in rows)} "
         f"failed={sum(bool(r['problems']) for r in rows)} counts_off={sum(bool(r['counts']) for r in rows)}")
    return rows


def _assert_rows(rows: list[dict[str, Any]], field: str) -> None:
    bad = [r for r in rows if r[field]]
    assert not bad, "\n\n".join(f"assess {r['offset']} s after select:\n" + "\n".join(r[field]) for r in bad)


@pytest.fixture(scope="module")
def beside_quick(tmp_path_factory, empty_store) -> list[dict[str, Any]]:
    return _beside_tries(tmp_path_factory.mktemp("beside"), [0.0], empty_store)


@pytest.fixture(scope="module")
def beside_full(tmp_path_factory, empty_store) -> list[dict[str, Any]]:
    return _beside_tries(tmp_path_factory.mktemp("beside-full"), [0.0, 0.5, 1.0, 2.0, 4.0, 8.0], empty_store)


def test_assess_beside_select_on_the_same_candidate_logs_nothing_twice(beside_quick):
    _assert_rows(beside_quick, "problems")


def test_assess_beside_select_each_reports_only_what_it_trained(beside_quick):
    """Nothing trained twice, as the commands report it: select's `trained` plus assess's
    `trained_now` is the number of instance runs (an instance one waited for is not its own)."""
    _assert_rows(beside_quick, "counts")


@pytest.mark.slow
def test_assess_at_many_offsets_beside_select_logs_nothing_twice(beside_full):
    _assert_rows(beside_full, "problems")


@pytest.mark.slow
def test_assess_at_many_offsets_beside_select_reports_only_what_each_trained(beside_full):
    _assert_rows(beside_full, "counts")


# -- 5. bad tracking URIs ------------------------------------------------------------------------------------
def refusal_limit() -> float:
    """5 s, scaled by the machine's load per core where it is above 1 (shared CI machines);
    ROBUST_TEST_REFUSAL_LIMIT overrides it."""
    if os.environ.get("ROBUST_TEST_REFUSAL_LIMIT"):
        return float(os.environ["ROBUST_TEST_REFUSAL_LIMIT"])
    return 5.0 * max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


def _make_read_only(folder: Path, request: pytest.FixtureRequest) -> None:
    why = make_read_only(folder)
    request.addfinalizer(lambda: undo_read_only(folder))
    if why is not None:
        pytest.skip(f"no read-only folder for this user: {why}")


def _not_mlflow(path: Path) -> list[tuple[Any, ...]]:
    """A sqlite file of someone else's: one table, one row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("create table measurements (id integer primary key, value real)")
        db.execute("insert into measurements (value) values (1.5)")
    return _tables(path)


def _tables(path: Path) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return sorted(db.execute("select type, name, sql from sqlite_master").fetchall()) + db.execute(
            "select * from measurements").fetchall()
    finally:
        db.close()


BAD_URIS = ["in-memory", "in-memory-path", "directory", "read-only-folder", "read-only-parent", "not-mlflow",
            "store-in-read-only-folder"]


def _bad_uri(case: str, tmp_path: Path, request: pytest.FixtureRequest, empty_store: Path) -> tuple[str, str]:
    """The URI of ``case``, made in ``tmp_path``, and what its error line must name."""
    if case == "in-memory":
        return "sqlite://", "sqlite://"
    if case == "in-memory-path":
        return "sqlite:///:memory:", ":memory:"
    if case == "directory":
        (tmp_path / "store.db").mkdir()
        return _uri(tmp_path / "store.db"), str(tmp_path / "store.db")
    if case == "read-only-folder":
        (tmp_path / "ro").mkdir()
        _make_read_only(tmp_path / "ro", request)
        return _uri(tmp_path / "ro" / "mlflow.db"), str(tmp_path / "ro")
    if case == "read-only-parent":  # the store's folder does not exist, and cannot be made
        (tmp_path / "ro").mkdir()
        _make_read_only(tmp_path / "ro", request)
        return _uri(tmp_path / "ro" / "mlruns" / "mlflow.db"), str(tmp_path / "ro")
    if case == "not-mlflow":
        _not_mlflow(tmp_path / "theirs" / "data.db")
        return _uri(tmp_path / "theirs" / "data.db"), str(tmp_path / "theirs" / "data.db")
    assert case == "store-in-read-only-folder"  # an MLflow store that works, in a folder this user cannot write
    _copy_store(empty_store, tmp_path / "ro-store")
    _make_read_only(tmp_path / "ro-store", request)
    return _uri(tmp_path / "ro-store" / "mlflow.db"), str(tmp_path / "ro-store")


@pytest.mark.parametrize(
    ("command", "case"),
    [("assess", case) for case in BAD_URIS] + [("select", "in-memory"), ("select", "not-mlflow"), ("select", "read-only-parent")],
)
def test_a_bad_tracking_uri_is_refused_at_once_and_nothing_is_created(command, case, tmp_path, request, empty_store):
    home, logs = tmp_path / "home", tmp_path / "logs"
    home.mkdir()
    uri, named = _bad_uri(case, tmp_path, request, empty_store)
    theirs = tmp_path / "theirs" / "data.db"
    tables = _tables(theirs) if theirs.exists() else None
    before = tree(tmp_path, skip=("logs", "home/cache"))
    limit = refusal_limit()
    args = assess_args(uri) if command == "assess" else select_args(uri)
    proc = run(args, home, logs, "refused", timeout=max(20.0, 2 * limit))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.rc == 2, f"{case}: {uri} not refused with exit 2: {proc.describe()}"
    assert len(lines) == 1, f"{case}: expected one line on stderr, got {len(lines)}:\n" + "\n".join(lines[:40])
    assert named in lines[0], f"{case}: the error line does not name {named!r}: {lines[0]}"
    assert proc.seconds < limit, f"{case}: refused after {proc.seconds:.1f} s (limit {limit:.1f} s): {lines[0]}"
    assert not proc.stdout.strip(), f"{case}: a refused command printed on stdout: {proc.stdout[:300]!r}"
    after = tree(tmp_path, skip=("logs", "home/cache"))
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"{case}: the refused command created or changed {changed}"
    if tables is not None:
        assert _tables(theirs) == tables, f"{case}: the other program's database changed"
    _say(f"bad uri {command} {case}: exit {proc.rc} after {proc.seconds:.1f} s (limit {limit:.1f} s): {lines[0]}")
