"""``kdgat report``: the completed runs of a runs root, aggregated by seed, compared, tabulated.

Per grid point, the completed runs whose saved configs differ only in the seed are aggregated
(:mod:`kdgat.evaluation.aggregate`: the group holding the newest completed run; the others are
listed as left apart, with the config key that differed). Per dataset it prints an overview,
the chosen metric and AUROC per test scenario (n, mean ± 95 % interval), their standard
deviations, and paired comparisons by seed: distilled vs not distilled, each size vs the teacher,
fusion vs its better input. ``--json`` prints all of it as one JSON document instead. ``--out DIR``
also writes ``report.csv`` (one row per aggregated run), ``aggregate.csv`` (every point, scenario
and metric), ``comparisons.csv`` (with ``distillation.csv`` and ``fusion.csv``, its parts),
``left_apart.csv``, ``report.md``, ``report.json`` and plots with error bars.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

from kdgat.cli.grid import add_filter_argument, parse_filters
from kdgat.data.datasets import runs_root
from kdgat.evaluation.protocols import PROTOCOLS, STRICT, protocol_view
from kdgat.grid import all_points
from kdgat.runs.inventory import scan

HELP = "tables (text, CSV, Markdown, JSON) and plots across completed runs, aggregated by seed"
METRICS = ("f1", "auroc", "auprc", "accuracy", "balanced_accuracy", "mcc", "precision", "recall", "fpr")
POOLED = "pooled"


def register(parser) -> None:
    parser.add_argument("--runs-root", default=None, metavar="DIR",
                        help="where runs are looked for (default KDGAT_RUNS_ROOT, else experimentruns)")
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME",
                        help="only this dataset (repeatable)")
    add_filter_argument(parser)
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="also write CSV, Markdown and JSON files and plots here")
    parser.add_argument("--metric", choices=METRICS, default="f1",
                        help="metric per scenario, in the comparisons and in the plots (default f1)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default=STRICT,
                        help="evaluation protocol whose test metrics are reported (default strict: "
                             "one validation threshold for every window; causal_recording: scores "
                             "standardised against each recording's earlier windows)")
    parser.add_argument("--json", action="store_true",
                        help="print the report as one JSON document (every scenario and metric)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from kdgat.evaluation.aggregate import comparisons, group_runs, read_run

    root = runs_root(args.runs_root)
    points = all_points(parse_filters(args.filter + [f"dataset={name}" for name in args.dataset]))
    by_dataset: dict[tuple, dict] = {}
    for found in scan(root, points):
        records = []
        for completed in (run for run in found.runs if run.status == "completed"):
            metrics, problem = completed.metrics()
            if metrics is not None:
                metrics, missing = protocol_view(metrics, args.protocol)
                if metrics is None:
                    print(f"kdgat report: skipped {completed.run_dir}: {missing}", file=sys.stderr)
                    continue
            if metrics is None:
                print(f"kdgat report: skipped a completed run whose metrics cannot be read: {problem}",
                      file=sys.stderr)
            else:
                records.append(read_run(completed.run_dir, metrics))
        if records:
            key = (found.point.modality, found.point.dataset)
            by_dataset.setdefault(key, {})[found.point] = group_runs(found.point, records)
    if not by_dataset:
        message = (f"no completed runs under {root}{'' if root.is_dir() else ' (it does not exist)'}"
                   " matching the selection")
        print(json.dumps({"runs_root": str(root), "datasets": [], "note": message}) if args.json else message)
        return 0
    sections = [{"modality": modality, "dataset": dataset, "groups": list(groups.values()),
                 "comparisons": comparisons(groups)} for (modality, dataset), groups in by_dataset.items()]
    # Files first: a reader that closes the pipe early (`| head`) must not cost them.
    written = write_outputs(Path(args.out), sections, args.metric, root, args.protocol) if args.out else []
    try:
        if args.json:
            print(json.dumps(json_document(sections, root, args.metric, args.protocol), indent=1))
        else:
            from kdgat.evaluation.report import render

            print(render(sections, args.metric, root, markdown=False, protocol=args.protocol))
        if written:
            print(f"\nwrote {', '.join(str(p) for p in written)}", file=sys.stderr if args.json else sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
    return 0


# --------------------------------------------------------------------------- documents and rows
def _estimate(value) -> dict:
    return {"n": value.n, "mean": value.mean, "sd": value.sd, "ci_low": value.ci_low, "ci_high": value.ci_high}


def point_document(group) -> dict:
    """A point's aggregate: its runs, seeds, what was left apart, and every scenario and metric."""
    return {"grid_point": group.point.name, **group.point.as_dict(), "n": group.n, "seeds": group.seeds,
            "runs": [str(run.run_dir) for run in group.runs],
            "left_apart": [{"run_dir": str(item.run.run_dir), "seed": item.run.seed,
                            "reason": item.reason, "keys": item.keys} for item in group.left_apart],
            "scenarios": {scenario: {metric: _estimate(group.estimate(scenario, metric))
                                     for metric in group.metrics} for scenario in group.scenarios}}


