"""Recordings → graphs with splits: the rules that keep the evaluation honest, on the tiny dataset.

Expected values are worked out from the rows (read with Python's ``csv``), not from kdgat's output.
The tiny dataset (tests/conftest.py) with window 10, stride 10, val_fraction 0.2:

| file | rows | cut | train windows | val windows |
| --- | --- | --- | --- | --- |
| train_01/attack-free-a (= train_02 copy) | 120 | 96 | starts 0..80 (9) | start 106 (1) |
| train_02/DoS-a | 100 | 80 | starts 0..70 (8) | start 90 (1) |
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import (GAP_ONLY_ID, KNOWN_IDS, TEST_01, TEST_02, TEST_05, TINY_WINDOW, TRAIN_01,
                      TRAIN_02, UNKNOWN_VEHICLE_IDS, UNSEEN_IDS, VAL_ONLY_ID, plain_rows, row,
                      tiny_dataset_files, write_tiny_dataset)
from kdgat.data.frames import FrameFormatError, read_frames
from kdgat.data.graphs import build_window_graphs, window_starts
from kdgat.data.layout import discover
from kdgat.data.prepare import TRAIN, VAL, PrepareParams, prepare

W = TINY_WINDOW
PARAMS = PrepareParams(window=W, stride=W)


@pytest.fixture(scope="module")
def prepared(shared_tiny_dataset):
    arrays, meta = prepare(discover(shared_tiny_dataset), PARAMS)
    return shared_tiny_dataset, arrays, meta


def graphs_of_file(arrays, index: int, code: int | None = None) -> np.ndarray:
    mask = arrays["file_index"] == index
    if code is not None:
        mask &= arrays["split"] == code
    return np.flatnonzero(mask)


def test_counts_per_split_and_duplicate_counted_once(prepared):
    _, arrays, meta = prepared
    assert meta["splits"] == ["train", "val", TEST_01, TEST_02, TEST_05]
    assert meta["graphs_per_split"] == {"train": 17, "val": 2, TEST_01: 6, TEST_02: 5, TEST_05: 4}
    assert meta["attacks_per_split"] == {"train": 1, "val": 1, TEST_01: 4, TEST_02: 1, TEST_05: 0}
    # the byte-identical benign copy in train_02 is dropped: 120 + 100 distinct training rows
    train_files = [f for f in meta["files"] if f["split"] == "train"]
    assert [f["relpath"] for f in train_files] == [f"{TRAIN_01}/attack-free-a.csv", f"{TRAIN_02}/DoS-a.csv"]
    assert sum(f["rows"] for f in train_files) == 220
    assert meta["duplicates_dropped"] == [[f"{TRAIN_02}/attack-free-a.csv", f"{TRAIN_01}/attack-free-a.csv"]]
    assert len(arrays["y"]) == 34 == sum(f["windows"] for f in meta["files"])


def test_no_window_crosses_a_file_boundary(prepared):
    root, arrays, meta = prepared
    rows = {f["relpath"]: plain_rows(root / f["relpath"]) for f in meta["files"]}
    assert len(arrays["start_frame"]) == len(arrays["y"])
    for g in range(len(arrays["y"])):
        file = meta["files"][arrays["file_index"][g]]
        start = int(arrays["start_frame"][g])
        assert start + W <= file["rows"] == len(rows[file["relpath"]])
        code = int(arrays["split"][g])
        assert file["split"] == ("train" if code in (TRAIN, VAL) else meta["splits"][code])
        # the graph's nodes are exactly the ids of those frames of that file
        window = rows[file["relpath"]][start:start + W]
        nodes = arrays["node_can_id"][arrays["node_ptr"][g]:arrays["node_ptr"][g + 1]]
        assert nodes.tolist() == sorted({can_id for _, can_id, _, _ in window})
        # and its label is whether any of them is an attack
        assert arrays["attack_frames"][g] == sum(a for *_, a in window)
        assert arrays["y"][g] == any(a for *_, a in window)


@pytest.mark.parametrize("stride", [W, 3])
def test_validation_is_a_contiguous_block_after_a_gap_of_one_window(shared_tiny_dataset, stride):
    arrays, meta = prepare(discover(shared_tiny_dataset), PrepareParams(window=W, stride=stride))
    for index, file in enumerate(meta["files"]):
        if file["split"] != "train":
            assert set(arrays["split"][graphs_of_file(arrays, index)]) <= set(range(2, 5))
            continue
        n = file["rows"]
        cut = int(n * 0.8)
        train = arrays["start_frame"][graphs_of_file(arrays, index, TRAIN)]
        val = arrays["start_frame"][graphs_of_file(arrays, index, VAL)]
        assert (train + W <= cut).all() and (val >= cut + W).all()
        np.testing.assert_array_equal(train, window_starts(cut, W, stride))
        np.testing.assert_array_equal(val, cut + W + window_starts(n - cut - W, W, stride))
        assert len(val) > 0
        np.testing.assert_array_equal(arrays["window_index"][graphs_of_file(arrays, index, VAL)],
                                      np.arange(len(val)))


def test_test_folders_are_only_test_splits(prepared):
    _, arrays, meta = prepared
    for index, file in enumerate(meta["files"]):
        codes = set(arrays["split"][graphs_of_file(arrays, index)].tolist())
        if file["split"] == "train":
            assert codes == {TRAIN, VAL}
        else:
            assert codes == {meta["splits"].index(file["split"])}
            np.testing.assert_array_equal(arrays["start_frame"][graphs_of_file(arrays, index)],
                                          window_starts(file["rows"], W, W))


def test_vocabulary_is_the_ids_of_training_windows_only(prepared):
    root, _, meta = prepared
    expected = set()
    for relpath, n in ((f"{TRAIN_01}/attack-free-a.csv", 120), (f"{TRAIN_02}/DoS-a.csv", 100)):
        expected |= {can_id for _, can_id, _, _ in plain_rows(root / relpath)[:int(n * 0.8)]}
    assert meta["vocabulary"] == sorted(expected) == sorted(KNOWN_IDS + [0x000])
    for unseen in [VAL_ONLY_ID, GAP_ONLY_ID, *UNSEEN_IDS, *UNKNOWN_VEHICLE_IDS]:
        assert unseen not in meta["vocabulary"]
    # 0x000 (DoS) is in 1 training window; each benign id in all 17
    assert dict(zip(meta["vocabulary"], meta["vocabulary_windows"]))[0x000] == 1
    assert dict(zip(meta["vocabulary"], meta["vocabulary_windows"]))[KNOWN_IDS[1]] == 17


def test_scalers_are_the_moments_of_training_windows_only(prepared):
    root, arrays, meta = prepared
    raw = [build_window_graphs(read_frames(root / relpath), W, W, 0, int(n * 0.8))
           for relpath, n in ((f"{TRAIN_01}/attack-free-a.csv", 120), (f"{TRAIN_02}/DoS-a.csv", 100))]
    x = np.concatenate([g.x for g in raw]).astype(np.float64)
    e = np.concatenate([g.edge_attr for g in raw]).astype(np.float64)
    x_std, e_std = x.std(axis=0), e.std(axis=0)
    np.testing.assert_allclose(meta["node_scaler"]["mean"], x.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(meta["node_scaler"]["std"], np.where(x_std > 1e-8, x_std, 1.0), rtol=1e-5)
    np.testing.assert_allclose(meta["edge_scaler"]["mean"], e.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(meta["edge_scaler"]["std"], np.where(e_std > 1e-8, e_std, 1.0), rtol=1e-5)
    # every split is stored standardized with those training moments
    test_file = meta["files"].index(next(f for f in meta["files"] if f["split"] == TEST_02))
    g = build_window_graphs(read_frames(root / meta["files"][test_file]["relpath"]), W, W)
    nodes = np.concatenate([np.arange(arrays["node_ptr"][k], arrays["node_ptr"][k + 1])
                            for k in graphs_of_file(arrays, test_file)])
    restored = arrays["x"][nodes] * np.float32(meta["node_scaler"]["std"]) + np.float32(meta["node_scaler"]["mean"])
    np.testing.assert_allclose(restored, g.x, atol=1e-5)


def test_validation_and_test_data_do_not_move_vocabulary_or_scalers(prepared, tmp_path):
    _, arrays, meta = prepared
    files = tiny_dataset_files()
    # change the validation block of DoS-a and every test file: new ids, other payloads
    dos = files[f"{TRAIN_02}/DoS-a.csv"]
    files[f"{TRAIN_02}/DoS-a.csv"] = dos[:80] + [row(1672531300 + k, 0x7E0 + k % 3, b"\xff" * 8) for k in range(20)]
    for relpath in (f"{TEST_01}/fuzzing-a.csv.gz", f"{TEST_02}/DoS-b.csv", f"{TEST_05}/suppress-a.csv"):
        files[relpath] = [row(1672531300 + k / 7, 0x3C0 + k % 5, bytes([k % 256]) * 8, k % 2)
                          for k in range(70)]
    other_arrays, other_meta = prepare(discover(write_tiny_dataset(tmp_path / "tiny", files)), PARAMS)
    for key in ("vocabulary", "vocabulary_windows", "node_scaler", "edge_scaler"):
        assert other_meta[key] == meta[key]
    train, other_train = arrays["split"] == TRAIN, other_arrays["split"] == TRAIN
    np.testing.assert_array_equal(arrays["y"][train], other_arrays["y"][other_train])
    assert other_meta["graphs_per_split"]["train"] == meta["graphs_per_split"]["train"]
    # while the training rows do move them
    files[f"{TRAIN_02}/DoS-a.csv"] = [row(1672531300 + k, 0x7E0, b"\xff" * 8) for k in range(80)] + dos[80:]
    _, moved = prepare(discover(write_tiny_dataset(tmp_path / "tiny2", files)), PARAMS)
    assert moved["vocabulary"] != meta["vocabulary"] and moved["node_scaler"] != meta["node_scaler"]


def test_stored_train_features_are_standardized(prepared):
    _, arrays, meta = prepared
    graph_of_node = np.repeat(np.arange(len(arrays["y"])), np.diff(arrays["node_ptr"]))
    x = arrays["x"][arrays["split"][graph_of_node] == TRAIN].astype(np.float64)
    varying = np.asarray(meta["node_scaler"]["std"]) != 1.0
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=0)[varying], 1, rtol=1e-4)
    assert arrays["x"].dtype == np.float32 and arrays["edge_attr"].dtype == np.float32


def test_attack_type_and_counts_per_file(prepared):
    _, _, meta = prepared
    summary = {f["relpath"]: (f["attack_type"], f["rows"], f["attack_rows"], f["windows"])
               for f in meta["files"]}
    assert summary == {
        f"{TRAIN_01}/attack-free-a.csv": ("benign", 120, 0, 10),
        f"{TRAIN_02}/DoS-a.csv": ("dos", 100, 9, 9),
        f"{TEST_01}/fuzzing-a.csv.gz": ("fuzzing", 60, 20, 6),
        f"{TEST_02}/DoS-b.csv": ("dos", 50, 6, 5),
        f"{TEST_05}/suppress-a.csv": ("suppress", 40, 0, 4),
    }


def test_malformed_rows_fail_or_are_skipped_and_counted(make_dataset):
    files = tiny_dataset_files()
    files[f"{TEST_02}/DoS-b.csv"] = files[f"{TEST_02}/DoS-b.csv"][:6] + ["1.0,XYZ,00,0"] + \
        files[f"{TEST_02}/DoS-b.csv"][6:]
    root = make_dataset(files)
    with pytest.raises(FrameFormatError) as caught:
        prepare(discover(root), PARAMS)
    assert f"{root / TEST_02 / 'DoS-b.csv'}:8: arbitration_id is not hexadecimal" in str(caught.value)
    _, meta = prepare(discover(root), PrepareParams(window=W, stride=W, on_error="skip"))
    file = next(f for f in meta["files"] if f["split"] == TEST_02)
    assert (file["rows"], file["skipped_rows"]) == (50, 1)
    assert file["issues"] == [f"{root / TEST_02 / 'DoS-b.csv'}:8: arbitration_id is not hexadecimal"]


def test_files_shorter_than_a_window(make_dataset):
    files = tiny_dataset_files()
    files[f"{TEST_05}/suppress-a.csv"] = files[f"{TEST_05}/suppress-a.csv"][:W - 1]
    _, meta = prepare(discover(make_dataset(files)), PARAMS)
    assert meta["graphs_per_split"][TEST_05] == 0
    with pytest.raises(ValueError, match="no complete window of 200 frames"):
        prepare(discover(make_dataset(files, name="other")), PrepareParams(window=200, stride=200))


@pytest.mark.parametrize("kwargs,message", [
    ({"window": 1}, "a window is at least 2 frames"), ({"stride": 0}, "the stride is at least 1 frame"),
    ({"val_fraction": 0.0}, "strictly between 0 and 1"), ({"val_fraction": 1.0}, "strictly between 0 and 1"),
    ({"on_error": "ignore"}, "on_error must be"),
])
def test_invalid_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PrepareParams(**kwargs)
