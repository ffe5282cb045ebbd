"""A requeued job (``scontrol requeue`` mid-training) resumes in the SAME run directory from
``checkpoints/last.ckpt`` and trains exactly ``max_epochs`` epochs in all; status.json shows it."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(300)]
EPOCHS = 3
# ~4 s per epoch on the 2-core machine: long enough to requeue between two epochs' checkpoints.
SLOW = ["size=tiny", f"trainer.max_epochs={EPOCHS}", "trainer.limit_train_batches=60",
        "trainer.limit_val_batches=5", "datamodule.batch_size=2", "tracking.enabled=false",
        "early_stopping.enabled=false"]


def test_requeued_job_resumes_from_last_checkpoint_in_same_run_dir(slurm_cluster, tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-m", "kdgat.train", "cluster=dev", "dataset=synthetic",
                           f"runs_root={runs}", *SLOW], capture_output=True, text=True, cwd=tmp_path,
                          env=slurm_cluster.env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (manifest_path,) = runs.glob(".sweeps/*/manifest.json")
    (job,) = json.loads(manifest_path.read_text())["jobs"]
    job_id, point_dir = job["job_id"], Path(job["point_dir"])
    last = point_dir / "run_001" / "checkpoints" / "last.ckpt"

    slurm_cluster.wait_until(last.is_file, timeout=120, what="the first epoch's last.ckpt")
    assert slurm_cluster.scontrol_job(job_id)["JobState"] == "RUNNING"
    slurm_cluster.run("scontrol", "requeue", job_id)

    (row,) = slurm_cluster.wait_sacct(job_id, timeout=180)
    assert row["State"] == "COMPLETED", (row, Path(job["stderr"]).read_text()[-3000:])
    assert slurm_cluster.scontrol_job(job_id).get("Restarts", "1") == "1"

    assert [p.name for p in point_dir.glob("run_*")] == ["run_001"]  # same run dir, none allocated
    run_dir = point_dir / "run_001"
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "completed"
    assert [h["status"] for h in status["history"]] == ["running", "preempted", "running", "completed"]
    assert status["requeues"] == 1
    assert status["resumed_from"] == str(last)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["summary"]["epochs"] == EPOCHS  # as many as an uninterrupted run
    # Every epoch validated, none twice past the resume point.
    epochs = []
    for log in sorted((run_dir / "logs").glob("metrics*.csv")):
        with open(log) as handle:
            epochs += [int(r["epoch"]) for r in csv.DictReader(handle) if r.get("val/loss")]
    assert sorted(set(epochs)) == list(range(EPOCHS))  # every epoch trained and validated
    assert len(metrics["history"]["val/loss"]) == EPOCHS

    import torch

    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == EPOCHS - 1
