"""Cluster profiles, sbatch rendering and bad-input errors: no Slurm needed (``--dry-run``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kdgat.launch import profiles
from kdgat.launch.profiles import ProfileError, check_request
from kdgat.launch.slurm import render, sbatch_parameters

REPO = Path(__file__).resolve().parents[2]
TRAIN = [sys.executable, "-m", "kdgat.train"]
KDGAT = [sys.executable, "-m", "kdgat.cli"]
ACCOUNT = "PAS0000"


def run(args, tmp_path, **env):
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("SLURM_", "KDGAT_SLURM", "KDGAT_CONF"))}
    environ.update(env)
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=environ)


def test_every_shipped_profile_is_found():
    names = profiles.profile_names()
    for name in ("local", "dev", "osc_pitzer", "osc_ascend", "osc_cardinal"):
        assert name in names
    assert (REPO / "conf" / "cluster" / "osc_pitzer.yaml") == profiles.profile_files()["osc_pitzer"]


def test_profiles_hold_nothing_personal():
    for path in (REPO / "conf" / "cluster").glob("*.yaml"):
        text = path.read_text()
        assert "account: ${oc.env:KDGAT_SLURM_ACCOUNT,null}" in text or path.stem == "local"
        assert "@" not in text.replace("@package", "").replace("you@example.edu", "")


EXPECTED = {
    "osc_pitzer": ["--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=64GB",
                   "--time=720"],
    "osc_ascend": ["--partition=nextgen", "--gpus-per-node=1", "--cpus-per-task=16", "--mem=120GB",
                   "--time=720"],
    "osc_cardinal": ["--partition=gpu", "--gpus-per-node=h100:1", "--cpus-per-task=24",
                     "--mem=240GB", "--time=720"],
}


@pytest.mark.parametrize("cluster", sorted(EXPECTED))
def test_osc_sweep_dry_run_renders_one_array(cluster, tmp_path):
    proc = run([*TRAIN, "-m", f"cluster={cluster}", "dataset=synthetic", "size=teacher,student",
                "model=gat,vgae", f"runs_root={tmp_path}/runs", "--dry-run"], tmp_path,
               KDGAT_SLURM_ACCOUNT=ACCOUNT, KDGAT_SLURM_EMAIL="someone@example.org")
    assert proc.returncode == 0, proc.stderr
    script = proc.stdout
    assert script.count("#!/bin/bash") == 1  # one sbatch script: ONE array for the sweep
    for directive in EXPECTED[cluster] + [f"--account={ACCOUNT}", "--array=0-3%4", "--signal=USR2@120",
                                          "--mail-user=someone@example.org", "--mail-type=FAIL",
                                          "--kill-on-invalid-dep=yes"]:
        assert f"#SBATCH {directive}" in script, directive
    assert 'source "$KDGAT_VENV/bin/activate"' in script
    assert "submitit.core._submit" in script
    assert script.count("#   task ") == 4
    assert not (tmp_path / "runs" / ".sweeps").exists() or not any((tmp_path / "runs" / ".sweeps").iterdir())


def test_single_run_on_a_cluster_is_submitted_not_run_locally(tmp_path):
    proc = run([*TRAIN, "cluster=osc_pitzer", f"runs_root={tmp_path}/runs", "--dry-run"], tmp_path,
               KDGAT_SLURM_ACCOUNT=ACCOUNT)
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --array" not in proc.stdout and "#SBATCH --partition=gpu" in proc.stdout
    assert not (tmp_path / "runs" / "automotive").exists()


def test_missing_account_is_refused_before_submission(tmp_path):
    proc = run([*TRAIN, "-m", "cluster=osc_pitzer", f"runs_root={tmp_path}/runs", "--dry-run"], tmp_path)
    assert proc.returncode == 2
    assert "needs a Slurm account" in proc.stderr and "KDGAT_SLURM_ACCOUNT" in proc.stderr
    assert "Nothing was submitted" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_cluster_lists_the_valid_ones(tmp_path):
    proc = run([*TRAIN, "cluster=osc_pitzr", "--dry-run"], tmp_path)
    assert proc.returncode == 2
    assert "unknown cluster 'osc_pitzr'" in proc.stderr and "did you mean 'osc_pitzer'" in proc.stderr
    for name in ("dev", "local", "osc_ascend", "osc_cardinal", "osc_pitzer"):
        assert name in proc.stderr


def test_request_beyond_the_partition_is_refused(tmp_path):
    proc = run([*TRAIN, "cluster=osc_pitzer", "hydra.launcher.gpus_per_node=8",
                "hydra.launcher.timeout_min=20000", f"runs_root={tmp_path}/runs", "--dry-run"], tmp_path,
               KDGAT_SLURM_ACCOUNT=ACCOUNT)
    assert proc.returncode == 2
    assert "gpus_per_node=8 exceeds the partition's 4" in proc.stderr
    assert "timeout_min=20000 min exceeds" in proc.stderr


def test_unreachable_slurm_is_reported_before_submission(tmp_path):
    if shutil.which("sbatch") is None:
        expected = "not found on PATH"
    else:
        expected = "Slurm is not reachable"
    proc = run([*TRAIN, "cluster=dev", f"runs_root={tmp_path}/runs", "trainer=smoke"], tmp_path,
               SLURM_CONF=str(tmp_path / "no-such-slurm.conf"))
    assert proc.returncode == 2
    assert expected in proc.stderr and "Nothing was submitted" in proc.stderr
    assert not (tmp_path / "runs" / "automotive").exists()


def test_a_user_adds_a_cluster_by_copying_one_file(tmp_path):
    conf = tmp_path / "myconf" / "cluster"
    conf.mkdir(parents=True)
    text = (REPO / "conf" / "cluster" / "osc_pitzer.yaml").read_text()
    (conf / "mylab.yaml").write_text(text.replace("cluster: osc_pitzer", "cluster: mylab")
                                     .replace("partition: gpu", "partition: a40"))
    proc = run([*TRAIN, "cluster=mylab", f"runs_root={tmp_path}/runs", "--dry-run"], tmp_path,
               KDGAT_CONF_DIR=str(tmp_path / "myconf"), KDGAT_SLURM_ACCOUNT=ACCOUNT)
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --partition=a40" in proc.stdout and "cluster mylab" in proc.stdout


def test_pipeline_dry_run_prints_every_script_with_its_afterok(tmp_path):
    proc = run([*KDGAT, "pipeline", "dataset=synthetic", "cluster=osc_cardinal", "size=teacher",
                f"runs_root={tmp_path}/runs", "--dry-run"], tmp_path, KDGAT_SLURM_ACCOUNT=ACCOUNT)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.count("#!/bin/bash") == 6  # two baselines, VGAE, GAT, two fusion agents
    assert out.count("#SBATCH --dependency='afterok:<job 3>:<job 4>'") == 2  # both fusion agents (jobs 1, 2: baselines)
    assert "nothing was submitted" in out
    assert not (tmp_path / "runs" / ".pipelines").exists() or not any((tmp_path / "runs" / ".pipelines").rglob("manifest.json"))


def test_check_request_and_parameters():
    launcher = {"cluster": "x", "partition": "p", "gpus_per_node": 2, "gpu_type": "a100", "mem_gb": 8,
                "timeout_min": 60, "signal_delay_s": 120, "name": "kdgat", "tasks_per_node": 1,
                "additional_parameters": {"constraint_x": "y"}, "account": None,
                "limits": {"max_gpus_per_node": 4, "gpu_types": ["a100"]}}
    check_request(launcher)
    params = sbatch_parameters(launcher)
    assert params["gpus_per_node"] == "a100:2" and params["mem"] == "8GB" and params["time"] == 60
    assert params["additional_parameters"] == {"constraint_x": "y", "kill_on_invalid_dep": "yes"}
    assert "account" not in params
    assert "#SBATCH --gpus-per-node=a100:2" in render("/tmp/x", launcher)
    with pytest.raises(ProfileError, match="signalled at once"):
        check_request({**launcher, "timeout_min": 1})
    with pytest.raises(ProfileError, match="gpu_type=v100 is not available"):
        check_request({**launcher, "gpu_type": "v100"})
    with pytest.raises(ProfileError, match="needs a Slurm account"):
        check_request({**launcher, "require_account": True})
