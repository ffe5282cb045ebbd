"""``kdgat status``: per dataset, which KD-GAT pipeline points are done, running, failed or missing.

A point is ``done`` once it has a completed run (the newest completed run is the one its dependents
use), otherwise it takes the status of its newest run, or ``missing``. Points outside the pipeline
are listed when they have runs. Damaged run directories show as ``unreadable`` with the file and
the reason; they never stop the listing.

Runs that still say ``running`` or ``preempted`` are first checked against whoever can know
(:mod:`kdgat.runs.reconcile`): Slurm (one ``squeue``/``sacct`` call for all of them) or, for a
local run, this host. A run whose job or process has ended is recorded ``failed`` (``killed by
Slurm: OUT_OF_MEMORY``) or ``cancelled`` in its status.json, and listed first; when Slurm cannot
be asked, the listing says so and changes nothing.
"""

from __future__ import annotations

import json
import sys

from kdgat.cli.grid import add_filter_argument, parse_filters
from kdgat.data.datasets import runs_root
from kdgat.grid import all_points
from kdgat.runs.inventory import CANCELLED, datasets_with_runs, number, pipeline_points, scan, section
from kdgat.runs.reconcile import reconcile

HELP = ("what exists and what is missing per dataset: done/running/failed/cancelled/preempted/missing, "
        "with metrics (unfinished runs checked against Slurm or this host)")
ERROR_WIDTH = 80  # a failed run's error, first line; the whole traceback is in its status.json


def register(parser) -> None:
    parser.add_argument("--runs-root", default=None, metavar="DIR",
                        help="where runs are looked for (default KDGAT_RUNS_ROOT, else experimentruns)")
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME",
                        help="show this dataset even without runs (repeatable; default: every "
                             "dataset that has runs)")
    add_filter_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the table rows as JSON")
    parser.add_argument("--jobs", nargs="?", const="latest", default=None, metavar="MANIFEST",
                        help="the Slurm jobs of a sweep or pipeline submission (its manifest.json or "
                             "folder; default: the newest under the runs root): pending, running, "
                             "completed, failed (with its log), not run because a dependency failed")
    parser.set_defaults(run=run)


