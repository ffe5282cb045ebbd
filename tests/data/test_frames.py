"""The can-train-and-test CSV parser: exact values, line numbers, and every malformed input named.

Each malformed input must give a message with the file, the line (the header is line 1) and what
was expected; ``on_error="skip"`` drops and counts such rows, never silently.
"""

from __future__ import annotations

import gzip
import string
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import HEADER, csv_text, write_recording
from kdgat.data.frames import FrameFormatError, parse_csv, read_frames

GOOD = [
    "1513921815.350702,081,7F84690000000069,0",
    "1513921815.350950,4F1,,1",  # empty payload (DLC 0) on an attack row
    "1513921815.351000,1FFFFFFF,0102,0",  # 29-bit id
    "1513921815.351100,7,a0ff,1",  # short id, lower-case hex
]


def test_values_exact(tmp_path):
    frames = read_frames(write_recording(tmp_path / "r.csv", GOOD))
    assert len(frames) == 4
    np.testing.assert_array_equal(frames.timestamp, [1513921815.350702, 1513921815.350950,
                                                     1513921815.351000, 1513921815.351100])
    np.testing.assert_array_equal(frames.can_id, [0x081, 0x4F1, 0x1FFFFFFF, 0x7])
    np.testing.assert_array_equal(frames.dlc, [8, 0, 2, 2])
    np.testing.assert_array_equal(frames.payload, [
        [0x7F, 0x84, 0x69, 0, 0, 0, 0, 0x69], [0] * 8, [1, 2, 0, 0, 0, 0, 0, 0],
        [0xA0, 0xFF, 0, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(frames.attack, [0, 1, 0, 1])
    np.testing.assert_array_equal(frames.line, [2, 3, 4, 5])
    assert (frames.timestamp.dtype, frames.can_id.dtype, frames.dlc.dtype, frames.payload.dtype,
            frames.attack.dtype, frames.line.dtype) == (np.float64, np.int64, np.uint8, np.uint8,
                                                        np.uint8, np.int64)
    assert frames.skipped_rows == 0 and frames.issues == [] and frames.blank_lines == 0


@pytest.mark.parametrize("name", ["r.csv.gz", "r.csv"])
@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_gzip_and_crlf_read_the_same(tmp_path, name, newline):
    reference = read_frames(write_recording(tmp_path / "ref.csv", GOOD))
    frames = read_frames(write_recording(tmp_path / name, GOOD, newline=newline))
    for field in ("timestamp", "can_id", "dlc", "payload", "attack", "line"):
        np.testing.assert_array_equal(getattr(frames, field), getattr(reference, field))
    assert frames.source == str(tmp_path / name)


def test_last_row_without_newline(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(csv_text(GOOD).rstrip("\n"))
    frames = read_frames(path)
    assert len(frames) == 4 and frames.attack[-1] == 1 and frames.payload[-1, 1] == 0xFF


def test_blank_lines_are_counted_and_line_numbers_stay_true(tmp_path):
    text = f"{HEADER}\n{GOOD[0]}\n\n{GOOD[1]}\r\n\r\n\n{GOOD[2]}\n{GOOD[3]}\n\n"
    frames = read_frames(write_recording(tmp_path / "r.csv", text))
    assert len(frames) == 4
    assert frames.blank_lines == 4
    np.testing.assert_array_equal(frames.line, [2, 4, 7, 8])


def test_header_only_gives_no_frames(tmp_path):
    frames = read_frames(write_recording(tmp_path / "r.csv", []))
    assert len(frames) == 0 and frames.payload.shape == (0, 8)


# --------------------------------------------------------------------------- malformed rows
BAD_ROWS = [
    ("1.0,081,00,0,7", "expected 4 fields, found 5"),
    ("1.0,081,00", "expected 4 fields, found 3"),
    ("1.0;081;00;0", "expected 4 fields, found 1"),
    ("1.0,08G,00,0", "arbitration_id is not hexadecimal"),
    ("1.0,0x81,00,0", "arbitration_id is not hexadecimal"),
    ("1.0,,00,0", "arbitration_id must be 1-8 hex digits"),
    ("1.0,123456789,00,0", "arbitration_id must be 1-8 hex digits"),
    ("1.0,20000000,00,0", "arbitration_id exceeds 29 bits"),
    ("1.0,081,0ZZ1,0", "data_field is not hexadecimal"),
    ("1.0,081,ABC,0", "data_field has an odd number of hex digits"),
    ("1.0,081,000102030405060708,0", "data_field has more than 8 bytes"),
    ("abc,081,00,0", "timestamp is not a number"),
    ("1.2.3,081,00,0", "timestamp is not a number"),
    (",081,00,0", "timestamp must be a number"),
    ("1e999,081,00,0", "timestamp is not finite"),
    ("1.0,081,00,2", "attack must be 0 or 1"),
    ("1.0,081,00,", "attack must be 0 or 1"),
    ("1.0,081,00,01", "attack must be 0 or 1"),
    ("1.0,081,00,true", "attack must be 0 or 1"),
]


@pytest.mark.parametrize("bad,expected", BAD_ROWS, ids=[b for b, _ in BAD_ROWS])
def test_malformed_row_fails_naming_file_line_and_expectation(tmp_path, bad, expected):
    path = write_recording(tmp_path / "r.csv", GOOD[:2] + [bad] + GOOD[2:])
    with pytest.raises(FrameFormatError) as caught:
        read_frames(path)
    assert f"{path}:4: {expected}" in str(caught.value)
    assert [(i.path, i.line) for i in caught.value.issues] == [(str(path), 4)]
    assert expected in caught.value.issues[0].message


@pytest.mark.parametrize("bad,expected", BAD_ROWS, ids=[b for b, _ in BAD_ROWS])
def test_malformed_row_skipped_and_counted(tmp_path, bad, expected):
    path = write_recording(tmp_path / "r.csv.gz", GOOD[:2] + [bad] + GOOD[2:])
    frames = read_frames(path, on_error="skip")
    assert len(frames) == 4 and frames.skipped_rows == 1
    assert [str(i) for i in frames.issues] == [f"{path}:4: {frames.issues[0].message}"]
    assert expected in frames.issues[0].message
    np.testing.assert_array_equal(frames.line, [2, 3, 5, 6])
    np.testing.assert_array_equal(frames.can_id, [0x081, 0x4F1, 0x1FFFFFFF, 0x7])


def test_many_malformed_rows_are_all_counted(tmp_path):
    lines = [GOOD[0]] + ["1.0,XYZ,00,0"] * 30 + [GOOD[1]]
    path = write_recording(tmp_path / "r.csv", lines)
    frames = read_frames(path, on_error="skip", max_issues=5)
    assert len(frames) == 2 and frames.skipped_rows == 30
    assert [i.line for i in frames.issues] == [3, 4, 5, 6, 7]
    with pytest.raises(FrameFormatError) as caught:
        read_frames(path)
    message = str(caught.value)
    assert "30 malformed row(s)" in message and "... and 10 more" in message
    assert f"{path}:32: arbitration_id is not hexadecimal" not in message  # only 20 shown
    assert len(caught.value.issues) == 30  # but all are attached


def test_every_row_malformed_in_skip_mode_gives_empty_frames(tmp_path):
    frames = read_frames(write_recording(tmp_path / "r.csv", ["x,y,z,w", "1,2"]), on_error="skip")
    assert len(frames) == 0 and frames.skipped_rows == 2


def test_on_error_must_be_fail_or_skip():
    with pytest.raises(ValueError, match="on_error must be 'fail' or 'skip'"):
        parse_csv(csv_text(GOOD).encode(), on_error="ignore")


# --------------------------------------------------------------------------- malformed files
def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope.csv")):
        read_frames(tmp_path / "nope.csv")


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"], ids=["zero-bytes", "whitespace"])
@pytest.mark.parametrize("name", ["r.csv", "r.csv.gz"])
def test_empty_file_names_the_path(tmp_path, name, content):
    path = write_recording(tmp_path / name, content)
    with pytest.raises(FrameFormatError, match="empty file") as caught:
        read_frames(path)
    assert str(path) in str(caught.value) and "timestamp,arbitration_id" in str(caught.value)


@pytest.mark.parametrize("header", ["timestamp,id,data,attack", "timestamp,arbitration_id,data_field",
                                    GOOD[0]])
def test_wrong_header_names_line_1(tmp_path, header):
    path = write_recording(tmp_path / "r.csv", f"{header}\n{GOOD[0]}\n")
    with pytest.raises(FrameFormatError) as caught:
        read_frames(path)
    assert f"{path}:1: expected the header '{HEADER}'" in str(caught.value)
    assert header[:40] in str(caught.value)


def test_truncated_gzip_names_the_path(tmp_path):
    full = gzip.compress(csv_text(GOOD * 50).encode())
    path = tmp_path / "r.csv.gz"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(FrameFormatError, match="truncated") as caught:
        read_frames(path)
    assert str(path) in str(caught.value)


def test_not_gzip_at_all_names_the_path(tmp_path):
    path = tmp_path / "r.csv.gz"
    path.write_text(csv_text(GOOD))
    with pytest.raises(FrameFormatError, match="corrupt or truncated gzip") as caught:
        read_frames(path)
    assert caught.value.path == str(path)


# --------------------------------------------------------------------------- properties
CAN_IDS = st.integers(0, 0x1FFFFFFF)
TIMESTAMPS = st.floats(allow_nan=False, allow_infinity=False)
VALID_ROW = st.tuples(TIMESTAMPS, CAN_IDS, st.binary(max_size=8), st.integers(0, 1))


@st.composite
def id_text(draw, can_id: int) -> str:
    """An id as 1-8 hex digits, zero-padded to any width that fits, in either case."""
    digits = f"{can_id:X}"
    width = draw(st.integers(len(digits), 8))
    text = digits.rjust(width, "0")
    return text.lower() if draw(st.booleans()) else text


@st.composite
def csv_files(draw):
    """(rows, file text, expected line numbers): valid rows, random blank lines and line endings."""
    rows = draw(st.lists(VALID_ROW, min_size=1, max_size=25))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines, numbers = [HEADER], []
    for timestamp, can_id, payload, attack in rows:
        lines.extend([""] * draw(st.sampled_from([0, 0, 0, 0, 0, 0, 1, 2])))  # blank lines
        numbers.append(len(lines) + 1)
        lines.append(f"{timestamp!r},{draw(id_text(can_id))},{payload.hex()},{attack}")
    return rows, newline.join(lines) + newline * draw(st.integers(0, 2)), numbers


@settings(max_examples=80, deadline=None)
@given(csv_files(), st.booleans())
def test_valid_rows_round_trip_exactly(generated, gzipped):
    rows, text, numbers = generated
    if gzipped:
        with tempfile.TemporaryDirectory() as folder:
            frames = read_frames(write_recording(Path(folder) / "r.csv.gz", text))
    else:
        frames = parse_csv(text.encode())
    assert len(frames) == len(rows)
    assert frames.timestamp.tolist() == [r[0] for r in rows]
    assert frames.can_id.tolist() == [r[1] for r in rows]
    assert frames.dlc.tolist() == [len(r[2]) for r in rows]
    assert [bytes(p[:d]) for p, d in zip(frames.payload, frames.dlc)] == [r[2] for r in rows]
    assert not frames.payload[np.arange(8) >= frames.dlc[:, None]].any()  # zero-padded
    assert frames.attack.tolist() == [r[3] for r in rows]
    assert frames.line.tolist() == numbers


# Replacements that make one field invalid, per field (0 timestamp, 1 id, 2 payload, 3 attack).
CORRUPTIONS = {
    0: ["", "abc", "1.2.3", "1e999", "nan", "--1", "0x1F", "1 5", "12:00:01"],
    1: ["", "G1", "0x7F", "-1", "123456789", "20000000", "FFFFFFFF", " 81", "7F.0"],
    2: ["A", "ABC", "0G", "0x12", "000102030405060708", "00 11", "-1"],
    3: ["", "2", "01", "-1", "true", " 1", "1.0", "a"],
}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(VALID_ROW, min_size=1, max_size=20), st.data())
def test_one_corrupted_field_is_named_by_its_line(rows, data):
    bad = data.draw(st.integers(0, len(rows) - 1), label="row")
    field = data.draw(st.integers(0, 4), label="field (4: add or drop one)")
    fields_of = [[repr(t), f"{i:03X}", p.hex().upper(), str(a)] for t, i, p, a in rows]
    if field == 4:
        fields = fields_of[bad]
        if data.draw(st.booleans(), label="drop"):
            fields.pop(data.draw(st.integers(0, 3)))
        else:
            fields.insert(data.draw(st.integers(0, 4)), data.draw(st.text(string.hexdigits, max_size=4)))
    else:
        fields_of[bad][field] = data.draw(st.sampled_from(CORRUPTIONS[field]), label="value")
    raw = csv_text([",".join(f) for f in fields_of]).encode()
    with pytest.raises(FrameFormatError) as caught:
        parse_csv(raw, source="f.csv")
    assert [issue.line for issue in caught.value.issues] == [bad + 2]
    assert f"f.csv:{bad + 2}: " in str(caught.value)

    frames = parse_csv(raw, source="f.csv", on_error="skip")
    kept = rows[:bad] + rows[bad + 1:]
    assert frames.skipped_rows == 1 and [i.line for i in frames.issues] == [bad + 2]
    assert frames.can_id.tolist() == [r[1] for r in kept]
    assert frames.timestamp.tolist() == [r[0] for r in kept]


def test_chunk_boundaries_lose_no_row(monkeypatch):
    # Upstream's chunked reader dropped a frame every 5,000 rows; decode in chunks of 7 rows here.
    import kdgat.data.frames as frames_module

    monkeypatch.setattr(frames_module, "_CHUNK_ROWS", 7)
    lines = [f"{k}.5,{k:03X},{k:02X},{k % 2}" for k in range(50)]
    lines[20] = "20.5,XYZ,14,0"
    frames = parse_csv(csv_text(lines).encode(), on_error="skip")
    kept = [k for k in range(50) if k != 20]
    assert frames.can_id.tolist() == kept and frames.payload[:, 0].tolist() == kept
    assert frames.timestamp.tolist() == [k + 0.5 for k in kept]
    assert frames.line.tolist() == [k + 2 for k in kept]
    assert [i.line for i in frames.issues] == [22]
