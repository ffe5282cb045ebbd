"""What a runs root holds: the runs of each grid point, their state and their metrics.

Used by ``kdgat grid``, ``kdgat status``, ``kdgat report`` and ``kdgat pipeline``. Nothing here
imports torch, and nothing here raises on a damaged run directory: a ``status.json`` or
``metrics.json`` that cannot be read is reported as ``unreadable`` with its path and the reason,
because one broken file must not hide the state of every other run.

Reading never writes. A run whose process or Slurm job died without saying so still reads
``running`` (or ``preempted``) until ``kdgat status`` reconciles it (:mod:`kdgat.runs.reconcile`),
which records ``failed`` with a ``killed`` section in its ``status.json``; a run killed that way
by ``scancel`` reads ``cancelled``.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from kdgat.data.datasets import MODALITIES
from kdgat.grid import (BASELINE_MODELS, BASELINE_SIZE, DISTILLABLE_SIZES, FUSION_INPUT_MODES, SIZES,
                        GridPoint, all_points, dependencies)
from kdgat.runs.rundir import RUN_PREFIX, STATUSES, host_identity

UNREADABLE = "unreadable"
# A run's state is its status.json status, or ``unreadable``, or ``cancelled``: status.json says
# ``failed`` with ``killed.state`` CANCELLED (its Slurm job was scancelled, kdgat.runs.reconcile).
CANCELLED = "cancelled"
# A point's state: ``done`` as soon as it has a completed run (the one dependencies use), else the
# state of its newest run, else ``missing``.
POINT_STATES = ("done", "running", "failed", CANCELLED, "preempted", UNREADABLE, "missing")


# --------------------------------------------------------------------------- the KD-GAT pipeline
def pipeline_points(dataset: str, sizes=("teacher", "student"), modality: str = "automotive",
                    distillation: str = "standard") -> list[GridPoint]:
    """The grid points of the KD-GAT pipeline of one dataset, each after everything it needs.

    First the baselines (``majority`` and ``window_stats``: they need nothing, and every report
    shows them beside the models), then for every size: a VGAE trained on normal windows only and
    a GAT classifier on all samples (sizes below ``teacher`` distilled from the teacher with
    ``distillation``, and the same students trained without distillation, so that
    ``kdgat report`` can pair every distilled point with its ``distillation=no`` twin by seed),
    then the fusion agents that combine them (``dqn`` and the ``mlp`` baseline; below teacher,
    distilled and not). Points a listed one depends on are included even when their size is not
    in ``sizes`` (a student needs its teacher), so the list can be run top to bottom.

    Args:
        dataset (str): A dataset of ``modality``.
        sizes (tuple[str], optional): Model sizes to train. (default: ``("teacher", "student")``)
        modality (str, optional): (default: ``"automotive"``)
        distillation (str, optional): How sizes below teacher learn from it; fusion agents of
            those sizes use ``standard`` (the only distillation fusion has). ``"no"`` lists no
            distilled point. (default: ``"standard"``)

    Raises:
        kdgat.grid.InvalidGridPoint: an unknown dataset, size or distillation, listing the valid ones.
    """
    unknown = [size for size in sizes if size not in SIZES]
    if unknown:
        GridPoint(modality, dataset, "classifier", "gat", unknown[0], "no", "all_samples").validate()
    # Teachers first: every distilled point needs them.
    ordered_sizes = sorted(dict.fromkeys(sizes), key=lambda s: (s != "teacher", SIZES.index(s)))
    wanted = [GridPoint(modality, dataset, "baseline", model, BASELINE_SIZE, "no", "all_samples")
              for model in BASELINE_MODELS]
    def kinds(size: str, distilled: str) -> tuple[str, ...]:
        # Below teacher: the distilled point, then its un-distilled control (needs no teacher).
        return tuple(dict.fromkeys((distilled, "no"))) if size in DISTILLABLE_SIZES else ("no",)

    for size in ordered_sizes:
        for kind in kinds(size, distillation):
            for learning_type, model in (("unsupervised", "vgae"), ("classifier", "gat")):
                wanted.append(GridPoint(modality, dataset, learning_type, model, size, kind,
                                        FUSION_INPUT_MODES[model]))
    for size in ordered_sizes:
        # ``standard`` is the only distillation fusion has (none at all with distillation="no").
        for kind in kinds(size, "no" if distillation == "no" else "standard"):
            for model in ("dqn", "mlp"):
                wanted.append(GridPoint(modality, dataset, "fusion", model, size, kind, "all_samples"))
    ordered: list[GridPoint] = []

    def visit(point: GridPoint) -> None:
        if point in ordered:
            return
        point.validate()
        for need in dependencies(point):
            visit(need.point)
        ordered.append(point)

    for point in wanted:
        visit(point)
    return ordered


# --------------------------------------------------------------------------- reading run files
def read_json(path: Path) -> tuple[dict | None, str | None]:
    """``(document, None)``, or ``(None, why)`` when the file is missing, unreadable or not a JSON object."""
    try:
        with open(path) as handle:
            document = json.load(handle)
    except FileNotFoundError:
        return None, f"{path}: missing"
    except (OSError, UnicodeDecodeError) as err:
        return None, f"{path}: {err}"
    except json.JSONDecodeError as err:
        return None, f"{path}: not valid JSON ({err})"
    if not isinstance(document, dict):
        return None, f"{path}: expected a JSON object, found {type(document).__name__}"
    return document, None


def section(document, key: str) -> dict:
    """``document[key]`` when both are dicts, else ``{}``: a hand-edited file must not crash a listing."""
    value = document.get(key) if isinstance(document, dict) else None
    return value if isinstance(value, dict) else {}


def number(value):
    """``value`` if it is a number (not a bool), else ``None``."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def run_number(run_dir: Path) -> int:
    digits = Path(run_dir).name[len(RUN_PREFIX):]
    return int(digits) if digits.isdigit() else -1


