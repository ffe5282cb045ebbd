"""Input that tries to hang, flood or escape: damaged ``.blf`` logs, gzip bombs, dataset names that
are paths, escape sequences in files and file names, header-only files, BOM and CR-only line ends.

Each case is a real file in ``tmp_path``; where a user meets it through the command line, the test
runs ``kdgat`` in a subprocess with a time limit, so a hang fails the test instead of stalling it.
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import time
import tracemalloc

import can
import numpy as np
import pytest

from conftest import (HEADER, TEST_01, TRAIN_01, csv_text, kdgat_command, periodic_rows, row,
                      tiny_dataset_files, write_recording, write_tiny_dataset)
from kdgat.data.check import check, check_file, format_report
from kdgat.data.frames import FrameFormatError, read_frames
from kdgat.data.readers import read_recording

T0 = 1700000000.0
ESC = "\x1b"
CLEAN = [row(100.0, 0x081, bytes(8)), row(100.5, 0x4F1, b"", attack=1), row(101.25, 0x081, b"\x01\x02")]


def run_kdgat(tmp_path, *args, env: dict | None = None, timeout: float = 120):
    """``kdgat ARGS`` in a subprocess, no KDGAT_* variables but ``env``; output kept as bytes so
    that raw escape characters would show."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KDGAT_")}
    environ.update({"KDGAT_RUNS_ROOT": str(tmp_path / "runs"), **(env or {})})
    result = subprocess.run([*kdgat_command(), *map(os.fsencode, map(str, args))],
                            capture_output=True, env=environ, cwd=tmp_path, timeout=timeout)
    result.out = result.stdout.decode("utf-8", errors="backslashreplace")
    result.err = result.stderr.decode("utf-8", errors="backslashreplace")
    return result


def tree(folder) -> set[str]:
    return {str(p) for p in folder.rglob("*")}


# --------------------------------------------------------------------------- damaged .blf logs
def write_blf(path, frames: int = 5, container_bytes: int | None = None, compress: bool = True):
    """A valid ``.blf`` of ``frames`` CAN frames written by python-can's own BLFWriter."""
    writer = can.BLFWriter(str(path), compression_level=-1 if compress else 0)
    if container_bytes:
        writer.max_container_size = container_bytes
    with writer:
        for k in range(frames):
            writer.on_message_received(can.Message(
                timestamp=T0 + k / 100, arbitration_id=0x100 + k % 7, is_extended_id=False,
                data=bytes([k % 256] * 8)))
    return path


def damaged_blf(path, object_type: int | None = None):
    """A 416-byte ``.blf`` whose third frame object claims a size of 0.

    python-can then parses that object again and again: as a CAN frame (``object_type=None``) it
    hands out the same frame for ever, filling memory; as an object type it skips
    (``object_type=99``) it spins at full CPU without returning control.
    """
    raw = bytearray(write_blf(path, compress=False).read_bytes())
    third = raw.index(b"LOBJ", raw.index(b"LOBJ", raw.index(b"LOBJ", 144 + 32) + 1) + 1)
    struct.pack_into("<L", raw, third + 8, 0)  # object size
    if object_type is not None:
        struct.pack_into("<L", raw, third + 12, object_type)
    path.write_bytes(raw)
    return path


DAMAGED = [pytest.param(None, "returns the same frame again", id="same-frame-for-ever"),
           pytest.param(99, "made no progress for 1 s", id="spins-without-a-frame")]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("object_type,message", DAMAGED)
def test_damaged_blf_fails_naming_file_and_offset(tmp_path, monkeypatch, object_type, message):
    monkeypatch.setenv("KDGAT_READ_STALL_SECONDS", "1")
    path = damaged_blf(tmp_path / "drive.blf", object_type)
    started = time.monotonic()
    with pytest.raises(FrameFormatError) as caught:
        read_recording(path)
    assert time.monotonic() - started < 15
    text = str(caught.value)
    assert text.startswith(f"{path}: damaged log at byte offset 416 of 416: ") and message in text
    assert caught.value.path == str(path)


def test_damaged_blf_hang_is_bounded_in_data_check(tmp_path):
    """The reported hang: `kdgat data check` on a small damaged .blf ran at full CPU for ever."""
    folder = tmp_path / "logs"
    folder.mkdir()
    damaged_blf(folder / "spin.blf", object_type=99)
    damaged_blf(folder / "flood.blf")
    write_recording(folder / "good.csv", CLEAN)
    started = time.monotonic()
    result = run_kdgat(tmp_path, "data", "check", folder, env={"KDGAT_READ_STALL_SECONDS": "2"},
                       timeout=90)
    assert result.returncode == 1, result.err
    assert time.monotonic() - started < 60
    assert (f"{folder / 'spin.blf'}: damaged log at byte offset 416 of 416: python-can made no "
            "progress for 2 s") in result.out
    assert "KDGAT_READ_STALL_SECONDS=SECONDS" in result.out
    assert f"{folder / 'flood.blf'}: damaged log at byte offset 416 of 416" in result.out
    assert result.out.splitlines()[-1] == "3 file(s), 3 rows, 2 with problems"


