"""``hydra/launcher=kdgat_slurm``: a ``-m`` sweep becomes ONE Slurm job array, configs frozen at submission.

Differences from hydra-submitit-launcher's ``submitit_slurm`` (whose config it extends):

- every job's config is composed and resolved in the submitting process and pickled as is; the
  node never re-composes (upstream re-reads the config sources on the node, so a YAML edited
  after submission would change a pending job). The frozen configs are also written, readable,
  to ``<sweep dir>/jobs/<n>.yaml``;
- the request is checked first (account, partition limits, Slurm reachable) and nothing is
  submitted when it fails; ``hydra.launcher.dry_run=true`` (``kdgat-train -m ... --dry-run``)
  prints the sbatch script instead;
- it returns once the array is submitted (``hydra.launcher.wait=true`` blocks like upstream),
  after writing ``<sweep dir>/manifest.json``: job ids, overrides, grid points, logs;
- a job whose training fails fails in Slurm too (upstream reports COMPLETED and hides the error);
- preemption and timeouts requeue the job up to ``max_requeues`` times, resuming its run directory.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Sequence

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from omegaconf import OmegaConf


class KdgatSlurmLauncher(Launcher):
    def __init__(self, **params: Any) -> None:
        self.params = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
                       for k, v in params.items()}
        self.config = None
        self.hydra_context = None
        self.task_function = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    # ------------------------------------------------------------------ submission side
    def _freeze_jobs(self, job_overrides, initial_job_idx: int, sweep_dir: Path) -> list[dict]:
        from omegaconf import open_dict

        from kdgat.launch.jobs import freeze, point_dir, task_part
        from kdgat.train import grid_point, validate_settings

        jobs = []
        for offset, overrides in enumerate(job_overrides):
            idx = initial_job_idx + offset
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg.hydra):
                cfg.hydra.job.num = idx
                cfg.hydra.sweep.dir = str(sweep_dir)
                cfg.hydra.sweep.subdir = str(idx)
            freeze(cfg)
            try:
                point = grid_point(cfg)
                validate_settings(cfg)
            except Exception as err:
                raise ValueError(f"sweep job #{idx} ({' '.join(overrides)}): {err}") from err
            task = task_part(cfg)
            jobs.append({"index": idx, "overrides": list(overrides), "cfg": cfg, "task": task,
                         "name": point.name, "point_dir": str(point_dir(task))})
        return jobs

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from kdgat.train import user_errors

        try:
            return self._launch(job_overrides, initial_job_idx)
        except user_errors() as err:  # bad input: a message, nothing submitted
            self._discard_sweep_dir()
            print(f"kdgat-train: error: {err}\nNothing was submitted.", file=sys.stderr)
            raise SystemExit(2) from None

    def _discard_sweep_dir(self) -> None:
        """Remove the sweep folder Hydra made before launching, when it holds only multirun.yaml."""
        folder = Path(str(self.config.hydra.sweep.dir))
        if folder.is_dir() and {p.name for p in folder.iterdir()} <= {"multirun.yaml"}:
            for item in folder.iterdir():
                item.unlink()
            folder.rmdir()

    def _launch(self, job_overrides, initial_job_idx: int) -> Sequence[JobReturn]:
        from kdgat.launch import manifest
        from kdgat.launch.jobs import SweepJob
        from kdgat.launch.profiles import check_request
        from kdgat.launch.slurm import check_reachable, executor, render
        from kdgat.runs.rundir import now

        params = self.params
        check_request(params)
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        started = time.perf_counter()
        jobs = self._freeze_jobs(job_overrides, initial_job_idx, sweep_dir)
        folder = str(params["submitit_folder"])
        count = len(jobs)
        if params.get("dry_run"):
            print(f"# kdgat dry run: cluster {params.get('cluster')}, {count} job(s) "
                  f"{'as ONE array' if count > 1 else ''}; nothing submitted.")
            print(f"# sweep dir: {sweep_dir}")
            for job in jobs:
                print(f"#   task {job['index']}: {job['name']}  [{' '.join(job['overrides'])}]")
            print(render(folder, params, array=count if count > 1 else None))
            self._discard_sweep_dir()
            return [_returned(job["overrides"], {"dry_run": True, "name": job["name"]}) for job in jobs]

        slurm_cluster = check_reachable(params.get("partition"))
        _prepare_tracking([job["task"] for job in jobs])
        (sweep_dir / "jobs").mkdir(parents=True, exist_ok=True)
        for job in jobs:
            job["config"] = str(sweep_dir / "jobs" / f"{job['index']}.yaml")
            Path(job["config"]).write_text(OmegaConf.to_yaml(job["task"]))
        ex = executor(folder, params)
        callables = [SweepJob(job["cfg"], self.task_function, int(params.get("max_requeues", 3)),
                              job["point_dir"]) for job in jobs]
        submitted = ex.submit_array(callables) if count > 1 else [ex.submit(callables[0])]
        seconds = time.perf_counter() - started
        entries = []
        for job, handle in zip(jobs, submitted):
            entries.append({"index": job["index"], "job_id": handle.job_id,
                            "key": f"{slurm_cluster}-{handle.job_id}", "name": job["name"],
                            "overrides": job["overrides"], "config": job["config"],
                            "point_dir": job["point_dir"], "stdout": str(handle.paths.stdout),
                            "stderr": str(handle.paths.stderr)})
        array_id = submitted[0].job_id.split("_")[0]
        path = manifest.write(sweep_dir, {
            "kind": "sweep", "cluster": params.get("cluster"), "slurm_cluster": slurm_cluster,
            "created": now(), "sweep_dir": str(sweep_dir), "array_job_id": array_id,
            "submission_seconds": round(seconds, 3), "command": sys.argv, "jobs": entries})
        print(f"kdgat: submitted {count} job(s) to cluster {params.get('cluster')} as "
              f"{'array' if count > 1 else 'job'} {array_id} in {seconds:.2f} s\n"
              f"  manifest: {path}\n  follow:   kdgat status --jobs {path}")
        if not params.get("wait"):
            return [_returned(e["overrides"], {"job_id": e["job_id"], "name": e["name"]}) for e in entries]
        return self._wait(submitted, entries)

    def _wait(self, submitted, entries) -> list[JobReturn]:
        results = []
        for handle, entry in zip(submitted, entries):
            try:
                result = handle.results()[0]
            except Exception as err:  # the job failed: report it with its log
                result = JobReturn()
                result.overrides = entry["overrides"]
                result.status = JobStatus.FAILED
                result._return_value = RuntimeError(f"job {entry['job_id']} failed; log: {entry['stderr']}\n{err}")
                print(f"kdgat: job {entry['job_id']} ({entry['name']}) FAILED; log: {entry['stderr']}",
                      file=sys.stderr)
            results.append(result)
            try:  # the sweep summary (summary.json, table), as for local sweeps
                self.hydra_context.callbacks.on_job_end(config=self.config, job_return=result)
            except Exception as err:
                print(f"kdgat: sweep summary skipped for job {entry['job_id']}: {err}", file=sys.stderr)
        return results


def _returned(overrides, value) -> JobReturn:
    ret = JobReturn()
    ret.overrides = list(overrides)
    ret.status = JobStatus.COMPLETED
    ret.return_value = value
    return ret


def _prepare_tracking(tasks: list[dict]) -> None:
    """Create the MLflow store and experiments once, before jobs fan out (DESIGN: alembic race)."""
    wanted = {}
    for task in tasks:
        tracking = task.get("tracking") or {}
        if tracking.get("enabled"):
            from kdgat.tracking import default_uri, experiment_name

            uri = tracking.get("tracking_uri") or default_uri(task["runs_root"])
            wanted.setdefault(uri, set()).add(experiment_name(task))
    if not wanted:
        return
    try:
        from kdgat.tracking import ensure_experiment

        for uri, names in wanted.items():
            for name in names:
                ensure_experiment(uri, name)
    except Exception as err:  # tracking never stops training
        print(f"kdgat: MLflow store not prepared ({type(err).__name__}: {err})", file=sys.stderr)
