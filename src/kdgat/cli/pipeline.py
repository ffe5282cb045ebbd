"""``kdgat pipeline dataset=NAME [size=...] [--dry-run] [--force] [overrides]``: a dataset's KD-GAT
pipeline, run locally in dependency order.

baselines → teacher VGAE → teacher GAT → distilled student VGAE and GAT, and the same students
without distillation (their controls in ``kdgat report``) → teacher and student fusion (DQN and
the MLP baseline; students distilled and not) → results table
(:func:`kdgat.runs.inventory.pipeline_points`). Points with a completed run are skipped unless ``--force``;
each job is one ``kdgat-train experiment=...`` process, its output in a log file. When a job
fails, the points that need it are reported as not run, never started.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from kdgat.cli.overrides import parse_key_values

HELP = ("run a dataset's teacher → student → fusion pipeline locally, then report; or, with "
        "cluster=NAME, submit it to Slurm as jobs chained with afterok; replicates=N runs N seeds")
PIPELINE_KEYS = {"dataset": str, "size": str, "distillation": str, "runs_root": str, "cluster": str}


def register(parser) -> None:
    parser.add_argument("settings", nargs="*", metavar="key=value",
                        help="dataset=NAME (required), size=teacher,student, distillation=standard, "
                             "runs_root=DIR, replicates=N [seed=S] (seeds S..S+N-1, seed s of a "
                             "point uses seed s of what it needs); any other key=value is passed "
                             "to every kdgat-train job")
    parser.add_argument("--dry-run", action="store_true", help="print the jobs in order, run nothing")
    parser.add_argument("--force", action="store_true", help="run points that already have a completed run")
    parser.add_argument("--jobs", type=_positive_int, default=1, metavar="N",
                        help="run up to N jobs at once, each as soon as what it needs has "
                             "completed (default 1: one after the other; on one GPU, several "
                             "small jobs share it)")
    parser.set_defaults(run=run)


def step_key(point, seed: int | None) -> str:
    """A pipeline job's name: the grid point, and its seed when the pipeline runs replicates."""
    return point.name if seed is None else f"{point.name}@seed{seed}"


def plan(settings: dict, passthrough: list[str], force: bool, seeds: list[int] | None = None):
    """The pipeline's jobs with what each one will do: ``run`` or ``skip`` (completed).

    With ``seeds`` (``replicates=N``) every point runs once per seed, and seed *s* of a point
    waits for seed *s* of the points it needs (whose run it then uses: kdgat.runs.dependencies);
    a point is skipped per seed, when it has a completed run of that seed.
    """
    from kdgat.data.datasets import runs_root as default_runs_root
    from kdgat.grid import dependencies
    from kdgat.runs.dependencies import identify
    from kdgat.runs.inventory import pipeline_points
    from kdgat.runs.rundir import completed_runs

    runs_root = Path(settings.get("runs_root") or default_runs_root()).resolve()
    sizes = tuple(s for s in settings.get("size", "teacher,student").split(",") if s)
    points = pipeline_points(settings["dataset"], sizes=sizes,
                             distillation=settings.get("distillation", "standard"))
    steps = []
    for point in points:
        runs = completed_runs(runs_root / point.path)
        for seed in seeds or [None]:
            done = [r for r in runs if seed is None or identify(r).seed == seed]
            command = [sys.executable, "-m", "kdgat.train", f"experiment={point.name}",
                       f"runs_root={runs_root}", *passthrough, *([f"seed={seed}"] if seed is not None else [])]
            needs = [need.point for need in dependencies(point)]
            steps.append({"point": point, "seed": seed, "key": step_key(point, seed),
                          "action": "run" if force or not done else "skip", "command": command,
                          "needs": needs, "need_keys": [step_key(p, seed) for p in needs],
                          "existing": str(done[0]) if done else None})
    return runs_root, steps


def _check_passthrough(passthrough: list[str], first_point: str) -> None:
    """Compose the first job's config once, so a typo or a bad value (``monitor=val/acc``) fails
    before anything runs."""
    probe = subprocess.run([sys.executable, "-m", "kdgat.train", "--cfg", "job",
                            f"experiment={first_point}", *passthrough],
                           capture_output=True, text=True)
    if probe.returncode:
        message = probe.stderr.strip().splitlines()
        raise ValueError("the overrides do not compose: " + " ".join(message[-6:]))
    from hydra import compose, initialize

    from kdgat.config.store import store
    from kdgat.train import validate_settings

    store.add_to_hydra_store(overwrite_ok=True)
    with initialize(version_base="1.3", config_path=None):
        validate_settings(compose("train", overrides=[f"experiment={first_point}", *passthrough]))


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--jobs {text!r}: give a whole number of jobs, 1 or more")
    return value


