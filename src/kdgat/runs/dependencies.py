"""Finding the completed runs a grid point needs, before any work starts."""

from __future__ import annotations

from pathlib import Path

from kdgat.grid import GridPoint, dependencies
from kdgat.runs.rundir import completed_runs, is_run_dir, read_status

# The override that pins each role's run (and where the resolved path is saved in config.yaml).
PIN_KEYS = {"teacher": "module.distillation.teacher_run", "vgae": "module.fusion.vgae_run",
            "gat": "module.fusion.gat_run", "scorer": "curriculum.scorer_run"}


class MissingDependency(RuntimeError):
    """A needed grid point has no completed run; the message says how to create one."""


def resolve(point: GridPoint, runs_root: Path, pinned: dict[str, str | None],
            extra_overrides: str = "") -> dict[str, Path]:
    """Map each role ``point`` needs to a completed run directory.

    Args:
        point: the grid point about to run.
        runs_root: where runs are looked for.
        pinned: role → run directory given by override (``None``: newest completed run).
        extra_overrides: overrides to repeat in the suggested command (e.g. ``data_root=...``).
    """
    found = {}
    for need in dependencies(point):
        pin = pinned.get(need.role)
        if pin:
            run = Path(pin)
            if not is_run_dir(run) or read_status(run).get("status") != "completed":
                raise MissingDependency(
                    f"{PIN_KEYS[need.role]}={pin}: not a completed run directory (expected "
                    f"status.json with status 'completed'); pin a completed run of {need.point.name}")
            found[need.role] = run
            continue
        folder = Path(runs_root) / need.point.path
        runs = completed_runs(folder)
        if not runs:
            command = f"kdgat-train experiment={need.point.name} runs_root={runs_root}"
            if extra_overrides:
                command += f" {extra_overrides}"
            raise MissingDependency(
                f"{point.name} needs its {need.role}, grid point {need.point.name}, but no completed "
                f"run was found in {folder}.\nCreate it with:\n  {command}\n"
                f"or pin an existing run with {PIN_KEYS[need.role]}=RUN_DIR")
        found[need.role] = runs[0]
    return found
