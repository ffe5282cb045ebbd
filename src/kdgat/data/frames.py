"""Raw CAN frames: the can-train-and-test CSV format, parsed without a Python loop per row.

A recording is one CSV file (plain or ``.csv.gz``) with the header
``timestamp,arbitration_id,data_field,attack``. The parser below works on the file's bytes as one
numpy array: it finds newlines and commas, checks that every line has four fields, and decodes the
hexadecimal IDs and payloads column by column. Every malformed row is reported with its file and
line number; ``on_error="skip"`` drops such rows and counts them instead of failing, never silently.

Files are untrusted input: a ``.gz`` may decompress to no more than ``KDGAT_MAX_DECOMPRESSED_MB``
(default 1024 MB; the largest real recording is ~200 MB), a UTF-8 byte-order mark is skipped,
CR-only line ends and UTF-16 text are named as such, and quoted content is escaped
(:func:`kdgat.data.quoting.printable`).
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from kdgat.data.quoting import printable

HEADER = b"timestamp,arbitration_id,data_field,attack"
MAX_PAYLOAD_BYTES = 8
MAX_CAN_ID = 0x1FFFFFFF  # 29-bit extended identifiers
OnError = Literal["fail", "skip"]
MAX_DECOMPRESSED_ENV = "KDGAT_MAX_DECOMPRESSED_MB"
# hcrl_sa's largest file is 20 MB of CSV, the bundle's largest (hcrl_ch, ~4.6 M rows) ~200 MB; a
# gzip bomb inflates ~1000-fold, so a 4 MB one would otherwise take 4 GB of memory.
DEFAULT_MAX_DECOMPRESSED_MB = 1024
UTF8_BOM = b"\xef\xbb\xbf"

# Rows are decoded in chunks so that the (rows x field width) index arrays stay small.
_CHUNK_ROWS = 1 << 19

_HEX = np.full(256, -1, dtype=np.int16)
for _i, _c in enumerate(b"0123456789ABCDEF"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"abcdef"):
    _HEX[_c] = 10 + _i
_FLOAT_CHARS = np.zeros(256, dtype=bool)
_FLOAT_CHARS[list(b"0123456789.eE+-")] = True


@dataclass(frozen=True)
class ParseIssue:
    """One malformed row: where it is and what was expected."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{printable(self.path)}:{self.line}: {self.message}"


class FrameFormatError(ValueError):
    """A CAN recording that cannot be read as the can-train-and-test CSV format."""

    def __init__(self, path: str, message: str, issues: list[ParseIssue] | None = None):
        self.path = path
        self.issues = issues or []
        super().__init__(message)


@dataclass
class Frames:
    """The frames of one recording as flat arrays (see docs/contracts.md).

    Args:
        timestamp: float64 seconds, in file order.
        can_id: int64 arbitration ids.
        dlc: uint8 payload lengths in bytes.
        payload: uint8 (n, 8) payload bytes, zero-padded past ``dlc``.
        attack: uint8 0/1 frame labels.
        line: int64 1-based line numbers in the source (the header is line 1).
        source: the file the frames came from.
        issues: malformed rows that were skipped (only with ``on_error="skip"``).
        skipped_rows: how many rows were skipped (``issues`` may be capped).
        blank_lines: empty lines, ignored and counted.
    """

    timestamp: np.ndarray
    can_id: np.ndarray
    dlc: np.ndarray
    payload: np.ndarray
    attack: np.ndarray
    line: np.ndarray
    source: str = ""
    issues: list[ParseIssue] = field(default_factory=list)
    skipped_rows: int = 0
    blank_lines: int = 0

    def __len__(self) -> int:
        return int(self.timestamp.shape[0])

    @classmethod
    def empty(cls, source: str = "") -> "Frames":
        return cls(
            timestamp=np.zeros(0, np.float64), can_id=np.zeros(0, np.int64),
            dlc=np.zeros(0, np.uint8), payload=np.zeros((0, MAX_PAYLOAD_BYTES), np.uint8),
            attack=np.zeros(0, np.uint8), line=np.zeros(0, np.int64), source=source,
        )


