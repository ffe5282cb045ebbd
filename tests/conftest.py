"""Shared test fixtures: tiny hand-written datasets, the real data, the ``kdgat`` command, markers.

- ``slow`` tests run only with ``KDGAT_RUN_SLOW=1`` (``make test-all``).
- ``realdata`` tests need ``../shared/data/can-train-and-test`` beside the repository (the
  can-train-and-test bundle, see DESIGN.md "Data"); the ``real_data`` fixture skips them, saying
  why, where it is absent (a user's clone has no such folder).

The tiny datasets are written by hand, row by row, so every expected number in the tests can be
worked out from the rows themselves (with Python's ``csv`` module, independent of kdgat's parser).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = (REPO / ".." / "shared" / "data" / "can-train-and-test").resolve()
HEADER = "timestamp,arbitration_id,data_field,attack"
EPOCH = 1672531200.0  # every set_0x file's clock starts here (clocks re-based per file)

TRAIN_01, TRAIN_02 = "train_01_attack_free", "train_02_with_attacks"
TEST_01, TEST_02 = "test_01_known_vehicle_known_attack", "test_02_unknown_vehicle_known_attack"
TEST_05 = "test_05_suppress"


def pytest_collection_modifyitems(config, items):
    """Skip ``slow`` tests unless ``KDGAT_RUN_SLOW=1``."""
    if os.environ.get("KDGAT_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow test: set KDGAT_RUN_SLOW=1 (or `make test-all`) to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# --------------------------------------------------------------------------- writing recordings
def row(timestamp: float, can_id: int, payload: bytes = b"", attack: int = 0) -> str:
    """One CSV line in the can-train-and-test format (upper-case hex, 3-digit ids)."""
    return f"{timestamp:.6f},{can_id:03X},{payload.hex().upper()},{attack}"


def csv_text(lines: list[str], newline: str = "\n", header: bool = True) -> str:
    """A whole file: header plus ``lines``, each ended by ``newline``."""
    return "".join(line + newline for line in ([HEADER] if header else []) + list(lines))


def write_recording(path: Path, lines: list[str] | str | bytes, newline: str = "\n") -> Path:
    """Write a recording; ``.gz`` names are gzip-compressed (mtime 0: same rows, same bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(lines, list):
        lines = csv_text(lines, newline)
    data = lines.encode() if isinstance(lines, str) else lines
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


def plain_rows(path: Path) -> list[tuple[float, int, bytes, int]]:
    """A recording's rows read with Python's ``csv`` module: (timestamp, id, payload, attack)."""
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    reader = csv.reader(io.StringIO(raw.decode()))
    assert next(reader) == HEADER.split(",")
    return [(float(t), int(i, 16), bytes.fromhex(d), int(a)) for t, i, d, a in filter(None, reader)]


def periodic_rows(n: int, ids: list[int], seed: int = 0, t0: float = EPOCH,
                  attacks: dict[int, int] | None = None,
                  planted: dict[int, int] | None = None) -> list[str]:
    """``n`` rows cycling through ``ids`` with jittered ~1 ms gaps and seeded payloads.

    Each id keeps its own DLC, ``(id >> 4) % 9`` (so 0x090 sends empty payloads).

    Args:
        attacks: row index -> injected attack id (that row becomes the id, 8 bytes, ``attack=1``).
        planted: row index -> benign id (that row becomes the id, ``attack=0``).
    """
    import random

    rng = random.Random(seed)
    attacks, planted = attacks or {}, planted or {}
    lines, t = [], t0
    for k in range(n):
        t += 0.0005 + rng.random() * 0.001
        if k in attacks:
            lines.append(row(t, attacks[k], bytes(rng.randrange(256) for _ in range(8)), 1))
            continue
        can_id = planted.get(k, ids[k % len(ids)])
        dlc = (can_id >> 4) % 9
        lines.append(row(t, can_id, bytes(rng.randrange(256) for _ in range(dlc)), 0))
    return lines


# --------------------------------------------------------------------------- the tiny dataset
KNOWN_IDS = [0x090, 0x100, 0x1A0, 0x200, 0x2F0]  # the known vehicle's ids (DLCs 0, 7, 8, 5, 2)
VAL_ONLY_ID = 0x555  # appears only in the validation part of DoS-a
GAP_ONLY_ID = 0x666  # appears only in the unused window between training and validation
UNSEEN_IDS = [0x7A1, 0x7A2, 0x7A3, 0x7A4, 0x7A5, 0x7A6, 0x7A7, 0x7A8]  # only in test files
UNKNOWN_VEHICLE_IDS = [0x123, 0x124, 0x125]
TINY_WINDOW = 10


def tiny_dataset_files() -> dict[str, list[str]]:
    """The tiny dataset's files (relative path -> rows); see :func:`write_tiny_dataset`."""
    benign = periodic_rows(120, KNOWN_IDS, seed=1)
    # DoS-a: 100 rows; with window 10 and val_fraction 0.2 the cut is at row 80, rows 80-89 are the
    # unused gap and rows 90-99 the validation block.
    dos_attacks = {k: 0x000 for k in range(30, 36)} | {k: 0x000 for k in range(93, 96)}
    dos = periodic_rows(100, KNOWN_IDS, seed=2, attacks=dos_attacks,
                        planted={85: GAP_ONLY_ID, 92: VAL_ONLY_ID})
    fuzz_attacks = {k: UNSEEN_IDS[k % len(UNSEEN_IDS)] for k in range(20, 60, 2)}
    return {
        f"{TRAIN_01}/attack-free-a.csv": benign,
        f"{TRAIN_02}/attack-free-a.csv": benign,  # byte-identical copy, as in the bundle
        f"{TRAIN_02}/DoS-a.csv": dos,
        f"{TEST_01}/fuzzing-a.csv.gz": periodic_rows(60, KNOWN_IDS, seed=3, attacks=fuzz_attacks),
        f"{TEST_02}/DoS-b.csv": periodic_rows(50, UNKNOWN_VEHICLE_IDS, seed=4,
                                              attacks={k: 0x000 for k in range(12, 18)}),
        f"{TEST_05}/suppress-a.csv": periodic_rows(40, KNOWN_IDS[1:], seed=5),
    }


def write_tiny_dataset(root: Path, files: dict[str, list[str] | str | bytes] | None = None) -> Path:
    """Write a dataset folder in the can-train-and-test layout and return it.

    The default files: ``attack-free-a`` (120 rows) in both training folders, byte-identical;
    ``DoS-a`` (100 rows, attacks at rows 30-35 and 93-95, id 0x555 only in its validation block,
    0x666 only in the gap); test_01 ``fuzzing-a.csv.gz`` (60 rows, 20 attack rows of 8 unseen
    ids); test_02 ``DoS-b`` (50 rows of an unknown vehicle); test_05 ``suppress-a`` (40 benign rows).
    """
    for relpath, lines in (tiny_dataset_files() if files is None else files).items():
        write_recording(root / relpath, lines)
    return root


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    """A fresh, writable copy of the tiny dataset (``tmp_path/data/tiny``)."""
    return write_tiny_dataset(tmp_path / "data" / "tiny")


@pytest.fixture(scope="session")
def shared_tiny_dataset(tmp_path_factory) -> Path:
    """The tiny dataset, shared by the tests that only read it (do not modify)."""
    return write_tiny_dataset(tmp_path_factory.mktemp("shared-data") / "tiny")


@pytest.fixture
def make_dataset(tmp_path):
    """Factory: ``make_dataset({relpath: rows | text | bytes}, name="ds")`` writes a dataset folder."""
    def make(files: dict, name: str = "ds") -> Path:
        return write_tiny_dataset(tmp_path / "data" / name, files)
    return make


# --------------------------------------------------------------------------- real data
@pytest.fixture(scope="session")
def real_data() -> Path:
    """``../shared/data/can-train-and-test`` beside the repository, or skip with the reason."""
    if not (REAL_DATA / "MANIFEST.json").is_file():
        pytest.skip(f"real CAN data not found at {REAL_DATA} (the can-train-and-test bundle; only "
                    "the development machine has it, a user's clone does not)")
    return REAL_DATA


# --------------------------------------------------------------------------- the kdgat command
def kdgat_command() -> list[str]:
    """The installed ``kdgat`` console script beside this interpreter (else the same via -c)."""
    script = Path(sys.executable).parent / "kdgat"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from kdgat.cli import main; sys.exit(main())"]


@pytest.fixture
def kdgat(tmp_path):
    """Run ``kdgat ARGS`` in a real subprocess (no KDGAT_* variables leak in); returns the result."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDGAT_")}
    env["KDGAT_RUNS_ROOT"] = str(tmp_path / "runs")

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([*kdgat_command(), *map(str, args)], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=timeout)
    return run
