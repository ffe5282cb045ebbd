"""Comparison tables for ``kdgat report`` and ``kdgat status``: plain text and Markdown.

:func:`results_table` aligns any rows; the rest lays out the aggregated report
(:mod:`kdgat.evaluation.aggregate`): per dataset an overview of every point, the chosen metric and
AUROC per test scenario (mean ± half-width of the 95 % t-interval, with ``n``), their standard
deviations, the paired comparisons and the runs left apart. Nothing here reads files.
"""

from __future__ import annotations

import re
from numbers import Integral, Real
from typing import Any

from kdgat.evaluation.aggregate import COMPARISONS, POOLED, Comparison, Estimate, PointGroup
from kdgat.runs.inventory import number, section

MISSING = "n/a"
# Report columns that hold words or paths (left-aligned); every other one holds numbers.
TEXT_COLUMNS = ("point", "vs", "stat", "rule", "runs", "run", "note", "reason")
CELL_LEGEND = ("cells: mean ± half-width of the 95 % Student-t interval over the point's n runs "
               "(one per seed, configs equal but for the seed); n = 1: the run's value, no interval")
PAIRED_LEGEND = ("Δ: mean of the per-seed differences ± half-width of its 95 % t-interval; p: paired "
                 "t-test (scipy.stats.ttest_rel); pairs: seeds present on every side")


def results_table(rows: list[dict], columns: list[str], digits: int = 4, right=()) -> str:
    """An aligned plain-text table: one line per row, one column per name in ``columns``.

    A column name is looked up as a key of the row first, then as a dotted path into nested dicts,
    so ``"test.pooled.f1"`` reads straight from a ``metrics.json`` document. ``None`` and absent
    values show as ``n/a`` (an undefined AUROC is not a zero). Numbers are right-aligned, text
    left-aligned.

    Args:
        rows (list[dict]): One dict per run (or scenario).
        columns (list[str]): The keys to show, in order; also the header.
        digits (int, optional): Decimal places for floats. (default: ``4``)
        right (tuple[str], optional): Columns right-aligned although they hold text (numbers
            formatted in advance, such as ``0.9810 ± 0.0120``). (default: ``()``)
    """
    if not columns:
        raise ValueError("results_table needs at least one column")
    values = [[_lookup(row, column) for column in columns] for row in rows]
    cells = [[_format(value, digits) for value in line] for line in values]
    widths = [max([len(name)] + [len(line[i]) for line in cells]) for i, name in enumerate(columns)]
    # A column is numeric (right-aligned) when it has values and every defined one is a number.
    numeric = []
    for i, column in enumerate(columns):
        defined = [line[i] for line in values if line[i] is not None]
        numeric.append(column in right or (bool(defined) and all(_is_number(value) for value in defined)))

    def render(line: list[str]) -> str:
        padded = (c.rjust(w) if right else c.ljust(w) for c, w, right in zip(line, widths, numeric))
        return "  ".join(padded).rstrip()

    header = render(list(columns))
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([header, rule] + [render(line) for line in cells])


def markdown_table(rows: list[dict], columns: list[str], digits: int = 4) -> str:
    """The rows as a GitHub/pandoc pipe table (``|`` inside a cell escaped)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    lines += ["| " + " | ".join(_format(_lookup(row, c), digits).replace("|", "\\|") for c in columns) + " |"
              for row in rows]
    return "\n".join(lines)


def _lookup(row: dict, column: str) -> Any:
    if column in row:
        return row[column]
    value: Any = row
    for part in column.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _format(value: Any, digits: int) -> str:
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        return f"{float(value):.{digits}f}"
    return str(value)


# --------------------------------------------------------------------------- cells
def format_estimate(value: Estimate, digits: int = 4, n: int | None = None, sign: bool = False) -> str | None:
    """``0.9810 ± 0.0120`` (mean ± half-width of the 95 % interval), ``0.9810`` for one value,
    ``None`` (shown ``n/a``) for none; `` (n=3)`` is added where fewer than ``n`` values were defined."""
    if value.n == 0:
        return None
    mean = f"{value.mean:+.{digits}f}" if sign else f"{value.mean:.{digits}f}"
    text = mean if value.half_width is None else f"{mean} ± {value.half_width:.{digits}f}"
    return text + (f" (n={value.n})" if n is not None and value.n != n else "")


def format_p(p_value: float | None) -> str | None:
    if p_value is None:
        return None
    return f"{p_value:.4f}" if p_value >= 1e-4 else f"{p_value:.1e}"


def seed_list(seeds) -> str:
    """``[0, 1, 2, 4]`` → ``0-2,4``; no known seed → ``?``."""
    seeds = sorted(seeds)
    if not seeds:
        return "?"
    spans, start = [], seeds[0]
    for previous, current in zip(seeds, seeds[1:] + [None]):
        if current != previous + 1 if current is not None else True:
            spans.append(str(start) if start == previous else f"{start}-{previous}")
            start = current
    return ",".join(spans)


def run_list(group: PointGroup) -> str:
    """The run directory of a single run; ``FOLDER/run_{001,003}`` for several (shell braces)."""
    if group.n == 1:
        return str(group.newest.run_dir)
    names = sorted(run.run_dir.name for run in group.runs)
    return f"{group.newest.run_dir.parent}/run_{{{','.join(n[len('run_'):] for n in names)}}}"


def scenario_code(scenario: str) -> str:
    """``test_01_known_vehicle_known_attack`` → ``t01``; other names are kept."""
    match = re.match(r"test_(\d+)", scenario)
    return f"t{match.group(1)}" if match else scenario


def label(group: PointGroup) -> str:
    """The point's name without its modality and dataset (they head each section)."""
    point = group.point
    return point.name[len(f"{point.modality}_{point.dataset}_"):]


