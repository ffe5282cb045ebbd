"""`kdgat pipeline ... cluster=dev` on the real dev Slurm: afterok chains, failures, status, re-runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(300)]
TINY = ["trainer=smoke", "tracking.enabled=false"]


def kdgat(cluster, tmp_path, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "kdgat.cli", *args], capture_output=True, text=True,
                          cwd=tmp_path, env=cluster.env, timeout=timeout)


def latest_manifest(runs: Path) -> tuple[Path, dict]:
    path = max(runs.glob(".pipelines/*/manifest.json"), key=lambda p: p.stat().st_mtime)
    return path, json.loads(path.read_text())


def test_pipeline_is_submitted_as_afterok_chain_and_completes(slurm_cluster, tmp_path):
    runs = tmp_path / "runs"
    proc = kdgat(slurm_cluster, tmp_path, "pipeline", "dataset=synthetic", "cluster=dev", "size=teacher",
                 f"runs_root={runs}", *TINY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    path, manifest = latest_manifest(runs)
    jobs = {j["name"].split("_", 2)[2]: j for j in manifest["jobs"]}
    assert len(jobs) == 6  # 2 baselines, VGAE, GAT, DQN, MLP
    vgae = jobs["unsupervised_vgae_teacher_no_normals_only"]["job_id"]
    gat = jobs["classifier_gat_teacher_no_all_samples"]["job_id"]
    for fusion in ("fusion_dqn_teacher_no_all_samples", "fusion_mlp_teacher_no_all_samples"):
        job = jobs[fusion]
        assert job["afterok"] == [vgae, gat]
        dependency = slurm_cluster.scontrol_job(job["job_id"]).get("Dependency", "")
        # Slurm's own record of the chain (may already read "(unfulfilled)" or be resolved "(null)")
        assert dependency.startswith(f"afterok:{vgae}") or dependency == "(null)", dependency
    baselines = [jobs[f"baseline_{m}_teacher_no_all_samples"]["job_id"] for m in ("majority", "window_stats")]
    for root in (vgae, gat, *baselines):
        assert slurm_cluster.scontrol_job(root).get("Dependency") in ("(null)", None)

    ids = [j["job_id"] for j in manifest["jobs"]]
    for job_id in ids:
        (row,) = slurm_cluster.wait_sacct(job_id, timeout=200)
        assert row["State"] == "COMPLETED", (row, Path(jobs_by_id(manifest)[job_id]["stderr"]).read_text()[-2000:])

    status = kdgat(slurm_cluster, tmp_path, "status", "--runs-root", str(runs), "--jobs", str(path))
    assert status.returncode == 0 and "6 completed" in status.stdout, status.stdout
    # The fusion run used the teachers of this submission.
    fusion_run = next(Path(jobs["fusion_dqn_teacher_no_all_samples"]["point_dir"]).glob("run_*"))
    deps = json.loads((fusion_run / "status.json").read_text())["dependencies"]
    assert set(deps) == {"vgae", "gat"}

    # Re-running submits only what is missing: nothing.
    again = kdgat(slurm_cluster, tmp_path, "pipeline", "dataset=synthetic", "cluster=dev", "size=teacher",
                  f"runs_root={runs}", *TINY)
    assert again.returncode == 0 and "nothing to submit" in again.stdout, again.stdout + again.stderr
    assert again.stdout.count("[skip]") == 6


def jobs_by_id(manifest):
    return {j["job_id"]: j for j in manifest["jobs"]}


def test_failed_upstream_cancels_dependents_and_rerun_submits_only_missing(slurm_cluster, tmp_path):
    runs = tmp_path / "runs"
    # An unknown Trainer argument composes (it is passed through) but fails every job at run time.
    proc = kdgat(slurm_cluster, tmp_path, "pipeline", "dataset=synthetic", "cluster=dev", "size=teacher",
                 f"runs_root={runs}", *TINY, "+trainer.no_such_argument=1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    path, manifest = latest_manifest(runs)
    by_name = {j["name"].split("_", 2)[2]: j for j in manifest["jobs"]}
    roots = [by_name["unsupervised_vgae_teacher_no_normals_only"], by_name["classifier_gat_teacher_no_all_samples"]]
    fusions = [by_name["fusion_dqn_teacher_no_all_samples"], by_name["fusion_mlp_teacher_no_all_samples"]]
    for job in roots:
        (row,) = slurm_cluster.wait_sacct(job["job_id"], timeout=120)
        assert row["State"] == "FAILED", row
    for model in ("majority", "window_stats"):  # no Trainer in a baseline: it completes
        (row,) = slurm_cluster.wait_sacct(by_name[f"baseline_{model}_teacher_no_all_samples"]["job_id"],
                                          timeout=120)
        assert row["State"] == "COMPLETED", row
    for job in fusions:  # --kill-on-invalid-dep=yes: cancelled by Slurm, never started
        (row,) = slurm_cluster.wait_sacct(job["job_id"], timeout=60)
        assert row["State"].startswith("CANCELLED"), row
        assert not list(Path(job["point_dir"]).glob("run_*"))

    status = kdgat(slurm_cluster, tmp_path, "status", "--runs-root", str(runs), "--jobs", str(path), "--json")
    assert status.returncode == 1  # something failed
    rows = {r["name"].split("_", 2)[2]: r for r in json.loads(status.stdout)["jobs"]}
    for name in ("unsupervised_vgae_teacher_no_normals_only", "classifier_gat_teacher_no_all_samples"):
        assert rows[name]["state"] == "FAILED"
        assert rows[name]["run_status"] == "failed"
        assert "log: " in rows[name]["note"] and rows[name]["stderr"] in rows[name]["note"]
        assert "no_such_argument" in Path(rows[name]["stderr"]).read_text()
    for name in ("fusion_dqn_teacher_no_all_samples", "fusion_mlp_teacher_no_all_samples"):
        assert rows[name]["state"] == "NOT_RUN"
        assert "not run: needs" in rows[name]["note"] and "(failed)" in rows[name]["note"]

    # Fixed and re-run: the four missing points are submitted again (the baselines completed).
    again = kdgat(slurm_cluster, tmp_path, "pipeline", "dataset=synthetic", "cluster=dev", "size=teacher",
                  f"runs_root={runs}", *TINY, "--dry-run")
    assert again.returncode == 0 and again.stdout.count("#!/bin/bash") == 4, again.stdout