def comparison_document(comparison) -> dict:
    """A comparison: the points, the paired and unpaired seeds, and every scenario and metric."""
    group = comparison.group
    results = {}
    for scenario in group.scenarios:
        results[scenario] = {}
        for metric in group.metrics:
            difference = comparison.difference(scenario, metric)
            results[scenario][metric] = {**_estimate(difference.estimate),
                                         "p_value": difference.estimate.p_value,
                                         "seeds": list(difference.estimate.seeds),
                                         "reference": difference.reference, "means": difference.means}
    return {"kind": comparison.kind, "grid_point": group.point.name,
            "references": {role: ref.point.name for role, ref in comparison.references.items()},
            "paired_seeds": comparison.paired_seeds, "unpaired_seeds": comparison.unpaired,
            "notes": comparison.dependency_mismatches(), "scenarios": results}


def json_document(sections: list[dict], root, metric: str, protocol: str = STRICT) -> dict:
    from kdgat.evaluation.aggregate import CONFIDENCE, DATA_KEY, IGNORED_KEYS

    return {"runs_root": str(root), "metric": metric, "protocol": protocol, "confidence": CONFIDENCE,
            "ignored_config_keys": IGNORED_KEYS, "data_key": DATA_KEY,
            "datasets": [{"modality": part["modality"], "dataset": part["dataset"],
                          "points": [point_document(group) for group in part["groups"]],
                          "comparisons": [comparison_document(c) for c in part["comparisons"]]}
                         for part in sections]}


def run_rows(sections: list[dict], metric: str) -> list[dict]:
    """One row per aggregated run with its seed and every column (full scenario names)."""
    from kdgat.runs.inventory import number, section

    rows = []
    for part in sections:
        for group in part["groups"]:
            for run in sorted(group.runs, key=lambda r: r.run_dir.name):
                summary, threshold = section(run.metrics, "summary"), section(run.metrics, "threshold")
                row = {"grid_point": group.point.name, **group.point.as_dict(), "seed": run.seed,
                       "n": group.n, "run_dir": str(run.run_dir),
                       "parameters": number(summary.get("parameters")), "epochs": number(summary.get("epochs")),
                       "threshold": number(threshold.get("value")), "threshold_rule": threshold.get("rule")}
                for scenario in group.scenarios:
                    for name in dict.fromkeys((metric, "auroc") + (("accuracy",) if scenario == POOLED else ())):
                        row[f"{scenario}.{name}"] = run.value(scenario, name)
                rows.append(row)
    return rows


def aggregate_rows(sections: list[dict]) -> list[dict]:
    rows = []
    for part in sections:
        for group in part["groups"]:
            for scenario, metrics in point_document(group)["scenarios"].items():
                for metric, value in metrics.items():
                    rows.append({"grid_point": group.point.name, **group.point.as_dict(),
                                 "scenario": scenario, "metric": metric, **value,
                                 "seeds": " ".join(map(str, group.seeds)),
                                 "runs": " ".join(sorted(run.run_dir.name for run in group.runs))})
    return rows


def comparison_rows(sections: list[dict]) -> list[dict]:
    rows = []
    for part in sections:
        for comparison in part["comparisons"]:
            document = comparison_document(comparison)
            unpaired = "; ".join(f"{side} {' '.join(map(str, seeds))}"
                                 for side, seeds in document["unpaired_seeds"].items())
            for scenario, metrics in document["scenarios"].items():
                for metric, value in metrics.items():
                    role = value["reference"]
                    rows.append({
                        "kind": comparison.kind, "modality": part["modality"], "dataset": part["dataset"],
                        "grid_point": document["grid_point"],
                        "reference": document["references"].get(role) if role else None,
                        "reference_role": role, "scenario": scenario, "metric": metric,
                        "pairs": value["n"], "seeds": " ".join(map(str, value["seeds"])),
                        "mean_difference": value["mean"], "sd": value["sd"], "ci_low": value["ci_low"],
                        "ci_high": value["ci_high"], "p_value": value["p_value"],
                        "point_mean": value["means"].get("point"),
                        "reference_mean": value["means"].get(role) if role else None,
                        "means": " ".join(f"{k}={v}" for k, v in value["means"].items() if k != "point"),
                        "unpaired": unpaired, "notes": "; ".join(document["notes"])})
    return rows


