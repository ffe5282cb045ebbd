"""Checkpoints survive a kill at any moment, with ``$TMPDIR`` on another filesystem (as on OSC).

Lightning's own writer stages a checkpoint in ``$TMPDIR`` and moves it into place; across
filesystems that move is a copy, and a SIGKILL during it leaves a truncated ``last.ckpt``. Here a
real writer process is killed while it writes, and a real training run is killed mid-training and
resumed; every checkpoint on disk must load, and the resume must lose no epoch.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kdgat.training.checkpoints import AtomicCheckpointIO, load_checkpoint, resume_checkpoint

from .conftest import kdgat_train_command


@pytest.fixture
def other_filesystem_tmpdir(tmp_path) -> Path:
    """A ``$TMPDIR`` on another filesystem than ``tmp_path`` (``/dev/shm`` is a tmpfs on Linux)."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test's temporary folder")
    folder = shm / f"kdgat-test-{os.getpid()}-{tmp_path.name}"
    folder.mkdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def staged_files(tmpdir: Path) -> list[str]:
    """What was written to ``$TMPDIR`` apart from PyG's generated ``.py`` templates."""
    return [p.name for p in tmpdir.iterdir() if p.suffix != ".py"]


WRITER = """
import sys, torch
from kdgat.training.checkpoints import AtomicCheckpointIO
io, path = AtomicCheckpointIO(), sys.argv[1]
state = {"global_step": 0, "loops": {}, "optimizer_states": []}
io.save_checkpoint({**state, "state_dict": {"w": torch.zeros(4)}, "epoch": 1}, path)
print("first", flush=True)
io.save_checkpoint({**state, "state_dict": {"w": torch.ones(50_000_000)}, "epoch": 2}, path)  # 200 MB
print("second", flush=True)
"""


def test_a_writer_killed_mid_write_leaves_the_previous_checkpoint_whole(tmp_path, other_filesystem_tmpdir):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    path = folder / "last.ckpt"
    env = {**os.environ, "TMPDIR": str(other_filesystem_tmpdir)}
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env=env, stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout.readline().strip() == "first"
    first_size = path.stat().st_size
    deadline = time.monotonic() + 60
    # Kill as soon as the second checkpoint's bytes start landing anywhere in the folder.
    while time.monotonic() < deadline and child.poll() is None:
        sizes = [p.stat().st_size for p in folder.iterdir() if p.is_file()]
        if any(size > first_size * 10 for size in sizes) or sum(sizes) > 3 * first_size + 1_000_000:
            break
    else:
        pytest.fail("the second write was never seen in progress")
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)

    assert load_checkpoint(path)["epoch"] == 1  # never half of the new one
    assert staged_files(other_filesystem_tmpdir) == []  # nothing was staged in $TMPDIR
    chosen, notes = resume_checkpoint(folder)
    assert chosen == path and any("removed partial write" in note for note in notes), notes
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt", "last.ckpt.previous"]


def test_a_damaged_last_checkpoint_falls_back_to_the_previous_one_with_a_note(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    state = {"state_dict": {}, "global_step": 0, "loops": {}, "optimizer_states": []}
    io.save_checkpoint({**state, "epoch": 3}, path)
    io.save_checkpoint({**state, "epoch": 4}, path)
    assert load_checkpoint(path.with_name("last.ckpt.previous"))["epoch"] == 3
    path.write_bytes(path.read_bytes()[:100])  # what a copy cut short leaves

    chosen, notes = resume_checkpoint(tmp_path)

    assert chosen == tmp_path / "last.ckpt.previous" and load_checkpoint(chosen)["epoch"] == 3
    assert "last.ckpt cannot be loaded" in notes[0] and "moved to last.ckpt.unreadable" in notes[0]
    assert "resuming from last.ckpt.previous (epoch 3)" in notes[1]
    assert (tmp_path / "last.ckpt.unreadable").is_file()
    assert resume_checkpoint(tmp_path / "nothing-here") == (None, [])


def test_a_checkpoint_holding_objects_is_refused_without_running_them(tmp_path):
    canary = tmp_path / "canary"

    class Canary:
        def __reduce__(self):
            return os.system, (f"touch {canary}",)

    torch.save({"state_dict": {}, "epoch": 1, "evil": Canary()}, tmp_path / "last.ckpt")
    chosen, notes = resume_checkpoint(tmp_path)
    assert chosen is None and "cannot be loaded as plain data" in notes[0]
    assert not canary.exists()


# --------------------------------------------------------------------------- a real training run
TINY_GAT = "automotive/synthetic/classifier/gat/tiny/no/all_samples"


def _start(root: Path, env: dict, data: list[str], restart: int, epochs: int):
    """``kdgat-train`` as the start number ``restart`` of one (pretend) Slurm job: the requeue path
    itself is tested against the real Slurm in tests/slurm; here only the kill matters."""
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_CLUSTER_NAME": "killtest", "SLURM_RESTART_COUNT": str(restart)}
    return subprocess.Popen(
        [*kdgat_train_command(), f"runs_root={root}", *data, "size=tiny", "tracking.enabled=false",
         f"trainer.max_epochs={epochs}", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
         "early_stopping.enabled=false"],
        env={**env, **slurm}, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_run_killed_mid_training_resumes_without_losing_or_repeating_an_epoch(
        tmp_path, other_filesystem_tmpdir, synthetic_root, cache_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KDGAT_", "SLURM_"))}
    env["TMPDIR"] = str(other_filesystem_tmpdir)
    data = [f"data_root={synthetic_root}", f"cache_dir={cache_dir}"]
    root = tmp_path / "runs"
    root.mkdir()
    epochs = 12
    first = _start(root, env, data, restart=0, epochs=epochs)
    run_dir = root / TINY_GAT / "run_001"
    checkpoints = run_dir / "checkpoints"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and first.poll() is None:
        if (checkpoints / "last.ckpt.previous").is_file():  # two epochs saved: kill during the third
            break
        time.sleep(0.02)
    assert first.poll() is None, first.stdout.read()
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    for path in checkpoints.glob("*.ckpt*"):
        if not path.name.startswith("."):
            load_checkpoint(path)  # every checkpoint on disk is whole
    saved_epoch = load_checkpoint(checkpoints / "last.ckpt")["epoch"]
    assert staged_files(other_filesystem_tmpdir) == []

    second = _start(root, env, data, restart=1, epochs=epochs)
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "completed" and status["resumed_from"].endswith("last.ckpt")

    def validated(log: Path) -> list[int]:
        with open(log) as handle:
            return sorted({int(float(row["epoch"])) for row in csv.DictReader(handle) if row.get("val/loss")})
    before = validated(run_dir / "logs" / "metrics.before_resume_0.csv")
    after = validated(run_dir / "logs" / "metrics.csv")
    # The resume continues after the last whole checkpoint: nothing lost, and only the epoch the
    # kill interrupted (whose checkpoint never landed) is trained again.
    assert after == list(range(saved_epoch + 1, epochs)), (saved_epoch, after)
    assert set(before) | set(after) == set(range(epochs)) and len(set(before) & set(after)) <= 1
    history = json.loads((run_dir / "metrics.json").read_text())["history"]["val/loss"]
    assert len(history) == epochs and None not in history
    assert not [p.name for p in checkpoints.iterdir() if p.name.startswith(".")]
