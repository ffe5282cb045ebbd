"""A run's ``predictions.csv`` (or ``.csv.gz``): one row per test window.

Columns, in order: ``file`` (the recording the window was cut from), ``window_index`` (its position
in that file), ``scenario``, ``label`` (0/1), ``attack_type``, ``score``, ``prediction`` (0/1),
then any extra numeric or text columns the caller adds (e.g. a fusion model's component scores).
Floats are written in Python's shortest round-trip form, so reading gives back the same values.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import tempfile
from pathlib import Path

import numpy as np

COLUMNS: tuple[str, ...] = (
    "file", "window_index", "scenario", "label", "attack_type", "score", "prediction"
)
_TEXT = ("file", "scenario", "attack_type")
_INTEGER = ("window_index", "label", "prediction")


def write_predictions(path, rows: dict[str, np.ndarray]) -> Path:
    """Write per-window predictions atomically (temporary file, then ``os.replace``).

    Args:
        path: Destination; a name ending in ``.gz`` is gzip-compressed.
        rows (dict): Column name -> 1-D array, all of one length; must hold every column of
            :data:`COLUMNS`, and may hold more (written after them, in the given order).
    """
    path = Path(path)
    missing = [c for c in COLUMNS if c not in rows]
    if missing:
        raise ValueError(f"predictions for {path} lack columns {missing}; required: {list(COLUMNS)}")
    columns = list(COLUMNS) + [c for c in rows if c not in COLUMNS]
    arrays = [np.asarray(rows[c]) for c in columns]
    lengths = {c: a.shape for c, a in zip(columns, arrays)}
    if any(a.ndim != 1 for a in arrays) or len({a.shape for a in arrays}) > 1:
        raise ValueError(f"prediction columns must be 1-D arrays of one length, got shapes {lengths}")
    for column in ("label", "prediction"):
        if not np.isin(rows[column], (0, 1)).all():
            raise ValueError(f"predictions column {column!r} must hold only 0 and 1")

    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates mode 0600; give the file the permissions a plain open() would have.
        os.chmod(temporary, 0o666 & ~_umask())
        with os.fdopen(descriptor, "wb") as raw:
            # mtime=0 and no file name in the gzip header: identical predictions, identical bytes.
            compressed = None
            if _gz(path):
                compressed = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
            stream = io.TextIOWrapper(compressed or raw, encoding="utf-8", newline="")
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerow(columns)
            # tolist() yields Python scalars; csv writes floats with repr, which round-trips.
            writer.writerows(zip(*(_column_values(c, a) for c, a in zip(columns, arrays))))
            stream.flush()
            stream.detach()  # keep ``raw`` open for the fsync below
            if compressed is not None:
                compressed.close()  # writes the gzip trailer; leaves ``raw`` open
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_predictions(path) -> dict[str, np.ndarray]:
    """Read a file written by :func:`write_predictions`.

    Returns column name -> array: ``file``, ``scenario``, ``attack_type`` as ``str``;
    ``window_index``, ``label``, ``prediction`` as ``int64``; ``score`` as ``float64``; extra
    columns as ``int64`` if every value is an integer, else ``float64`` if every value is a
    number, else ``str``.

    Args:
        path: A ``.csv`` or ``.csv.gz`` predictions file.
    """
    path = Path(path)
    opener = gzip.open if _gz(path) else open
    with opener(path, "rt", newline="") as stream:
        reader = csv.reader(stream)
        header = next(reader, None)
        if header is None or any(c not in header for c in COLUMNS):
            raise ValueError(f"{path} is not a predictions file: header {header}, expected {list(COLUMNS)}")
        values = list(zip(*reader)) or [()] * len(header)
    return {column: _parse(column, list(column_values)) for column, column_values in zip(header, values)}


def _gz(path: Path) -> bool:
    return path.name.endswith(".gz")


def _column_values(column: str, array: np.ndarray) -> list:
    if column in _TEXT:
        return [str(v) for v in array.tolist()]
    if column == "score":
        return array.astype(np.float64).tolist()
    return array.tolist()


def _parse(column: str, values: list[str]) -> np.ndarray:
    if column in _TEXT:
        return np.array(values, dtype=str)
    if column in _INTEGER:
        return np.array([int(v) for v in values], dtype=np.int64)
    if column == "score":
        return np.array([float(v) for v in values], dtype=np.float64)
    for kind in (int, float):
        try:
            return np.array([kind(v) for v in values], dtype=np.int64 if kind is int else np.float64)
        except ValueError:
            continue
    return np.array(values, dtype=str)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