def max_decompressed_bytes() -> int:
    """The most bytes one ``.gz`` recording may decompress to (``KDGAT_MAX_DECOMPRESSED_MB``)."""
    value = os.environ.get(MAX_DECOMPRESSED_ENV, "")
    if not value:
        return DEFAULT_MAX_DECOMPRESSED_MB << 20
    try:
        megabytes = float(value)
    except ValueError:
        megabytes = float("nan")
    if not megabytes > 0:
        raise ValueError(f"{MAX_DECOMPRESSED_ENV}={value!r} is not valid; give a number of megabytes "
                         f"> 0 (default {DEFAULT_MAX_DECOMPRESSED_MB})")
    return int(megabytes * (1 << 20))


def gunzip(raw: bytes, source: str, limit: int | None = None) -> bytes:
    """Decompress every member of a gzip file, refusing more than ``limit`` bytes of output.

    Raises:
        FrameFormatError: the stream is truncated or corrupt, or inflates past the limit (the
            message names ``KDGAT_MAX_DECOMPRESSED_MB``, which raises it).
    """
    limit = max_decompressed_bytes() if limit is None else limit
    shown = printable(source)
    parts, total, rest = [], 0, raw
    try:
        while rest:
            member = zlib.decompressobj(wbits=31)  # 31: gzip header and trailer
            # max_length bounds the memory taken: a bomb stops at limit + 1 bytes
            parts.append(member.decompress(rest, limit + 1 - total))
            total += len(parts[-1])
            if total > limit:
                raise FrameFormatError(source, (
                    f"{shown}: decompresses to more than {limit / (1 << 20):g} MB, the limit per "
                    f"file ({MAX_DECOMPRESSED_ENV}); real CAN recordings stay far below it, so the file "
                    f"is likely not a recording (a gzip bomb). If it is one, raise the limit, e.g. "
                    f"{MAX_DECOMPRESSED_ENV}={2 * max(limit >> 20, 1)}"))
            if not member.eof:
                raise EOFError("compressed file ended before the end-of-stream marker was reached")
            rest = member.unused_data.lstrip(b"\0")  # another member follows, or zero padding
    except (EOFError, zlib.error) as err:
        raise FrameFormatError(
            source, f"{shown}: corrupt or truncated gzip file ({err}); "
            "re-download or re-compress the file (gzip -t checks it)") from err
    return parts[0] if len(parts) == 1 else b"".join(parts)  # b"" for an empty file


