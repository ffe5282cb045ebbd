"""The callables submitit pickles and runs on the node, and config freezing at submission.

A job carries its config fully composed and resolved (:func:`freeze`): nothing is composed or
re-read on the node, so editing YAML, the store or the environment after submission cannot change
a pending job. Both callables are checkpointable: on submitit's USR2 (preemption, time limit) the
run is marked ``preempted`` and the same callable is resubmitted (``DelayedSubmission``) while
``max_requeues`` allows; the requeued start resumes in the same run directory from
``checkpoints/last.ckpt`` (:mod:`kdgat.launch.requeue`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kdgat.launch.requeue import MAX_REQUEUES_ENV, mark_preempted, restart_count


def freeze(cfg) -> None:
    """Resolve every interpolation of CFG in place except under ``hydra`` (``runs_root`` made
    absolute first, so relative paths mean the submitting directory)."""
    from omegaconf import OmegaConf, open_dict, read_write

    with read_write(cfg), open_dict(cfg):
        if "runs_root" in cfg:
            cfg.runs_root = str(Path(cfg.runs_root).resolve())
        for key in list(cfg.keys()):
            if key == "hydra":
                continue
            if OmegaConf.is_config(cfg._get_node(key)):
                OmegaConf.resolve(cfg[key])
            else:
                cfg[key] = cfg[key]


def task_part(cfg) -> dict:
    """The frozen config without ``hydra`` (what the run's config.yaml will hold), as a dict."""
    from omegaconf import OmegaConf

    return {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg._get_node(k))
            else cfg[k] for k in cfg if k != "hydra"}


def point_dir(task: dict) -> Path:
    """Where the job's run directory will be allocated (its grid point folder)."""
    from kdgat.grid import GridPoint

    return Path(task["runs_root"]) / GridPoint(**{k: str(v) for k, v in task["grid"].items()}).path


class _Checkpointable:
    max_requeues: int
    point_dirs: list[str]

    def checkpoint(self, *args: Any, **kwargs: Any):
        """submitit's hook on USR2: mark the run preempted and resubmit, up to max_requeues."""
        import submitit

        restarts = restart_count()
        if restarts >= self.max_requeues:
            mark_preempted([Path(p) for p in self.point_dirs],
                           f"signalled after {restarts} requeues; max_requeues={self.max_requeues} "
                           "reached, not requeued")
            return None
        mark_preempted([Path(p) for p in self.point_dirs],
                       f"signalled (preemption or time limit); requeue {restarts + 1}")
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)

    def _environment(self) -> None:
        os.environ[MAX_REQUEUES_ENV] = str(self.max_requeues)

    def __call__(self):
        self._environment()
        # submitit's SystemExit after its checkpoint hook leaves the status preempted (execute()).
        return self._run()


class SweepJob(_Checkpointable):
    """One job of a ``-m`` sweep: Hydra's ``run_job`` on the frozen config (no re-composition)."""

    def __init__(self, config, task_function, max_requeues: int, point_dir: str) -> None:
        self.config = config
        self.task_function = task_function
        self.max_requeues = max_requeues
        self.point_dirs = [point_dir]

    def _run(self):
        import copy

        import submitit
        from hydra.core.utils import JobStatus, run_job, setup_globals
        from hydra.types import HydraContext
        from hydra._internal.callbacks import Callbacks
        from omegaconf import open_dict, read_write

        setup_globals()
        # A copy: run_job makes config.hydra read-only in place, and self (with its config) is
        # pickled again by the checkpoint hook for the requeued start.
        config = copy.deepcopy(self.config)
        with read_write(config.hydra), open_dict(config.hydra.job):
            config.hydra.job.id = submitit.JobEnvironment().job_id
        # No sweep callbacks on the node: the manifest and `kdgat status --jobs` follow the sweep.
        context = HydraContext(config_loader=None, callbacks=Callbacks())
        result = run_job(hydra_context=context, task_function=self.task_function, config=config,
                         job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        if result.status == JobStatus.FAILED:
            raise result._return_value  # the job fails in Slurm too, with the traceback in its log
        return result


class TrainJob(_Checkpointable):
    """One pipeline point: :func:`kdgat.train.execute` on a frozen, resolved config dict."""

    def __init__(self, config: dict, overrides: list[str], max_requeues: int) -> None:
        self.config = config
        self.overrides = list(overrides)
        self.max_requeues = max_requeues
        self.point_dirs = [str(point_dir(config))]

    def _run(self) -> dict:
        from omegaconf import OmegaConf

        from kdgat.train import execute, seed_everything

        cfg = OmegaConf.create(self.config)
        seed_everything(cfg)
        document = execute(cfg, self.overrides)
        return {"run_dir": document.get("run_dir"), "summary": document.get("summary", {})}
