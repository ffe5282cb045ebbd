"""Hydra callbacks: the summary of a ``-m`` sweep, written next to Hydra's ``multirun.yaml``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback


class SweepSummary(Callback):
    """Collects every job of a sweep (overrides, run directory, status, pooled test F1/AUROC) into
    ``<sweep dir>/summary.json`` as jobs finish, and prints a table when the sweep ends."""

    def __init__(self) -> None:
        self.jobs: list[dict] = []
        self.path: Path | None = None

    def on_multirun_start(self, config, **kwargs: Any) -> None:
        import os

        from kdgat.tracking import PARENT_ENV, prepare_stores

        self.path = Path(config.hydra.sweep.dir).resolve() / "summary.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Jobs of this sweep become children of one MLflow parent run (see kdgat.tracking).
        os.environ[PARENT_ENV] = str(self.path.parent)
        # The MLflow store, once, before the jobs log to it (their experiments: per job).
        prepare_stores([config], experiments=False)

    def on_job_end(self, config, job_return, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus

        if self.path is None:  # a single run, not a sweep
            return
        entry = {"job": job_return.hydra_cfg.hydra.job.num if job_return.hydra_cfg else None,
                 "overrides": list(job_return.overrides or [])}
        if job_return.status == JobStatus.COMPLETED:
            document = job_return.return_value or {}
            summary = document.get("summary", {})
            entry.update(status="completed", run_dir=document.get("run_dir"),
                         test_pooled_f1=summary.get("test_pooled_f1"),
                         test_pooled_auroc=summary.get("test_pooled_auroc"))
        else:
            error = job_return._return_value  # the exception, kept by Hydra
            entry.update(status="failed", error=f"{type(error).__name__}: {error}")
        self.jobs.append(entry)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.jobs, indent=1, default=str) + "\n")

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        if not self.jobs:
            return
        print(f"sweep summary ({len(self.jobs)} jobs): {self.path}")
        for job in self.jobs:
            result = (f"F1 {job['test_pooled_f1']:.4f}" if job.get("test_pooled_f1") is not None
                      else job.get("error", ""))
            print(f"  {job['status']:<9} {' '.join(job['overrides']):<60} {job.get('run_dir') or ''} {result}")
