"""Plain-text comparison tables for ``kdgat report`` and ``kdgat status``."""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

MISSING = "n/a"


def results_table(rows: list[dict], columns: list[str], digits: int = 4) -> str:
    """An aligned plain-text table: one line per row, one column per name in ``columns``.

    A column name is looked up as a key of the row first, then as a dotted path into nested dicts,
    so ``"test.pooled.f1"`` reads straight from a ``metrics.json`` document. ``None`` and absent
    values show as ``n/a`` (an undefined AUROC is not a zero). Numbers are right-aligned, text
    left-aligned.

    Args:
        rows (list[dict]): One dict per run (or scenario).
        columns (list[str]): The keys to show, in order; also the header.
        digits (int, optional): Decimal places for floats. (default: ``4``)
    """
    if not columns:
        raise ValueError("results_table needs at least one column")
    values = [[_lookup(row, column) for column in columns] for row in rows]
    cells = [[_format(value, digits) for value in line] for line in values]
    widths = [max([len(name)] + [len(line[i]) for line in cells]) for i, name in enumerate(columns)]
    # A column is numeric (right-aligned) when it has values and every defined one is a number.
    numeric = []
    for i in range(len(columns)):
        defined = [line[i] for line in values if line[i] is not None]
        numeric.append(bool(defined) and all(_is_number(value) for value in defined))

    def render(line: list[str]) -> str:
        padded = (c.rjust(w) if right else c.ljust(w) for c, w, right in zip(line, widths, numeric))
        return "  ".join(padded).rstrip()

    header = render(list(columns))
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([header, rule] + [render(line) for line in cells])


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