def read_bytes(path: str | Path) -> bytes:
    """Read a recording's bytes, decompressing ``.gz`` files (see :func:`gunzip` for the limit).

    Raises:
        FileNotFoundError: the file does not exist.
        FrameFormatError: the gzip stream is truncated, corrupt or too large, or the file is empty.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{printable(path)}: no such CAN recording (expected a .csv or "
                                ".csv.gz file)")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gunzip(raw, str(path))
    if not raw.strip():
        raise FrameFormatError(str(path), f"{printable(path)}: empty file; expected the header "
                               f"'{HEADER.decode()}' and at least one row")
    return raw


def read_frames(path: str | Path, on_error: OnError = "fail", max_issues: int = 1000) -> Frames:
    """Read one can-train-and-test CSV recording (plain or gzip) into :class:`Frames`."""
    return parse_csv(read_bytes(path), source=str(path), on_error=on_error, max_issues=max_issues)


def parse_csv(raw: bytes, source: str = "<bytes>", on_error: OnError = "fail",
              max_issues: int = 1000) -> Frames:
    """Parse the bytes of a can-train-and-test CSV file.

    Args:
        raw: the uncompressed file content.
        source: the file name used in messages.
        on_error: ``"fail"`` raises :class:`FrameFormatError` naming every malformed row (the first
            ``max_issues``); ``"skip"`` drops those rows and records them in ``Frames.issues``.
        max_issues: how many issues are kept in full; all are counted.
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    shown = printable(source)
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FrameFormatError(source, f"{shown}: the file is UTF-16 text; save it as UTF-8 or "
                               f"ASCII with the header '{HEADER.decode()}'")
    if raw.startswith(UTF8_BOM):  # spreadsheet programs write one; harmless, so skipped
        raw = raw[len(UTF8_BOM):]
    bare_cr = False
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n")
        bare_cr = b"\r" in raw
        header_end = raw.find(b"\n")
        if bare_cr and b"\r" in (raw if header_end < 0 else raw[:header_end]):
            raise FrameFormatError(source, (
                f"{shown}:1: lines end in a bare carriage return (CR, old Mac style), not LF or CRLF; "
                "convert the line ends, e.g. tr '\\r' '\\n' < in.csv > out.csv"))
    data = np.frombuffer(raw, dtype=np.uint8)
    ends = np.flatnonzero(data == 10)
    if len(data) and data[-1] != 10:
        ends = np.append(ends, len(data))
    starts = np.concatenate(([0], ends[:-1] + 1))
    header = bytes(data[starts[0]:ends[0]]) if len(ends) else b""
    if header.strip() != HEADER:
        raise FrameFormatError(source, f"{shown}:1: expected the header '{HEADER.decode()}', "
                               f"found '{printable(header[:80])}'")
    body_begin = int(ends[0]) + 1
    starts, ends = starts[1:], ends[1:]
    line_numbers = np.arange(2, len(starts) + 2, dtype=np.int64)
    blank = ends == starts
    blank_lines = int(blank.sum())
    if blank_lines:
        starts, ends, line_numbers = starts[~blank], ends[~blank], line_numbers[~blank]

    issues = _Issues(source, max_issues)
    commas = np.flatnonzero(data[body_begin:] == 44) + body_begin
    comma_line = np.searchsorted(ends, commas)  # row of each comma (commas lie before their '\n')
    fields = np.bincount(comma_line, minlength=len(starts))[: len(starts)] + 1
    bad_fields = fields != 4
    if bare_cr:  # rows that hold a CR not followed by LF: name the CR, not what it breaks
        has_cr = np.zeros(len(starts), dtype=bool)
        has_cr[np.searchsorted(ends, np.flatnonzero(data[body_begin:] == 13) + body_begin)] = True
        issues.add(line_numbers[has_cr], "holds a bare carriage return (CR); lines must end in LF "
                   "or CRLF (a file joined from CR-only parts?)")
        bad_fields &= ~has_cr
    issues.add(line_numbers[bad_fields], [f"expected 4 fields, found {k}" for k in fields[bad_fields]])
    if bare_cr:
        bad_fields |= has_cr
    keep_comma = ~bad_fields[comma_line[comma_line < len(starts)]]
    comma_pos = commas[comma_line < len(starts)][keep_comma].reshape(-1, 3)
    starts, ends, line_numbers = starts[~bad_fields], ends[~bad_fields], line_numbers[~bad_fields]

    parts = [
        _decode_rows(data, starts[i:i + _CHUNK_ROWS], ends[i:i + _CHUNK_ROWS],
                     comma_pos[i:i + _CHUNK_ROWS], line_numbers[i:i + _CHUNK_ROWS], issues)
        for i in range(0, len(starts), _CHUNK_ROWS)
    ]
    issues.items.sort(key=lambda issue: issue.line)
    if issues.count and on_error == "fail":
        shown = "\n  ".join(str(issue) for issue in issues.items[:20])
        more = f"\n  ... and {issues.count - 20} more" if issues.count > 20 else ""
        raise FrameFormatError(
            source, f"{shown}: {issues.count} malformed row(s):\n  {shown}{more}\n"
            "Fix the rows, or read with on_error=skip to drop and count them.", issues.items)
    if not parts:
        frames = Frames.empty(source)
    else:
        frames = Frames(*(np.concatenate([p[k] for p in parts]) for k in range(6)), source=source)
    frames.issues = issues.items
    frames.skipped_rows = issues.count
    frames.blank_lines = blank_lines
    return frames


class _Issues:
    """Collects malformed rows; keeps the first ``limit`` in full and counts the rest."""

    def __init__(self, source: str, limit: int):
        self.source, self.limit, self.count, self.items = source, limit, 0, []

    def add(self, lines: np.ndarray, messages) -> None:
        lines = np.asarray(lines)
        self.count += len(lines)
        room = self.limit - len(self.items)
        if isinstance(messages, str):
            messages = [messages] * min(room, len(lines))
        for line, message in zip(lines[:max(room, 0)].tolist(), messages):
            self.items.append(ParseIssue(self.source, int(line), message))


