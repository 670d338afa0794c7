"""Writing instances to MLflow: through its public client, and a finished instance is never lost nor half-written.

Runs are written by a background thread, each journaled first (robustcli/tracking/writer.py).
These tests use real MLflow stores (the ``workdir`` fixture's pre-migrated sqlite store) and
real processes where a process must die.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from robustcli.config import EarlyStoppingSettings, StudySettings, TrainingSettings
from robustcli.errors import StoreError
from robustcli.tracking.mlflow_store import MlflowStore
from robustcli.tracking.writer import JOURNAL_DIR
from robustcli.training.instance import InstanceResult, InstanceSpec

ROOT = Path(__file__).resolve().parents[1]
TRAINING = TrainingSettings(train_size=128, early_stopping=EarlyStoppingSettings(min_epochs=8, window=4, max_epochs=12))


class FakeCandidate:
    id = "c0ffee"
    name = "fake"
    params = {"lr": 0.01, "hidden": 16}

    def to_json(self) -> str:
        return json.dumps(self.params, sort_keys=True)


def result(index: int, failed: bool = False) -> InstanceResult:
    curve = [1.0 / (e + 1) for e in range(20)]
    return InstanceResult(
        InstanceSpec(index, 100 + index, 200 + index, 64, None),
        "failed" if failed else "finished",
        "diverged" if failed else "converged",
        math.nan if failed else 0.05 + index / 1000,
        20,
        0.5,
        False,
        curve,
        [c * 2 for c in curve[:-1]] + [math.nan],
        failure="boom" if failed else None,
        engine="stacked",
        stack=(0, 1),
    )


END = 1_700_000_000_000  # an instance's end time (ms); it trained result().seconds before


def log(store: MlflowStore, exp: str, parent: str, index: int, failed: bool = False) -> str:
    """Hand one instance to the store; the key of its run (``store.run_id`` gives its id)."""
    return store.log_instance(
        exp,
        spec_of(),
        candidate=FakeCandidate(),
        name=f"fake/{index}",
        result=result(index, failed),
        end_time=END + index,
        fingerprint="fp",
        settings_json="{}",
        provenance={"robust.host": "test"},
    )


def uri() -> str:
    return f"sqlite:///{Path('mlruns/mlflow.db').resolve()}"


def open_track() -> tuple[MlflowStore, str, str]:
    """A store on the workdir's sqlite file, its experiment "track" and FakeCandidate's parent run."""
    store = MlflowStore(uri())
    exp = store.ensure_experiment("track")
    return store, exp, parent_of(store, exp)


def spec_of(fingerprint: str = "fp") -> dict:
    return MlflowStore.candidate_spec(task="synthetic", candidate=FakeCandidate(), fingerprint=fingerprint, name="fake",
                                      settings_params={"train_size": 64}, start_time=END - 500)


def parent_of(store: MlflowStore, exp: str, fingerprint: str = "fp") -> str:
    return store.candidate_run(exp, spec_of(fingerprint))


def journals() -> list[Path]:
    return sorted((Path("mlruns") / JOURNAL_DIR).glob("*"))


def session(study: str = "track"):
    from robustcli.session import StudySession

    return StudySession(StudySettings(task="synthetic", study=study, training=TRAINING))


def in_another_process(code: str) -> str:
    """Run ``code`` (with ``store`` = a fresh MlflowStore on the workdir's store) in a new process: its stdout."""
    script = f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom robustcli.tracking.mlflow_store import MlflowStore\n" \
             f"store = MlflowStore({uri()!r})\n" + textwrap.dedent(code)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_runs_read_back_whole_with_true_times_and_mlflows_own_tags(workdir):
    store, exp, parent = open_track()
    keys = [log(store, exp, parent, 0), log(store, exp, parent, 1, failed=True)]
    store.close()
    got = [store.get_run(store.run_id(k)) for k in keys]
    assert [r.info.status for r in got] == ["FINISHED", "FAILED"]
    for i, run in enumerate(got):
        info, tags = run.info, run.data.tags
        assert info.run_name == f"fake/{i}" and tags["mlflow.parentRunId"] == parent
        assert (info.start_time, info.end_time) == (END + i - 500, END + i)  # trained 0.5 s
        assert tags["mlflow.user"] and tags["mlflow.source.name"] and tags["mlflow.source.type"] == "LOCAL"
        assert run.data.params["init_seed"] == str(100 + i) and tags["robust.stack"] == "0,1"
        hist = store.client.get_metric_history(info.run_id, "train_loss")
        assert [m.step for m in hist] == list(range(1, 21))
        times = [m.timestamp for m in hist]
        assert times == sorted(times) and len(set(times)) == 20 and info.start_time < times[0] and times[-1] == info.end_time
    assert got[0].data.metrics["test_loss"] == pytest.approx(0.05) and "test_loss" not in got[1].data.metrics
    assert got[1].data.tags["robust.failure"] == "boom"
    parent_run = store.get_run(parent)
    assert parent_run.data.params == {"hidden": "16", "lr": "0.01", "train_size": "64"}
    assert parent_run.data.tags["robust.kind"] == "candidate" and parent_run.info.run_name == "fake"
    found = store.instances(exp, "fp")[FakeCandidate.id]
    assert sorted(found) == [0, 1] and math.isnan(found[1].loss) and found[0].loss == pytest.approx(0.05)
    assert journals() == []  # closed: the journal is gone
    exp_tags = store.client.get_experiment(exp).tags
    assert exp_tags["mlflow.experimentKind"] == "custom_model_development"  # MLflow 3's training-runs view


def test_reads_in_the_same_process_see_every_run_handed_over(workdir):
    store, exp, parent = open_track()
    for i in range(5):
        log(store, exp, parent, i)
    # no explicit flush: a read waits for the queued writes
    assert sorted(store.instances(exp, "fp")[FakeCandidate.id]) == list(range(5))
    store.close()


def test_a_run_that_fails_half_way_is_not_left_and_its_journal_is_written_by_the_next_process(workdir, monkeypatch):
    from mlflow.tracking import MlflowClient

    store, exp, parent = open_track()
    client = store.client

    def server_gone(*a, **k):
        raise ConnectionError("server gone")

    with monkeypatch.context() as patch:
        patch.setattr(client, "log_batch", server_gone)  # the run is created, then its data cannot be sent
        log(store, exp, parent, 0)
        with pytest.raises(StoreError, match="kept in"):
            store.flush()
    all_runs = MlflowClient(uri()).search_runs([exp], "tags.`robust.kind` = 'instance'", run_view_type=3)
    assert all(r.info.lifecycle_stage == "deleted" for r in all_runs)  # the half-written run was deleted
    assert len(journals()) == 1 and journals()[0].stat().st_size > 0
    # this process is alive: its journal is not another store's to replay
    assert MlflowStore(uri()).instances(exp, "fp") == {}
    # the next process writes it
    assert in_another_process("store.connect(); print(store.replayed)").strip() == "1"
    assert sorted(MlflowStore(uri()).instances(exp, "fp")[FakeCandidate.id]) == [0]
    assert journals() == []


def _journal(name: str, runs: list[dict]) -> Path:
    path = Path("mlruns") / JOURNAL_DIR / name
    path.parent.mkdir(exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in runs))
    return path


