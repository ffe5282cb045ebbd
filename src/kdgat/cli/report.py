"""``kdgat report``: compare the completed runs of a runs root (the newest one per grid point).

Per dataset it prints an overview (size, epochs, threshold, pooled metrics), the chosen metric and
AUROC per test scenario, and two comparisons: each distilled student against the teacher run it
learned from, and each fusion agent against the VGAE and GAT runs it combined (both read from the
``dependencies`` a run recorded, so the comparison is with the runs actually used). ``--out DIR``
also writes ``report.csv`` (one row per run, every column), ``report.md``, ``distillation.csv``,
``fusion.csv`` and one bar plot of the pooled metric per dataset.
"""

from __future__ import annotations

import csv
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from kdgat.cli.grid import add_filter_argument, parse_filters
from kdgat.data.datasets import runs_root
from kdgat.grid import GridPoint, all_points, dependencies
from kdgat.runs.inventory import number, read_json, scan, section

HELP = "comparison tables (text, CSV, Markdown) and plots across completed runs"
METRICS = ("f1", "auroc", "auprc", "accuracy", "balanced_accuracy", "mcc", "precision", "recall", "fpr")
POOLED = "pooled"


def register(parser) -> None:
    parser.add_argument("--runs-root", default=None, metavar="DIR",
                        help="where runs are looked for (default KDGAT_RUNS_ROOT, else experimentruns)")
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME",
                        help="only this dataset (repeatable)")
    add_filter_argument(parser)
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="also write report.csv, report.md, distillation.csv, fusion.csv and plots here")
    parser.add_argument("--metric", choices=METRICS, default="f1",
                        help="metric per scenario, in the comparisons and in the plot (default f1)")
    parser.set_defaults(run=run)


@dataclass
class Entry:
    """The newest completed run of one grid point and its ``metrics.json``."""

    point: GridPoint
    run_dir: Path
    metrics: dict

    @property
    def label(self) -> str:
        """The point's name without its modality and dataset (they head each section)."""
        return self.point.name[len(f"{self.point.modality}_{self.point.dataset}_"):]

    def value(self, scenario: str, metric: str) -> float | None:
        return number(section(section(self.metrics, "test"), scenario).get(metric))

    @property
    def scenarios(self) -> list[str]:
        return [name for name in section(self.metrics, "test") if name != POOLED]

    @property
    def parameters(self) -> int | None:
        return number(section(self.metrics, "summary").get("parameters"))

    @property
    def epochs(self) -> int | None:
        return number(section(self.metrics, "summary").get("epochs"))

    @property
    def threshold(self) -> dict:
        return section(self.metrics, "threshold")


def run(args) -> int:
    root = runs_root(args.runs_root)
    points = all_points(parse_filters(args.filter + [f"dataset={name}" for name in args.dataset]))
    entries, skipped = [], []
    for found in scan(root, points):
        if found.completed is None:
            continue
        metrics, problem = found.completed.metrics()
        if metrics is None:
            skipped.append(problem)
        else:
            entries.append(Entry(found.point, found.completed.run_dir, metrics))
    for problem in skipped:
        print(f"kdgat report: skipped a completed run whose metrics cannot be read: {problem}",
              file=sys.stderr)
    if not entries:
        print(f"no completed runs under {root}{'' if root.is_dir() else ' (it does not exist)'}"
              " matching the selection")
        return 0
    sections = build_sections(entries, args.metric)
    print(render(sections, args.metric, root, markdown=False))
    if args.out:
        written = write_outputs(Path(args.out), entries, sections, args.metric, root)
        print(f"\nwrote {', '.join(str(p) for p in written)}")
    return 0


# --------------------------------------------------------------------------- tables
def scenario_code(scenario: str) -> str:
    """``test_01_known_vehicle_known_attack`` → ``t01``; other names are kept."""
    match = re.match(r"test_(\d+)", scenario)
    return f"t{match.group(1)}" if match else scenario


