"""Manifests: what was submitted to Slurm, and what became of it.

A sweep writes ``<runs root>/.sweeps/<time>/manifest.json``, a pipeline
``<runs root>/.pipelines/<time>_<dataset>_slurm/manifest.json``. Each job entry has its Slurm job
id, name (grid point), overrides, the frozen config file, the grid point folder its run directory
is allocated under, its stdout/stderr log and (pipelines) the jobs it waits for (``afterok``).
The run directory itself is only known once the job starts; :func:`job_rows` finds it through the
``.slurm/`` index of the grid point folder (:mod:`kdgat.launch.requeue`).
"""

from __future__ import annotations

import json
from pathlib import Path

from kdgat.runs.rundir import write_json

MANIFEST = "manifest.json"


def write(folder: Path, document: dict) -> Path:
    path = Path(folder) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, document)
    return path


def read(path: Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    with open(path) as handle:
        return json.load(handle)


def manifests(runs_root: Path) -> list[Path]:
    """Every manifest under RUNS_ROOT, newest first."""
    found = list(Path(runs_root).glob(f".sweeps/*/{MANIFEST}")) + list(
        Path(runs_root).glob(f".pipelines/*/{MANIFEST}"))
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _run_status(job: dict) -> tuple[str | None, dict]:
    from kdgat.launch.requeue import run_dir_of
    from kdgat.runs.inventory import read_json

    key = job.get("key")
    if not key or not job.get("point_dir"):
        return None, {}
    run_dir = run_dir_of(Path(job["point_dir"]), key)
    if run_dir is None:
        return None, {}
    status, _ = read_json(run_dir / "status.json")
    return str(run_dir), status or {}


def job_rows(document: dict, states: dict | None = None) -> list[dict]:
    """One row per job: Slurm state, run directory and its status, and why a job did not run."""
    from kdgat.launch.slurm import job_states

    jobs = document.get("jobs", [])
    states = job_states([j["job_id"] for j in jobs if j.get("job_id")]) if states is None else states
    by_name = {j["name"]: j for j in jobs}
    rows = []
    for job in jobs:
        slurm = states.get(str(job.get("job_id")), {})
        run_dir, status = _run_status(job)
        state = slurm.get("state") or (status.get("status", "").upper() or "UNKNOWN")
        note = ""
        if state == "PENDING" and slurm.get("reason"):
            note = f"waiting: {slurm['reason']}"
        blocked = []
        for need in job.get("needs", []):
            upstream = by_name.get(need)
            if upstream is not None:
                up_state = states.get(str(upstream.get("job_id")), {}).get("state", "")
                if up_state in ("FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"):
                    blocked.append(f"{need} ({up_state.lower()})")
        if state in ("CANCELLED", "PENDING") and blocked and run_dir is None:
            state = "NOT_RUN" if state == "CANCELLED" else state
            note = "not run: needs " + ", ".join(blocked)
        elif state in ("FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL") or status.get("status") == "failed":
            error = (status.get("error") or "").strip().splitlines()
            note = (error[0][:100] + "; " if error else "") + f"log: {job.get('stderr')}"
        if status.get("requeues"):
            note = (note + "; " if note else "") + f"requeued {status['requeues']}x"
        rows.append({"name": job["name"], "job_id": job.get("job_id"), "state": state,
                     "run_status": status.get("status"), "run_dir": run_dir, "note": note,
                     "stdout": job.get("stdout"), "stderr": job.get("stderr")})
    return rows


def print_rows(path: Path, document: dict, rows: list[dict]) -> None:
    kind = document.get("kind", "?")
    print(f"{kind} on cluster {document.get('cluster')}: {len(rows)} jobs, submitted "
          f"{document.get('created')} ({path})")
    tally: dict[str, int] = {}
    for row in rows:
        tally[row["state"]] = tally.get(row["state"], 0) + 1
    print("  " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(tally.items())))
    width = max((len(r["name"]) for r in rows), default=10)
    for row in rows:
        print(f"  {str(row['job_id']):<12} {row['state']:<11} {row['name']:<{width}}  "
              f"{row['run_dir'] or '-'}" + (f"  [{row['note']}]" if row["note"] else ""))