def test_damaged_blf_in_a_dataset_stops_prepare(tmp_path):
    """prepare reads files in worker threads: the guard must stop a loop in any thread."""
    root = tmp_path / "data"
    write_tiny_dataset(root / "mine")
    damaged_blf(root / "mine" / TRAIN_01 / "drive.blf", object_type=99)
    result = run_kdgat(tmp_path, "data", "prepare", "dataset=mine", f"data_root={root}",
                       f"cache_dir={tmp_path / 'cache'}", "window=10",
                       env={"KDGAT_READ_STALL_SECONDS": "2"}, timeout=90)
    assert result.returncode == 2
    assert (f"kdgat data: error: {root / 'mine' / TRAIN_01 / 'drive.blf'}: damaged log at byte "
            "offset 416 of 416") in result.err
    assert not list((tmp_path / "cache").rglob("meta.json"))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("container_bytes", [None, 48], ids=["128k-containers", "one-frame-each"])
def test_sound_blf_reads_in_full_under_a_short_stall_limit(tmp_path, monkeypatch, container_bytes):
    """No false alarm: many containers, and containers of one frame each (the frame position
    inside the container is then the same for every frame; the file offset moves)."""
    monkeypatch.setenv("KDGAT_READ_STALL_SECONDS", "1")
    count = 20_000 if container_bytes is None else 2_000
    path = write_blf(tmp_path / "long.blf", frames=count, container_bytes=container_bytes)
    frames = read_recording(path)
    assert len(frames) == count
    np.testing.assert_array_equal(frames.can_id, 0x100 + np.arange(count) % 7)
    np.testing.assert_array_equal(frames.payload[:, 0], np.arange(count) % 256)


@pytest.mark.parametrize("value", ["0", "-3", "soon", "nan"])
def test_stall_limit_setting_is_checked(tmp_path, monkeypatch, value):
    monkeypatch.setenv("KDGAT_READ_STALL_SECONDS", value)
    with pytest.raises(ValueError, match=f"KDGAT_READ_STALL_SECONDS='{value}' is not valid"):
        read_recording(write_blf(tmp_path / "a.blf"))


