"""Slurm submission and pipeline speed on the private dev cluster (launch/slurm-dev-cluster.sh).

    .venv/bin/python benchmarks/bench_slurm.py [--sweep-points 100] [--skip-e2e]

Prints: the wall time of submitting an N-point `-m` sweep (one array; jobs held, then cancelled),
of submitting one dataset's pipeline (size=teacher,student: 8 chained jobs; held, cancelled), and
the end-to-end wall time of the tiny pipeline (size=teacher, trainer=smoke) on the dev cluster vs
`kdgat pipeline` locally. Uses $SLURM_CONF if set, else starts (and stops) a cluster in /tmp.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "launch" / "slurm-dev-cluster.sh"
TINY = ["trainer=smoke", "tracking.enabled=false"]


def sh(args, env, timeout=900):
    started = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if proc.returncode:
        raise SystemExit(f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return time.perf_counter() - started, proc.stdout


def wait_done(job_ids, env, timeout=900):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True).stdout.split()
        if not set(j.split("_")[0] for j in job_ids) & {q.split("_")[0] for q in queue}:
            return
        time.sleep(0.5)
    raise SystemExit("timed out waiting for the pipeline")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep-points", type=int, default=100)
    parser.add_argument("--skip-e2e", action="store_true")
    args = parser.parse_args()
    env = dict(os.environ, PATH=os.environ["PATH"] + ":/usr/sbin")
    base = None
    if "SLURM_CONF" not in env:
        base = Path(tempfile.mkdtemp(prefix="kdb-", dir="/tmp"))
        subprocess.run(["bash", str(SCRIPT), "start", str(base)], check=True, capture_output=True)
        env["SLURM_CONF"] = str(base / "slurm.conf")
    work = Path(tempfile.mkdtemp(prefix="kdgat-bench-slurm-"))
    train = [sys.executable, "-m", "kdgat.train"]
    kdgat = [sys.executable, "-m", "kdgat.cli"]
    hold = "+hydra.launcher.additional_parameters.hold=true"
    results = {}
    try:
        # 1. an N-point sweep as one array (held: measure submission only)
        runs = work / "sweep"
        wall, _ = sh([*train, "-m", "cluster=dev", f"seed=range({args.sweep_points})", *TINY,
                      f"runs_root={runs}", hold], env)
        (manifest,) = runs.glob(".sweeps/*/manifest.json")
        doc = json.loads(manifest.read_text())
        subprocess.run(["scancel", doc["array_job_id"]], env=env)
        results["sweep"] = {"points": len(doc["jobs"]), "arrays": len({j["job_id"].split("_")[0] for j in doc["jobs"]}),
                            "command_wall_s": round(wall, 2), "launcher_s": doc["submission_seconds"]}
        # 2. one dataset's pipeline (teacher + student: 8 jobs), held
        runs = work / "pipeline-submit"
        wall, _ = sh([*kdgat, "pipeline", "dataset=synthetic", "cluster=dev", "size=teacher,student",
                      *TINY, f"runs_root={runs}", hold], env)
        (manifest,) = runs.glob(".pipelines/*/manifest.json")
        doc = json.loads(manifest.read_text())
        subprocess.run(["scancel", *[j["job_id"] for j in doc["jobs"]]], env=env)
        results["pipeline_submit"] = {"jobs": len(doc["jobs"]), "command_wall_s": round(wall, 2),
                                      "submit_s": doc["submission_seconds"]}
        if not args.skip_e2e:
            # 3. the tiny pipeline end to end: Slurm vs local
            runs = work / "e2e-slurm"
            started = time.perf_counter()
            sh([*kdgat, "pipeline", "dataset=synthetic", "cluster=dev", "size=teacher", *TINY,
                f"runs_root={runs}"], env)
            (manifest,) = runs.glob(".pipelines/*/manifest.json")
            doc = json.loads(manifest.read_text())
            wait_done([j["job_id"] for j in doc["jobs"]], env)
            slurm_wall = time.perf_counter() - started
            done = sum(1 for j in doc["jobs"] for p in Path(j["point_dir"]).glob("run_*/status.json")
                       if json.loads(p.read_text())["status"] == "completed")
            runs = work / "e2e-local"
            local_wall, _ = sh([*kdgat, "pipeline", "dataset=synthetic", "size=teacher", *TINY,
                                f"runs_root={runs}"], env)
            results["e2e_tiny_pipeline"] = {"jobs": len(doc["jobs"]), "completed_on_slurm": done,
                                            "slurm_wall_s": round(slurm_wall, 1),
                                            "local_wall_s": round(local_wall, 1)}
    finally:
        if base is not None:
            subprocess.run(["bash", str(SCRIPT), "stop", str(base)], capture_output=True)
    s = results["sweep"]
    print(f"sweep of {s['points']} points: {s['arrays']} array, `kdgat-train -m` wall {s['command_wall_s']} s "
          f"(launcher: compose+freeze+sbatch {s['launcher_s']} s)")
    p = results["pipeline_submit"]
    print(f"pipeline submission (synthetic, teacher+student): {p['jobs']} jobs, `kdgat pipeline` wall "
          f"{p['command_wall_s']} s (compose+sbatch {p['submit_s']} s)")
    if "e2e_tiny_pipeline" in results:
        e = results["e2e_tiny_pipeline"]
        print(f"tiny pipeline end to end ({e['jobs']} jobs, trainer=smoke): dev Slurm {e['slurm_wall_s']} s "
              f"({e['completed_on_slurm']} completed) vs local {e['local_wall_s']} s")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
