"""Runs whose Slurm job died are reported dead by ``kdgat status`` (the real CLI), not alive.

One sweep of two real ``kdgat-train`` jobs (``size=tiny,student``: a grid point, and a table
row, each) is started for the module and both are left training. Then:

- the tiny run's process is SIGKILLed: the job ends ``FAILED`` and the run, which had no chance
  to say anything, still says ``running``. The dev cluster does not enforce memory limits (no
  cgroups: ``TaskPlugin=task/none``), so this is what an out-of-memory kill looks like here: the
  kernel's OOM killer sends the same SIGKILL; where Slurm's cgroup catches it, the job ends
  ``OUT_OF_MEMORY`` instead (the fake-scheduler tests in tests/cli/test_status_cli.py cover that
  wording);
- the student run's job is requeued (its SIGTERM makes the run ``preempted``), shown alive while
  it waits to restart, then ``scancel``ed: without reconciliation it says ``preempted`` for ever.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kdgat.launch.requeue import run_dir_of

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]
TRAIN = ["dataset=synthetic", "size=tiny,student", "trainer.max_epochs=200",
         "trainer.limit_train_batches=20", "trainer.limit_val_batches=2", "datamodule.batch_size=2",
         "tracking.enabled=false", "early_stopping.enabled=false"]


@pytest.fixture(scope="module")
def training(slurm_cluster, tmp_path_factory):
    """Two jobs of one sweep, both past their first epoch: ``{size: (job, run_dir)}``."""
    base = tmp_path_factory.mktemp("dead-runs")
    runs = base / "runs"
    proc = subprocess.run([sys.executable, "-m", "kdgat.train", "-m", "cluster=dev",
                           f"runs_root={runs}", *TRAIN], capture_output=True, text=True, cwd=base,
                          env=slurm_cluster.env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (manifest,) = runs.glob(".sweeps/*/manifest.json")
    jobs = json.loads(manifest.read_text())["jobs"]
    try:
        found = {}
        for job in jobs:
            size = "student" if "student" in job["name"] else "tiny"
            run_dir = slurm_cluster.wait_until(
                lambda: run_dir_of(Path(job["point_dir"]), job["key"]), timeout=90,
                what=f"the run directory of job {job['job_id']}")
            found[size] = (job, run_dir)
        for job, run_dir in found.values():  # training (Lightning's SIGTERM handler is set)
            slurm_cluster.wait_until((run_dir / "checkpoints" / "last.ckpt").is_file, timeout=90,
                                     what=f"the first epoch of job {job['job_id']}")
        yield base, found
    finally:
        slurm_cluster.cancel({job["job_id"].split("_")[0] for job in jobs})


def kdgat_status(cluster, base: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "kdgat.cli", "status", "--runs-root",
                             str(base / "runs")], capture_output=True, text=True, cwd=base,
                            env=cluster.env, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def row_of(out: str, size: str) -> str:
    (line,) = [line for line in out.splitlines() if line.startswith(f"classifier_gat_{size}_no_all_samples ")]
    return line


def test_killed_job_is_reported_failed_not_running(slurm_cluster, training):
    base, found = training
    job, run_dir = found["tiny"]
    env = json.loads((run_dir / "env.json").read_text())
    os.kill(env["pid"], signal.SIGKILL)  # the python of the job step, on this (the only) node
    (record,) = slurm_cluster.wait_sacct(job["job_id"], timeout=60)
    assert record["State"] == "FAILED", record
    assert json.loads((run_dir / "status.json").read_text())["status"] == "running"  # it could not say

    out = kdgat_status(slurm_cluster, base).stdout
    assert re.search(rf"^{re.escape(str(run_dir))}: failed \(killed by SIGKILL: Slurm job "
                     rf"{job['job_id']} ended FAILED \(exit code \d+:\d+\)\)$", out, re.M), out
    assert row_of(out, "tiny").split()[1] == "failed", out
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and status["killed"]["state"] == "FAILED"
    assert status["killed"]["job"] == env["slurm"]["SLURM_JOB_ID"] and 9 in status["killed"]["step_signals"]
    assert status["history"][0]["status"] == "running" and status["grid_point"]  # kept
    assert not [p for p in run_dir.rglob(".*")], "temporary files left in the killed run"
    # Recorded: the next listing says the same without finding anything new.
    again = kdgat_status(slurm_cluster, base).stdout
    assert row_of(again, "tiny").split()[1] == "failed" and f"{run_dir}: failed" not in again


def test_requeued_job_shown_alive_then_scancelled_one_cancelled(slurm_cluster, training):
    base, found = training
    job, run_dir = found["student"]
    slurm_cluster.run("scontrol", "requeue", job["job_id"])
    waiting = kdgat_status(slurm_cluster, base).stdout  # it restarts only after cred_expire (10 s)
    row = row_of(waiting, "student")
    assert row.split()[1] in ("running", "preempted"), waiting
    assert re.search(rf"Slurm job {job['job_id']} (completing|pending|requeued|running)", row), row
    assert json.loads((run_dir / "status.json").read_text())["status"] in ("running", "preempted")

    slurm_cluster.run("scancel", job["job_id"])
    slurm_cluster.wait_until(lambda: slurm_cluster.scontrol_job(job["job_id"]).get("JobState") == "CANCELLED",
                             timeout=60, what=f"job {job['job_id']} cancelled")
    # What the run itself could say: preempted (the requeue's SIGTERM), or running (a restart).
    assert json.loads((run_dir / "status.json").read_text())["status"] in ("preempted", "running")

    out = kdgat_status(slurm_cluster, base).stdout
    assert f"{run_dir}: cancelled (Slurm job {job['job_id']} was cancelled" in out, out
    assert row_of(out, "student").split()[1] == "cancelled", out
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and status["killed"]["state"] == "CANCELLED"
    assert [h["status"] for h in status["history"]][-1] == "failed"
    assert not [p for p in run_dir.rglob(".*")], "temporary files left in the cancelled run"
