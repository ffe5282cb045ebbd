"""A ``-m`` sweep on the real dev Slurm becomes ONE job array with frozen configs and a manifest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(240)]
REPO = Path(__file__).resolve().parents[2]


def kdgat_train(cluster, tmp_path, *args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "kdgat.train", *args], capture_output=True, text=True,
                          cwd=tmp_path, env={**cluster.env, **(env or {})}, timeout=timeout)


def test_two_by_two_sweep_is_one_array_with_frozen_configs(slurm_cluster, tmp_path):
    runs = tmp_path / "runs"
    # A private profile (copied from dev, one file), with a value we change after submission.
    conf = tmp_path / "conf" / "cluster"
    conf.mkdir(parents=True)
    profile = (REPO / "conf" / "cluster" / "dev.yaml").read_text() + "\nseed: 7\n"
    (conf / "frozen.yaml").write_text(profile.replace("cluster: dev", "cluster: frozen"))
    env = {"KDGAT_CONF_DIR": str(tmp_path / "conf")}
    proc = kdgat_train(slurm_cluster, tmp_path, "-m", "cluster=frozen", "dataset=synthetic",
                       "model=gat,vgae", "size=tiny,student", "trainer=smoke", "tracking.enabled=false",
                       f"runs_root={runs}", "+hydra.launcher.additional_parameters.hold=true", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (manifest_path,) = runs.glob(".sweeps/*/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    array = manifest["array_job_id"]
    assert [j["job_id"] for j in manifest["jobs"]] == [f"{array}_{i}" for i in range(4)]
    assert "#SBATCH --array=0-3" in next(manifest_path.parent.glob(".submitit/*/*_submission.sh")).read_text()

    # Edit the profile while the jobs are held: a pending job's config must not change.
    (conf / "frozen.yaml").write_text(profile.replace("seed: 7", "seed: 8"))
    slurm_cluster.run("scontrol", "release", array)
    rows = slurm_cluster.wait_sacct(array, count=4, timeout=150)
    assert {r["State"] for r in rows} == {"COMPLETED"}, rows

    status = subprocess.run([sys.executable, "-m", "kdgat.cli", "status", "--runs-root", str(runs), "--jobs"],
                            capture_output=True, text=True, env=slurm_cluster.env, timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "4 completed" in status.stdout

    points = set()
    for job in manifest["jobs"]:
        runs_of_point = sorted(Path(job["point_dir"]).glob("run_*"))
        assert len(runs_of_point) == 1, runs_of_point
        run_dir = runs_of_point[0]
        assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        frozen = yaml.safe_load(Path(job["config"]).read_text())
        assert saved["seed"] == frozen["seed"] == 7
        assert saved["grid"] == frozen["grid"]
        assert saved["trainer"] == frozen["trainer"]
        env_json = json.loads((run_dir / "env.json").read_text())
        assert env_json["slurm"]["SLURM_ARRAY_JOB_ID"] == array
        points.add(saved["grid"]["model"] + "/" + saved["grid"]["size"])
    assert points == {"gat/tiny", "gat/student", "vgae/tiny", "vgae/student"}
