"""The dataset folder layout: which files train and which test, duplicates, attack types."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import TEST_01, TEST_02, TEST_05, TRAIN_01, TRAIN_02, periodic_rows, write_tiny_dataset
from kdgat.data import datasets
from kdgat.data.layout import attack_type_from_name, discover, file_sha256


def test_splits_and_duplicate_training_file_counted_once(tiny_dataset):
    layout = discover(tiny_dataset)
    # train_02's attack-free-a.csv is byte-identical to train_01's: kept once, the first seen
    assert [r.relpath for r in layout.train] == [f"{TRAIN_01}/attack-free-a.csv", f"{TRAIN_02}/DoS-a.csv"]
    assert layout.duplicates == ((f"{TRAIN_02}/attack-free-a.csv", f"{TRAIN_01}/attack-free-a.csv"),)
    assert list(layout.tests) == [TEST_01, TEST_02, TEST_05]
    assert [r.relpath for r in layout.tests[TEST_01]] == [f"{TEST_01}/fuzzing-a.csv.gz"]
    assert {r.split for r in layout.train} == {"train"}
    assert all(r.split == name for name, files in layout.tests.items() for r in files)
    assert len(layout.recordings) == 5
    assert [r.attack_type for r in layout.recordings] == ["benign", "dos", "fuzzing", "dos", "suppress"]
    assert all(r.sha256 == file_sha256(r.path) for r in layout.recordings)


def test_duplicates_found_by_content_not_by_name(make_dataset):
    benign = periodic_rows(30, [1, 2, 3], seed=1)
    root = make_dataset({
        f"{TRAIN_01}/attack-free-a.csv": benign,
        f"{TRAIN_02}/renamed-copy.csv": benign,  # same bytes, other name: dropped
        f"{TRAIN_02}/attack-free-b.csv": periodic_rows(30, [1, 2, 3], seed=2),  # distinct
        f"{TEST_01}/DoS-a.csv": benign,  # a test file is never deduplicated against training
    })
    layout = discover(root)
    assert [r.relpath for r in layout.train] == [f"{TRAIN_01}/attack-free-a.csv",
                                                f"{TRAIN_02}/attack-free-b.csv"]
    assert layout.duplicates == ((f"{TRAIN_02}/renamed-copy.csv", f"{TRAIN_01}/attack-free-a.csv"),)
    assert [r.relpath for r in layout.tests[TEST_01]] == [f"{TEST_01}/DoS-a.csv"]


def test_a_changed_byte_is_no_longer_a_duplicate(tiny_dataset):
    copy = tiny_dataset / TRAIN_02 / "attack-free-a.csv"
    copy.write_bytes(copy.read_bytes().replace(b",0\n", b",1\n", 1))
    layout = discover(tiny_dataset)
    assert layout.duplicates == ()
    assert len(layout.train) == 3


def test_other_files_and_empty_test_folders_are_ignored(tiny_dataset):
    (tiny_dataset / TRAIN_01 / "README.txt").write_text("notes")
    (tiny_dataset / TRAIN_01 / "subfolder").mkdir()
    (tiny_dataset / "test_09_empty").mkdir()
    layout = discover(tiny_dataset)
    assert len(layout.train) == 2 and "test_09_empty" not in layout.tests


def test_missing_dataset_folder_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_root=DIR") as caught:
        discover(tmp_path / "hcrl_sa")
    assert str(tmp_path / "hcrl_sa") in str(caught.value)


def test_folder_without_the_layout_lists_what_it_found(tmp_path):
    (tmp_path / "ds" / "recordings").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="not a can-train-and-test dataset folder") as caught:
        discover(tmp_path / "ds")
    assert "recordings" in str(caught.value) and "train_01_attack_free" in str(caught.value)


def test_training_folders_without_recordings(tiny_dataset):
    for name in (TRAIN_01, TRAIN_02):
        shutil.rmtree(tiny_dataset / name)
        (tiny_dataset / name).mkdir()
    with pytest.raises(FileNotFoundError, match="hold no recordings"):
        discover(tiny_dataset)


@pytest.mark.parametrize("name,expected", [
    ("DoS-kia.csv.gz", "dos"),
    ("fuzzing-Spark.csv.gz", "fuzzing"),
    ("malfunction-sonata.csv", "malfunction"),
    ("rpm-accessory-1.csv.gz", "rpm"),
    ("standstill-4.csv.gz", "standstill"),
    ("targeted_payload_fuzzing-2.csv.gz", "targeted_payload_fuzzing"),
    ("suppress-1.csv.gz", "suppress"),
    ("systematic-4.csv.gz", "systematic"),
    ("attack-free-kia.csv.gz", "benign"),
    ("accessory-2.csv.gz", "benign"),
    ("benign.log", "benign"),
    ("capture.asc", "capture"),
])
def test_attack_type_from_file_name(name, expected):
    assert attack_type_from_name(name) == expected


# --------------------------------------------------------------------------- where datasets live
def test_data_root_and_cache_dir_from_overrides_or_environment(tiny_dataset, tmp_path, monkeypatch):
    for name in ("KDGAT_DATA_ROOT", "KDGAT_CACHE_DIR", "KDGAT_RUNS_ROOT"):
        monkeypatch.delenv(name, raising=False)
    assert datasets.cache_root() == Path("experimentruns") / ".cache"
    monkeypatch.setenv("KDGAT_RUNS_ROOT", str(tmp_path / "runs"))
    assert datasets.cache_root() == tmp_path / "runs" / ".cache"
    monkeypatch.setenv("KDGAT_CACHE_DIR", str(tmp_path / "env-cache"))
    assert datasets.cache_root() == tmp_path / "env-cache"
    assert datasets.cache_root(tmp_path / "override") == tmp_path / "override"
    monkeypatch.setenv("KDGAT_DATA_ROOT", str(tiny_dataset.parent))
    assert datasets.dataset_folder("tiny") == tiny_dataset
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(FileNotFoundError, match=f"not found in data_root {tmp_path / 'elsewhere'}"):
        datasets.dataset_folder("tiny", tmp_path / "elsewhere", tmp_path)  # the override wins


def test_synthetic_dataset_is_generated_once_on_first_use(tmp_path, monkeypatch):
    import kdgat.data.synth as synth

    calls = []

    def fake_synthesize(out_dir, seed, scale):
        calls.append((seed, scale))
        write_tiny_dataset(Path(out_dir))
    monkeypatch.setattr(synth, "synthesize", fake_synthesize)
    monkeypatch.delenv("KDGAT_DATA_ROOT", raising=False)
    folder = datasets.dataset_folder("synthetic", None, tmp_path / "cache")
    assert folder == tmp_path / "cache" / "synthetic-data" / "small-seed0"
    assert (folder / ".complete").is_file() and len(discover(folder).train) == 2
    assert datasets.dataset_folder("synthetic", tmp_path / "no-synthetic-here", tmp_path / "cache") == folder
    assert calls == [(0, "small")]  # the second call found it complete
    assert not [p for p in folder.parent.iterdir() if ".staging-" in p.name]