# --------------------------------------------------------------------------- gzip bombs
def gzip_bomb(path, megabytes: int) -> int:
    """A valid, highly compressible recording: ``megabytes`` MB of one repeated row."""
    line = (row(100.0, 0x081, bytes(8)) + "\n").encode()
    body = HEADER.encode() + b"\n" + line * (megabytes * (1 << 20) // len(line))
    path.write_bytes(gzip.compress(body, compresslevel=9, mtime=0))
    return len(body)


def test_gzip_bomb_is_refused_with_bounded_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("KDGAT_MAX_DECOMPRESSED_MB", "1")
    path = tmp_path / "DoS-bomb.csv.gz"
    size = gzip_bomb(path, megabytes=24)
    assert path.stat().st_size < size / 100  # it inflates more than 100-fold
    tracemalloc.start()
    try:
        with pytest.raises(FrameFormatError) as caught:
            read_frames(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 << 20  # the limit (1 MB) plus the compressed file, not the 24 MB it inflates to
    text = str(caught.value)
    assert text.startswith(f"{path}: decompresses to more than 1 MB, the limit per file "
                           "(KDGAT_MAX_DECOMPRESSED_MB)")
    assert "KDGAT_MAX_DECOMPRESSED_MB=2" in text  # how to raise it


def test_raised_limit_reads_the_same_file(tmp_path, monkeypatch):
    path = tmp_path / "DoS-big.csv.gz"
    size = gzip_bomb(path, megabytes=3)
    monkeypatch.setenv("KDGAT_MAX_DECOMPRESSED_MB", "2")
    with pytest.raises(FrameFormatError, match="decompresses to more than 2 MB"):
        read_frames(path)
    monkeypatch.setenv("KDGAT_MAX_DECOMPRESSED_MB", "4")
    assert len(read_frames(path)) == (size - len(HEADER) - 1) // len(CLEAN[0] + "\n")


def test_default_limit_is_far_above_real_recordings(monkeypatch):
    from kdgat.data.frames import DEFAULT_MAX_DECOMPRESSED_MB, max_decompressed_bytes

    monkeypatch.delenv("KDGAT_MAX_DECOMPRESSED_MB", raising=False)
    # the largest file of the bundle is ~200 MB of CSV (hcrl_ch), hcrl_sa's 20 MB
    assert max_decompressed_bytes() == DEFAULT_MAX_DECOMPRESSED_MB << 20 >= 1 << 30
    monkeypatch.setenv("KDGAT_MAX_DECOMPRESSED_MB", "lots")
    with pytest.raises(ValueError, match="KDGAT_MAX_DECOMPRESSED_MB='lots' is not valid"):
        max_decompressed_bytes()


def test_gzip_bomb_in_data_check_names_the_limit(tmp_path):
    folder = tmp_path / "recordings"
    folder.mkdir()
    gzip_bomb(folder / "bomb.csv.gz", megabytes=12)
    write_recording(folder / "good.csv.gz", CLEAN)
    result = run_kdgat(tmp_path, "data", "check", folder, env={"KDGAT_MAX_DECOMPRESSED_MB": "8"})
    assert result.returncode == 1
    assert f"{folder / 'bomb.csv.gz'}: decompresses to more than 8 MB" in result.out
    assert result.out.splitlines()[-1] == "2 file(s), 3 rows, 1 with problems"


def test_multi_member_and_zero_padded_gzip_still_read(tmp_path):
    """The bounded decompression reads what gzip reads: concatenated members, zero padding."""
    text = csv_text(CLEAN).encode()
    half = text.index(b"\n", len(text) // 2) + 1
    path = tmp_path / "joined.csv.gz"
    path.write_bytes(gzip.compress(text[:half]) + gzip.compress(text[half:]) + b"\0" * 512)
    frames = read_frames(path)
    assert len(frames) == 3 and frames.attack.tolist() == [0, 1, 0]
    cut = gzip.compress(text * 50)
    (tmp_path / "cut.csv.gz").write_bytes(cut[: len(cut) // 2])
    with pytest.raises(FrameFormatError, match="corrupt or truncated gzip file"):
        read_frames(tmp_path / "cut.csv.gz")
    (tmp_path / "trailing.csv.gz").write_bytes(gzip.compress(text) + b"garbage")
    with pytest.raises(FrameFormatError, match="corrupt or truncated gzip file"):
        read_frames(tmp_path / "trailing.csv.gz")


# --------------------------------------------------------------------------- names that are paths
BAD_NAMES = ["../..", "..", ".", "/etc", "a/b", "a\\b", "", "x\x00y", ".hidden", "-rf", "tiny\n",
             "C:evil", "x" * 129]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_dataset_names_that_are_paths_are_refused(tmp_path, name):
    from kdgat.data.datasets import check_dataset_name, dataset_folder
    from kdgat.data.settings import DataSettings

    with pytest.raises(ValueError, match="is not valid: it must be one folder name"):
        check_dataset_name(name)
    with pytest.raises(ValueError, match=r"dataset=.* is not valid.*set data_root=DIR"):
        dataset_folder(name, tmp_path, tmp_path / "cache")
    with pytest.raises(ValueError, match="dataset="):
        DataSettings(dataset=name)


@pytest.mark.parametrize("name", ["hcrl_sa", "set_01", "synthetic", "my-car.2024", "v2+extra", "_x"])
def test_plain_dataset_names_pass(name):
    from kdgat.data.datasets import check_dataset_name

    assert check_dataset_name(name) == name


def test_cache_refuses_a_dataset_name_that_is_a_path(tmp_path):
    from kdgat.data.cache import load_or_build
    from kdgat.data.layout import discover
    from kdgat.data.prepare import PrepareParams

    layout = discover(write_tiny_dataset(tmp_path / "data" / "tiny"))
    cache = tmp_path / "deep" / "er" / "cache"
    with pytest.raises(ValueError, match="dataset='../..' is not valid"):
        load_or_build(layout, PrepareParams(window=10), cache, "../..")
    assert not (tmp_path / "deep").exists()


def test_prepare_cli_refuses_dataset_outside_data_root(tmp_path):
    """`dataset=../..` read a dataset two levels above data_root and wrote its cache two levels
    above cache_dir."""
    write_tiny_dataset(tmp_path / "outside")  # a dataset where ../.. of data_root points
    data_root = tmp_path / "outside" / "a" / "b"
    data_root.mkdir(parents=True)
    cache_dir = tmp_path / "caches" / "x" / "y"
    before = tree(tmp_path)
    result = run_kdgat(tmp_path, "data", "prepare", "dataset=../..", f"data_root={data_root}",
                       f"cache_dir={cache_dir}", "window=10")
    assert result.returncode == 2, result.out
    assert result.err.startswith("kdgat data: error: dataset='../..' is not valid: it must be one "
                                 "folder name")
    assert "set data_root=DIR" in result.err
    assert tree(tmp_path) - before <= {str(tmp_path / "runs")}  # nothing read into a cache, nowhere


def test_prepare_cli_refuses_a_synth_scale_that_is_a_path(tmp_path):
    before = tree(tmp_path)
    result = run_kdgat(tmp_path, "data", "prepare", "dataset=synthetic", "synth_scale=../../../x",
                       f"cache_dir={tmp_path / 'c' / 'd'}")
    assert result.returncode == 2
    assert "synth_scale='../../../x' is not valid" in result.err
    assert tree(tmp_path) - before <= {str(tmp_path / "runs")}


def test_cache_entry_naming_an_array_outside_its_folder_is_refused(tmp_path):
    import json

    from kdgat.data.cache import GraphCache

    entry = tmp_path / "cache" / "tiny" / "key"
    entry.mkdir(parents=True)
    np.save(tmp_path / "secret.npy", np.arange(3))
    (entry / "meta.json").write_text(json.dumps({"arrays": ["x", "../../../secret"]}))
    np.save(entry / "x.npy", np.zeros(2))
    with pytest.raises(ValueError, match="lists the array '../../../secret', which is not a plain name"):
        GraphCache(entry)


# --------------------------------------------------------------------------- escape sequences
def test_printable_escapes_controls_and_keeps_text():
    from kdgat.data.quoting import printable

    assert printable("DoS-kia.csv.gz") == "DoS-kia.csv.gz"
    assert printable("/data/Über Fahrt/ä.csv") == "/data/Über Fahrt/ä.csv"
    assert printable(f"a{ESC}[2Jb\x07\tc\n\x9b") == "a\\x1b[2Jb\\x07\\tc\\n\\x9b"
    assert printable(b"bad\xff.csv") == "bad\\xff.csv"
    assert printable(os.fsdecode(b"bad\xff.csv")) == "bad\\xff.csv"
    assert printable("evil\u202egpj.csv") == "evil\\u202egpj.csv"  # right-to-left override


def assert_no_raw_escapes(result):
    for stream in (result.stdout, result.stderr):
        assert b"\x1b" not in stream and b"\x07" not in stream and b"\x9b" not in stream


def test_escape_codes_in_a_header_are_shown_escaped(tmp_path):
    path = write_recording(tmp_path / "r.csv", f"{ESC}[2J{ESC}]0;owned\x07{HEADER}\n" +
                           csv_text(CLEAN, header=False))
    with pytest.raises(FrameFormatError) as caught:
        read_frames(path)
    assert "\\x1b[2J\\x1b]0;owned\\x07timestamp" in str(caught.value) and ESC not in str(caught.value)
    result = run_kdgat(tmp_path, "data", "check", path)
    assert result.returncode == 1
    assert_no_raw_escapes(result)
    assert "found '\\x1b[2J\\x1b]0;owned\\x07timestamp,arbitration_id" in result.out


def test_escape_codes_in_file_names_are_shown_escaped(tmp_path):
    folder = tmp_path / "recordings"
    write_recording(folder / f"DoS-{ESC}[31mred.csv", CLEAN)
    write_recording(folder / f"bad-{ESC}]0;t\x07.csv", CLEAN[:2] + ["1.0,08G,00,0"])
    write_recording(folder / "copy" / f"DoS-{ESC}[31mred.csv", CLEAN)
    (folder / os.fsdecode(b"latin-\xe9.csv")).write_text(csv_text(CLEAN[:1]))
    result = run_kdgat(tmp_path, "data", "check", folder)
    assert result.returncode == 1, result.err
    assert_no_raw_escapes(result)
    out = result.out
    assert "DoS-\\x1b[31mred.csv" in out and "latin-\\xe9.csv" in out
    assert f"same frames as: {folder}/copy/DoS-\\x1b[31mred.csv" in out
    assert f"{folder}/bad-\\x1b]0;t\\x07.csv:4: arbitration_id is not hexadecimal" in out
    missing = run_kdgat(tmp_path, "data", "check", folder / f"gone-{ESC}[2J")
    assert missing.returncode == 2
    assert_no_raw_escapes(missing)
    assert "gone-\\x1b[2J: no such file or folder" in missing.err


def test_escape_codes_in_folder_names_do_not_reach_prepare_output(tmp_path):
    files = tiny_dataset_files()
    files[f"test_{ESC}[2J/DoS-c.csv"] = files.pop(f"{TEST_01}/fuzzing-a.csv.gz")
    root = tmp_path / "data"
    write_tiny_dataset(root / "tiny", files)
    result = run_kdgat(tmp_path, "data", "prepare", "dataset=tiny", f"data_root={root}",
                       f"cache_dir={tmp_path / 'cache'}", "window=10")
    assert result.returncode == 0, result.err
    assert_no_raw_escapes(result)
    assert "test_\\x1b[2J" in result.out


# --------------------------------------------------------------------------- header only
@pytest.mark.parametrize("name,text", [
    ("DoS-a.csv", HEADER + "\n"), ("DoS-a.csv.gz", HEADER + "\n"), ("DoS-a.csv", HEADER),
    ("DoS-a.csv", HEADER + "\n\n\n"),
])
def test_header_only_file_is_a_problem(tmp_path, name, text):
    path = write_recording(tmp_path / name, text)
    report, digest = check_file(path)
    assert not report.ok and digest is None
    assert report.error.startswith(f"{path}: holds only the header") and "no rows" in report.error
    assert "ERROR" in format_report([report], tmp_path)


def test_header_only_file_fails_data_check(tmp_path):
    folder = tmp_path / "recordings"
    write_recording(folder / "empty-drive.csv", [])
    write_recording(folder / "good.csv", CLEAN)
    result = run_kdgat(tmp_path, "data", "check", folder)
    assert result.returncode == 1
    assert f"{folder / 'empty-drive.csv'}: holds only the header, no rows" in result.out
    assert result.out.splitlines()[-1] == "2 file(s), 3 rows, 1 with problems"


# --------------------------------------------------------------------------- BOM, CR, UTF-16
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("name", ["r.csv", "r.csv.gz"])
def test_utf8_bom_is_skipped(tmp_path, name, newline):
    plain = read_frames(write_recording(tmp_path / "plain.csv", CLEAN))
    path = write_recording(tmp_path / name, b"\xef\xbb\xbf" + csv_text(CLEAN, newline).encode())
    frames = read_frames(path)
    for field in ("timestamp", "can_id", "dlc", "payload", "attack", "line"):
        np.testing.assert_array_equal(getattr(frames, field), getattr(plain, field))
    assert check_file(path)[0].ok


def test_cr_only_line_ends_are_named(tmp_path):
    path = write_recording(tmp_path / "mac.csv", csv_text(CLEAN, "\r"))
    for on_error in ("fail", "skip"):
        with pytest.raises(FrameFormatError) as caught:
            read_frames(path, on_error=on_error)
        assert str(caught.value).startswith(f"{path}:1: lines end in a bare carriage return (CR")
        assert "not LF or CRLF" in str(caught.value)
    result = run_kdgat(tmp_path, "data", "check", path)
    assert result.returncode == 1
    assert "lines end in a bare carriage return (CR, old Mac style)" in result.out


def test_rows_joined_by_a_bare_cr_are_named(tmp_path):
    """A LF file with a CR-only part pasted in: those lines are named, the others read."""
    lines = CLEAN[:1] + [CLEAN[1] + "\r" + CLEAN[2]] + periodic_rows(3, [0x100])
    path = write_recording(tmp_path / "joined.csv", lines)
    with pytest.raises(FrameFormatError, match=r"joined.csv:3: holds a bare carriage return \(CR\)"):
        read_frames(path)
    frames = read_frames(path, on_error="skip")
    assert len(frames) == 4 and frames.skipped_rows == 1 and frames.line.tolist() == [2, 4, 5, 6]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_utf16_text_is_named(tmp_path, encoding):
    text = csv_text(CLEAN).encode(encoding)
    if encoding == "utf-16-be":
        text = b"\xfe\xff" + text
    path = write_recording(tmp_path / "export.csv", text)
    with pytest.raises(FrameFormatError, match="the file is UTF-16 text; save it as UTF-8"):
        read_frames(path)


def test_check_reports_all_of_these_without_raising(tmp_path):
    folder = tmp_path / "recordings"
    write_recording(folder / "mac.csv", csv_text(CLEAN, "\r"))
    write_recording(folder / "header.csv", [])
    write_recording(folder / "bom.csv", b"\xef\xbb\xbf" + csv_text(CLEAN).encode())
    damaged_blf(folder / "flood.blf")
    reports = {os.path.basename(r.path): r for r in check(folder)}
    assert [name for name, r in sorted(reports.items()) if r.ok] == ["bom.csv"]