def left_apart_rows(sections: list[dict]) -> list[dict]:
    return [{"grid_point": group.point.name, "run_dir": str(item.run.run_dir), "seed": item.run.seed,
             "reason": item.reason, "keys": " ".join(item.keys)}
            for part in sections for group in part["groups"] for item in group.left_apart]


# --------------------------------------------------------------------------- files
def write_csv(path: Path, rows: list[dict]) -> Path:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: "" if row.get(k) is None else row[k] for k in columns} for row in rows)
    return path


def plot_section(part: dict, metric: str, out: Path) -> list[Path]:
    """Per dataset: the pooled metric, the metric per scenario, and the paired differences."""
    from kdgat.evaluation.plots import plot_estimates
    from kdgat.evaluation.report import label, scenario_code

    groups, name = part["groups"], f"{metric}_{part['modality']}_{part['dataset']}"
    where = f"{part['modality']}/{part['dataset']}"
    palette = {"unsupervised": "tab:orange", "classifier": "tab:blue", "fusion": "tab:green"}
    colors = [palette.get(group.point.learning_type, "tab:gray") for group in groups]
    legend = {kind: palette.get(kind, "tab:gray") for kind in dict.fromkeys(g.point.learning_type for g in groups)}
    xlim = None if metric == "mcc" else (0, 1.15)
    scenarios = list(dict.fromkeys(s for group in groups for s in group.scenarios))

    def panel(scenario: str) -> list[tuple]:
        return [(label(g), *(lambda e: (e.mean, e.ci_low, e.ci_high, e.n))(g.estimate(scenario, metric)))
                for g in groups]

    written = [plot_estimates({POOLED: panel(POOLED)}, out / f"pooled_{name}.png", colors=colors,
                              xlabel=f"pooled test {metric}", title=f"{where} (mean, 95 % interval)",
                              xlim=xlim, legend=legend),
               plot_estimates({scenario_code(s): panel(s) for s in scenarios}, out / f"scenarios_{name}.png",
                              colors=colors, xlabel=f"test {metric}", xlim=xlim, legend=legend,
                              title=f"{where}: {metric} per test scenario (mean, 95 % interval)")]
    if part["comparisons"]:
        panels = {}
        for scenario in scenarios:
            panels[scenario_code(scenario)] = []
            for comparison in part["comparisons"]:
                difference = comparison.difference(scenario, metric)
                value = difference.estimate
                panels[scenario_code(scenario)].append(
                    (f"{label(comparison.group)} − {difference.reference or '?'}",
                     value.mean, value.ci_low, value.ci_high, value.n))
        written.append(plot_estimates(panels, out / f"comparisons_{name}.png", centre=0.0,
                                      xlabel=f"Δ {metric}", title=f"{where}: paired differences by seed "
                                                                  "(mean, 95 % interval)"))
    return written


def write_outputs(out: Path, sections: list[dict], metric: str, root, protocol: str = STRICT) -> list[Path]:
    from kdgat.evaluation.report import render
    from kdgat.runs.rundir import write_atomic

    out.mkdir(parents=True, exist_ok=True)
    written = [write_csv(out / "report.csv", run_rows(sections, metric)),
               write_csv(out / "aggregate.csv", aggregate_rows(sections))]
    compared = comparison_rows(sections)
    parts = {"comparisons": compared,
             "distillation": [r for r in compared if r["kind"] in ("distillation_vs_none", "student_vs_teacher")],
             "fusion": [r for r in compared if r["kind"] == "fusion_vs_better_input"],
             "left_apart": left_apart_rows(sections)}
    written += [write_csv(out / f"{name}.csv", rows) for name, rows in parts.items() if rows]
    write_atomic(out / "report.md", render(sections, metric, root, markdown=True, protocol=protocol))
    write_atomic(out / "report.json", json.dumps(json_document(sections, root, metric, protocol), indent=1) + "\n")
    written += [out / "report.md", out / "report.json"]
    for part in sections:
        written += plot_section(part, metric, out)
    return written