def build_sections(entries: list[Entry], metric: str) -> list[dict]:
    """One section per dataset: overview, per-scenario, distillation and fusion rows."""
    by_dataset: dict[tuple, list[Entry]] = {}
    for entry in entries:
        by_dataset.setdefault((entry.point.modality, entry.point.dataset), []).append(entry)
    sections = []
    for (modality, dataset), group in by_dataset.items():
        scenarios = list(dict.fromkeys(s for entry in group for s in entry.scenarios))
        codes = {s: scenario_code(s) for s in scenarios}
        overview, per_metric, per_auroc = [], [], []
        for entry in group:
            overview.append({"point": entry.label, "params": entry.parameters, "epochs": entry.epochs,
                             "threshold": number(entry.threshold.get("value")),
                             "rule": entry.threshold.get("rule"),
                             **{f"pooled {name}": entry.value(POOLED, name)
                                for name in dict.fromkeys((metric, "auroc", "accuracy"))},
                             "run": str(entry.run_dir)})
            per_metric.append({"point": entry.label, **{codes[s]: entry.value(s, metric) for s in scenarios},
                               POOLED: entry.value(POOLED, metric)})
            per_auroc.append({"point": entry.label, **{codes[s]: entry.value(s, "auroc") for s in scenarios},
                              POOLED: entry.value(POOLED, "auroc")})
        sections.append({"modality": modality, "dataset": dataset, "codes": codes,
                         "overview": overview, "per_metric": per_metric, "per_auroc": per_auroc,
                         "distillation": distillation_rows(group, codes, metric),
                         "fusion": fusion_rows(group, metric)})
    return sections


def _dependency(entry: Entry, role: str, group: list[Entry]) -> tuple[Path | None, dict | None, str]:
    """The run ``entry`` used for ``role`` and its metrics; falls back to the newest completed run."""
    recorded = section(entry.metrics, "dependencies").get(role)
    if recorded and isinstance(recorded, str):
        metrics, _ = read_json(Path(recorded) / "metrics.json")
        if metrics is not None:
            return Path(recorded), metrics, ""
    need = next((d.point for d in dependencies(entry.point) if d.role == role), None)
    newest = next((e for e in group if e.point == need), None)
    if newest is None:
        wanted = recorded or (need.name if need else role)
        return None, None, f"{role} run {wanted}: no readable metrics.json"
    note = f"recorded {role} run {recorded} unreadable; " if recorded else ""
    return newest.run_dir, newest.metrics, note + f"compared with newest {role} {newest.run_dir.name}"


def distillation_rows(group: list[Entry], codes: dict[str, str], metric: str) -> list[dict]:
    """Each distilled student next to its teacher: size ratio and the metric's change per scenario."""
    rows = []
    for entry in group:
        if entry.point.distillation == "no":
            continue
        teacher_dir, teacher, note = _dependency(entry, "teacher", group)
        teacher_entry = Entry(entry.point, teacher_dir, teacher) if teacher is not None else None
        params, teacher_params = entry.parameters, teacher_entry.parameters if teacher_entry else None
        row = {"student": entry.label, "params": params, "teacher params": teacher_params,
               "ratio": params / teacher_params if params and teacher_params else None}
        for scenario, code in list(codes.items()) + [(POOLED, POOLED)]:
            mine = entry.value(scenario, metric)
            theirs = teacher_entry.value(scenario, metric) if teacher_entry else None
            row[f"Δ{code}"] = mine - theirs if mine is not None and theirs is not None else None
        row["teacher run"] = str(teacher_dir) if teacher_dir else None
        row["note"] = note
        rows.append(row)
    return rows


def fusion_rows(group: list[Entry], metric: str) -> list[dict]:
    """Each fusion agent's pooled metric next to those of the VGAE and GAT runs it combined."""
    rows = []
    for entry in group:
        if entry.point.learning_type != "fusion":
            continue
        row = {"fusion": entry.label, f"fusion {metric}": entry.value(POOLED, metric)}
        notes, runs = [], {}
        for role in ("vgae", "gat"):
            run_dir, metrics, note = _dependency(entry, role, group)
            row[f"{role} {metric}"] = number(section(section(metrics, "test"), POOLED).get(metric))
            runs[f"{role} run"] = str(run_dir) if run_dir else None
            if note:
                notes.append(note)
        defined = [row[f"{role} {metric}"] for role in ("vgae", "gat") if row[f"{role} {metric}"] is not None]
        fused = row[f"fusion {metric}"]
        row["gain over best input"] = fused - max(defined) if defined and fused is not None else None
        row.update(runs, note="; ".join(notes))
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- text and markdown
def render(sections: list[dict], metric: str, root, markdown: bool) -> str:
    from kdgat.evaluation.report import results_table

    table = markdown_table if markdown else results_table
    head = (lambda text, level: f"{'#' * level} {text}") if markdown else \
        (lambda text, level: f"== {text}" if level == 2 else f"-- {text}")
    out = [f"# kdgat report: {root}\n"] if markdown else []
    for section in sections:
        legend = ", ".join(f"{code} = {s}" for s, code in section["codes"].items() if code != s)
        blocks = [
            (head(f"{section['modality']}/{section['dataset']}: {len(section['overview'])} "
                  "completed point(s), newest completed run of each", 2), section["overview"]),
            (head(f"{metric} per test scenario", 3), section["per_metric"]),
            (head("AUROC per test scenario (n/a: no attack windows in the scenario)", 3), section["per_auroc"]),
        ]
        if section["distillation"]:
            blocks.append((head(f"distillation: student vs the teacher run it learned from "
                                f"(Δ = student − teacher {metric}; ratio = student/teacher parameters)", 3),
                           section["distillation"]))
        if section["fusion"]:
            blocks.append((head(f"fusion vs inputs: pooled {metric} of the fusion agent and of the "
                                "VGAE and GAT runs it combined", 3), section["fusion"]))
        for index, (title, rows) in enumerate(blocks):
            out.append(title)
            if markdown:
                out.append("")
            out.append(table(rows, list(rows[0])))
            if index in (1, 2) and legend:
                out.append(("\n" if markdown else "") + f"scenarios: {legend}")
            out.append("")
    return "\n".join(out).rstrip() + "\n" if markdown else "\n".join(out).rstrip()