def _gather(data: np.ndarray, start: np.ndarray, length: np.ndarray, width: int) -> np.ndarray:
    """Bytes ``data[start : start + length]`` of each row, right-padded with 0 to ``width``."""
    offsets = np.arange(width)
    index = start[:, None] + offsets
    chars = data[np.minimum(index, len(data) - 1)]
    chars[offsets >= length[:, None]] = 0
    return chars


def _decode_rows(data, starts, ends, comma_pos, line_numbers, issues: _Issues):
    """Decode the four fields of rows known to have exactly four fields."""
    c0, c1, c2 = comma_pos[:, 0], comma_pos[:, 1], comma_pos[:, 2]
    ok = np.ones(len(starts), dtype=bool)

    def reject(mask: np.ndarray, message: str) -> None:
        mask = mask & ok
        issues.add(line_numbers[mask], message)
        ok[mask] = False

    # arbitration_id: 1-8 hex digits
    id_len = c1 - c0 - 1
    reject((id_len < 1) | (id_len > 8), "arbitration_id must be 1-8 hex digits")
    id_chars = _HEX[_gather(data, c0 + 1, np.clip(id_len, 0, 8), 8)]
    id_valid = (id_chars >= 0) | (np.arange(8) >= id_len[:, None])
    reject(~id_valid.all(axis=1), "arbitration_id is not hexadecimal")
    can_id = np.zeros(len(starts), dtype=np.int64)
    for k in range(8):
        inside = k < id_len
        can_id = np.where(inside, can_id * 16 + np.maximum(id_chars[:, k], 0), can_id)
    reject(can_id > MAX_CAN_ID, "arbitration_id exceeds 29 bits (max 1FFFFFFF)")

    # data_field: 0-8 bytes as an even number of hex digits
    data_len = c2 - c1 - 1
    reject(data_len % 2 == 1, "data_field has an odd number of hex digits")
    reject(data_len > 2 * MAX_PAYLOAD_BYTES, "data_field has more than 8 bytes")
    width = 2 * MAX_PAYLOAD_BYTES
    data_chars = _HEX[_gather(data, c1 + 1, np.clip(data_len, 0, width), width)]
    data_valid = (data_chars >= 0) | (np.arange(width) >= data_len[:, None])
    reject(~data_valid.all(axis=1), "data_field is not hexadecimal")
    nibbles = np.maximum(data_chars, 0).astype(np.uint8)
    payload = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]
    dlc = np.clip(data_len // 2, 0, MAX_PAYLOAD_BYTES).astype(np.uint8)

    # attack: exactly "0" or "1"
    attack_len = ends - c2 - 1
    attack_char = data[np.minimum(c2 + 1, len(data) - 1)]
    reject((attack_len != 1) | ((attack_char != 48) & (attack_char != 49)),
           "attack must be 0 or 1")
    attack = (attack_char == 49).astype(np.uint8)

    # timestamp: a finite decimal number
    ts_len = c0 - starts
    reject((ts_len < 1) | (ts_len > 32), "timestamp must be a number of 1-32 characters")
    ts_width = int(min(max(ts_len.max(initial=1), 1), 32))
    ts_chars = _gather(data, starts, np.clip(ts_len, 0, ts_width), ts_width)
    ts_valid = _FLOAT_CHARS[ts_chars] | (np.arange(ts_width) >= ts_len[:, None])
    reject(~ts_valid.all(axis=1), "timestamp is not a number")
    timestamp = np.zeros(len(starts), dtype=np.float64)
    text = np.ascontiguousarray(ts_chars[ok]).view(f"S{ts_width}").ravel()
    try:
        timestamp[ok] = text.astype(np.float64)
    except ValueError:  # rare: e.g. "1.2.3"; find the rows one by one
        values = np.empty(len(text))
        bad = np.zeros(len(text), dtype=bool)
        for i, item in enumerate(text.tolist()):
            try:
                values[i] = float(item)
            except ValueError:
                bad[i] = True
        timestamp[ok] = values
        bad_rows = np.zeros(len(starts), dtype=bool)
        bad_rows[np.flatnonzero(ok)[bad]] = True
        reject(bad_rows, "timestamp is not a number")
    reject(~np.isfinite(timestamp), "timestamp is not finite")

    payload[np.arange(MAX_PAYLOAD_BYTES) >= dlc[:, None]] = 0
    return (timestamp[ok], can_id[ok], dlc[ok], payload[ok], attack[ok], line_numbers[ok])
