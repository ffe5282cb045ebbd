"""``kdgat pipeline dataset=NAME [size=...] [--dry-run] [--force] [overrides]``: a dataset's KD-GAT
pipeline, run locally in dependency order.

teacher VGAE → teacher GAT → distilled student VGAE and GAT → teacher and student fusion (DQN and
the MLP baseline) → results table. Points with a completed run are skipped unless ``--force``;
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
        "cluster=NAME, submit it to Slurm as jobs chained with afterok")
PIPELINE_KEYS = {"dataset": str, "size": str, "distillation": str, "runs_root": str, "cluster": str}


def register(parser) -> None:
    parser.add_argument("settings", nargs="*", metavar="key=value",
                        help="dataset=NAME (required), size=teacher,student, distillation=standard, "
                             "runs_root=DIR; any other key=value is passed to every kdgat-train job")
    parser.add_argument("--dry-run", action="store_true", help="print the jobs in order, run nothing")
    parser.add_argument("--force", action="store_true", help="run points that already have a completed run")
    parser.set_defaults(run=run)


def plan(settings: dict, passthrough: list[str], force: bool):
    """The pipeline's points with what each one will do: ``run`` or ``skip`` (completed)."""
    from kdgat.data.datasets import runs_root as default_runs_root
    from kdgat.grid import dependencies
    from kdgat.runs.inventory import pipeline_points
    from kdgat.runs.rundir import completed_runs

    runs_root = Path(settings.get("runs_root") or default_runs_root()).resolve()
    sizes = tuple(s for s in settings.get("size", "teacher,student").split(",") if s)
    points = pipeline_points(settings["dataset"], sizes=sizes,
                             distillation=settings.get("distillation", "standard"))
    steps = []
    for point in points:
        done = completed_runs(runs_root / point.path)
        action = "run" if force or not done else "skip"
        command = [sys.executable, "-m", "kdgat.train", f"experiment={point.name}",
                   f"runs_root={runs_root}", *passthrough]
        steps.append({"point": point, "action": action, "command": command,
                      "needs": [need.point for need in dependencies(point)],
                      "existing": str(done[0]) if done else None})
    return runs_root, steps


def _check_passthrough(passthrough: list[str], first_point: str) -> None:
    """Compose the first job's config once, so a typo fails before anything runs."""
    probe = subprocess.run([sys.executable, "-m", "kdgat.train", "--cfg", "job",
                            f"experiment={first_point}", *passthrough],
                           capture_output=True, text=True)
    if probe.returncode:
        message = probe.stderr.strip().splitlines()
        raise ValueError("the overrides do not compose: " + " ".join(message[-6:]))


def run(args) -> int:
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
        return submit(settings, passthrough, force=args.force, dry_run=args.dry_run)
    runs_root, steps = plan(settings, passthrough, args.force)
    print(f"pipeline {settings['dataset']}: {len(steps)} points under {runs_root}")
    for number, step in enumerate(steps, 1):
        needs = ", ".join(p.name for p in step["needs"]) or "-"
        print(f"  {number:2d}. [{step['action']}] {step['point'].name}  (needs: {needs})")
        if args.dry_run:
            print("      kdgat-train " + " ".join(step["command"][3:]))
    if args.dry_run:
        return 0
    if passthrough:
        _check_passthrough(passthrough, steps[0]["point"].name)

    logs = runs_root / ".pipelines" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    logs.mkdir(parents=True, exist_ok=True)
    failed: set = set()
    results = {"completed": 0, "skipped": 0, "failed": 0, "not run": 0}
    for number, step in enumerate(steps, 1):
        point = step["point"]
        if step["action"] == "skip":
            results["skipped"] += 1
            continue
        blocked = [need.name for need in step["needs"] if need in failed]
        if blocked:
            failed.add(point)
            results["not run"] += 1
            print(f"  not run  {point.name}: needs {', '.join(blocked)}, which failed")
            continue
        log = logs / f"{number:02d}_{point.name}.log"
        started = time.perf_counter()
        with open(log, "w") as out:
            code = subprocess.run(step["command"], stdout=out, stderr=subprocess.STDOUT).returncode
        seconds = time.perf_counter() - started
        if code == 0:
            results["completed"] += 1
            print(f"  done     {point.name} ({seconds:.0f} s)")
        else:
            failed.add(point)
            results["failed"] += 1
            print(f"  FAILED   {point.name} (exit {code}); log: {log}")
    print("pipeline: " + ", ".join(f"{v} {k}" for k, v in results.items()) + f"; logs in {logs}")

    from kdgat.cli import main as kdgat_main

    kdgat_main(["report", "--runs-root", str(runs_root), "--dataset", settings["dataset"]])
    return 1 if failed else 0