def _cell(value, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- files
def csv_rows(entries: list[Entry], metric: str) -> tuple[list[dict], list[str]]:
    """One row per run with every column (full scenario names), for spreadsheets and pandas."""
    scenarios = list(dict.fromkeys(s for entry in entries for s in entry.scenarios))
    rows = []
    for entry in entries:
        row = {"grid_point": entry.point.name, **entry.point.as_dict(), "run_dir": str(entry.run_dir),
               "parameters": entry.parameters, "epochs": entry.epochs,
               "threshold": number(entry.threshold.get("value")), "threshold_rule": entry.threshold.get("rule")}
        for scenario in scenarios + [POOLED]:
            for name in dict.fromkeys((metric, "auroc") + (("accuracy",) if scenario == POOLED else ())):
                row[f"{scenario}.{name}"] = entry.value(scenario, name)
        rows.append(row)
    return rows, list(rows[0]) if rows else []


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: "" if row.get(k) is None else row[k] for k in columns} for row in rows)
    return path


def plot_pooled(section: dict, metric: str, path: Path) -> Path:
    """A horizontal bar per grid point: its pooled metric (missing values drawn as empty bars)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = section["overview"]
    labels = [row["point"] for row in rows]
    values = [row[f"pooled {metric}"] for row in rows]
    figure = Figure(figsize=(8, 1.2 + 0.35 * len(rows)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    positions = range(len(rows))
    # One colour per learning type (a label starts with it), so VGAE, GAT and fusion rows stand apart.
    palette = {"unsupervised": "tab:orange", "classifier": "tab:blue", "fusion": "tab:green"}
    kinds = [label.split("_", 1)[0] for label in labels]
    axes.barh(positions, [0.0 if v is None else v for v in values],
              color=[palette.get(kind, "tab:gray") for kind in kinds])
    from matplotlib.patches import Patch

    axes.legend(handles=[Patch(color=palette.get(k, "tab:gray"), label=k) for k in dict.fromkeys(kinds)],
                fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for position, value in zip(positions, values):
        axes.text(0.0 if value is None else value, position, " n/a" if value is None else f" {value:.3f}",
                  va="center", fontsize="small")
    axes.set_yticks(list(positions), labels, fontsize="small")
    axes.invert_yaxis()
    axes.set(xlabel=f"pooled test {metric}", title=f"{section['modality']}/{section['dataset']}")
    if metric != "mcc":
        axes.set_xlim(0, 1.1)
    axes.grid(axis="x", alpha=0.3)
    figure.savefig(path, dpi=120)
    return path


def write_outputs(out: Path, entries: list[Entry], sections: list[dict], metric: str, root) -> list[Path]:
    from kdgat.runs.rundir import write_atomic

    out.mkdir(parents=True, exist_ok=True)
    rows, columns = csv_rows(entries, metric)
    written = [write_csv(out / "report.csv", rows, columns)]
    write_atomic(out / "report.md", render(sections, metric, root, markdown=True))
    written.append(out / "report.md")
    for name in ("distillation", "fusion"):
        flat = [dict(row, dataset=s["dataset"], modality=s["modality"]) for s in sections for row in s[name]]
        if flat:
            columns = ["modality", "dataset"] + [c for c in dict.fromkeys(k for r in flat for k in r)
                                                 if c not in ("modality", "dataset")]
            written.append(write_csv(out / f"{name}.csv", flat, columns))
    for section in sections:
        written.append(plot_pooled(section, metric, out / f"pooled_{metric}_{section['modality']}_"
                                                        f"{section['dataset']}.png"))
    return written
