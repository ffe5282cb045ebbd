"""A Slurm job and its run directory, across requeues (preemption, timeout, ``scontrol requeue``).

When a job allocates ``run_NNN`` it records ``{grid point folder}/.slurm/{cluster}-{job}.json``
(job = ``ARRAYID_TASK`` for array tasks, else the job id; both survive a requeue). A requeued start
of the same job (``SLURM_RESTART_COUNT > 0`` and that file there, its run still ``preempted`` or
``running``) finds its run directory there and resumes in it from ``checkpoints/last.ckpt``; ``status.json`` goes
``running → preempted → running`` with the restart count in its history. A job requeued more than
``KDGAT_MAX_REQUEUES`` times (set by the launcher from ``hydra.launcher.max_requeues``) fails.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from kdgat.runs.rundir import now, read_status, set_status, write_json

INDEX = ".slurm"
MAX_REQUEUES_ENV = "KDGAT_MAX_REQUEUES"


class TooManyRequeues(RuntimeError):
    pass


def job_key() -> str | None:
    """``{cluster}-{job}`` of the Slurm job this process runs in (``None`` outside Slurm)."""
    env = os.environ
    if "SLURM_JOB_ID" not in env:
        return None
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        job = f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    else:
        job = env["SLURM_JOB_ID"]
    return f"{env.get('SLURM_CLUSTER_NAME', 'slurm')}-{job}"


def restart_count() -> int:
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    except ValueError:
        return 0


def max_requeues() -> int:
    return int(os.environ.get(MAX_REQUEUES_ENV, "3"))


def record(point_dir: Path, run_dir: Path) -> None:
    """Remember which run directory this Slurm job allocated."""
    key = job_key()
    if key is None:
        return
    folder = Path(point_dir) / INDEX
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / f"{key}.json", {"job": key, "run_dir": Path(run_dir).name, "time": now(),
                                        "slurm_job_id": os.environ.get("SLURM_JOB_ID")})


def run_dir_of(point_dir: Path, key: str | None = None) -> Path | None:
    """The run directory job KEY (default: this job) allocated under POINT_DIR, if any."""
    key = key or job_key()
    if key is None:
        return None
    path = Path(point_dir) / INDEX / f"{key}.json"
    try:
        entry = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    run_dir = Path(point_dir) / str(entry.get("run_dir", ""))
    return run_dir if (run_dir / "status.json").is_file() else None


def resume(point_dir: Path) -> Path | None:
    """On a requeued start of this job, its unfinished run directory (status updated), else None.

    Raises:
        TooManyRequeues: the job was requeued more often than ``KDGAT_MAX_REQUEUES`` (the run is
            marked failed).
    """
    run_dir = run_dir_of(point_dir)
    if run_dir is None or restart_count() == 0:
        # Only a start that Slurm itself counts as a restart resumes: another kdgat-train in the
        # same allocation (salloc, a script running several points) must get its own run_NNN.
        return None
    status = read_status(run_dir)
    if status.get("status") not in ("preempted", "running"):
        return None  # a completed or failed run is never reopened
    restarts = restart_count()
    requeues = int(status.get("requeues", 0)) + 1
    restarts = max(restarts, requeues)
    if status.get("status") != "preempted":  # killed without a signal (scontrol requeue, node loss)
        set_status(run_dir, "preempted", requeues=restarts,
                   note=f"requeued by Slurm (SLURM_RESTART_COUNT={restart_count()})")
    limit = max_requeues()
    if restarts > limit:
        set_status(run_dir, "failed", requeues=restarts,
                   error=f"requeued {restarts} times, more than max_requeues={limit}")
        raise TooManyRequeues(f"{run_dir}: requeued {restarts} times, more than max_requeues={limit} "
                              "(raise it with hydra.launcher.max_requeues=N)")
    last = run_dir / "checkpoints" / "last.ckpt"
    set_status(run_dir, "running", requeues=restarts,
               resumed_from=str(last) if last.is_file() else None)
    return run_dir


def mark_preempted(point_dirs: list[Path], reason: str) -> Path | None:
    """From submitit's checkpoint hook (USR2 before preemption or the time limit): status preempted."""
    for point_dir in point_dirs:
        run_dir = run_dir_of(point_dir)
        if run_dir is not None and read_status(run_dir).get("status") == "running":
            set_status(run_dir, "preempted", note=reason)
            return run_dir
    return None