def _records(exp: str, parent: str, indices) -> list[dict]:
    from robustcli.tracking.writer import run_record

    return [
        run_record(experiment_id=exp, name=f"fake/{i}", status="FINISHED",
                   tags={"robust.kind": "instance", "robust.candidate_id": FakeCandidate.id, "robust.fingerprint": "fp",
                         "robust.instance_index": str(i), "robust.status": "finished", "mlflow.parentRunId": parent},
                   params={"init_seed": "1", "data_seed": "2"}, metrics=[("test_loss", 0.1 + i, END, 0)],
                   start_time=END - 10, end_time=END)
        for i in indices
    ]


def test_replay_skips_runs_written_rewrites_a_half_written_one_and_ignores_a_line_cut_short(workdir):
    from robustcli.tracking.writer import ClientRunWriter

    store, exp, parent = open_track()
    runs = _records(exp, parent, [0, 1, 2])
    # a dead process of another host (a container restarted under a new name) wrote 0 and 1 whole,
    # created 2 and died before its data; then died while journaling a fourth line
    journal_id = "old-container-4242-1.cafe"
    written = ClientRunWriter(store.client, journal_id)
    written.write(runs[0])
    written.write(runs[1])
    half = store.client.create_run(exp, tags={"robust.journal": journal_id, "robust.write_key": runs[2]["write_key"],
                                              "robust.kind": "instance"})
    lines = [json.dumps(r) for r in runs]
    path = _journal(f"{journal_id}.jsonl", [])
    path.write_text("\n".join(lines) + "\n" + lines[0][: len(lines[0]) // 2])
    again = MlflowStore(uri())
    known = again.instances(exp, "fp")[FakeCandidate.id]
    assert sorted(known) == [0, 1, 2] and again.replayed == 1
    assert len(again.search(exp, "tags.`robust.kind` = 'instance'")) == 3  # no duplicate of 0 or 1
    assert again.client.get_run(half.info.run_id).info.lifecycle_stage == "deleted"
    assert not path.exists()


def test_a_journal_is_replayed_only_once_its_writer_is_dead_whatever_its_name_says(workdir):
    store, exp, parent = open_track()
    store.close()
    path = _journal(f"{socket.gethostname()}-{os.getpid()}-x.beef.jsonl", _records(exp, parent, [0]))
    # a live process holds the journal's record lock, as a writer does
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDWR)\n"
         "fcntl.lockf(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(60)", str(path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert MlflowStore(uri()).instances(exp, "fp") == {} and path.exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    again = MlflowStore(uri())
    assert sorted(again.instances(exp, "fp")[FakeCandidate.id]) == [0] and again.replayed == 1


def test_owners_and_their_start_times():
    from robustcli.tracking.processes import owner_alive, parse_owner, process_start, this_owner

    host, pid, start = parse_owner(this_owner())
    assert (host, pid, start) == (socket.gethostname(), str(os.getpid()), None)
    assert owner_alive(host, pid, process_start(os.getpid()))
    if process_start(os.getpid()) is not None:  # Linux: a pid reused by a later process is told apart
        assert not owner_alive(host, pid, "1")
    assert parse_owner("node-1:42:777") == ("node-1", "42", "777")
    assert owner_alive(socket.gethostname(), os.getpid())
    assert not owner_alive(socket.gethostname(), _dead_pid())
    assert owner_alive("another-host", 1, "5")  # another host decides for itself


def test_runs_are_refused_into_an_experiment_deleted_meanwhile_and_wait_for_its_restore(workdir):
    from mlflow.tracking import MlflowClient

    store, exp, parent = open_track()
    log(store, exp, parent, 0)
    store.flush()
    client = MlflowClient(uri())
    client.delete_experiment(exp)  # e.g. from the MLflow UI, while the study runs
    log(store, exp, parent, 1)
    with pytest.raises(StoreError, match="kept in"):
        store.flush()
    runs = client.search_runs([exp], "tags.`robust.kind` = 'instance'", run_view_type=3)
    assert [r.data.tags["robust.instance_index"] for r in runs] == ["0"]
    assert in_another_process("store.connect(); print(store.replayed)").strip() == "0"  # still deleted: the journal waits
    assert len(journals()) == 1
    client.restore_experiment(exp)
    assert in_another_process("store.connect(); print(store.replayed)").strip() == "1"
    assert sorted(MlflowStore(uri()).instances(exp, "fp")[FakeCandidate.id]) == [0, 1]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_an_instance_finished_before_a_crash_is_not_lost_and_resume_trains_only_the_rest(workdir):
    """A process killed (no finally, no atexit) right after its first instance was handed over,
    while the writer could not write anything: the next session finds it; resuming trains the rest."""
    script = textwrap.dedent(
        f"""
        import os, sys, threading
        sys.path.insert(0, {str(ROOT)!r})
        from robustcli.tracking import writer
        blocked = threading.Event()
        writer.BackgroundWriter._loop = lambda self: blocked.wait()  # the write never happens
        from robustcli.config import EarlyStoppingSettings, StudySettings, TrainingSettings
        from robustcli.session import StudySession
        training = TrainingSettings.model_validate_json({TRAINING.model_dump_json()!r})
        s = StudySession(StudySettings(task="synthetic", study="crash", training=training))
        small = s.candidate("small")
        for cand, rec in s.train([(small, i) for i in range(3)]):
            print(rec.index, rec.loss, flush=True)
            os._exit(9)  # as if killed: the run was only journaled
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 9, out.stderr
    index, loss = out.stdout.split()
    assert len(journals()) == 1
    s = session("crash")
    small = s.candidate("small")
    known = s.known([small.id])[small.id]
    assert list(known) == [int(index)]
    assert known[int(index)].loss == pytest.approx(float(loss)) and known[int(index)].status == "finished"
    assert s.store.replayed == 1 and journals() == []
    assert s.store.get_run(known[int(index)].run_id).data.tags["mlflow.parentRunId"] == s.candidate_run(small)
    # resume: only the missing instances are trained, and all are there afterwards
    missing = [i for i in range(3) if i not in known]
    trained = [rec.index for _, rec in s.train([(small, i) for i in missing])]
    assert sorted(trained) == missing and len(missing) == 2
    assert sorted(session("crash").known([small.id])[small.id]) == [0, 1, 2]


def test_an_interrupted_train_writes_what_it_yielded(workdir):
    """Ctrl-C in the consumer: every instance yielded before it is in MLflow when train() unwinds."""
    s = session("interrupt")
    small = s.candidate("small")
    seen = []
    with pytest.raises(KeyboardInterrupt):
        for _, rec in s.train([(small, i) for i in range(4)]):
            seen.append(rec.index)
            if len(seen) == 2:
                raise KeyboardInterrupt
    from mlflow.tracking import MlflowClient

    exp = MlflowClient(uri()).get_experiment_by_name("interrupt").experiment_id
    runs = MlflowClient(uri()).search_runs([exp], "tags.`robust.kind` = 'instance'")
    assert sorted(int(r.data.tags["robust.instance_index"]) for r in runs) == sorted(seen)
    assert all(r.info.status == "FINISHED" for r in runs)
    again = session("interrupt").known([small.id])[small.id]
    assert sorted(again) == sorted(seen)


def test_why_an_instance_trained_plainly_is_a_tag(workdir):
    store, exp, parent = open_track()
    res = result(0)
    res.engine, res.stack, res.plain_reason = "plain", (), "the task schedules its learning rate (lr_factor)"
    key = store.log_instance(exp, spec_of(), candidate=FakeCandidate(), name="fake/0", result=res, end_time=END,
                             fingerprint="fp", settings_json="{}", provenance={})
    assert store.get_run(store.run_id(key)).data.tags["robust.plain_reason"].startswith("the task schedules")


def test_a_candidates_statistics_are_metrics_that_settle_as_instances_accrue(workdir):
    """The candidate's run: statistics of exactly its instances, at step = finished instances,
    sortable by MLflow's own search in the tool's ranking; another setting is another run."""
    from mlflow.tracking import MlflowClient

    s = session("stats")
    small, wide = s.candidate("small"), s.candidate("wide")
    list(s.train([(small, 0), (small, 1), (wide, 0), (wide, 1)]))
    list(s.train([(small, 2)]))
    client = MlflowClient(uri())
    exp = client.get_experiment_by_name("stats").experiment_id
    parent = s.candidate_run(small)
    steps = [(m.step, m.value) for m in client.get_metric_history(parent, "instances")]
    assert steps == [(2, 2.0), (3, 3.0)]
    losses = [r.loss for r in s.known([small.id])[small.id].values()]
    metrics = client.get_run(parent).data.metrics
    assert metrics["mean"] == pytest.approx(sum(losses) / 3) and metrics["min"] == pytest.approx(min(losses))
    assert metrics["failed"] == 0 and {"median", "max", "std", "iqr", "q90_q10"} <= set(metrics)
    ranked = client.search_runs([exp], "tags.`robust.kind` = 'candidate'", order_by=["metrics.mean ASC"])
    means = {c: sum(r.loss for r in recs.values()) / len(recs) for c, recs in s.known().items()}
    assert [r.data.tags["robust.candidate_id"] for r in ranked] == sorted(means, key=means.get)
    assert {r.info.run_name for r in ranked} == {"small [train 128]", "wide [train 128]"}  # the setting beside the name
    # another train size: its own candidate run, whose statistics cover its one instance only
    other = StudySession_with(study="stats", train_size=64)
    list(other.train([(other.candidate("small"), 0)]))
    runs = client.search_runs([exp], f"tags.`robust.kind` = 'candidate' and tags.`robust.candidate_id` = '{small.id}'")
    assert sorted((r.data.params["train_size"], r.data.metrics["instances"]) for r in runs) == [("128", 3.0), ("64", 1.0)]
    assert sorted(r.info.run_name for r in runs) == ["small [train 128]", "small [train 64]"]  # told apart by name
    parent_run = client.get_run(parent)
    children = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent}'")
    assert len(children) == 3
    assert parent_run.info.start_time == min(r.info.start_time for r in children)
    assert parent_run.info.end_time >= max(r.info.end_time for r in children)


def StudySession_with(study: str, train_size: int):  # noqa: N802 - reads as the session it makes
    from robustcli.session import StudySession

    training = TRAINING.model_copy(update={"train_size": train_size})
    return StudySession(StudySettings(task="synthetic", study=study, training=training))


def test_a_stacked_instance_runs_from_its_stacks_start_to_its_own_stop(workdir):
    """An instance trained in a stack reports only its share of the stack's time as ``seconds``;
    its run still spans the stack's whole training up to its own stop."""
    from mlflow.tracking import MlflowClient

    s = session("times")
    small = s.candidate("small")
    list(s.train([(small, i) for i in range(3)]))
    client = MlflowClient(uri())
    exp = client.get_experiment_by_name("times").experiment_id
    runs = client.search_runs([exp], "tags.`robust.kind` = 'instance'")
    assert {r.data.tags["robust.engine"] for r in runs} == {"stacked"}
    assert len({r.info.start_time for r in runs}) == 1  # one stack, one start
    for run in runs:
        span = run.info.end_time - run.info.start_time
        assert span >= run.data.metrics["seconds"] * 1000 * 0.99  # at least its share, in fact the stack's time
