"""``kdgat data check`` as a library: what each file holds and everything that is wrong with it.

(The command itself, run as a subprocess, is tested in tests/cli/test_data_cli.py.)
"""

from __future__ import annotations

import gzip

import pytest

from conftest import HEADER, csv_text, row, write_recording
from kdgat.data.check import check, check_file, format_report

CLEAN = [
    row(100.0, 0x081, bytes(8)), row(100.5, 0x4F1, b"", attack=1), row(101.0, 0x081, bytes(8)),
    row(102.25, 0x7FF, b"\x01\x02"), row(102.5, 0x081, bytes(8), attack=1),
]


@pytest.fixture
def recordings(tmp_path):
    folder = tmp_path / "recordings"
    write_recording(folder / "DoS-a.csv", CLEAN)
    write_recording(folder / "copies" / "DoS-a-again.csv.gz", CLEAN)  # same frames, compressed
    write_recording(folder / "bad.csv", CLEAN[:1] + ["100.1,081,ABC,0", "100.2,081,00"] + CLEAN[1:3])
    return folder


def test_clean_file_report(recordings):
    report, digest = check_file(recordings / "DoS-a.csv")
    assert report.ok and digest
    assert (report.rows, report.attack_rows, report.distinct_ids) == (5, 2, 3)
    assert report.dlc_histogram == {0: 1, 2: 1, 8: 3}
    assert report.time_span == (100.0, 102.5)
    assert report.attack_type == "dos" and report.malformed == [] and report.error is None


def test_folder_report_with_duplicates_and_malformed_rows(recordings):
    reports = {r.path: r for r in check(recordings)}
    assert sorted(reports) == sorted(str(p) for p in (recordings / "DoS-a.csv", recordings / "bad.csv",
                                                       recordings / "copies" / "DoS-a-again.csv.gz"))
    plain, packed = reports[str(recordings / "DoS-a.csv")], reports[str(recordings / "copies" / "DoS-a-again.csv.gz")]
    assert plain.duplicate_of == [packed.path] and packed.duplicate_of == [plain.path]
    bad = reports[str(recordings / "bad.csv")]
    assert not bad.ok and bad.rows == 3 and bad.malformed_count == 2
    assert bad.malformed == [f"{recordings / 'bad.csv'}:3: data_field has an odd number of hex digits",
                             f"{recordings / 'bad.csv'}:4: expected 4 fields, found 3"]
    assert bad.duplicate_of == [] and bad.attack_rows == 1


def test_unreadable_files_are_reported_not_raised(tmp_path):
    folder = tmp_path / "recordings"
    write_recording(folder / "header.csv", "time,id,data,label\n1,2,3,0\n")
    write_recording(folder / "empty.csv", "")
    packed = gzip.compress(csv_text(CLEAN * 40).encode())
    (folder / "cut.csv.gz").write_bytes(packed[: len(packed) // 2])
    (folder / "garbage.blf").write_bytes(b"not a blf" * 20)
    (folder / "notes.txt").write_text("not a recording")
    reports = {r.path.rsplit("/", 1)[1]: r for r in check(folder)}
    assert sorted(reports) == ["cut.csv.gz", "empty.csv", "garbage.blf", "header.csv"]
    assert all(not r.ok for r in reports.values())
    assert f"{folder / 'header.csv'}:1: expected the header '{HEADER}'" in reports["header.csv"].error
    assert "empty file" in reports["empty.csv"].error
    assert "truncated" in reports["cut.csv.gz"].error and str(folder / "cut.csv.gz") in reports["cut.csv.gz"].error
    assert "python-can could not read" in reports["garbage.blf"].error


def test_backwards_timestamps_are_counted(tmp_path):
    path = write_recording(tmp_path / "r.csv", [row(2.0, 1), row(1.0, 1), row(3.0, 1), row(2.5, 1)])
    report, _ = check_file(path)
    assert report.backwards_timestamps == 2 and report.time_span == (2.0, 2.5)


def test_formatted_report(recordings):
    text = format_report(check(recordings), recordings)
    lines = text.splitlines()
    assert lines[0].split()[:5] == ["file", "rows", "attacks", "ids", "span"]
    plain = next(line for line in lines if line.startswith("DoS-a.csv"))
    assert plain.split() == ["DoS-a.csv", "5", "2", "3", "2.5", "0:1", "2:1", "8:3"]
    assert f"same frames as: {recordings / 'copies' / 'DoS-a-again.csv.gz'}" in text
    assert "2 malformed row(s):" in text
    assert f"{recordings / 'bad.csv'}:3: data_field has an odd number of hex digits" in text
    assert lines[-1] == "3 file(s), 13 rows, 1 with problems"


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        check(tmp_path / "nowhere")
    assert check(tmp_path) == []
    assert format_report([], tmp_path).splitlines()[-1] == f"no recordings found under {tmp_path}"
