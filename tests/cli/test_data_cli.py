"""``kdgat data check`` and ``kdgat data prepare``, run as a user runs them: a real subprocess."""

from __future__ import annotations

import json

import pytest

from conftest import TEST_01, TEST_02, TEST_05, row, tiny_dataset_files, write_recording

CLEAN = [row(100.0, 0x081, bytes(8)), row(100.5, 0x4F1, b"", attack=1), row(101.25, 0x081, b"\x01\x02")]


def test_check_clean_folder_exits_0_and_reports_each_file(kdgat, tmp_path):
    folder = tmp_path / "recordings"
    write_recording(folder / "DoS-a.csv", CLEAN)
    write_recording(folder / "copy" / "DoS-a.csv.gz", CLEAN)
    result = kdgat("data", "check", folder)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:6] == ["file", "rows", "attacks", "ids", "span", "s"]
    # file, rows, attack rows, distinct ids, time span, DLC histogram
    assert next(line for line in lines if line.startswith("DoS-a.csv")).split() == \
        ["DoS-a.csv", "3", "1", "2", "1.2", "0:1", "2:1", "8:1"]
    assert f"same frames as: {folder / 'copy' / 'DoS-a.csv.gz'}" in result.stdout
    assert lines[-1] == "2 file(s), 6 rows, 0 with problems"


def test_check_with_malformed_rows_exits_1_naming_file_and_line(kdgat, tmp_path):
    folder = tmp_path / "recordings"
    write_recording(folder / "good.csv", CLEAN)
    bad = write_recording(folder / "bad.csv.gz", CLEAN[:2] + ["100.7,08G,00,0"] + CLEAN[2:] + ["x,1,,0"])
    write_recording(folder / "cut.csv", "timestamp,arbitration_id\n")
    result = kdgat("data", "check", folder)
    assert result.returncode == 1
    assert f"{bad}:4: arbitration_id is not hexadecimal" in result.stdout
    assert f"{bad}:6: timestamp is not a number" in result.stdout
    assert "2 malformed row(s):" in result.stdout
    assert "cut.csv" in result.stdout and f"{folder / 'cut.csv'}:1: expected the header" in result.stdout
    assert result.stdout.splitlines()[-1] == "3 file(s), 6 rows, 2 with problems"


def test_check_json_and_single_file(kdgat, tmp_path):
    path = write_recording(tmp_path / "fuzzing-x.csv", CLEAN + ["1,2,3,4"])
    result = kdgat("data", "check", path, "--json")
    assert result.returncode == 1
    (report,) = json.loads(result.stdout)
    assert (report["path"], report["rows"], report["attack_rows"], report["distinct_ids"]) == (str(path), 3, 1, 2)
    assert report["dlc_histogram"] == {"0": 1, "2": 1, "8": 1} and report["time_span"] == [100.0, 101.25]
    assert report["attack_type"] == "fuzzing" and report["malformed_count"] == 1
    assert report["malformed"] == [f"{path}:5: data_field has an odd number of hex digits"]


def test_check_missing_path_exits_2(kdgat, tmp_path):
    result = kdgat("data", "check", tmp_path / "nowhere")
    assert result.returncode == 2
    assert f"kdgat data: error: {tmp_path / 'nowhere'}: no such file or folder" in result.stderr


def test_check_empty_folder_exits_1(kdgat, tmp_path):
    result = kdgat("data", "check", tmp_path)
    assert result.returncode == 1 and "no recordings found" in result.stdout


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    for relpath, lines in tiny_dataset_files().items():
        write_recording(root / "tiny" / relpath, lines)
    return root


