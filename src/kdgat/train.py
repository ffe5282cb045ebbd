"""``kdgat-train``: the single Hydra entry point (``python -m kdgat.train``).

Composes a config from the hydra-zen store, checks the grid point and its dependencies, allocates
the run directory and writes the resolved config there — all before any data is read — then runs
the stage (:func:`kdgat.training.stage.run_stage`) and keeps ``status.json`` true whatever happens.
Nothing heavy is imported at module level: ``--help``, ``--cfg job`` and composition stay fast.
"""

from __future__ import annotations

import math
import os
import sys
import traceback
from pathlib import Path

from hydra_zen import zen

from kdgat.config.store import store
from kdgat.grid import GridPoint
from kdgat.runs.dependencies import PIN_KEYS, pairing, resolve
from kdgat.runs.rundir import allocate, environment, read_status, set_status, write_atomic, write_json
from kdgat.tracking import PARENT_ENV as SWEEP_ENV


def grid_point(cfg) -> GridPoint:
    """The validated grid point of a composed config."""
    return GridPoint(**{k: str(v) for k, v in cfg.grid.items()}).validate()


def check_seed(seed) -> int:
    """A seed is what NumPy and Lightning accept: an integer in [0, 2**32 - 1]."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2**32 - 1:
        raise ValueError(f"seed={seed!r} is not valid: use an integer from 0 to {2**32 - 1}")
    return seed


def seed_everything(cfg) -> None:
    """zen pre-call: seed before anything is instantiated (a bad seed is a user error, exit 2)."""
    import random

    import numpy as np

    try:
        check_seed(cfg.seed)
    except ValueError as err:
        _fail(err)
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
    fixed = threshold_fixed(cfg)
    if isinstance(fixed, bool) or not isinstance(fixed, (int, float)) or not math.isfinite(fixed):
        raise ValueError(f"threshold_fixed={fixed!r} is not valid: use a finite number on the "
                         "model's score scale (the threshold of threshold_rule=fixed)")
    from kdgat.evaluation.protocols import protocol_settings

    protocol_settings(cfg)
    from kdgat.training.monitors import check_monitor

    # ``monitor`` sets ``module.monitor``; an old saved config may carry only the latter.
    if OmegaConf.select(cfg, "monitor") is not None:
        check_monitor(cfg.monitor)
    check_monitor(OmegaConf.select(cfg, "module.monitor"), key="module.monitor")


def threshold_fixed(cfg) -> float:
    """The config's ``threshold_fixed`` (configs saved before the key existed: the old 0.5)."""
    from omegaconf import OmegaConf

    from kdgat.evaluation.thresholds import FIXED_THRESHOLD

    return OmegaConf.select(cfg, "threshold_fixed", default=FIXED_THRESHOLD)