def _dimension_change(group: PointGroup, reference: PointGroup) -> str:
    mine, theirs = group.point.as_dict(), reference.point.as_dict()
    return ",".join(f"{key}={value}" for key, value in theirs.items() if mine[key] != value)


# --------------------------------------------------------------------------- rows
def overview_rows(groups: list[PointGroup], metric: str, digits: int) -> list[dict]:
    rows = []
    for group in groups:
        epochs = [v for v in (number(section(run.metrics, "summary").get("epochs")) for run in group.runs)
                  if v is not None]
        threshold, rule = group.threshold()
        parameters = group.summary("parameters")
        row = {"point": label(group), "n": group.n, "seeds": seed_list(group.seeds),
               "params": int(parameters.mean) if parameters.n else None,
               "epochs": (None if not epochs else str(min(epochs)) if min(epochs) == max(epochs)
                          else f"{min(epochs)}-{max(epochs)}"),
               "threshold": format_estimate(threshold, digits), "rule": rule}
        for name in dict.fromkeys((metric, "auroc", "accuracy")):
            row[f"pooled {name}"] = format_estimate(group.estimate(POOLED, name), digits, group.n)
        row["runs"] = run_list(group)
        rows.append(row)
    return rows


def scenario_rows(groups: list[PointGroup], codes: dict, metric: str, digits: int,
                  spread: bool = False) -> list[dict]:
    """Per point: ``n`` and the metric per scenario (estimates, or standard deviations)."""
    rows = []
    for group in groups:
        row = {"point": label(group), "n": group.n}
        for scenario, code in codes.items():
            value = group.estimate(scenario, metric)
            row[code] = (None if value.sd is None else round(value.sd, digits)) if spread \
                else format_estimate(value, digits, group.n)
        rows.append(row)
    return rows


def comparison_rows(kind: str, found: list[Comparison], codes: dict, metric: str, digits: int,
                    markdown: bool = False) -> list[dict]:
    """Rows of one comparison kind: in text a ``Δ`` row, a ``p`` row (and ``better`` for several
    references) per comparison; in Markdown one row, each cell ``Δ ± h (p = …)``."""
    rows = []
    for comparison in (c for c in found if c.kind == kind):
        references = list(comparison.references.values())
        vs = (_dimension_change(comparison.group, references[0]) if len(references) == 1
              else f"better of {', '.join(comparison.references)}")
        head = {"point": label(comparison.group), "vs": vs, "pairs": len(comparison.paired_seeds)}
        if kind == "student_vs_teacher":
            mine, theirs = comparison.group.summary("parameters"), references[0].summary("parameters")
            head["ratio"] = mine.mean / theirs.mean if mine.n and theirs.n and theirs.mean else None
        differences = {code: comparison.difference(scenario, metric) for scenario, code in codes.items()}
        unpaired = "; ".join(f"{side} {seed_list(seeds)}" for side, seeds in comparison.unpaired.items())
        notes = [f"unpaired seeds: {unpaired}"] if unpaired else []
        notes += comparison.dependency_mismatches()
        note = "; ".join(notes)
        if markdown:
            row = dict(head)
            for code, difference in differences.items():
                row[code] = _markdown_difference(difference, digits, len(references) > 1, head["pairs"])
            rows.append(dict(row, note=note))
            continue
        delta, p_row = dict(head, stat="Δ"), dict(head, stat="p")
        for code, difference in differences.items():
            delta[code] = format_estimate(difference.estimate, digits, head["pairs"], sign=True)
            p_row[code] = format_p(difference.estimate.p_value)
        rows += [dict(delta, note=note), dict(p_row, note="")]
        if len(references) > 1:
            rows.append(dict(head, stat="better", note="",
                             **{code: d.reference for code, d in differences.items()}))
    return rows


