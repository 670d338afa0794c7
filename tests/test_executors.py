"""The executors that spread instances over processes (a local pool) and over a Ray cluster.

They train the very units the in-process engines would (the same stacks), so on the CPU their
results are bitwise those of the in-process engines; every job comes back exactly once, and a
diverging instance comes back as failed.
"""

from __future__ import annotations

import math
import sys
from collections import Counter

import pytest

from robustcli.builtin.synthetic import SyntheticTask
from robustcli.config import EarlyStoppingSettings, TrainingSettings
from robustcli.errors import InputError
from robustcli.execution.inprocess import InProcessExecutor
from robustcli.execution.pool import LocalPoolExecutor, plan_units
from robustcli.execution.factory import make_executor
from robustcli.execution.stacked import StackedExecutor
from robustcli.training.instance import InstanceSpec
from robustcli.training.seeds import derive_seeds

SETTINGS = TrainingSettings(train_size=256, early_stopping=EarlyStoppingSettings(min_epochs=8, window=4, max_epochs=30))


@pytest.fixture(scope="module")
def study():
    task = SyntheticTask()
    return task, task.load_data(), task.search_space()


def make_jobs(space, names=("small", "wide", "unstable"), count=4, start=0):
    jobs = []
    for name in names:
        candidate = space.get(name)
        for index in range(start, start + count):
            seeds = derive_seeds(0, index, None)
            jobs.append((candidate, InstanceSpec(index, seeds.init_seed, seeds.data_seed, 256, None)))
    return jobs


def by_key(pairs):
    out = {}
    for candidate, result in pairs:
        key = (candidate.id, result.spec.index)
        assert key not in out, f"{key} came back twice"
        out[key] = result
    return out


def assert_same(got, ref):
    assert got.keys() == ref.keys()
    for key, r in ref.items():
        g = got[key]
        assert (g.status, g.stop_reason, g.epochs, g.engine, g.stack) == (r.status, r.stop_reason, r.epochs, r.engine, r.stack), key
        if r.failed:
            assert math.isnan(g.test_loss)
        else:
            assert g.test_loss == r.test_loss, key  # bitwise
            assert g.train_curve == r.train_curve, key


@pytest.fixture(scope="module")
def plain_pool():
    with LocalPoolExecutor(workers=2, engine="plain") as pool:
        yield pool


@pytest.fixture(scope="module")
def stacked_pool():
    with LocalPoolExecutor(workers=2, engine="stacked") as pool:
        yield pool


def test_local_pool_plain_equals_in_process(study, plain_pool):
    task, data, space = study
    jobs = make_jobs(space, count=3)
    got = by_key(plain_pool.run(task, data, jobs, SETTINGS))
    ref = by_key(InProcessExecutor().run(task, data, jobs, SETTINGS))
    assert len(got) == len(jobs)
    assert_same(got, ref)
    unstable = space.get("unstable").id
    failed = [r for (cid, _), r in got.items() if cid == unstable]
    assert failed and all(r.failed and r.stop_reason == "diverged" and r.failure for r in failed)
    # the pool stays up for the next round of the same study
    again = by_key(plain_pool.run(task, data, jobs[:2], SETTINGS))
    assert_same(again, {k: ref[k] for k in again})


def test_local_pool_stacked_equals_in_process_stacks(study, stacked_pool):
    task, data, space = study
    jobs = make_jobs(space, count=5)
    got = by_key(stacked_pool.run(task, data, jobs, SETTINGS))
    # enough stacks for both workers: the pool trains the in-process engine's very stacks
    assert Counter(len(u[2]) for u in stacked_pool.units) == Counter({5: 3})
    ref = by_key(StackedExecutor().run(task, data, jobs, SETTINGS))
    assert len(got) == len(jobs)
    assert_same(got, ref)
    assert all(r.failed for (cid, _), r in got.items() if cid == space.get("unstable").id)
    # each result says how many torch threads trained it (the worker's one, not this process's)
    assert {r.threads for r in got.values()} == {1}


def test_local_pool_splits_a_single_stack_over_the_workers(study, stacked_pool):
    task, data, space = study
    jobs = make_jobs(space, names=("small",), count=6)
    got = by_key(stacked_pool.run(task, data, jobs, SETTINGS))
    assert sorted(len(u[2]) for u in stacked_pool.units) == [3, 3]
    ref = by_key(StackedExecutor(max_stack=3).run(task, data, jobs, SETTINGS))
    assert_same(got, ref)


def test_plan_units_keeps_every_job_once(study):
    task, data, space = study
    jobs = make_jobs(space, count=7)
    for engine in ("stacked", "plain"):
        for workers in (1, 2, 16):
            units = plan_units(task, data, jobs, SETTINGS, engine=engine, workers=workers, max_stack=4)
            flat = [(c.id, s.index) for _, _, unit, _ in units for c, s in unit]
            assert sorted(flat) == sorted((c.id, s.index) for c, s in jobs)
            # a unit is one candidate's instances (these three differ in more than optimiser settings)
            assert all(len({c.id for c, _ in unit}) == 1 for _, _, unit, _ in units)
            assert all(size <= 4 for _, size, _, _ in units)


def test_units_of_an_unstackable_model_carry_why_to_their_results(study):
    from robustcli.execution.pool import run_unit

    class Scheduled(SyntheticTask):  # a learning-rate schedule: trained one at a time
        def lr_factor(self, candidate, step, total_steps):
            return 1.0

    task, data, space = Scheduled(), study[1], study[2]
    jobs = make_jobs(space, names=("small",), count=2)
    units = plan_units(task, data, jobs, SETTINGS, workers=2)
    assert [u[0] for u in units] == ["plain", "plain"] and all("lr_factor" in u[3] for u in units)
    quick = SETTINGS.model_copy(update={"early_stopping": EarlyStoppingSettings(min_epochs=1, window=2, max_epochs=1)})
    (_, result), = run_unit(task, data, units[0], quick)
    assert result.engine == "plain" and "lr_factor" in result.plain_reason


