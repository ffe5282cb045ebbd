"""The real can-train-and-test recordings in ../shared/data (skipped where that folder is absent).

MANIFEST.json lists every file with its row count, attack-row count and the SHA-256 of its
uncompressed CSV; the parser must agree with all three. On hcrl_sa the whole preparation runs:
duplicates dropped, windows inside files, the distinct training frames 627,260.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from kdgat.bench.data import baseline_window_graphs
from kdgat.data.cache import load_or_build
from kdgat.data.frames import parse_csv, read_bytes
from kdgat.data.graphs import build_window_graphs, window_starts
from kdgat.data.layout import discover
from kdgat.data.prepare import TRAIN, VAL, PrepareParams

pytestmark = pytest.mark.realdata

HCRL_SA_DISTINCT_TRAINING_FRAMES = 627_260


@pytest.fixture(scope="module")
def manifest(real_data) -> dict[str, dict]:
    return {entry["file"]: entry for entry in json.loads((real_data / "MANIFEST.json").read_text())}


@pytest.mark.parametrize("dataset", ["hcrl_sa", "set_01", "set_02"])  # 2-4 s each
def test_every_file_matches_the_manifest(real_data, manifest, dataset):
    entries = {name: e for name, e in manifest.items() if name.startswith(f"{dataset}/")}
    if not entries:
        pytest.skip(f"MANIFEST.json lists no {dataset} files")
    on_disk = sorted(p.relative_to(real_data).as_posix() for p in (real_data / dataset).rglob("*.csv*"))
    assert on_disk == sorted(entries)
    for name, entry in entries.items():
        raw = read_bytes(real_data / name)
        assert hashlib.sha256(raw).hexdigest() == entry["csv_sha256"], name
        frames = parse_csv(raw, source=name)
        assert (len(frames), int(frames.attack.sum())) == (entry["rows"], entry["attack_rows"]), name
        assert frames.skipped_rows == 0 and frames.line[-1] == entry["rows"] + 1 + frames.blank_lines


@pytest.fixture(scope="module")
def hcrl_sa(real_data, tmp_path_factory):
    layout = discover(real_data / "hcrl_sa")
    params = PrepareParams()  # windows of 100 frames, stride 100, val_fraction 0.2
    cache = load_or_build(layout, params, tmp_path_factory.mktemp("cache"), "hcrl_sa")
    return layout, params, cache


def test_hcrl_sa_duplicates_dropped_and_distinct_training_frames(hcrl_sa, manifest):
    layout, _, cache = hcrl_sa
    assert sorted(layout.duplicates) == [
        ("train_02_with_attacks/attack-free-kia.csv.gz", "train_01_attack_free/attack-free-kia.csv.gz"),
        ("train_02_with_attacks/attack-free-sonata.csv.gz", "train_01_attack_free/attack-free-sonata.csv.gz"),
    ]
    train = [f for f in cache.meta["files"] if f["split"] == "train"]
    assert len(train) == 4
    assert sum(f["rows"] for f in train) == HCRL_SA_DISTINCT_TRAINING_FRAMES
    for file in cache.meta["files"]:
        entry = manifest[f"hcrl_sa/{file['relpath']}"]
        assert (file["rows"], file["attack_rows"]) == (entry["rows"], entry["attack_rows"])
    assert list(cache.meta["splits"][2:]) == sorted(layout.tests) and len(layout.tests) == 4


def test_hcrl_sa_windows_stay_inside_their_files(hcrl_sa):
    _, params, cache = hcrl_sa
    files, window = cache.meta["files"], params.window
    rows = np.array([f["rows"] for f in files])
    file_index, start, split = cache["file_index"], cache["start_frame"], cache["split"]
    assert (start + window <= rows[file_index]).all()
    is_train_file = np.array([f["split"] == "train" for f in files])
    assert (is_train_file[file_index] == np.isin(split, [TRAIN, VAL])).all()
    for index, file in enumerate(files):
        mine = file_index == index
        n = file["rows"]
        if file["split"] == "train":
            cut = int(n * (1 - params.val_fraction))
            expected = np.concatenate([window_starts(cut, window, params.stride),
                                       cut + window + window_starts(n - cut - window, window, params.stride)])
            assert (start[mine & (split == TRAIN)] + window <= cut).all()
            assert (start[mine & (split == VAL)] >= cut + window).all()
        else:
            expected = window_starts(n, window, params.stride)
            assert (split[mine] == cache.meta["splits"].index(file["split"])).all()
        np.testing.assert_array_equal(start[mine], expected)


def test_hcrl_sa_unknown_vehicle_ids_are_out_of_vocabulary(hcrl_sa):
    _, _, cache = hcrl_sa
    vocabulary = set(cache.meta["vocabulary"])
    graph_of_node = np.repeat(np.arange(len(cache["y"])), np.diff(cache["node_ptr"]))
    split_of_node = cache["split"][graph_of_node]
    assert set(np.unique(cache["node_can_id"][split_of_node == TRAIN]).tolist()) == vocabulary
    spark = cache.meta["splits"].index("test_02_unknown_vehicle_known_attack")
    assert set(np.unique(cache["node_can_id"][split_of_node == spark]).tolist()) - vocabulary


def test_vectorized_graphs_equal_the_reference_on_a_real_fuzzing_file(real_data):
    path = real_data / "hcrl_sa" / "test_02_unknown_vehicle_known_attack" / "fuzzing-Spark.csv.gz"
    frames = parse_csv(read_bytes(path), source=str(path))
    attack_start = int(np.flatnonzero(frames.attack)[0]) // 100 * 100
    first, count = max(attack_start - 1000, 0), 3000  # a stretch with the fuzzing in it
    graphs = build_window_graphs(frames, 100, 100, first, count)
    reference = baseline_window_graphs(path, 100, 100, first, count)
    assert graphs.num_graphs == len(reference) == 30 and graphs.y.any() and not graphs.y.all()
    for k, expected in enumerate(reference):
        nodes = slice(graphs.node_ptr[k], graphs.node_ptr[k + 1])
        edges = slice(graphs.edge_ptr[k], graphs.edge_ptr[k + 1])
        np.testing.assert_array_equal(graphs.node_can_id[nodes], expected["can_id"])
        np.testing.assert_array_equal(graphs.edge_index[:, edges].T, expected["edge_index"])
        np.testing.assert_allclose(graphs.x[nodes], expected["x"], atol=1e-4, rtol=0)
        np.testing.assert_allclose(graphs.edge_attr[edges], expected["edge_attr"], atol=1e-4, rtol=0)
        assert graphs.y[k] == expected["y"]