def test_prepare_builds_then_reuses_the_cache(kdgat, data_root, tmp_path):
    args = ("data", "prepare", "dataset=tiny", f"data_root={data_root}", f"cache_dir={tmp_path / 'cache'}",
            "window=10", "stride=10")
    first = kdgat(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("tiny: 34 graphs, ")
    counts = {line.split()[0]: line.split()[1:] for line in first.stdout.splitlines()[1:]}
    assert counts == {"train": ["17", "windows", "1", "attacks"], "val": ["2", "windows", "1", "attacks"],
                      TEST_01: ["6", "windows", "4", "attacks"], TEST_02: ["5", "windows", "1", "attacks"],
                      TEST_05: ["4", "windows", "0", "attacks"]}
    (entry,) = [p for p in (tmp_path / "cache" / "tiny").iterdir() if p.is_dir()]
    assert str(entry) in first.stdout and (entry / "meta.json").is_file()
    stamp = (entry / "meta.json").stat().st_mtime_ns
    second = kdgat(*args)
    assert second.returncode == 0 and second.stdout.splitlines()[1:] == first.stdout.splitlines()[1:]
    assert (entry / "meta.json").stat().st_mtime_ns == stamp  # loaded, not rebuilt
    third = kdgat(*args, "--rebuild")
    assert third.returncode == 0 and (entry / "meta.json").stat().st_mtime_ns != stamp


def test_prepare_reports_skipped_rows(kdgat, data_root, tmp_path):
    path = data_root / "tiny" / TEST_02 / "DoS-b.csv"
    path.write_text(path.read_text() + "1.0,XYZ,00,0\n")
    common = ("data", "prepare", "dataset=tiny", f"data_root={data_root}", f"cache_dir={tmp_path / 'c'}",
              "window=10")
    failed = kdgat(*common)
    assert failed.returncode == 2
    assert f"{path}:52: arbitration_id is not hexadecimal" in failed.stderr
    skipped = kdgat(*common, "on_error=skip")
    assert skipped.returncode == 0, skipped.stderr
    assert "1 malformed rows were skipped (on_error=skip)" in skipped.stdout


@pytest.mark.parametrize("argument,message", [
    ("datset=tiny", "unknown key 'datset' (did you mean 'dataset'?); accepted keys: ["),
    ("windw=10", "unknown key 'windw' (did you mean 'window'?); accepted keys: ["),
    ("tiny", "expected key=value, got 'tiny'; accepted keys: ["),
    ("window=ten", "window='ten': expected a value of type int"),
])
def test_prepare_rejects_bad_arguments_with_exit_2(kdgat, argument, message):
    result = kdgat("data", "prepare", argument)
    assert result.returncode == 2
    assert result.stderr.startswith("kdgat data: error: ") and message in result.stderr


def test_prepare_without_dataset(kdgat, tmp_path):
    result = kdgat("data", "prepare", f"cache_dir={tmp_path}")
    assert result.returncode == 2 and "dataset=NAME is required" in result.stderr


def test_prepare_missing_data_root_names_it(kdgat, tmp_path):
    missing = tmp_path / "no-such-root"
    result = kdgat("data", "prepare", "dataset=hcrl_sa", f"data_root={missing}", f"cache_dir={tmp_path / 'c'}")
    assert result.returncode == 2
    assert f"data_root {missing} does not exist" in result.stderr and "KDGAT_DATA_ROOT" in result.stderr


def test_prepare_missing_dataset_folder_names_where_it_looked(kdgat, data_root, tmp_path):
    result = kdgat("data", "prepare", "dataset=hcrl_sa", f"data_root={data_root}", f"cache_dir={tmp_path / 'c'}")
    assert result.returncode == 2
    assert f"dataset 'hcrl_sa' not found in data_root {data_root}" in result.stderr
    assert "'tiny'" in result.stderr  # what the folder holds


def test_prepare_without_data_root_explains_how_to_set_it(kdgat, tmp_path):
    result = kdgat("data", "prepare", "dataset=set_01", f"cache_dir={tmp_path / 'c'}")
    assert result.returncode == 2
    assert "set data_root=DIR (or KDGAT_DATA_ROOT)" in result.stderr


def test_prepare_of_a_folder_that_is_not_a_dataset(kdgat, tmp_path):
    (tmp_path / "data" / "odd" / "misc").mkdir(parents=True)
    result = kdgat("data", "prepare", "dataset=odd", f"data_root={tmp_path / 'data'}", f"cache_dir={tmp_path / 'c'}")
    assert result.returncode == 2
    assert f"{tmp_path / 'data' / 'odd'} is not a can-train-and-test dataset folder" in result.stderr