def test_a_unit_of_one_that_trains_plainly_says_why(study):
    from robustcli.execution.pool import plan_units

    task, data, space = study
    units = plan_units(task, data, make_jobs(space, names=("small",), count=1), SETTINGS, workers=2)
    assert [(u[0], u[3]) for u in units] == [("plain", "a lone instance: a stack of one trains slower than the plain loop for this model")]


def test_candidates_differing_only_in_optimiser_settings_share_a_stack(study):
    from robustcli.task import Candidate
    from robustcli.training.stacked import train_stacked

    task, data, space = study
    small = space.get("small")
    variants = [small, Candidate.from_params({**small.params, "lr": 3e-3}), Candidate.from_params({**small.params, "weight_decay": 0.1})]
    jobs = [(c, s) for c in variants for _, s in make_jobs(space, names=("small",), count=2)]
    ex = StackedExecutor()
    got = by_key(ex.run(task, data, jobs, SETTINGS))
    assert ex.decisions == [(small.id, "stacked", 6, 6)]  # one group, one stack
    ref = train_stacked(task, [c for c, _ in jobs], data, [s for _, s in jobs], SETTINGS)
    for (cand, spec), r in zip(jobs, ref, strict=True):
        g = got[(cand.id, spec.index)]
        assert g.test_loss == r.test_loss and g.epochs == r.epochs  # the same stack: bitwise
        assert len(g.stack) == 6 and g.stack.count(str(spec.index)) == 1  # its own entry, others prefixed
    assert len({got[(c.id, 0)].test_loss for c in variants}) == 3  # the settings did differ
    # a stack never mixes architectures: small and wide stay apart
    mixed = make_jobs(space, names=("small", "wide"), count=2)
    ex = StackedExecutor()
    list(ex.run(task, data, mixed, SETTINGS))
    assert [d[2] for d in ex.decisions] == [2, 2]


def test_make_executor_choices():
    assert isinstance(make_executor(TrainingSettings(executor="inprocess")), StackedExecutor)
    assert isinstance(make_executor(TrainingSettings(executor="inprocess", engine="plain")), InProcessExecutor)
    pool = make_executor(TrainingSettings(executor="local", workers=3, engine="plain"))
    assert isinstance(pool, LocalPoolExecutor) and (pool.workers, pool.engine) == (3, "plain")


def test_ray_missing_is_a_clear_input_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(InputError, match=r"pip install 'robustcli\[ray\]'"):
        make_executor(TrainingSettings(executor="ray"))


# -- Ray -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'robustcli[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_executor_on_a_local_ray_equals_in_process(study, local_ray):
    from robustcli.execution.ray_executor import RayExecutor

    task, data, space = study
    jobs = make_jobs(space, count=4)
    ray_exec = make_executor(TrainingSettings(executor="ray"))
    assert isinstance(ray_exec, RayExecutor)
    got = by_key(ray_exec.run(task, data, jobs, SETTINGS))
    ref = by_key(StackedExecutor().run(task, data, jobs, SETTINGS))
    assert_same(got, ref)
    assert all(r.failed for (cid, _), r in got.items() if cid == space.get("unstable").id)
    # plain inside the Ray workers: the plain loop's numbers
    got = by_key(RayExecutor(engine="plain").run(task, data, jobs[:4], SETTINGS))
    assert_same(got, by_key(InProcessExecutor().run(task, data, jobs[:4], SETTINGS)))


def test_a_session_trains_through_the_local_pool_and_logs_here(workdir):
    """Only the coordinating process writes to MLflow: the pool's results are logged by the session."""
    from robustcli.config import StudySettings
    from robustcli.session import StudySession

    training = SETTINGS.model_copy(update={"executor": "local", "workers": 2})
    session = StudySession(StudySettings(task="synthetic", study="pool", training=training))
    executor = make_executor(session.settings)
    assert isinstance(executor, LocalPoolExecutor)
    small, unstable = session.candidate("small"), session.candidate("unstable")
    requests = [(small, i) for i in range(3)] + [(unstable, 0)]
    with executor:
        records = list(session.train(requests, executor=executor))
    assert sorted((c.id, r.index) for c, r in records) == sorted((c.id, i) for c, i in requests)
    known = session.known()
    assert sorted(known[small.id]) == [0, 1, 2] and sorted(known[unstable.id]) == [0]
    # the pool trained the in-process stacked engine's stack of the three: the same numbers
    jobs = [(small, session.spec(small, i)) for i in range(3)]
    ref = by_key(StackedExecutor().run(session.task, session.data, jobs, session.settings.training))
    assert [known[small.id][i].loss for i in range(3)] == [ref[(small.id, i)].test_loss for i in range(3)]
    assert math.isnan(known[unstable.id][0].loss)


def test_assess_through_a_local_pool_gives_the_same_losses(app, runner, workdir, empty_store):
    import json
    import shutil

    from conftest import FAST

    args = ["assess", "--task", "synthetic", *FAST, "--json", "--candidate", "small", "-n", "3"]
    here = json.loads(runner.invoke(app, args).stdout)
    shutil.copy(empty_store, workdir / "pool.db")
    pooled = runner.invoke(app, [*args, "--executor", "local", "--workers", "2", "--tracking-uri", f"sqlite:///{workdir}/pool.db"])
    assert pooled.exit_code == 0, pooled.output
    assert json.loads(pooled.stdout)["losses"] == here["losses"]