def prepare_run(cfg, overrides: list[str] | None = None) -> tuple[GridPoint, Path, dict[str, Path]]:
    """Validate, resolve dependencies, allocate ``run_NNN`` and write the files that describe it."""
    from omegaconf import OmegaConf

    from kdgat.runs.allowlist import check_targets

    point = grid_point(cfg)
    validate_settings(cfg)
    # A config saved before threshold_fixed existed ran with 0.5: say so in the new run's config.
    OmegaConf.update(cfg, "threshold_fixed", threshold_fixed(cfg), force_add=True)
    check_targets(cfg, where="the composed config", allow=cfg.allow_targets)
    # Absolute, so the saved config means the same thing from any working directory.
    cfg.runs_root = str(Path(cfg.runs_root).resolve())
    runs_root = Path(cfg.runs_root)
    from kdgat.launch import requeue

    # A requeued Slurm job (preemption, timeout) resumes in the run directory it allocated.
    resumed = requeue.resume(runs_root / point.path)
    if resumed is not None:
        cfg.run_dir = str(resumed.resolve())
        from kdgat.runs.rundir import read_status

        needs = {role: Path(path) for role, path in read_status(resumed).get("dependencies", {}).items()}
        for role, run in needs.items():
            OmegaConf.update(cfg, PIN_KEYS[role], str(run), force_add=True)
        print(f"kdgat: requeued job resumes in {resumed}")
        return point, resumed, needs
    pinned = {role: OmegaConf.select(cfg, key) for role, key in PIN_KEYS.items()}
    data_root = OmegaConf.select(cfg, "data_root")
    needs = resolve(point, runs_root, pinned, f"data_root={data_root}" if data_root else "",
                    seed=cfg.seed)
    pairs = pairing(needs, cfg.seed)
    for role, pair in pairs.items():
        if not pair["same_seed"] and not pinned.get(role):
            print(f"kdgat: note: no usable {role} run with seed {cfg.seed}; using {pair['run']} "
                  f"(seed {pair['seed']})", file=sys.stderr)
    if needs:  # a planted or damaged dependency is refused before allocation
        from kdgat.training.teachers import read_run

        for run in needs.values():
            read_run(run)
    for role, run in needs.items():
        OmegaConf.update(cfg, PIN_KEYS[role], str(run.resolve()), force_add=True)
    from hydra.utils import instantiate  # a validation the threshold rule cannot fit is refused now
    datamodule = instantiate(cfg.datamodule)
    datamodule.check_validation(cfg.threshold_rule)
    if point.learning_type != "baseline":  # a baseline has no epochs to monitor
        from kdgat.training.monitors import check_validation_classes

        check_validation_classes(cfg.module.monitor, datamodule)  # label monitors: both classes
    if datamodule.params.validation != "block" and cfg.datamodule.holdout is None:
        # the dataset's default holdout, written down: the saved config names the fold it ran
        OmegaConf.update(cfg, "datamodule.holdout", datamodule.validation_plan().holdout)
    run_dir = allocate(runs_root / point.path)
    requeue.record(runs_root / point.path, run_dir)
    cfg.run_dir = str(run_dir.resolve())
    # Resolve now: the saved config must reproduce this run with no interpolation left.
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(resolved))
    write_atomic(run_dir / "overrides.yaml", OmegaConf.to_yaml(overrides if overrides is not None
                                                                else _overrides()))
    write_json(run_dir / "env.json", environment())
    set_status(run_dir, "running", grid_point=point.name, seed=cfg.seed,
               dependencies={role: str(path) for role, path in needs.items()}, pairing=pairs,
               sweep_dir=os.environ.get(SWEEP_ENV))
    return point, run_dir, needs


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors caused by the input (config, data, runs), reported as a message, not a traceback."""
    from kdgat.data.frames import FrameFormatError
    from kdgat.grid import InvalidGridPoint
    from kdgat.runs.allowlist import DisallowedTarget
    from kdgat.runs.dependencies import MissingDependency

    from kdgat.launch.requeue import TooManyRequeues

    errors = (InvalidGridPoint, MissingDependency, DisallowedTarget, FrameFormatError,
              FileNotFoundError, ValueError, TooManyRequeues)
    if "kdgat.training.teachers" in sys.modules:
        from kdgat.training.checkpoints import UnreadableCheckpoint

        errors += (sys.modules["kdgat.training.teachers"].IncompatibleCheckpoint, UnreadableCheckpoint)
    return errors


class JobRefused(RuntimeError):
    """A user error inside one job of a ``-m`` sweep: that job fails, the sweep goes on."""


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def _fail(err: BaseException, run_dir: Path | None = None) -> None:
    where = f" (run directory {run_dir}: status failed, traceback in status.json)" if run_dir else ""
    print(f"kdgat-train: error: {err}{where}", file=sys.stderr)
    if _in_multirun():
        # SystemExit would end the whole sweep; an exception fails only this job, and Hydra's
        # sweeper reports it once the other jobs have run.
        raise JobRefused(str(err)) from err
    raise SystemExit(2) from err


def execute(cfg, overrides: list[str] | None = None) -> dict:
    """Prepare the run directory, run the stage, keep status.json true; returns the metrics."""
    try:
        point, run_dir, needs = prepare_run(cfg, overrides)
    except user_errors() as err:
        _fail(err)
    try:
        from kdgat.training.stage import run_stage

        document = run_stage(cfg, point, run_dir, needs)
    except BaseException as err:
        if type(err).__name__ == "SIGTERMException" and "SLURM_JOB_ID" in os.environ:
            # Slurm is stopping the job (requeue, preemption, scancel, time limit): a requeued
            # start resumes this run directory from checkpoints/last.ckpt.
            set_status(run_dir, "preempted", note="SIGTERM from Slurm (requeue, preemption, "
                       "scancel or time limit)")
            raise
        if isinstance(err, SystemExit) and read_status(run_dir).get("status") == "preempted":
            raise  # submitit's exit after its checkpoint hook requeued the job: not a failure
        set_status(run_dir, "failed", error=f"{type(err).__name__}: {err}",
                   traceback=traceback.format_exc(limit=20))
        _track(cfg, run_dir)
        if isinstance(err, user_errors()):
            _fail(err, run_dir)
        raise
    set_status(run_dir, "completed", summary=document.get("summary", {}))
    _track(cfg, run_dir)
    print(f"kdgat: {point.name} completed in {run_dir}")
    document["run_dir"] = str(run_dir)
    return document


def _track(cfg, run_dir: Path) -> None:
    """Log the finished run to MLflow; whatever goes wrong here, the run's outcome stands."""
    from omegaconf import OmegaConf

    from kdgat.tracking import TrackingSettings, track, write_tracking

    try:
        node = OmegaConf.to_container(OmegaConf.select(cfg, "tracking") or {}, resolve=True)
        track(run_dir, TrackingSettings(**{k: v for k, v in node.items() if not k.startswith("_")}),
              cfg.runs_root)
    except Exception as err:
        write_tracking(run_dir, status="pending", error=f"{type(err).__name__}: {err}")
        print(f"kdgat: MLflow logging skipped ({type(err).__name__}: {err}); "
              "`kdgat mlflow-sync` can send this run later", file=sys.stderr)