def _markdown_difference(difference, digits: int, name_reference: bool, pairs: int) -> str | None:
    text = format_estimate(difference.estimate, digits, pairs, sign=True)
    if text is None:
        return None
    if difference.estimate.p_value is not None:
        text += f" (p = {format_p(difference.estimate.p_value)})"
    return text + (f" vs {difference.reference}" if name_reference else "")


def left_apart_rows(groups: list[PointGroup]) -> list[dict]:
    return [{"point": label(group), "run": item.run.run_dir.name,
             "seed": item.run.seed, "reason": item.reason}
            for group in groups for item in group.left_apart]


# --------------------------------------------------------------------------- the report
def report_blocks(part: dict, metric: str, digits: int, markdown: bool = False) -> list[tuple]:
    """The tables of one dataset: ``(level, title, rows, notes)``, level 2 heading the dataset.

    Args:
        part (dict): ``modality``, ``dataset``, ``groups`` (list of :class:`PointGroup`) and
            ``comparisons`` (list of :class:`Comparison`).
        metric (str): The metric of the per-scenario tables and comparisons.
        digits (int): Decimal places of the cells.
        markdown (bool, optional): Comparisons as one row each, p inside the cell. (default: ``False``)
    """
    groups, found = part["groups"], part["comparisons"]
    scenarios = list(dict.fromkeys(s for group in groups for s in group.scenarios if s != POOLED))
    codes = {**{s: scenario_code(s) for s in scenarios}, POOLED: POOLED}
    legend = ", ".join(f"{code} = {s}" for s, code in codes.items() if code != s)
    runs = sum(group.n for group in groups)
    apart = sum(len(group.left_apart) for group in groups)
    title = (f"{part['modality']}/{part['dataset']}: {len(groups)} point(s), {runs} completed "
             f"run(s) aggregated by seed" + (f", {apart} left apart" if apart else ""))
    blocks = [(2, title, overview_rows(groups, metric, digits), [CELL_LEGEND]),
              (3, f"{metric} per test scenario", scenario_rows(groups, codes, metric, digits),
               [f"scenarios: {legend}"] if legend else []),
              (3, "AUROC per test scenario (n/a: no attack windows in the scenario)",
               scenario_rows(groups, codes, "auroc", digits), [])]
    if any(group.n > 1 for group in groups):
        blocks.append((3, f"{metric} standard deviation per test scenario (ddof=1; n/a: n < 2)",
                       scenario_rows(groups, codes, metric, digits, spread=True), []))
    for kind, meaning in COMPARISONS.items():
        rows = comparison_rows(kind, found, codes, metric, digits, markdown)
        if rows:
            blocks.append((3, f"{kind.replace('_', ' ')}: Δ {metric} = {meaning}, paired by seed",
                           rows, [PAIRED_LEGEND]))
    apart_rows = left_apart_rows(groups)
    if apart_rows:
        blocks.append((3, "left apart: completed runs not aggregated with their point's reported runs",
                       apart_rows, []))
    return blocks


def columns_of(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(key for row in rows for key in row))


def render(sections: list[dict], metric: str, root, markdown: bool, protocol: str = "strict") -> str:
    """The whole report, as text (``== dataset`` / ``-- table`` headings) or as Markdown.

    Args:
        sections (list[dict]): One :func:`report_blocks` ``part`` per dataset.
        metric (str): The metric of the per-scenario tables and comparisons.
        markdown (bool): Markdown (3 decimals) instead of aligned text (4 decimals).
        protocol (str): The evaluation protocol the sections' metrics are of (named first).
    """
    digits = 3 if markdown else 4
    out = [f"# kdgat report: {root}\n"] if markdown else []
    line = f"evaluation protocol: {protocol} (kdgat.evaluation.protocols)"
    out.append(line + ("\n" if markdown else ""))
    for part in sections:
        for level, title, rows, notes in report_blocks(part, metric, digits, markdown):
            columns = columns_of(rows)
            if markdown:
                out += [f"{'#' * level} {title}", "", markdown_table(rows, columns, digits)]
                out += ["\n" + note for note in notes]
            else:
                out += [f"== {title}" if level == 2 else f"-- {title}",
                        results_table(rows, columns, digits, right=[c for c in columns if c not in TEXT_COLUMNS])]
                out += notes
            out.append("")
    return "\n".join(out).rstrip() + "\n" if markdown else "\n".join(out).rstrip()
