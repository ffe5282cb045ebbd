"""The can-train-and-test folder layout: which files train, which test, and what each one holds.

A dataset folder has ``train_01_attack_free/`` (benign), ``train_02_with_attacks/`` (attacks plus
byte-identical copies of every train_01 file) and ``test_*`` folders, one per test scenario. Nothing
here assumes which files exist: the folders are listed, and files with the same content are
counted once (upstream counted them twice and leaked them into validation).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from kdgat.data.quoting import printable

TRAIN_FOLDERS = ("train_01_attack_free", "train_02_with_attacks")
RECORDING_SUFFIXES = (".csv", ".csv.gz", ".log", ".asc", ".blf")
_BENIGN_NAME = re.compile(r"^(attack[-_]free|accessory|benign|normal)([-_].*)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Recording:
    """One recording file of a dataset.

    Args:
        path: the file.
        relpath: its path relative to the dataset folder (how it is named in caches and reports).
        split: ``"train"`` or the test scenario's folder name (``"test_01_known_vehicle_known_attack"``).
        attack_type: from the file name (``DoS-kia`` → ``dos``); ``"benign"`` for attack-free files.
        sha256: hash of the file's bytes on disk.
    """

    path: Path
    relpath: str
    split: str
    attack_type: str
    sha256: str


@dataclass(frozen=True)
class DatasetLayout:
    """The recordings of one dataset, training files deduplicated by content."""

    root: Path
    train: tuple[Recording, ...]
    tests: dict[str, tuple[Recording, ...]]
    duplicates: tuple[tuple[str, str], ...]  # (dropped relpath, kept relpath)

    @property
    def recordings(self) -> tuple[Recording, ...]:
        return self.train + tuple(r for files in self.tests.values() for r in files)


def attack_type_from_name(path: str | Path) -> str:
    """The attack type a file name announces: ``DoS-kia.csv.gz`` → ``"dos"``.

    ``attack-free-*`` and ``accessory-N`` recordings are benign. Otherwise the name up to the
    vehicle or run suffix is the type (``rpm-accessory-1`` → ``"rpm"``,
    ``targeted_payload_fuzzing-2`` → ``"targeted_payload_fuzzing"``).
    """
    stem = Path(path).name
    for suffix in RECORDING_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    if _BENIGN_NAME.match(stem):
        return "benign"
    return stem.split("-")[0].lower() or "unknown"


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _recordings(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.name.lower().endswith(RECORDING_SUFFIXES))


def discover(root: str | Path) -> DatasetLayout:
    """List a dataset folder's recordings by split.

    Raises:
        FileNotFoundError: ``root`` is missing, or has no ``train_*`` folder or no ``test_*`` folder;
            the message lists what the folder holds and what was expected.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"dataset folder {printable(root)} does not exist; set data_root=DIR (or KDGAT_DATA_ROOT) to the "
            "folder holding the can-train-and-test datasets, or run `kdgat data synth --out DIR`")
    present = sorted(p.name for p in root.iterdir() if p.is_dir())
    train_dirs = [root / name for name in TRAIN_FOLDERS if (root / name).is_dir()]
    test_dirs = [root / name for name in present if name.startswith("test_")]
    if not train_dirs or not test_dirs:
        raise FileNotFoundError(
            f"{printable(root)} is not a can-train-and-test dataset folder: expected {' and '.join(TRAIN_FOLDERS)} "
            f"and test_* folders, found {present or 'no folders'}")

    seen: dict[str, str] = {}
    train: list[Recording] = []
    duplicates: list[tuple[str, str]] = []
    for folder in train_dirs:
        for path in _recordings(folder):
            digest = file_sha256(path)
            relpath = path.relative_to(root).as_posix()
            if digest in seen:
                duplicates.append((relpath, seen[digest]))
                continue
            seen[digest] = relpath
            train.append(Recording(path, relpath, "train", attack_type_from_name(path), digest))
    if not train:
        raise FileNotFoundError(f"{printable(root)}: the training folders {[d.name for d in train_dirs]} "
                                f"hold no recordings ({', '.join(RECORDING_SUFFIXES)})")
    tests = {}
    for folder in test_dirs:
        files = tuple(
            Recording(p, p.relative_to(root).as_posix(), folder.name, attack_type_from_name(p),
                      file_sha256(p))
            for p in _recordings(folder))
        if files:
            tests[folder.name] = files
    return DatasetLayout(root, tuple(train), tests, tuple(duplicates))