def train_task(zen_cfg) -> dict:
    """One training run: returns the run's metrics document (never a model)."""
    return execute(zen_cfg)


def check_override_keys(argv: list[str]) -> None:
    """Refuse an unknown top-level key or group before Hydra composes, with a did-you-mean.

    Hydra's own message ("Key 'modle' not in 'TrainConf'") names no alternative; this one does.
    Nested keys are checked by Hydra against the typed configs.
    """
    import difflib
    import re

    from kdgat.config.store import TrainConf

    known = set(TrainConf.__dataclass_fields__) | {"dataset", "model", "size", "distillation", "mode",
                                                     "optimizer", "scheduler", "trainer", "cluster",
                                                     "experiment", "network", "hydra"}
    known = {k for k in known if not k.startswith("_")}
    for arg in argv:
        match = re.match(r"^([~+]{0,2})([A-Za-z_][\w]*)(?:[.@/][^=]*)?=", arg)
        if not match or match.group(1) or match.group(2) in known:
            continue
        key = match.group(2)
        close = difflib.get_close_matches(key, sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(f"kdgat-train: error: unknown key {key!r} in override {arg!r}{hint}; top-level keys "
              f"and groups: {', '.join(sorted(known))}. Add a new key with +{arg}", file=sys.stderr)
        raise SystemExit(2)


HELP = """kdgat-train: train, evaluate and record one grid point of the KD-GAT experiment grid.

Usage: kdgat-train [--cfg job|hydra|all] [--info] [-m] [key=value ...]

  kdgat-train                                        a default run on the synthetic dataset
  kdgat-train dataset=hcrl_sa model=gat size=student distillation=standard trainer.max_epochs=5
  kdgat-train experiment=automotive_hcrl_sa_classifier_gat_student_standard_all_samples
  kdgat-train -m dataset=hcrl_sa,set_01 size=teacher,student     (a sweep)

Runs go to {runs_root}/{modality}/{dataset}/{learning_type}/{model}/{size}/{distillation}/{mode}/run_NNN/.
`kdgat grid` lists the valid grid points (and so the experiment names); `--hydra-help` shows
Hydra's own flags; `--cfg job` prints the composed config without running.

== Configuration groups ==
$GROUPS
== Config ==
Override anything in the config below (foo.bar=value); add keys with +foo.bar=value.

$CONFIG"""


def fast_help(argv: list[str]) -> str:
    """Hydra's app help, without its per-group scan of the whole store (seconds per call)."""
    import string

    from hydra import compose, initialize
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from kdgat.config.experiments import GROUP

    store.add_to_hydra_store(overwrite_ok=True)
    repo = ConfigStore.instance().repo
    lines = []
    for group in sorted(k for k, v in repo.items() if isinstance(v, dict) and k != "hydra"):
        options = sorted(name[:-5] for name in repo[group] if name.endswith(".yaml"))
        lines.append(f"{group}: {', '.join(options)}")
    lines.append(f"{GROUP}: one per grid point, named after it (see `kdgat grid`)")
    overrides = [a for a in argv if a not in ("--help", "-h")]
    with initialize(version_base="1.3", config_path=None):
        cfg = compose("train", overrides=overrides)
    return string.Template(HELP).substitute(GROUPS="\n".join(lines),
                                            CONFIG=OmegaConf.to_yaml(cfg))


def cluster_arguments(argv: list[str]) -> None:
    """``cluster=NAME``: check the name; a Slurm profile always goes through the launcher (``-m``
    is added), and ``--dry-run`` becomes ``hydra.launcher.dry_run=true`` (print, submit nothing)."""
    from kdgat.launch.profiles import ProfileError, check_profile_name

    names = [a.split("=", 1)[1] for a in argv[1:] if a.startswith("cluster=")]
    cluster = names[-1] if names else "local"
    try:
        check_profile_name(cluster)
    except ProfileError as err:
        print(f"kdgat-train: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    dry_run = "--dry-run" in argv
    if dry_run:
        argv.remove("--dry-run")
    if cluster == "local":
        if dry_run:
            print("kdgat-train: error: --dry-run prints the sbatch scripts of a Slurm submission; "
                  "name a cluster (e.g. cluster=osc_pitzer)", file=sys.stderr)
            raise SystemExit(2)
        return
    if not ({"-m", "--multirun"} | HYDRA_INSPECT_FLAGS) & set(argv):
        argv.insert(1, "-m")  # one job, submitted through the cluster's launcher
    if dry_run:
        argv.append("hydra.launcher.dry_run=true")


HYDRA_INSPECT_FLAGS = {"--cfg", "-c", "--info", "-i", "--shell-completion", "-sc"}


def replicate_seeds(argv: list[str], flag: str = "replicates") -> list[int] | None:
    """``replicates=N`` in ``argv``: the N seeds ``S, S+1, ...`` from ``seed=S`` (default 0);
    the ``replicates=`` and ``seed=`` items are removed. ``None`` without ``replicates=``.

    Raises:
        ValueError: N is not a positive integer, or ``seed=`` is itself a sweep.
    """
    given = [a for a in argv if a.startswith(f"{flag}=")]
    if not given:
        return None
    value = given[-1].split("=", 1)[1]
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{flag}={value!r}: give the number of seeds, a positive integer (e.g. "
                         f"{flag}=5 runs seeds 0-4; seed=10 {flag}=5 runs seeds 10-14); for "
                         "other seeds sweep them: -m seed=0,3,7")
    seeds = [a for a in argv if a.startswith("seed=")]
    base = seeds[-1].split("=", 1)[1] if seeds else "0"
    if not base.isdigit():
        raise ValueError(f"seed={base!r} with {flag}=: {flag}=N runs seeds seed..seed+N-1 from one "
                         "integer seed; sweep explicit seeds without it: -m seed=0,3,7")
    for item in given + seeds:
        argv.remove(item)
    return list(range(int(base), int(base) + int(value)))


def replicate_arguments(argv: list[str]) -> None:
    """``replicates=N``: run N seeds of every point, each its own ``run_NNN`` with its seed in
    ``config.yaml`` — a ``-m`` sweep over ``seed`` (locally one after another, on a cluster
    profile one array task per seed). With ``--cfg``/``--info`` only the first seed is shown."""
    try:
        seeds = replicate_seeds(argv)
    except ValueError as err:
        print(f"kdgat-train: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if seeds is None:
        return
    if HYDRA_INSPECT_FLAGS & set(argv):
        argv.append(f"seed={seeds[0]}")
        return
    if not {"-m", "--multirun"} & set(argv):
        argv.insert(1, "-m")
    argv.append("seed=" + ",".join(map(str, seeds)))


def main() -> None:
    if ("--help" in sys.argv[1:] or "-h" in sys.argv[1:]) and "--hydra-help" not in sys.argv:
        print(fast_help(sys.argv[1:]))
        return
    replicate_arguments(sys.argv)
    check_override_keys(sys.argv[1:])
    cluster_arguments(sys.argv)
    store.add_to_hydra_store()
    zen(train_task, pre_call=seed_everything).hydra_main(
        config_name="train", config_path=None, version_base="1.3")


if __name__ == "__main__":
    sys.exit(main())
