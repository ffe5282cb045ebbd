"""A run directory: ``{runs_root}/{grid path}/run_NNN/`` and the files that describe the run.

``run_NNN`` is allocated with ``mkdir``, which is atomic: of several processes that try the same
number, exactly one succeeds and the others move on to the next, so concurrent jobs never share a
directory. Every file is written to a temporary name and renamed, so a reader never sees half of
one.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import tempfile
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path

RUN_PREFIX = "run_"
STATUSES = ("running", "completed", "failed", "preempted")
SLURM_VARIABLES = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_NAME",
                   "SLURM_JOB_PARTITION", "SLURM_RESTART_COUNT", "SLURM_SUBMIT_HOST")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


TEMPORARY_PREFIX = "."  # a file being written is ".{name}.XXXXXXXX" beside its final name


@contextmanager
def atomic_file(path: Path, mode: str = "w"):
    """Write ``path`` all or nothing: into a temporary file *beside* it (never ``$TMPDIR``, which
    may be another filesystem, where the final move is a copy that a kill can cut short), flushed
    to disk, then renamed over ``path``. A failure removes the temporary file."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f"{TEMPORARY_PREFIX}{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, mode) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    with suppress(OSError):  # the rename itself survives a crash only once the folder is synced
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def write_atomic(path: Path, text: str) -> None:
    with atomic_file(path) as out:
        out.write(text)


def write_json(path: Path, content) -> None:
    write_atomic(path, json.dumps(content, indent=1, default=str) + "\n")


def allocate(point_dir: Path) -> Path:
    """Create and return the next free ``run_NNN`` under ``point_dir``."""
    point_dir = Path(point_dir)
    point_dir.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name[len(RUN_PREFIX):]) for p in point_dir.glob(f"{RUN_PREFIX}*")
             if p.name[len(RUN_PREFIX):].isdigit()]
    number = max(taken, default=0) + 1
    while True:
        candidate = point_dir / f"{RUN_PREFIX}{number:03d}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            number += 1


def is_run_dir(path: Path) -> bool:
    return Path(path).name.startswith(RUN_PREFIX) and (Path(path) / "status.json").is_file()


def read_status(run_dir: Path) -> dict:
    with open(Path(run_dir) / "status.json") as handle:
        return json.load(handle)


def set_status(run_dir: Path, status: str, **fields) -> dict:
    """Update ``status.json``: the state, its time, and a history of every change."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r}: expected one of {STATUSES}")
    path = Path(run_dir) / "status.json"
    current = read_status(run_dir) if path.is_file() else {"history": []}
    stamp = now()
    current.update(fields, status=status, updated=stamp)
    current.setdefault("started", stamp)
    if status in ("completed", "failed"):
        current["finished"] = stamp
    current["history"].append({"status": status, "time": stamp,
                               **({"job": os.environ["SLURM_JOB_ID"]} if "SLURM_JOB_ID" in os.environ else {})})
    write_json(path, current)
    return current


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def host_identity() -> dict[str, str | None]:
    """This process's boot id and pid namespace: with the host name they say whether a recorded
    pid can be checked from here (another container may share the host name); None if unknown."""
    identity = {}
    for key, path in (("boot_id", "/proc/sys/kernel/random/boot_id"), ("pid_namespace", "/proc/self/ns/pid")):
        try:
            identity[key] = os.readlink(path) if key == "pid_namespace" else Path(path).read_text().strip()
        except OSError:
            identity[key] = None
    return identity


def environment() -> dict:
    """What ran this: code version, packages, interpreter, host, GPU, Slurm ids."""
    from importlib import metadata

    packages = {}
    for name in ("kdgat", "torch", "torch-geometric", "lightning", "hydra-core", "hydra-zen",
                 "omegaconf", "submitit", "hydra-submitit-launcher", "mlflow", "numpy"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = {"name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count(),
                   "cuda": torch.version.cuda}
    except ImportError:
        pass
    status = _git("status", "--porcelain")
    return {
        "git_commit": _git("rev-parse", "HEAD"), "git_dirty": bool(status) if status is not None else None,
        "packages": packages, "python": platform.python_version(), "platform": platform.platform(),
        "host": socket.gethostname(), **host_identity(), "gpu": gpu, "pid": os.getpid(), "time": now(),
        "slurm": {k: os.environ[k] for k in SLURM_VARIABLES if k in os.environ},
    }


def completed_runs(point_dir: Path) -> list[Path]:
    """Completed runs of one grid point, newest (highest number) first."""
    runs = []
    for run in Path(point_dir).glob(f"{RUN_PREFIX}*"):
        try:
            if read_status(run).get("status") == "completed":
                runs.append(run)
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(runs, key=lambda p: int(p.name[len(RUN_PREFIX):]) if p.name[len(RUN_PREFIX):].isdigit() else -1,
                  reverse=True)

