"""Which starts of a Slurm job resume an earlier run directory, and which get a new one."""

from __future__ import annotations

import pytest

from kdgat.launch import requeue
from kdgat.runs.rundir import allocate, read_status, set_status


@pytest.fixture
def job(monkeypatch, tmp_path):
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_CLUSTER_NAME", "test")
    point = tmp_path / "point"
    run = allocate(point)
    requeue.record(point, run)
    return point, run, monkeypatch


@pytest.mark.parametrize("state", ["preempted", "running"])
def test_a_requeued_start_resumes_its_unfinished_run(job, state):
    point, run, env = job
    set_status(run, state)
    env.setenv("SLURM_RESTART_COUNT", "1")
    assert requeue.resume(point) == run
    status = read_status(run)
    assert status["status"] == "running" and status["requeues"] == 1


@pytest.mark.parametrize("state", ["failed", "completed"])
def test_a_finished_run_is_never_reopened(job, state):
    point, run, env = job
    set_status(run, state)
    env.setenv("SLURM_RESTART_COUNT", "1")
    assert requeue.resume(point) is None
    assert read_status(run)["status"] == state


def test_a_second_start_in_the_same_allocation_gets_its_own_run(job):
    """salloc, or a script running several kdgat-train: same job id, no Slurm restart."""
    point, run, _ = job
    set_status(run, "preempted")
    assert requeue.resume(point) is None


def test_too_many_requeues_fail_the_run(job):
    point, run, env = job
    set_status(run, "preempted", requeues=3)
    env.setenv("SLURM_RESTART_COUNT", "4")
    env.setenv(requeue.MAX_REQUEUES_ENV, "3")
    with pytest.raises(requeue.TooManyRequeues, match="max_requeues=3"):
        requeue.resume(point)
    assert read_status(run)["status"] == "failed"
