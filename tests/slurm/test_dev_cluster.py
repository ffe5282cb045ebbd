"""The private dev cluster (launch/slurm-dev-cluster.sh) behaves like the Slurm we design for.

Measured against Slurm 22.05.8 (Debian 12); see docs/slurm-dev-cluster.md. Every wait is bounded.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(120)]


def test_cluster_is_up_with_accounting(slurm_cluster):
    ping = slurm_cluster.run("scontrol", "ping").stdout
    assert "is UP" in ping
    parts = slurm_cluster.run("sinfo", "-h", "-o", "%P %T").stdout.split("\n")
    assert "debug* idle" in parts and "high idle" in parts
    clusters = slurm_cluster.run("sacctmgr", "-n", "-P", "list", "cluster", "format=cluster").stdout
    assert clusters.split(), "slurmdbd knows no cluster"
    assert oct((slurm_cluster.conf.parent / "slurmdbd.conf").stat().st_mode & 0o777) == "0o600"


def test_one_line_job_completes_in_sacct(slurm_cluster, tmp_path):
    jobid = slurm_cluster.sbatch("-o", f"{tmp_path}/%j.out", "--wrap", "echo hello from $SLURM_JOB_ID")
    (row,) = slurm_cluster.wait_sacct(jobid, timeout=30)
    assert row["State"] == "COMPLETED"
    assert row["ExitCode"] == "0:0"
    assert (tmp_path / f"{jobid}.out").read_text().strip() == f"hello from {jobid}"


def test_array_of_three(slurm_cluster, tmp_path):
    jobid = slurm_cluster.sbatch(
        "--array=0-2", "-o", f"{tmp_path}/%A_%a.out", "--wrap", "echo task=$SLURM_ARRAY_TASK_ID"
    )
    rows = slurm_cluster.wait_sacct(jobid, count=3, timeout=40)
    assert sorted(r["JobID"] for r in rows) == [f"{jobid}_{i}" for i in range(3)]
    assert {r["State"] for r in rows} == {"COMPLETED"}
    for i in range(3):
        assert (tmp_path / f"{jobid}_{i}.out").read_text().strip() == f"task={i}"


def test_afterok_chain_with_failed_upstream_never_runs(slurm_cluster, tmp_path):
    """Slurm 22.05 default: the dependent job stays PENDING with reason DependencyNeverSatisfied
    (it is not cancelled unless SchedulerParameters has kill_invalid_depend); cancel it ourselves."""
    marker = tmp_path / "dependent-ran"
    up = slurm_cluster.sbatch("-o", f"{tmp_path}/%j.out", "--wrap", "exit 1")
    down = slurm_cluster.sbatch(
        f"--dependency=afterok:{up}", "-o", f"{tmp_path}/%j.out", "--wrap", f"touch {marker}"
    )
    (up_row,) = slurm_cluster.wait_sacct(up, timeout=30)
    assert up_row["State"] == "FAILED"
    assert up_row["ExitCode"] == "1:0"

    job = slurm_cluster.wait_until(
        lambda: (j := slurm_cluster.scontrol_job(down)).get("Reason") == "DependencyNeverSatisfied" and j,
        timeout=20, what=f"job {down} to be DependencyNeverSatisfied",
    )
    assert job["JobState"] == "PENDING"
    assert job["Dependency"] == f"afterok:{up}(failed)"

    slurm_cluster.run("scancel", down)
    (down_row,) = slurm_cluster.wait_sacct(down, timeout=30)
    assert down_row["State"].startswith("CANCELLED")
    assert not marker.exists()
    assert not (tmp_path / f"{down}.out").exists()


def test_scontrol_requeue_restarts_running_job(slurm_cluster, tmp_path):
    """`scontrol requeue` puts a running batch job back to PENDING (reason BeginTime, Restarts=1);
    it starts again after AuthInfo cred_expire (10 s on the dev cluster, 120 s by default) with
    SLURM_RESTART_COUNT=1. Accounting keeps the first run as a REQUEUED record (sacct -D)."""
    out = tmp_path / "requeue.out"
    jobid = slurm_cluster.sbatch(
        "--open-mode=append", "-o", str(out),
        "--wrap", "echo restart=${SLURM_RESTART_COUNT:-0}; sleep 300",
    )
    slurm_cluster.wait_state(jobid, "RUNNING", timeout=30)
    slurm_cluster.wait_until(lambda: out.exists() and "restart=0" in out.read_text(),
                             timeout=15, what="first run's output")

    slurm_cluster.run("scontrol", "requeue", jobid)
    job = slurm_cluster.wait_until(
        lambda: (j := slurm_cluster.scontrol_job(jobid)).get("Restarts") == "1"
        and j.get("JobState") == "PENDING" and j,
        timeout=20, what=f"job {jobid} requeued",
    )
    assert job["Reason"] == "BeginTime"

    slurm_cluster.wait_state(jobid, "RUNNING", timeout=60)
    slurm_cluster.wait_until(lambda: "restart=1" in out.read_text(), timeout=15,
                             what="second run's output")
    # (the file also holds slurmstepd's "*** JOB n CANCELLED ... DUE TO JOB REQUEUE ***")
    runs = [line for line in out.read_text().splitlines() if line.startswith("restart=")]
    assert runs == ["restart=0", "restart=1"]

    slurm_cluster.run("scancel", jobid)
    slurm_cluster.wait_sacct(jobid, timeout=30)
    states = [r["State"].split()[0] for r in slurm_cluster.sacct(jobid, duplicates=True)]
    assert states == ["REQUEUED", "CANCELLED"]


def test_high_partition_preempts_and_requeues_debug_job(slurm_cluster, tmp_path):
    """PreemptType=preempt/partition_prio, PreemptMode=REQUEUE: a job in partition `high` that
    needs the whole node requeues the running job of partition `debug`."""
    low = slurm_cluster.sbatch("-p", "debug", "-c", "2", "-o", f"{tmp_path}/%j.out", "--wrap", "sleep 300")
    slurm_cluster.wait_state(low, "RUNNING", timeout=30)
    high = slurm_cluster.sbatch("-p", "high", "-c", "2", "-o", f"{tmp_path}/%j.out", "--wrap", "true")
    (high_row,) = slurm_cluster.wait_sacct(high, timeout=40)
    assert high_row["State"] == "COMPLETED"
    low_job = slurm_cluster.scontrol_job(low)
    assert low_job["Restarts"] == "1"
    assert low_job["JobState"] in ("PENDING", "REQUEUED", "RUNNING")
    slurm_cluster.run("scancel", low)
    slurm_cluster.wait_sacct(low, timeout=30)
