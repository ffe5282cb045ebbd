"""``kdgat data check``: validate recordings and report what each file holds, and each dataset's
grouping of its files (vehicle, attack type) for leave-one-group-out validation."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kdgat.data.frames import FrameFormatError
from kdgat.data.groups import GROUPINGS, dataset_groups, group_of, training_groups, vehicle_of
from kdgat.data.layout import RECORDING_SUFFIXES, TRAIN_FOLDERS, DatasetLayout, attack_type_from_name
from kdgat.data.quoting import printable
from kdgat.data.readers import read_recording


@dataclass
class FileReport:
    """What one recording holds, and what is wrong with it."""

    path: str
    rows: int = 0
    attack_rows: int = 0
    distinct_ids: int = 0
    dlc_histogram: dict[int, int] = field(default_factory=dict)
    time_span: tuple[float, float] | None = None
    backwards_timestamps: int = 0
    attack_type: str = ""
    duplicate_of: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    malformed_count: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.malformed_count == 0


def recordings_under(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{printable(path)}: no such file or folder")
    return sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(RECORDING_SUFFIXES))


def check_file(path: Path, max_issues: int = 1000) -> tuple[FileReport, str | None]:
    """Report on one recording; also returns a hash of its frames for duplicate detection.

    A file that can be read but holds no frame (a header and nothing else) is a problem too: as a
    training or test file it would contribute nothing, silently.
    """
    report = FileReport(str(path), attack_type=attack_type_from_name(path))
    try:
        frames = read_recording(path, on_error="skip")
    except (FrameFormatError, OSError) as err:  # OSError: missing or unreadable file
        report.error = printable(str(err))  # escaped where raised; again for foreign messages
        return report, None
    if not len(frames) and not frames.skipped_rows:
        blank = f" and {frames.blank_lines} blank line(s)" if frames.blank_lines else ""
        report.error = f"{printable(path)}: holds only the header{blank}, no rows"
        return report, None
    report.rows, report.attack_rows = len(frames), int(frames.attack.sum())
    report.distinct_ids = int(len(np.unique(frames.can_id)))
    values, counts = np.unique(frames.dlc, return_counts=True)
    report.dlc_histogram = {int(v): int(c) for v, c in zip(values, counts)}
    if len(frames):
        report.time_span = (float(frames.timestamp[0]), float(frames.timestamp[-1]))
        report.backwards_timestamps = int((np.diff(frames.timestamp) < 0).sum())
    report.malformed = [str(issue) for issue in frames.issues[:max_issues]]
    report.malformed_count = frames.skipped_rows
    digest = hashlib.sha256()
    for array in (frames.timestamp, frames.can_id, frames.payload, frames.dlc, frames.attack):
        digest.update(np.ascontiguousarray(array).tobytes())
    return report, digest.hexdigest()


def check(path: str | Path) -> list[FileReport]:
    """Check every recording at ``path`` (a file, or a folder searched recursively)."""
    reports, by_hash = [], {}
    for file in recordings_under(Path(path)):
        report, digest = check_file(file)
        if digest is not None:
            by_hash.setdefault(digest, []).append(report)
        reports.append(report)
    for group in by_hash.values():
        for report in group:
            report.duplicate_of = [other.path for other in group if other is not report]
    return reports


def format_report(reports: list[FileReport], root: str | Path) -> str:
    """A plain-text table of the reports plus every malformed row as ``file:line: message``.

    File names are shown through :func:`~kdgat.data.quoting.printable` (errors and malformed rows
    are escaped where they are made), so no escape sequence of a file reaches the terminal.
    """
    root = Path(root)
    base = root if root.is_dir() else root.parent
    lines = [f"{'file':<58} {'rows':>9} {'attacks':>8} {'ids':>5} {'span s':>9}  dlc histogram"]
    for r in reports:
        name = printable(Path(r.path).relative_to(base) if Path(r.path).is_relative_to(base) else r.path)
        if r.error:
            lines.append(f"{name:<58} ERROR {r.error}")
            continue
        span = f"{r.time_span[1] - r.time_span[0]:.1f}" if r.time_span else "-"
        dlcs = " ".join(f"{k}:{v}" for k, v in r.dlc_histogram.items())
        lines.append(f"{name:<58} {r.rows:>9} {r.attack_rows:>8} {r.distinct_ids:>5} {span:>9}  {dlcs}")
        if r.duplicate_of:
            lines.append(f"    same frames as: {', '.join(map(printable, r.duplicate_of))}")
        if r.backwards_timestamps:
            lines.append(f"    {r.backwards_timestamps} timestamps go backwards")
        if r.malformed_count:
            lines.append(f"    {r.malformed_count} malformed row(s):")
            lines.extend(f"      {issue}" for issue in r.malformed)
            if r.malformed_count > len(r.malformed):
                lines.append(f"      ... and {r.malformed_count - len(r.malformed)} more")
    bad = sum(not r.ok for r in reports)
    lines.append(f"{len(reports)} file(s), {sum(r.rows for r in reports)} rows, "
                 f"{bad} with problems" if reports else f"no recordings found under {printable(root)}")
    return "\n".join(lines)


def dataset_folders(path: str | Path) -> list[Path]:
    """``path`` if it is a dataset folder (has a training folder), else its sub-folders that are."""
    path = Path(path)
    if not path.is_dir():
        return []
    candidates = [path] + sorted(p for p in path.iterdir() if p.is_dir())
    found = [p for p in candidates if any((p / name).is_dir() for name in TRAIN_FOLDERS)]
    return found[:1] if found and found[0] == path else found


def _groups_line(layout: DatasetLayout, dataset: str, grouping: str) -> str:
    try:
        groups = training_groups(layout, dataset, grouping)
    except ValueError as err:
        return f"unavailable: {err}"
    listed = ", ".join(f"{name} ({len(files)})" for name, files in groups.items()) or "none"
    default = dataset_groups(dataset).defaults.get(grouping)
    benign = "; benign recordings always train" if grouping == "attack" else ""
    return f"{listed}{benign}; default holdout: {default or 'none (set datamodule.holdout=NAME)'}"


def format_grouping(layout: DatasetLayout, dataset: str) -> str:
    """The grouping table of one dataset (:mod:`kdgat.data.groups`): every file with its folder,
    vehicle and attack type, and for training files the group it is in per grouping."""
    table = dataset_groups(dataset)
    origin = "declared" if table.declared else "file-name rule; --dataset NAME picks a declared table"
    lines = [f"grouping of {printable(dataset)} ({origin}): {table.note}",
             f"  {'file':<64} {'folder':<38} {'vehicle':<10} {'attack':<26} groups (vehicle / attack / file)"]
    dropped = dict(layout.duplicates)
    for relpath in sorted([r.relpath for r in layout.recordings] + list(dropped)):
        folder = relpath.split("/", 1)[0]
        try:
            vehicle = vehicle_of(relpath, dataset)
        except ValueError:
            vehicle = "-"
        recording = next((r for r in layout.recordings if r.relpath == relpath), None)
        attack = recording.attack_type if recording else attack_type_from_name(relpath)
        if relpath in dropped:
            groups = f"same bytes as {printable(dropped[relpath])} (counted once)"
        elif recording.split != "train":
            groups = "test: never in a group"
        else:
            parts = []
            for grouping in GROUPINGS:
                try:
                    parts.append(group_of(recording, dataset, grouping) or "always train")
                except ValueError:
                    parts.append("-")
            groups = " / ".join(map(printable, parts))
        lines.append(f"  {printable(relpath):<64} {printable(folder):<38} {printable(vehicle):<10} "
                     f"{printable(attack):<26} {groups}")
    lines.append("  validation groups (datamodule.validation=GROUPING datamodule.holdout=NAME):")
    lines.extend(f"    {grouping + ':':<8} {_groups_line(layout, dataset, grouping)}" for grouping in GROUPINGS)
    return "\n".join(lines)
