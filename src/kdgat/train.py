"""``kdgat-train``: the single Hydra entry point (``python -m kdgat.train``).

Composes a config from the hydra-zen store, checks the grid point and its dependencies, allocates
the run directory and writes the resolved config there — all before any data is read — then runs
the stage (:func:`kdgat.training.stage.run_stage`) and keeps ``status.json`` true whatever happens.
Nothing heavy is imported at module level: ``--help``, ``--cfg job`` and composition stay fast.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

from hydra_zen import zen

from kdgat.config.store import store
from kdgat.grid import GridPoint
from kdgat.runs.dependencies import PIN_KEYS, resolve
from kdgat.runs.rundir import allocate, environment, set_status, write_atomic, write_json


def grid_point(cfg) -> GridPoint:
    """The validated grid point of a composed config."""
    return GridPoint(**{k: str(v) for k, v in cfg.grid.items()}).validate()


def seed_everything(cfg) -> None:
    """zen pre-call: seed before anything is instantiated."""
    import random

    import numpy as np

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)


def _overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # called outside a Hydra app (reproduce, tests)
        return []


def validate_settings(cfg) -> None:
    """Build every settings dataclass once, so a bad value fails before any run directory exists."""
    from omegaconf import OmegaConf

    from kdgat.data.settings import DataSettings
    from kdgat.training import settings

    def plain(node) -> dict:
        values = OmegaConf.to_container(node, resolve=True)
        return {k: v for k, v in values.items() if not k.startswith("_")}

    DataSettings(**plain(cfg.datamodule))
    settings.TrainerSettings(**{k: v for k, v in plain(cfg.trainer).items()
                                if k in settings.TrainerSettings.__dataclass_fields__})
    settings.CurriculumSettings(**plain(cfg.curriculum))
    settings.EarlyStoppingSettings(**plain(cfg.early_stopping))
    for name, kind in (("optimizer", settings.OptimizerSettings), ("scheduler", settings.SchedulerSettings),
                       ("distillation", settings.DistillationSettings), ("fusion", settings.FusionSettings)):
        if name in cfg.module:
            kind(**plain(cfg.module[name]))
    from kdgat.evaluation.thresholds import THRESHOLD_RULES

    if cfg.threshold_rule not in THRESHOLD_RULES:
        raise ValueError(f"threshold_rule={cfg.threshold_rule!r} is not valid; choose one of: "
                         f"{', '.join(THRESHOLD_RULES)}")


def prepare_run(cfg, overrides: list[str] | None = None) -> tuple[GridPoint, Path, dict[str, Path]]:
    """Validate, resolve dependencies, allocate ``run_NNN`` and write the files that describe it."""
    from omegaconf import OmegaConf

    point = grid_point(cfg)
    validate_settings(cfg)
    runs_root = Path(cfg.runs_root)
    pinned = {role: OmegaConf.select(cfg, key) for role, key in PIN_KEYS.items()}
    data_root = OmegaConf.select(cfg, "data_root")
    needs = resolve(point, runs_root, pinned, f"data_root={data_root}" if data_root else "")
    for role, run in needs.items():
        OmegaConf.update(cfg, PIN_KEYS[role], str(run.resolve()), force_add=True)
    run_dir = allocate(runs_root / point.path)
    cfg.run_dir = str(run_dir.resolve())
    # Resolve now: the saved config must reproduce this run with no interpolation left.
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(resolved))
    write_atomic(run_dir / "overrides.yaml", OmegaConf.to_yaml(overrides if overrides is not None
                                                                else _overrides()))
    write_json(run_dir / "env.json", environment())
    set_status(run_dir, "running", grid_point=point.name,
               dependencies={role: str(path) for role, path in needs.items()})
    return point, run_dir, needs


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors caused by the input (config, data, runs), reported as a message, not a traceback."""
    from kdgat.data.frames import FrameFormatError
    from kdgat.grid import InvalidGridPoint
    from kdgat.runs.allowlist import DisallowedTarget
    from kdgat.runs.dependencies import MissingDependency

    errors = (InvalidGridPoint, MissingDependency, DisallowedTarget, FrameFormatError,
              FileNotFoundError, ValueError)
    if "kdgat.training.teachers" in sys.modules:
        errors += (sys.modules["kdgat.training.teachers"].IncompatibleCheckpoint,)
    return errors


def _fail(err: BaseException, run_dir: Path | None = None) -> None:
    where = f" (run directory {run_dir}: status failed, traceback in status.json)" if run_dir else ""
    print(f"kdgat-train: error: {err}{where}", file=sys.stderr)
    raise SystemExit(2) from err


def train_task(zen_cfg) -> dict:
    """One training run: returns the run's metrics document (never a model)."""
    try:
        point, run_dir, needs = prepare_run(zen_cfg)
    except user_errors() as err:
        _fail(err)
    try:
        from kdgat.training.stage import run_stage

        document = run_stage(zen_cfg, point, run_dir, needs)
    except BaseException as err:
        set_status(run_dir, "failed", error=f"{type(err).__name__}: {err}",
                   traceback=traceback.format_exc(limit=20))
        if isinstance(err, user_errors()):
            _fail(err, run_dir)
        raise
    set_status(run_dir, "completed", summary=document.get("summary", {}))
    print(f"kdgat: {point.name} completed in {run_dir}")
    return document


def main() -> None:
    store.add_to_hydra_store()
    zen(train_task, pre_call=seed_everything).hydra_main(
        config_name="train", config_path=None, version_base="1.3")


if __name__ == "__main__":
    sys.exit(main())
