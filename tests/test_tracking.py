"""Writing instances to MLflow: fast, and a finished instance is never lost nor half-written.

Runs go to a sqlite store as rows in one transaction per batch from a background thread, each
journaled first (robustcli/tracking/writer.py). These tests use real MLflow stores (the
``workdir`` fixture's pre-migrated sqlite store).
"""

from __future__ import annotations

import json
import math
import os
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


def log(store: MlflowStore, exp: str, parent: str, index: int, failed: bool = False) -> str:
    return store.log_instance(
        exp,
        parent,
        candidate=FakeCandidate(),
        result=result(index, failed),
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
    return store, exp, store.candidate_run(exp, "synthetic", FakeCandidate())


def journals() -> list[Path]:
    return sorted((Path("mlruns") / JOURNAL_DIR).glob("*"))


def session(study: str = "track"):
    from robustcli.execution.session import StudySession

    return StudySession(StudySettings(task="synthetic", study=study, training=TRAINING))


def test_a_run_written_as_rows_reads_back_like_one_written_by_the_client(workdir, monkeypatch):
    fast = MlflowStore(uri())
    exp = fast.ensure_experiment("track")
    parent = fast.candidate_run(exp, "synthetic", FakeCandidate())
    assert fast._sql is not None  # the sqlite store takes the fast way
    runs = [log(fast, exp, parent, 0), log(fast, exp, parent, 1, failed=True)]
    fast.close()
    monkeypatch.setenv("ROBUST_TRACKING_WRITE", "sync")
    slow = MlflowStore(uri())
    runs += [log(slow, exp, parent, 0), log(slow, exp, parent, 1, failed=True)]
    assert slow._sql is None
    assert slow.candidate_run(exp, "synthetic", FakeCandidate()) == parent  # found, not created again
    got = [slow.get_run(r) for r in runs]
    for a, b in ((got[0], got[2]), (got[1], got[3])):
        assert (a.info.status, a.info.run_name, a.info.user_id) == (b.info.status, b.info.run_name, b.info.user_id)
        assert a.data.tags == b.data.tags and a.data.params == b.data.params and a.data.metrics == b.data.metrics
        for key in ("train_loss", "epoch_test_loss"):
            hist = [[(m.step, m.value) for m in slow.client.get_metric_history(r.info.run_id, key)] for r in (a, b)]
            assert hist[0] == hist[1] and len(hist[0]) >= 19
    assert [r.info.status for r in got] == ["FINISHED", "FAILED"] * 2
    parent_run = slow.get_run(parent)
    assert parent_run.data.params == {"hidden": "16", "lr": "0.01"} and parent_run.info.status == "FINISHED"
    assert parent_run.data.tags["robust.kind"] == "candidate" and parent_run.info.run_name == "fake"
    found = slow.instances(exp, "fp")[FakeCandidate.id]
    assert sorted(found) == [0, 1] and math.isnan(found[1].loss) and found[0].loss == pytest.approx(0.05)
    assert journals() == []  # closed: the journal is gone


def test_reads_in_the_same_process_see_every_run_handed_over(workdir):
    store, exp, parent = open_track()
    for i in range(5):
        log(store, exp, parent, i)
    # no explicit flush: a read waits for the queued writes
    assert sorted(store.instances(exp, "fp")[FakeCandidate.id]) == list(range(5))
    store.close()


def test_a_failed_transaction_leaves_nothing_and_the_journal_keeps_the_runs(workdir, monkeypatch):
    from robustcli.tracking import writer as writer_module

    store, exp, parent = open_track()
    store.flush()
    real_write = writer_module.SqlRunWriter.write

    def half_write(self, batch):
        from sqlalchemy import insert

        with self.engine.begin() as conn:  # the run row is inserted, then the transaction fails
            conn.execute(insert(self.tables["runs"]), [{"run_uuid": batch[0]["run_uuid"], "status": "FINISHED",
                                                        "experiment_id": int(exp), "lifecycle_stage": "active"}])
            raise OSError("disk full")

    monkeypatch.setattr(writer_module.SqlRunWriter, "write", half_write)
    log(store, exp, parent, 0)
    with pytest.raises(StoreError, match="kept in"):
        store.flush()
    monkeypatch.setattr(writer_module.SqlRunWriter, "write", real_write)
    # nothing of it is in the store, finished or not
    from mlflow.tracking import MlflowClient

    runs = MlflowClient(uri()).search_runs([exp], "tags.`robust.kind` = 'instance'")
    assert runs == []
    assert len(journals()) == 1 and journals()[0].stat().st_size > 0
    # this process is alive: its journal is not someone else's to replay
    assert MlflowStore(uri()).instances(exp, "fp") == {}
    # once the process is gone (its journal renamed as a dead pid's), the next store writes it
    dead = journals()[0].with_name(f"{socket.gethostname()}-{_dead_pid()}-deadbeef.jsonl")
    journals()[0].rename(dead)
    nxt = MlflowStore(uri())
    assert sorted(nxt.instances(exp, "fp")[FakeCandidate.id]) == [0] and nxt.replayed == 1
    assert journals() == []


def test_the_client_way_deletes_a_half_written_run(workdir, monkeypatch):
    monkeypatch.setenv("ROBUST_TRACKING_WRITE", "sync")
    store, exp, parent = open_track()

    def broken(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(store.client, "log_batch", broken)
    with pytest.raises(KeyboardInterrupt):
        log(store, exp, parent, 0)
    assert store.instances(exp, "fp") == {}
    assert all(r.info.lifecycle_stage == "deleted" for r in store.client.search_runs([exp], "", run_view_type=3)
               if r.data.tags.get("robust.kind") == "instance")


def test_replay_skips_runs_already_written_and_a_line_cut_short(workdir):
    store, exp, parent = open_track()
    store.flush()
    rows = _rows_of(exp, parent, [0, 1, 2])
    store._sql.write(rows[:2])  # committed, then the process died before emptying its journal...
    lines = [json.dumps(r) for r in rows]
    dead = Path("mlruns") / JOURNAL_DIR / f"{socket.gethostname()}-{_dead_pid()}-cafe.jsonl"
    dead.parent.mkdir(exist_ok=True)
    # ... and while writing a fourth line
    dead.write_text("\n".join(lines) + "\n" + lines[0][: len(lines[0]) // 2])
    store.close()
    again = MlflowStore(uri())
    known = again.instances(exp, "fp")[FakeCandidate.id]
    assert sorted(known) == [0, 1, 2] and again.replayed == 3
    assert len(again.search(exp, "tags.`robust.kind` = 'instance'")) == 3  # no duplicate of 0 or 1
    assert not dead.exists()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times are read from /proc (Linux)")
def test_a_journal_whose_pid_was_reused_by_a_live_process_is_replayed(workdir):
    store, exp, parent = open_track()
    store.close()
    # our own pid, alive, but started at another time: the journal's owner is dead
    reused = Path("mlruns") / JOURNAL_DIR / f"{socket.gethostname()}-{os.getpid()}-1.beef.jsonl"
    reused.parent.mkdir(exist_ok=True)
    reused.write_text(json.dumps(_rows_of(exp, parent, [0])[0]) + "\n")
    # and one of this very process (its pid and start): not replayed
    from robustcli.tracking.processes import process_start

    ours = reused.with_name(f"{socket.gethostname()}-{os.getpid()}-{process_start(os.getpid())}.f00d.jsonl")
    ours.write_text(json.dumps(_rows_of(exp, parent, [1])[0]) + "\n")
    again = MlflowStore(uri())
    assert sorted(again.instances(exp, "fp")[FakeCandidate.id]) == [0] and again.replayed == 1
    assert not reused.exists() and ours.exists()


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


def test_runs_are_refused_into_an_experiment_deleted_meanwhile(workdir):
    from mlflow.tracking import MlflowClient

    store, exp, parent = open_track()
    log(store, exp, parent, 0)
    store.flush()
    client = MlflowClient(uri())
    client.delete_experiment(exp)  # e.g. from the MLflow UI, while the study runs
    log(store, exp, parent, 1)
    with pytest.raises(StoreError, match="is deleted: restore it"):
        store.flush()
    runs = client.search_runs([exp], "tags.`robust.kind` = 'instance'", run_view_type=3)
    assert [r.data.tags["robust.instance_index"] for r in runs] == ["0"]
    # restored: the run kept in the journal is written by the next command, once this one is gone
    client.restore_experiment(exp)
    kept = journals()[0]
    kept.rename(kept.with_name(f"{socket.gethostname()}-{_dead_pid()}-deadbeef.jsonl"))
    assert sorted(MlflowStore(uri()).instances(exp, "fp")[FakeCandidate.id]) == [0, 1]


def _rows_of(exp, parent, indices):
    from robustcli.tracking.writer import RunRows

    out = []
    for i in indices:
        r = RunRows(experiment_id=exp, artifact_location="file:///tmp/a", name=f"fake/{i}", status="FINISHED",
                    tags={"robust.kind": "instance", "robust.candidate_id": FakeCandidate.id, "robust.fingerprint": "fp",
                          "robust.instance_index": str(i), "mlflow.parentRunId": parent},
                    params={"init_seed": "1", "data_seed": "2"}, metrics=[("test_loss", 0.1, 1, 0)])
        out.append(r)
    return out


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_an_instance_finished_before_a_crash_is_not_lost_and_resume_trains_only_the_rest(workdir):
    """A process killed (no finally, no atexit) right after its first instance was handed over,
    while the writer could not commit anything: the next session finds it; resuming trains the rest."""
    script = textwrap.dedent(
        f"""
        import os, sys, threading
        sys.path.insert(0, {str(ROOT)!r})
        from robustcli.tracking import writer
        blocked = threading.Event()
        writer.SqlRunWriter.write = lambda self, batch: blocked.wait()  # the commit never happens
        from robustcli.config import EarlyStoppingSettings, StudySettings, TrainingSettings
        from robustcli.execution.session import StudySession
        training = TrainingSettings.model_validate_json({TRAINING.model_dump_json()!r})
        s = StudySession(StudySettings(task="synthetic", study="crash", training=training))
        small = s.candidate("small")
        for cand, rec in s.train([(small, i) for i in range(3)]):
            print(rec.index, rec.loss, rec.run_id, flush=True)
            os._exit(9)  # as if killed: the run was only journaled
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 9, out.stderr
    index, loss, run_id = out.stdout.split()
    assert len(journals()) == 1
    s = session("crash")
    small = s.candidate("small")
    known = s.known([small.id])[small.id]
    assert list(known) == [int(index)] and known[int(index)].run_id == run_id
    assert known[int(index)].loss == pytest.approx(float(loss)) and known[int(index)].status == "finished"
    assert s.store.replayed == 2 and journals() == []  # the candidate's parent run and the instance
    assert s.store.get_run(run_id).data.tags["mlflow.parentRunId"] == s.parent_run(small)
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


def test_the_writer_batches_a_burst_into_few_transactions(workdir):
    store, exp, parent = open_track()
    for i in range(20):
        log(store, exp, parent, i)
    store.flush()
    stats = store.writer_stats
    assert stats["runs"] == 21 and stats["transactions"] < 10
    store.close()


def test_why_an_instance_trained_plainly_is_a_tag(workdir):
    store, exp, parent = open_track()
    res = result(0)
    res.engine, res.stack, res.plain_reason = "plain", (), "the task schedules its learning rate (lr_factor)"
    run_id = store.log_instance(exp, parent, candidate=FakeCandidate(), result=res, fingerprint="fp",
                                settings_json="{}", provenance={})
    store.flush()
    assert store.get_run(run_id).data.tags["robust.plain_reason"].startswith("the task schedules")
