"""``kdgat pipeline dataset=NAME cluster=X``: a dataset's dependency graph as chained Slurm jobs.

Every point to run becomes one job (its config composed, resolved and frozen here), submitted in
dependency order with ``--dependency=afterok:<ids of the jobs it needs>`` and
``--kill-on-invalid-dep=yes`` — job ids are the ones submitit returns from sbatch. A failed job
therefore takes its dependents with it (Slurm cancels them: ``kdgat status --jobs`` shows them as
"not run: needs X (failed)") instead of leaving them PENDING for ever. The command returns as soon
as everything is submitted, after writing the manifest. Points that already have a completed run
are skipped, and points whose job from an earlier submission is still pending or running are
waited for instead of submitted again, so re-running after a failure submits only what is missing.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

from kdgat.launch import manifest
from kdgat.launch.slurm import ACTIVE


def compose(steps: list[dict], cluster: str, runs_root: Path, passthrough: list[str]):
    """Frozen configs (with ``hydra``) of the pipeline STEPS for CLUSTER, by step key."""
    from hydra import compose as hydra_compose
    from hydra import initialize

    from kdgat.config.store import store
    from kdgat.launch.jobs import freeze
    from kdgat.train import validate_settings

    store.add_to_hydra_store(overwrite_ok=True)
    configs = {}
    with initialize(version_base="1.3", config_path=None):
        for step in steps:
            cfg = hydra_compose("train", overrides=[*step_overrides(step, runs_root, passthrough),
                                                    f"cluster={cluster}"],
                                return_hydra_config=True)
            freeze(cfg)
            validate_settings(cfg)  # a bad value (monitor=val/acc) is refused before sbatch
            configs[step["key"]] = cfg
    return configs


def step_overrides(step: dict, runs_root: Path, passthrough: list[str]) -> list[str]:
    """The ``kdgat-train`` overrides of one pipeline step (its seed last, when it has one)."""
    seed = [f"seed={step['seed']}"] if step.get("seed") is not None else []
    return [f"experiment={step['point'].name}", f"runs_root={runs_root}", *passthrough, *seed]


def launcher_settings(cfg, folder: Path, job_name: str) -> dict:
    """The resolved ``hydra.launcher`` of a composed config, with our folder and job name."""
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    if "kdgat_slurm" not in str(node.get("_target_", "")):
        raise ValueError(f"cluster {node.get('cluster', '?')!r} does not select hydra/launcher=kdgat_slurm; "
                         "only Slurm profiles can run the pipeline as jobs")
    node.update(submitit_folder=str(folder / ".submitit" / "%j"), name=job_name)
    return OmegaConf.to_container(OmegaConf.create(node), resolve=True)


def _queued(runs_root: Path, dataset: str) -> dict[str, str]:
    """Grid point name -> job id of jobs from earlier pipeline submissions still pending/running."""
    from kdgat.launch.slurm import job_states

    active: dict[str, str] = {}
    for path in manifest.manifests(runs_root):
        try:
            document = manifest.read(path)
        except (OSError, ValueError):
            continue
        if document.get("kind") != "pipeline" or document.get("dataset") != dataset:
            continue
        jobs = [j for j in document.get("jobs", []) if j.get("job_id")]
        states = job_states([j["job_id"] for j in jobs])
        for job in jobs:
            if states.get(job["job_id"], {}).get("state") in ACTIVE:
                active.setdefault(job["name"], job["job_id"])
    return active


def submit(settings: dict, passthrough: list[str], *, force: bool, dry_run: bool,
           seeds: list[int] | None = None) -> int:
    from kdgat.cli.pipeline import plan
    from kdgat.launch.jobs import TrainJob, point_dir, task_part
    from kdgat.launch.profiles import check_profile_name, check_request
    from kdgat.launch.slurm import check_reachable, executor, render
    from kdgat.runs.rundir import now

    cluster = settings["cluster"]
    check_profile_name(cluster)
    started = time.perf_counter()
    runs_root, steps = plan(settings, passthrough, force, seeds)
    dataset = settings["dataset"]
    queued = {} if dry_run else _queued(runs_root, dataset)
    to_run = [s for s in steps if s["action"] == "run" and s["key"] not in queued]
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    folder = runs_root / ".pipelines" / f"{stamp}_{dataset}_slurm"
    configs = compose(to_run, cluster, runs_root, passthrough)
    prefix = f"{steps[0]['point'].modality}_{dataset}_" if steps else ""
    launchers = {name: launcher_settings(cfg, folder, "kdgat-" + name[len(prefix):].replace("@", "_"))
                 for name, cfg in configs.items()}
    for settings_ in launchers.values():
        check_request(settings_)
    print(f"pipeline {dataset} on cluster {cluster}: {len(steps)} points under {runs_root}")
    if not dry_run and to_run:
        slurm_cluster = check_reachable(next(iter(launchers.values())).get("partition"))
        from kdgat.tracking import prepare_stores

        prepare_stores(configs.values())  # the MLflow store and experiments, before jobs fan out

    ids: dict[str, str] = dict(queued)
    entries = []
    for number, step in enumerate(steps, 1):
        name = step["key"]
        needs = step["need_keys"]
        if step["action"] == "skip":
            print(f"  {number:2d}. [skip]   {name}  (completed: {step['existing']})")
            continue
        if name in queued:
            print(f"  {number:2d}. [queued] {name}  (job {queued[name]} from an earlier submission)")
            continue
        waits = [n for n in needs if n in ids]
        dependency = "afterok:" + ":".join(ids[n] for n in waits) if waits else None
        launcher = launchers[name]
        overrides = step_overrides(step, runs_root, passthrough)
        if dry_run:
            ids[name] = f"<job {number}>"
            shown = "afterok:" + ":".join(ids[n] for n in waits) if waits else None
            print(f"\n# ---- job {number}: {name}  (afterok: {', '.join(waits) or '-'})")
            print(render(folder / ".submitit" / "%j", launcher,
                         **({"dependency": shown} if shown else {})))
            continue
        cfg = configs[name]
        task = task_part(cfg)
        config_file = folder / "jobs" / f"{number:02d}_{name.replace('@', '_')}.yaml"
        config_file.parent.mkdir(parents=True, exist_ok=True)
        from omegaconf import OmegaConf

        config_file.write_text(OmegaConf.to_yaml(task))
        ex = executor(folder / ".submitit" / "%j", launcher,
                      **({"dependency": dependency} if dependency else {}))
        job = ex.submit(TrainJob(task, overrides, int(launcher.get("max_requeues", 3))))
        ids[name] = job.job_id
        print(f"  {number:2d}. [submitted] job {job.job_id:<8} {name}"
              + (f"  (afterok: {', '.join(f'{n} {ids[n]}' for n in waits)})" if waits else ""))
        entries.append({"index": number, "job_id": job.job_id, "key": f"{slurm_cluster}-{job.job_id}",
                        "name": name, "needs": needs, "afterok": [ids[n] for n in waits],
                        "overrides": overrides, "config": str(config_file),
                        "point_dir": str(point_dir(task)), "stdout": str(job.paths.stdout),
                        "stderr": str(job.paths.stderr)})
    seconds = time.perf_counter() - started
    if dry_run:
        print(f"\n# dry run: {len(to_run)} job(s) would be submitted; nothing was submitted.")
        return 0
    if not entries:
        print("pipeline: nothing to submit (every point is completed or already queued)")
        return 0
    path = manifest.write(folder, {
        "kind": "pipeline", "cluster": cluster, "slurm_cluster": slurm_cluster, "dataset": dataset,
        "created": now(), "runs_root": str(runs_root), "submission_seconds": round(seconds, 3),
        "command": sys.argv, "queued_earlier": queued, "jobs": entries})
    print(f"pipeline: submitted {len(entries)} job(s) in {seconds:.2f} s\n  manifest: {path}\n"
          f"  follow:   kdgat status --jobs {path}")
    return 0
