"""Finding the completed runs a grid point needs, before any work starts.

A run serves as a dependency only when it is what the need asks for and can be loaded: status
``completed``, a ``config.yaml`` whose grid point is the needed one, and ``checkpoints/best.ckpt``
(``+trainer.fast_dev_run=true`` ends "completed" without checkpoints). A pinned run that fails
any of these is refused, naming what was expected and what was found; an unpinned need takes the
newest run that passes, preferring one with the same seed as the run about to start, so seed *s*
of a student distils from seed *s* of its teacher.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kdgat.grid import GridPoint, dependencies
from kdgat.runs.rundir import completed_runs, is_run_dir, read_status

# The override that pins each role's run (and where the resolved path is saved in config.yaml).
PIN_KEYS = {"teacher": "module.distillation.teacher_run", "vgae": "module.fusion.vgae_run",
            "gat": "module.fusion.gat_run", "scorer": "curriculum.scorer_run"}


class MissingDependency(RuntimeError):
    """A needed grid point has no usable completed run; the message says how to create one."""


@dataclass(frozen=True)
class RunIdentity:
    """What a run's saved config says it is: its grid point and seed (``None`` where unreadable)."""

    point: GridPoint | None
    seed: int | None
    problem: str | None = None  # why the run cannot serve as a dependency


def identify(run: Path) -> RunIdentity:
    """Read ``run``'s grid point and seed and check that it can serve as a dependency."""
    import yaml

    run = Path(run)
    try:
        status = read_status(run).get("status") if is_run_dir(run) else None
    except (OSError, ValueError, AttributeError):
        status = None
    if status != "completed":
        return RunIdentity(None, None, "not a completed run directory (expected status.json with "
                                       "status 'completed')")
    try:
        config = yaml.safe_load((run / "config.yaml").read_text())
        point = GridPoint(**{k: str(v) for k, v in config["grid"].items()})
        seed = config.get("seed")
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as err:
        return RunIdentity(None, None, f"its config.yaml cannot be read as a kdgat run config ({err})")
    if not (run / "checkpoints" / "best.ckpt").is_file():
        return RunIdentity(point, seed, "it has no checkpoints/best.ckpt (a fast_dev_run, or an "
                                        "interrupted copy)")
    return RunIdentity(point, seed if isinstance(seed, int) else None)


def resolve(point: GridPoint, runs_root: Path, pinned: dict[str, str | None],
            extra_overrides: str = "", seed: int | None = None) -> dict[str, Path]:
    """Map each role ``point`` needs to a completed run directory.

    Args:
        point: the grid point about to run.
        runs_root: where runs are looked for.
        pinned: role → run directory given by override (``None``: newest usable run).
        extra_overrides: overrides to repeat in the suggested command (e.g. ``data_root=...``).
        seed: the seed of the run about to start; unpinned needs prefer a run with this seed.

    Raises:
        MissingDependency: a pin that is not a usable run of the needed point, or no usable run.
    """
    found = {}
    for need in dependencies(point):
        pin = pinned.get(need.role)
        if pin:
            identity = identify(Path(pin))
            if identity.problem is None and identity.point != need.point:
                identity = RunIdentity(identity.point, identity.seed,
                                       f"it is a run of {identity.point.name}")
            if identity.problem:
                raise MissingDependency(
                    f"{PIN_KEYS[need.role]}={pin}: {identity.problem}, but {point.name} needs its "
                    f"{need.role}, a completed run of grid point {need.point.name}; pin one of those")
            found[need.role] = Path(pin)
            continue
        folder = Path(runs_root) / need.point.path
        usable, unusable = [], []
        for run in completed_runs(folder):
            identity = identify(run)
            ok = identity.problem is None and identity.point == need.point
            (usable if ok else unusable).append((run, identity))
        if not usable:
            command = f"kdgat-train experiment={need.point.name} runs_root={runs_root}"
            if extra_overrides:
                command += f" {extra_overrides}"
            skipped = "".join(f"\n  skipped {run.name}: {identity.problem or 'another grid point'}"
                              for run, identity in unusable)
            raise MissingDependency(
                f"{point.name} needs its {need.role}, grid point {need.point.name}, but no completed "
                f"run was found in {folder}.{skipped}\nCreate it with:\n  {command}\n"
                f"or pin an existing run with {PIN_KEYS[need.role]}=RUN_DIR")
        same_seed = [run for run, identity in usable if seed is not None and identity.seed == seed]
        found[need.role] = same_seed[0] if same_seed else usable[0][0]
    return found


def pairing(needs: dict[str, Path], seed: int | None) -> dict[str, dict]:
    """What ``status.json`` records of each dependency: run, seed, and whether the seeds match."""
    record = {}
    for role, run in needs.items():
        other = identify(run).seed
        record[role] = {"run": str(run), "seed": other, "same_seed": other is not None and other == seed}
    return record
