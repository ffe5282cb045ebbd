"""``kdgat grid``: the valid grid points, filterable, with the runs each one has.

Also home of ``--filter key=value[,value]``, which ``kdgat status`` and ``kdgat report`` share.
Imports only :mod:`kdgat.grid` and :mod:`kdgat.runs.inventory` (no torch), so it answers at once.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import fields

HELP = "list the valid grid points (filterable) and the runs each one has"


def add_filter_argument(parser) -> None:
    parser.add_argument(
        "--filter", action="append", default=[], metavar="KEY=VALUE[,VALUE]",
        help="keep points whose dimension KEY has one of the VALUEs (repeatable; dimensions: "
             "modality dataset learning_type model size distillation mode)")


def register(parser) -> None:
    add_filter_argument(parser)
    parser.add_argument("--count", action="store_true", help="print only the number of points")
    parser.add_argument("--runs-root", default=None, metavar="DIR",
                        help="where runs are looked for (default KDGAT_RUNS_ROOT, else experimentruns)")
    parser.add_argument("--json", action="store_true", help="print the points as a JSON list")
    parser.set_defaults(run=run)


def dimension_values() -> dict[str, list[str]]:
    """Every value each dimension takes somewhere in the grid, in grid order."""
    from kdgat.grid import GridPoint, all_points

    values: dict[str, dict[str, None]] = {f.name: {} for f in fields(GridPoint)}
    for point in all_points():
        for key, value in point.as_dict().items():
            values[key][value] = None
    return {key: list(found) for key, found in values.items()}


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    """``["dataset=hcrl_sa,set_01", "size=teacher"]`` → ``{"dataset": [...], "size": [...]}``.

    A key given twice keeps the values of both. Raises ``ValueError`` naming the bad key or value,
    a close match, and the valid ones.
    """
    valid = dimension_values()
    filters: dict[str, list[str]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip(","):
            raise ValueError(f"--filter expects KEY=VALUE[,VALUE...], got {item!r}; "
                             f"keys: {', '.join(valid)}")
        values = [v for v in (v.strip() for v in text.split(",")) if v]
        if key not in valid:
            # Of the close dimension names, prefer one that has the given values ("modle=gat" → model).
            close = difflib.get_close_matches(key, list(valid), n=3, cutoff=0.6)
            close.sort(key=lambda name: not all(v in valid[name] for v in values))
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"--filter {item}: unknown dimension {key!r}{hint}; "
                             f"dimensions: {', '.join(valid)}")
        for value in values:
            if value not in valid[key]:
                raise ValueError(f"--filter {item}: {key} has no value {value!r}"
                                 f"{_did_you_mean(value, valid[key])}; valid {key} values: "
                                 f"{', '.join(valid[key])}")
            filters.setdefault(key, [])
            if value not in filters[key]:
                filters[key].append(value)
    return filters


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def run(args) -> int:
    from kdgat.data.datasets import runs_root
    from kdgat.evaluation.report import results_table
    from kdgat.grid import all_points
    from kdgat.runs.inventory import scan

    points = all_points(parse_filters(args.filter))
    if args.count:
        print(len(points))
        return 0
    root = runs_root(args.runs_root)
    rows = []
    for found in scan(root, points):
        newest, completed = found.newest, found.completed
        rows.append({
            "point": found.point.name, "path": found.point.path, **found.point.as_dict(),
            "runs": len(found.runs),
            "newest": f"{newest.name} {newest.status}" if newest else "-",
            "newest_status": newest.status if newest else None,
            "completed": completed.name if completed else "-",
            "completed_run": str(completed.run_dir) if completed else None,
        })
    if args.json:
        for row in rows:
            del row["newest"], row["completed"]
        print(json.dumps(rows, indent=1))
        return 0
    print(results_table(rows, ["point", "path", "runs", "newest", "completed"]))
    with_runs = sum(1 for row in rows if row["runs"])
    done = sum(1 for row in rows if row["completed_run"])
    print(f"{len(rows)} point(s); {with_runs} with runs, {done} with a completed run "
          f"(paths relative to runs root {root}{'' if root.is_dir() else ', which does not exist'})")
    return 0
