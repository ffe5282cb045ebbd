"""submitit's own time-limit path: a job with a 2-minute limit gets USR2 ``signal_delay_s`` before
it, submitit calls the job's ``checkpoint()`` (run marked ``preempted``) and requeues it, and the
requeued start resumes the SAME ``run_NNN`` from ``checkpoints/last.ckpt``, training every epoch
exactly once.

Timing (measured on the 2-core dev machine): Slurm sends the ``--signal`` warning from slurmctld's
periodic time-limit check (every 30 s), as soon as less than ``signal_delay_s + 30`` s remain, so
with ``timeout_min=2`` and ``signal_delay_s=60`` USR2 arrives 30-60 s after the start (45 s
observed). A requeued job waits ``cred_expire`` (10 s on the dev cluster) before it restarts, and
every restart is signalled again at the same offset, so the training (~1 s per epoch, ~70 s in
all) is long enough that the first start is always interrupted, and a second signal, when the
first came early, is one more requeue (``max_requeues=3``), not a failure.

``module.optimizer.lr=1e-5`` keeps val/loss improving every epoch. With Lightning 2.6,
``ModelCheckpoint(monitor=..., save_last=True)`` in kdgat.training.stage writes ``last.ckpt`` only
in epochs where ``best.ckpt`` is written (monitor improved), so with the default lr (val/loss
stalls from epoch ~14) a requeued start resumes from the best epoch, not the last one, and repeats
epochs. That is a bug in stage.py, not in the requeue path tested here.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from .conftest import FINAL_STATES

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(330)]
EPOCHS = 70
TRAIN = ["dataset=synthetic", "size=tiny", f"trainer.max_epochs={EPOCHS}",
         "trainer.limit_train_batches=200", "trainer.limit_val_batches=5",
         "datamodule.batch_size=2", "early_stopping.enabled=false", "tracking.enabled=false",
         # slow, steady learning: val/loss improves every epoch (see the module docstring)
         "module.optimizer.lr=1e-5"]
LIMITS = ["hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=60",
          "hydra.launcher.max_requeues=3"]
STAMP = re.compile(r"submitit \w+ \((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\) - (.*)")


def _submitit_events(log: Path) -> list[tuple[datetime, str]]:
    events = []
    for line in log.read_text(errors="replace").splitlines():
        match = STAMP.match(line)
        if match:
            events.append((datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f"), match.group(2)))
    return events


def _epochs(path: Path, column: str) -> list[int]:
    with open(path) as handle:
        return [int(r["epoch"]) for r in csv.DictReader(handle) if r.get(column)]


def test_time_limit_signal_requeues_and_resumes_in_same_run_dir(slurm_cluster, tmp_path):
    runs = tmp_path / "runs"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "kdgat.train", "-m", "cluster=dev",
                           f"runs_root={runs}", *TRAIN, *LIMITS], capture_output=True, text=True,
                          cwd=tmp_path, env=slurm_cluster.env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (manifest_path,) = runs.glob(".sweeps/*/manifest.json")
    (job,) = json.loads(manifest_path.read_text())["jobs"]
    job_id, point_dir = job["job_id"], Path(job["point_dir"])
    stdout, stderr = Path(job["stdout"]), Path(job["stderr"])

    # Done once the job has left the queue (a requeued job stays in it, PENDING) and accounting
    # holds its final record: slurmdbd can still show the last start RUNNING for a while after
    # squeue has dropped the job, so wait for a final state, not merely "not REQUEUED".
    slurm_cluster.wait_until(lambda: job_id not in slurm_cluster.job_ids(), timeout=280,
                             what=f"job {job_id} to finish")
    records = slurm_cluster.wait_until(
        lambda: (rows := slurm_cluster.sacct(job_id, duplicates=True))
        and rows[-1]["State"].split()[0] in FINAL_STATES and rows,
        timeout=60, what=f"final sacct record of job {job_id}")
    wall = time.monotonic() - started
    log = stderr.read_text(errors="replace")
    states = [r["State"].split()[0] for r in records]
    requeues = len(states) - 1
    assert states == ["REQUEUED"] * requeues + ["COMPLETED"], (records, log[-4000:])
    assert requeues >= 1, (records, log[-4000:])

    # Every start was signalled by the time limit (USR2), handled by submitit, which requeued it.
    events = _submitit_events(stdout)  # submitit's INFO log, appended to by every start
    starts = [t for t, msg in events if msg.startswith("Starting with JobEnvironment")]
    signals = [t for t, msg in events if msg.startswith("Caught signal SIGUSR2")]
    assert len(starts) == requeues + 1 and len(signals) == requeues, log[-4000:]
    assert sum("this job is timed-out" in msg for _, msg in events) == requeues, log[-4000:]
    assert sum(msg.startswith("Requeued job") for _, msg in events) == requeues, log[-4000:]
    offsets = [(signal - start).total_seconds() for start, signal in zip(starts, signals)]
    print(f"\nUSR2 {offsets} s after each start; {requeues} requeue(s); {wall:.0f} s wall")
    assert all(0 < offset < 120 for offset in offsets), offsets

    # Same run directory, resumed, completed; no spurious `failed` from submitit's exit.
    assert sorted(p.name for p in point_dir.glob("run_*")) == ["run_001"]
    run_dir = point_dir / "run_001"
    last = run_dir / "checkpoints" / "last.ckpt"
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "completed", status
    assert [h["status"] for h in status["history"]] == (
        ["running"] + ["preempted", "running"] * requeues + ["completed"]), status["history"]
    assert {h["job"] for h in status["history"]} == {job_id}
    assert status["requeues"] == requeues
    assert status["resumed_from"] == str(last)
    assert "error" not in status and "traceback" not in status, status

    # Every epoch trained and validated exactly once across the attempts' CSV logs.
    logs = sorted((run_dir / "logs").glob("metrics.before_resume_*.csv"),
                  key=lambda p: int(p.stem.rsplit("_", 1)[-1]))
    assert len(logs) == requeues, logs
    logs.append(run_dir / "logs" / "metrics.csv")
    for column in ("val/loss", "train/loss"):
        epochs = [e for path in logs for e in _epochs(path, column)]
        assert epochs == list(range(EPOCHS)), (column, [(p.name, _epochs(p, column)) for p in logs])
    for path in logs[:-1]:  # each interrupted attempt got somewhere
        assert _epochs(path, "val/loss"), path
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["summary"]["epochs"] == EPOCHS
    assert len(metrics["history"]["val/loss"]) == EPOCHS
    assert None not in metrics["history"]["val/loss"]

    import torch

    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == EPOCHS - 1
