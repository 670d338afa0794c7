"""How robust uses the cores (issue 24): the count from affinity and cgroup quotas, the passive
OpenMP wait policy set before torch loads, the default executor's choice between the pool and this
process, and what each instance run records of it."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from robustcli.builtin.synthetic import SyntheticTask
from robustcli.config import EarlyStoppingSettings, StudySettings, TrainingSettings
from robustcli.execution import auto, cores
from robustcli.execution.auto import AutoExecutor
from robustcli.execution.factory import make_executor
from robustcli.execution.stacked import StackedExecutor
from robustcli.training.instance import InstanceSpec
from robustcli.training.seeds import derive_seeds

SETTINGS = TrainingSettings(train_size=256, early_stopping=EarlyStoppingSettings(min_epochs=8, window=4, max_epochs=30))


# -- counting cores ------------------------------------------------------------------------------
def _cgroup_v2(tmp_path: Path, own: str, quotas: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cg"
    for rel, text in quotas.items():
        (root / rel).mkdir(parents=True, exist_ok=True)
        (root / rel / "cpu.max").write_text(text + "\n")
    proc = tmp_path / "cgroup"
    proc.write_text(f"0::{own}\n")
    return root, proc


def test_the_tightest_cgroup_v2_quota_along_the_path_counts(tmp_path: Path) -> None:
    root, proc = _cgroup_v2(tmp_path, "/job/step", {".": "max 100000", "job": "150000 100000", "job/step": "max 100000"})
    assert cores.cgroup_cpu_limit(root, proc) == 1.5
    root, proc = _cgroup_v2(tmp_path / "b", "/", {".": "max 100000"})
    assert cores.cgroup_cpu_limit(root, proc) is None


def test_a_cgroup_v1_quota_counts_and_minus_one_means_none(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    (root / "cpu,cpuacct" / "box").mkdir(parents=True)
    (root / "cpu,cpuacct" / "box" / "cpu.cfs_quota_us").write_text("300000\n")
    (root / "cpu,cpuacct" / "box" / "cpu.cfs_period_us").write_text("100000\n")
    (root / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("-1\n")
    (root / "cpu,cpuacct" / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/box\n3:cpu,cpuacct:/box\n")
    assert cores.cgroup_cpu_limit(root, proc) == 3.0
    proc.write_text("3:cpu,cpuacct:/\n")
    assert cores.cgroup_cpu_limit(root, proc) is None
    assert cores.cgroup_cpu_limit(tmp_path / "nothing", tmp_path / "missing") is None


def test_available_cores_are_capped_by_the_quota_and_omp_num_threads_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cores, "cgroup_cpu_limit", lambda: 0.5)
    assert cores.available_cores() == 1  # half a CPU: one thread, never zero
    monkeypatch.setattr(cores, "cgroup_cpu_limit", lambda: None)
    assert cores.available_cores() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cores.default_threads() == 3 and cores.omp_num_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    assert cores.default_threads() == cores.available_cores() and cores.omp_num_threads() is None
    monkeypatch.setenv("OMP_NUM_THREADS", "0")
    assert cores.omp_num_threads() is None


# -- the wait policy -----------------------------------------------------------------------------
_POLICY = "import os, sys; {first}from robustcli.execution.cores import wait_policy; print(os.environ.get('OMP_WAIT_POLICY'), wait_policy())"


def _policy(first: str = "", **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", _POLICY.format(first=first)], env={**clean, **env},
                         capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    return out.stdout.strip()


def test_robust_asks_for_passive_waits_before_torch_loads_and_keeps_the_users_choice() -> None:
    assert _policy() == "PASSIVE PASSIVE"
    assert _policy(OMP_WAIT_POLICY="active") == "active ACTIVE"
    # torch loaded first: too late to change, so nothing is set and OpenMP's default is recorded
    assert _policy(first="import torch; ") == "None default"


# -- the default executor ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def study():
    task = SyntheticTask()
    return task, task.load_data(), task.search_space()


def _jobs(space, names, count):
    out = []
    for name in names:
        for index in range(count):
            seeds = derive_seeds(0, index, None)
            out.append((space.get(name), InstanceSpec(index, seeds.init_seed, seeds.data_seed, 256, None)))
    return out


def test_the_default_executor_is_auto_and_threads_or_executor_override_it() -> None:
    assert TrainingSettings().executor == "auto"
    assert isinstance(make_executor(TrainingSettings()), AutoExecutor)
    assert isinstance(make_executor(TrainingSettings(threads=1)), StackedExecutor)  # --threads alone: here
    assert isinstance(make_executor(TrainingSettings(executor="inprocess")), StackedExecutor)
    assert make_executor(TrainingSettings(workers=3)).workers == 3


def test_auto_spreads_only_independent_work_worth_the_pool(study, monkeypatch: pytest.MonkeyPatch) -> None:
    task, data, space = study
    ex = AutoExecutor(workers=2)
    two_groups = _jobs(space, ("small", "wide"), 2)
    # the synthetic task's trainings are far below the pool's start-up cost: here
    assert not ex.spreads(task, data, two_groups, SETTINGS)
    ex = AutoExecutor(workers=2, min_work=0)
    assert ex.spreads(task, data, two_groups, SETTINGS)
    assert ex.spreads(task, data, _jobs(space, ("small",), 3), SETTINGS)  # a stack the pool cuts in two
    assert not ex.spreads(task, data, _jobs(space, ("small",), 2), SETTINGS)  # one stack of 2: one unit
    assert not ex.spreads(task, data, two_groups[:1], SETTINGS)
    assert AutoExecutor("plain", workers=2, min_work=0).spreads(task, data, _jobs(space, ("small",), 2), SETTINGS)
    assert not AutoExecutor(workers=1, min_work=0).spreads(task, data, two_groups, SETTINGS)
    # once the pool runs, every later run of two units or more uses it: it costs nothing more
    ex = AutoExecutor(workers=2, min_work=math.inf)
    ex._pool = object()
    assert ex.spreads(task, data, two_groups, SETTINGS) and not ex.spreads(task, data, two_groups[:1], SETTINGS)
    # a task that cannot go to worker processes trains here
    monkeypatch.setattr("robustcli.execution.pool.dumps_payload", lambda *a: (_ for _ in ()).throw(TypeError("no")))
    assert not AutoExecutor(workers=2, min_work=0).spreads(task, data, two_groups, SETTINGS)


def test_the_work_estimate_counts_parameters_examples_and_epochs(study) -> None:
    task, data, space = study
    ex = AutoExecutor(workers=2, min_work=math.inf)
    jobs = _jobs(space, ("small",), 2)
    params = sum(p.numel() for p in task.build_model(space.get("small")).parameters())
    assert ex._work(task, data, jobs, SETTINGS) == 2 * params * (256 + data.test_size) * 30


def test_pooled_instances_record_one_thread_and_the_wait_policy_and_reproduce_bit_for_bit(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from robustcli.api import reproduce_run
    from robustcli.session import StudySession

    monkeypatch.setattr(auto, "POOL_MIN_WORK", 0.0)
    session = StudySession(StudySettings(task="synthetic", study="auto", training=SETTINGS))
    executor = session.prepare_executor()
    assert isinstance(executor, AutoExecutor)
    small, wide = session.candidate("small"), session.candidate("wide")
    try:
        records = list(session.train([(small, 0), (small, 1), (small, 2), (wide, 0)]))
    finally:
        executor.close()
    assert executor.last == "local" and len(records) == 4
    client = session.store.client
    runs = client.search_runs([session.experiment()], "tags.`robust.kind` = 'instance'")
    assert {r.data.tags["robust.torch_threads"] for r in runs} == {"1"}
    # the workers inherit this process's environment, so they run with its policy
    assert {r.data.tags["robust.omp_wait_policy"] for r in runs} == {cores.wait_policy()}
    stacked = next(r for r in runs if r.data.tags["robust.engine"] == "stacked")
    out = reproduce_run(stacked.info.run_id, tracking_uri=session.store.uri)
    assert out.bitwise_equal, out


def test_an_assessment_in_this_process_records_one_thread_and_the_wait_policy(app, runner, workdir: Path) -> None:
    """Under the default (auto) an instance trains with one torch thread in this process too."""
    from conftest import FAST, experiments
    from mlflow.tracking import MlflowClient

    out = runner.invoke(app, ["assess", "--task", "synthetic", *FAST, "--json", "--candidate", "small", "-n", "2"])
    assert out.exit_code == 0, out.output
    assert len(json.loads(out.stdout)["losses"]) == 2
    client = MlflowClient(f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")
    exp = client.get_experiment_by_name(experiments()[0])
    runs = client.search_runs([exp.experiment_id], "tags.`robust.kind` = 'instance'")
    assert {r.data.tags["robust.torch_threads"] for r in runs} == {str(cores.omp_num_threads() or 1)}
    assert {r.data.tags["robust.omp_wait_policy"] for r in runs} == {cores.wait_policy()}