def execute(steps: list[dict], logs: Path, jobs: int = 1) -> dict[str, int]:
    """Run the ``run`` steps as ``kdgat-train`` processes, at most ``jobs`` at once, each one
    started once every step it needs has completed (or was skipped as already completed); a
    step whose need failed is not run. Logs go to ``logs/NN_KEY.log``. Returns the counts."""
    results = {"completed": 0, "skipped": 0, "failed": 0, "not run": 0}
    # A need outside the plan (a point the pipeline does not list) is the job's own to resolve.
    done = {need for step in steps for need in step["need_keys"]} - {step["key"] for step in steps}
    failed: set = set()
    pending = []
    for number, step in enumerate(steps, 1):
        if step["action"] == "skip":
            results["skipped"] += 1
            done.add(step["key"])
        else:
            pending.append((number, step))
    running: dict = {}  # key -> (process, log handle, started, log path)
    while pending or running:
        for item in list(pending):
            number, step = item
            blocked = [need for need in step["need_keys"] if need in failed]
            if blocked:
                pending.remove(item)
                failed.add(step["key"])
                results["not run"] += 1
                print(f"  not run  {step['key']}: needs {', '.join(blocked)}, which failed")
            elif len(running) < jobs and all(need in done for need in step["need_keys"]):
                pending.remove(item)
                log = logs / f"{number:02d}_{step['key'].replace('@', '_')}.log"
                out = open(log, "w")
                process = subprocess.Popen(step["command"], stdout=out, stderr=subprocess.STDOUT)
                running[step["key"]] = (process, out, time.perf_counter(), log)
        if not running:
            if pending:  # needs that are neither done, failed nor running: cannot happen
                raise RuntimeError(f"pipeline steps wait on steps not in the plan: {pending}")
            break
        time.sleep(0.2)
        for key, (process, out, started, log) in list(running.items()):
            code = process.poll()
            if code is None:
                continue
            out.close()
            del running[key]
            seconds = time.perf_counter() - started
            if code == 0:
                done.add(key)
                results["completed"] += 1
                print(f"  done     {key} ({seconds:.0f} s)", flush=True)
            else:
                failed.add(key)
                results["failed"] += 1
                print(f"  FAILED   {key} (exit {code}); log: {log}", flush=True)
    return results


def run(args) -> int:
    from kdgat.train import replicate_seeds

    seeds = replicate_seeds(args.settings)  # replicates=N [seed=S]: seeds S..S+N-1
    settings, passthrough = {}, []
    for item in args.settings:
        key = item.partition("=")[0]
        (settings.update(parse_key_values([item], PIPELINE_KEYS)) if key in PIPELINE_KEYS
         else passthrough.append(item))
    if "dataset" not in settings:
        raise ValueError("dataset=NAME is required, e.g. `kdgat pipeline dataset=synthetic`")
    if settings.get("cluster", "local") != "local":
        from kdgat.launch.pipeline import submit

        # One Slurm job per point, chained with afterok; returns once submitted (kdgat.launch).
        return submit(settings, passthrough, force=args.force, dry_run=args.dry_run, seeds=seeds)
    runs_root, steps = plan(settings, passthrough, args.force, seeds)
    replicated = f" × {len(seeds)} seeds ({seeds[0]}-{seeds[-1]})" if seeds else ""
    print(f"pipeline {settings['dataset']}: {len({s['point'] for s in steps})} points{replicated} "
          f"under {runs_root}")
    for number, step in enumerate(steps, 1):
        needs = ", ".join(step["need_keys"]) or "-"
        print(f"  {number:2d}. [{step['action']}] {step['key']}  (needs: {needs})")
        if args.dry_run:
            print("      kdgat-train " + " ".join(step["command"][3:]))
    if args.dry_run:
        return 0
    if passthrough:
        _check_passthrough(passthrough, steps[0]["point"].name)

    from kdgat.tracking import prepare_store_for

    prepare_store_for(runs_root, passthrough)  # the MLflow store, before any job logs to it
    logs = runs_root / ".pipelines" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    logs.mkdir(parents=True, exist_ok=True)
    results = execute(steps, logs, jobs=args.jobs)
    print("pipeline: " + ", ".join(f"{v} {k}" for k, v in results.items()) + f"; logs in {logs}")

    from kdgat.cli import main as kdgat_main

    kdgat_main(["report", "--runs-root", str(runs_root), "--dataset", settings["dataset"]])
    return 1 if results["failed"] or results["not run"] else 0