@dataclass
class Run:
    """One ``run_NNN`` directory: its status document (``None`` when unreadable) and state."""

    point: GridPoint
    run_dir: Path
    status: str
    document: dict | None = None
    problem: str | None = None  # why status.json is unreadable, or a note on a stale run

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def summary(self) -> dict:
        return section(self.document, "summary")

    @property
    def error(self) -> str | None:
        error = (self.document or {}).get("error")
        return None if error is None else str(error)

    def metrics(self) -> tuple[dict | None, str | None]:
        """The run's ``metrics.json`` (or ``None`` and why)."""
        return read_json(self.run_dir / "metrics.json")


def read_run(point: GridPoint, run_dir: Path) -> Run:
    """Read one run directory's state without ever raising on its contents."""
    document, problem = read_json(Path(run_dir) / "status.json")
    if document is None:
        return Run(point, Path(run_dir), UNREADABLE, None, problem)
    status = document.get("status")
    if status not in STATUSES and status != CANCELLED:
        return Run(point, Path(run_dir), UNREADABLE, document,
                   f"{Path(run_dir) / 'status.json'}: unknown status {status!r}")
    if status == "failed" and section(document, "killed").get("state") == "CANCELLED":
        status = CANCELLED
    run = Run(point, Path(run_dir), status, document)
    if status == "running":
        env, _ = read_json(Path(run_dir) / "env.json")
        gone = local_process_gone(env)
        run.problem = f"stale? {gone}" if gone else None
    return run


def local_process_gone(env: dict | None) -> str | None:
    """Why the process that started a local run is certainly gone, else ``None``.

    Only a run started on this host outside Slurm can be judged here (a Slurm run is judged by
    the scheduler, :mod:`kdgat.runs.reconcile`): its process is gone when no process has its pid.
    Where ``env.json`` records the host's boot id or pid namespace and they differ from this
    process's (another container with the same host name), the pid means nothing here and
    nothing is said. A reused pid reads as alive: wrong in the safe direction.
    """
    if not env or env.get("slurm") or env.get("host") != socket.gethostname():
        return None
    pid = env.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    here = host_identity()
    if any(env.get(key) is not None and env.get(key) != value for key, value in here.items()):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"process {pid} on this host is gone"
    except OSError:  # EPERM: it exists (another user's)
        return None
    return None


# --------------------------------------------------------------------------- points and runs
@dataclass
class PointRuns:
    """A grid point and all of its runs under a runs root, newest first."""

    point: GridPoint
    folder: Path
    runs: list[Run] = field(default_factory=list)

    @property
    def newest(self) -> Run | None:
        return self.runs[0] if self.runs else None

    @property
    def completed(self) -> Run | None:
        """The newest completed run: the one that dependencies and reports use."""
        return next((run for run in self.runs if run.status == "completed"), None)

    @property
    def state(self) -> str:
        if self.completed is not None:
            return "done"
        return self.newest.status if self.newest is not None else "missing"

    @property
    def shown(self) -> Run | None:
        """The run that stands for the point: the newest completed one, else the newest."""
        return self.completed or self.newest

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for run in self.runs:
            counts[run.status] = counts.get(run.status, 0) + 1
        return counts


def point_runs(runs_root: Path, point: GridPoint) -> PointRuns:
    """All runs of ``point`` under ``runs_root`` (none when its folder does not exist)."""
    folder = Path(runs_root) / point.path
    found = PointRuns(point, folder)
    try:
        candidates = [p for p in folder.iterdir() if p.name.startswith(RUN_PREFIX) and p.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return found
    found.runs = [read_run(point, p) for p in sorted(candidates, key=run_number, reverse=True)]
    return found


def scan(runs_root: Path, points: list[GridPoint] | None = None) -> list[PointRuns]:
    """:func:`point_runs` of every point (default: the whole grid), in the order given.

    A folder per modality and dataset is checked once, so scanning all 420 points of an empty or
    partial runs root costs a few dozen ``stat`` calls.
    """
    points = all_points() if points is None else points
    present = {}
    results = []
    for point in points:
        key = (point.modality, point.dataset)
        if key not in present:
            present[key] = (Path(runs_root) / point.modality / point.dataset).is_dir()
        results.append(point_runs(runs_root, point) if present[key]
                       else PointRuns(point, Path(runs_root) / point.path))
    return results


def datasets_with_runs(runs_root: Path) -> list[tuple[str, str]]:
    """``(modality, dataset)`` pairs, in registry order, whose folder holds at least one run."""
    found = []
    for modality, datasets in MODALITIES.items():
        for dataset in datasets:
            folder = Path(runs_root) / modality / dataset
            if folder.is_dir() and any(
                    p.name.startswith(RUN_PREFIX) for p in folder.glob("*/*/*/*/*/*")):
                found.append((modality, dataset))
    return found