def run_jobs(args) -> int:
    """``kdgat status --jobs``: follow a Slurm submission through its manifest."""
    from pathlib import Path

    from kdgat.launch import manifest

    root = runs_root(args.runs_root)
    if args.jobs == "latest":
        found = manifest.manifests(root)
        if not found:
            print(f"no Slurm submissions (manifest.json) under {root}")
            return 0
        path = found[0]
    else:
        path = Path(args.jobs)
        path = path / manifest.MANIFEST if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such manifest (a sweep's or pipeline's manifest.json)")
    document = manifest.read(path)
    rows = manifest.job_rows(document)
    if args.json:
        print(json.dumps({"manifest": str(path), "kind": document.get("kind"), "jobs": rows}, indent=1))
    else:
        manifest.print_rows(path, document, rows)
    bad = {"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "NOT_RUN", "CANCELLED"}
    return 1 if any(row["state"] in bad for row in rows) else 0


def run(args) -> int:
    if args.jobs is not None:
        return run_jobs(args)
    root = runs_root(args.runs_root)
    filters = parse_filters(args.filter + [f"dataset={name}" for name in args.dataset])
    wanted = all_points(filters)
    datasets = ([(p.modality, p.dataset) for p in wanted] if args.dataset
                else datasets_with_runs(root))
    datasets = [d for d in dict.fromkeys(datasets) if d in {(p.modality, p.dataset) for p in wanted}]
    if not datasets:
        print(f"no runs under {root}{'' if root.is_dir() else ' (it does not exist)'}"
              f"{' matching the filters' if filters else ''}; start with `kdgat-train runs_root={root}` "
              "or name a dataset with --dataset")
        return 0
    wanted_set = set(wanted)
    scanned = []
    for modality, dataset in datasets:
        pipeline = [p for p in pipeline_points(dataset, modality=modality) if p in wanted_set]
        in_pipeline = set(pipeline)
        others = [p for p in wanted if (p.modality, p.dataset) == (modality, dataset)
                  and p not in in_pipeline]
        scanned.append((modality, dataset, scan(root, pipeline), scan(root, others)))
    outcome = reconcile([found for *_, pipeline, others in scanned for found in pipeline + others])
    sections = [(modality, dataset, [_row(found) for found in pipeline],
                 [_row(found) for found in others if found.runs])
                for modality, dataset, pipeline, others in scanned]
    # With --json, stdout is the JSON document only: what reconciliation did goes to stderr.
    _print_reconciliation(outcome, sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps([{"modality": m, "dataset": d, "pipeline": p, "other": o}
                          for m, d, p, o in sections], indent=1))
        return 0
    _print_sections(root, sections)
    return 0


def _print_reconciliation(outcome, out) -> None:
    """One line per run found dead (now recorded in its status.json), and why Slurm was not asked."""
    for run, error in outcome.ended:
        print(f"{run.run_dir}: {run.status} ({error})", file=out)
    if outcome.removed:
        print(f"removed {len(outcome.removed)} temporary file(s) that killed writes left: "
              + ", ".join(str(path) for path in outcome.removed), file=out)
    if outcome.slurm_problem:
        print(f"Slurm not reachable ({outcome.slurm_problem}): {outcome.unchecked} Slurm run(s) shown "
              "as last recorded, not checked", file=out)
    if outcome.ended or outcome.removed or outcome.slurm_problem:
        print(file=out)


def _row(found) -> dict:
    """One table row for a point: its state and the run that stands for it."""
    shown = found.shown
    prefix = f"{found.point.modality}_{found.point.dataset}_"
    counts = found.counts()
    row = {"point": found.point.name[len(prefix):], "grid_point": found.point.name,
           "state": found.state, "runs": len(found.runs), "counts": counts,
           "f1": None, "auroc": None, "run_dir": str(shown.run_dir) if shown else None, "note": ""}
    if shown is not None:
        summary = shown.summary
        if shown.status == "completed" and "test_pooled_f1" not in summary:
            # A status.json written without the summary: metrics.json has it too.
            metrics, _ = shown.metrics()
            summary = section(metrics, "summary")
        row["f1"], row["auroc"] = number(summary.get("test_pooled_f1")), number(summary.get("test_pooled_auroc"))
    row["note"] = _note(found, shown)
    return row


def _note(found, shown) -> str:
    notes = []
    if shown is not None:
        if shown.problem:
            notes.append(shown.problem)
        elif shown.status in ("failed", CANCELLED) and shown.error and shown.error.strip():
            error = shown.error.strip().splitlines()[0]
            notes.append(error if len(error) <= ERROR_WIDTH else error[: ERROR_WIDTH - 3] + "...")
    # Newer runs than the one shown (e.g. a re-run in progress next to a completed one).
    for run in found.runs:
        if shown is None or run is shown:
            break
        notes.append(f"newer {run.name} {run.status}"
                     + (f" ({run.problem})" if run.problem else ""))
    return "; ".join(notes)


def _print_sections(root, sections) -> None:
    from kdgat.evaluation.report import results_table

    columns = ["point", "state", "runs", "f1", "auroc", "run_dir", "note"]
    for index, (modality, dataset, pipeline_rows, other_rows) in enumerate(sections):
        if index:
            print()
        tally = {}
        for row in pipeline_rows:
            tally[row["state"]] = tally.get(row["state"], 0) + 1
        states = ", ".join(f"{count} {state}" for state, count in tally.items())
        print(f"== {modality}/{dataset}: pipeline {tally.get('done', 0)}/{len(pipeline_rows)} done"
              f"{f' ({states})' if states else ''}")
        if pipeline_rows:
            print(results_table(pipeline_rows, columns))
        if other_rows:
            print(f"-- other grid points with runs ({len(other_rows)})")
            print(results_table(other_rows, columns))
    print(f"\nruns root: {root}; f1/auroc: pooled test metrics of the run shown (the newest "
          "completed one, else the newest)")
