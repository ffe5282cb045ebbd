"""Window graphs: a hand-computed example, and the vectorized builder against the per-window reference.

``kdgat.bench.data.baseline_window_graphs`` builds each window's graph in a Python loop (pandas
reading); :func:`build_window_graphs` must compute exactly the same nodes, edges and features.
"""

from __future__ import annotations

from math import log1p

import numpy as np
import pytest

from conftest import row, write_recording
from kdgat.bench.data import baseline_window_graphs
from kdgat.data.frames import read_frames
from kdgat.data.graphs import EDGE_FEATURES, NODE_FEATURES, build_window_graphs, window_starts

A, B, C = 0x100, 0x200, 0x300
F = {name: i for i, name in enumerate(NODE_FEATURES)}


def graph(graphs, k: int) -> dict:
    """Window ``k`` of a :class:`WindowGraphs` as separate arrays."""
    nodes = slice(graphs.node_ptr[k], graphs.node_ptr[k + 1])
    edges = slice(graphs.edge_ptr[k], graphs.edge_ptr[k + 1])
    return {"x": graphs.x[nodes], "can_id": graphs.node_can_id[nodes],
            "edge_index": graphs.edge_index[:, edges].T, "edge_attr": graphs.edge_attr[edges],
            "y": int(graphs.y[k])}


def test_hand_computed_window_a_b_a_c(tmp_path):
    # ids A B A C at 10.000, 10.001, 10.003, 10.006 s; the C frame is an attack
    path = write_recording(tmp_path / "r.csv", [
        row(10.000, A, bytes([10, 0])), row(10.001, B, b""), row(10.003, A, bytes([20, 0])),
        row(10.006, C, bytes([255]), attack=1)])
    graphs = build_window_graphs(read_frames(path), window=4, stride=4)
    assert graphs.num_graphs == 1
    np.testing.assert_array_equal(graphs.node_ptr, [0, 3])
    np.testing.assert_array_equal(graphs.edge_ptr, [0, 3])
    np.testing.assert_array_equal(graphs.node_can_id, [A, B, C])  # nodes: distinct ids, sorted
    # edges A→B, A→C, B→A (local rows), each one transition out of window-1 = 3
    np.testing.assert_array_equal(graphs.edge_index, [[0, 0, 1], [1, 2, 0]])
    np.testing.assert_allclose(graphs.edge_attr, [[1 / 3, log1p(1)], [1 / 3, log1p(3)],
                                                  [1 / 3, log1p(2)]], rtol=1e-5)
    x = graphs.x
    assert x.shape == (3, len(NODE_FEATURES)) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, F["count"]], [2 / 4, 1 / 4, 1 / 4])
    np.testing.assert_allclose(x[:, F["dlc_mean"]], [2, 0, 1])
    np.testing.assert_allclose(x[:, F["byte0_mean"]], [15 / 255, 0, 1])
    np.testing.assert_allclose(x[:, F["byte0_std"]], [5 / 255, 0, 0], atol=1e-7)
    np.testing.assert_array_equal(x[:, F["byte1_mean"]:F["byte7_mean"] + 1], 0)
    np.testing.assert_allclose(x[:, F["iat_log_mean"]], [log1p(3), 0, 0], rtol=1e-5)  # A: 3 ms
    np.testing.assert_allclose(x[:, F["iat_log_std"]], [0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(x[:, F["first_position"]], [0, 1 / 3, 1])
    np.testing.assert_allclose(x[:, F["last_position"]], [2 / 3, 1 / 3, 1])
    np.testing.assert_array_equal(graphs.y, [1])
    np.testing.assert_array_equal(graphs.attack_frames, [1])
    np.testing.assert_array_equal(graphs.start_frame, [0])


def test_overlapping_windows_repeated_transitions_and_self_loops(tmp_path):
    ids = [A, B, A, B, B, B, A, C]
    path = write_recording(tmp_path / "r.csv", [row(1 + k / 1000, i, b"\x01", int(k == 7))
                                                for k, i in enumerate(ids)])
    graphs = build_window_graphs(read_frames(path), window=4, stride=2)
    np.testing.assert_array_equal(graphs.start_frame, [0, 2, 4])
    np.testing.assert_array_equal(graphs.y, [0, 0, 1])
    # window 0: A B A B -> A→B twice, B→A once
    w0 = graph(graphs, 0)
    np.testing.assert_array_equal(w0["can_id"], [A, B])
    np.testing.assert_array_equal(w0["edge_index"], [[0, 1], [1, 0]])
    np.testing.assert_allclose(w0["edge_attr"][:, 0], [2 / 3, 1 / 3])
    # window 1: A B B B -> A→B, B→B (a self loop, two transitions)
    w1 = graph(graphs, 1)
    np.testing.assert_array_equal(w1["edge_index"], [[0, 1], [1, 1]])
    np.testing.assert_allclose(w1["edge_attr"][:, 0], [1 / 3, 2 / 3])
    np.testing.assert_allclose(w1["x"][:, F["count"]], [1 / 4, 3 / 4])
    # window 2: B B A C -> three nodes, edges B→B, B→A, A→C
    w2 = graph(graphs, 2)
    np.testing.assert_array_equal(w2["can_id"], [A, B, C])
    assert sorted(map(tuple, w2["edge_index"].tolist())) == [(0, 2), (1, 0), (1, 1)]


def random_recording(path, n: int, seed: int) -> None:
    """A messy recording: skewed ids (11- and 29-bit), DLC 0-8, bursts, rare byte changes, attacks."""
    rng = np.random.default_rng(seed)
    ids = rng.choice([0x000, 0x081, 0x316, 0x43F, 0x7FF, 0x18FEF100], size=n,
                     p=[0.05, 0.4, 0.2, 0.15, 0.1, 0.1])
    gaps = np.where(rng.random(n) < 0.1, 0.0, rng.exponential(0.002, n))  # some equal timestamps
    times = 1672531200.0 + np.cumsum(gaps)
    lines = []
    for k in range(n):
        dlc = int(rng.integers(0, 9)) if ids[k] != 0x081 else 8
        # bytes that sit near 255 and change rarely stress the variance's cancellation
        payload = bytes(int(209 - (rng.random() < 0.02)) if b % 2 else int(rng.integers(256))
                        for b in range(dlc))
        lines.append(row(times[k], int(ids[k]), payload, int(rng.random() < 0.03)))
    write_recording(path, lines)


@pytest.fixture(scope="module")
def messy_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("graphs") / "messy.csv.gz"
    random_recording(path, 1200, seed=7)
    return path


@pytest.mark.parametrize("window,stride,first,count", [
    (100, 100, 0, None), (50, 20, 0, None), (7, 3, 0, None), (2, 1, 0, 300), (30, 30, 113, 600),
])
def test_vectorized_equals_per_window_reference(messy_file, window, stride, first, count):
    graphs = build_window_graphs(read_frames(messy_file), window, stride, first, count)
    reference = baseline_window_graphs(messy_file, window, stride, first, count)
    assert graphs.num_graphs == len(reference) > 0
    for k, expected in enumerate(reference):
        got = graph(graphs, k)
        np.testing.assert_array_equal(got["can_id"], expected["can_id"])
        np.testing.assert_array_equal(got["edge_index"], expected["edge_index"])
        np.testing.assert_allclose(got["x"], expected["x"], atol=1e-4, rtol=0)
        np.testing.assert_allclose(got["edge_attr"], expected["edge_attr"], atol=1e-4, rtol=0)
        assert got["y"] == expected["y"]
    assert graphs.edge_attr.shape[1] == len(EDGE_FEATURES)


def test_byte_spread_of_a_rarely_changing_byte_is_exact(tmp_path):
    # one id, 99 frames with byte 209 and one with 208: E[b²] - E[b]² cancels badly in float32
    path = write_recording(tmp_path / "r.csv", [row(k / 100, A, bytes([208 if k == 0 else 209]))
                                                for k in range(100)])
    graphs = build_window_graphs(read_frames(path), window=100, stride=100)
    expected = np.std([208] + [209] * 99) / 255
    np.testing.assert_allclose(graphs.x[0, F["byte0_std"]], expected, rtol=1e-5)


def test_window_label_is_any_attack_frame(tmp_path):
    attack = [0] * 10 + [0, 0, 0, 0, 0, 0, 0, 0, 0, 1] + [1] * 10 + [0] * 10
    path = write_recording(tmp_path / "r.csv", [row(k / 100, A + k % 3, b"", a)
                                                for k, a in enumerate(attack)])
    graphs = build_window_graphs(read_frames(path), window=10, stride=5)
    np.testing.assert_array_equal(graphs.start_frame, [0, 5, 10, 15, 20, 25, 30])
    np.testing.assert_array_equal(graphs.attack_frames, [0, 0, 1, 6, 10, 5, 0])
    np.testing.assert_array_equal(graphs.y, [0, 0, 1, 1, 1, 1, 0])


def test_edges_stay_inside_their_window(messy_file):
    graphs = build_window_graphs(read_frames(messy_file), window=20, stride=7)
    nodes = np.diff(graphs.node_ptr)
    window_of_edge = np.repeat(np.arange(graphs.num_graphs), np.diff(graphs.edge_ptr))
    assert (graphs.edge_index >= 0).all()
    assert (graphs.edge_index < nodes[window_of_edge]).all()
    # every window has at least one edge and at most window - 1
    assert ((np.diff(graphs.edge_ptr) >= 1) & (np.diff(graphs.edge_ptr) <= 19)).all()


@pytest.mark.parametrize("frames_in_file,first,count", [(5, 0, None), (40, 0, 0), (40, 35, 5)])
def test_shorter_than_a_window_gives_no_graphs(tmp_path, frames_in_file, first, count):
    path = write_recording(tmp_path / "r.csv", [row(k / 100, A + k % 2) for k in range(frames_in_file)])
    graphs = build_window_graphs(read_frames(path), 10, 10, first, count)
    assert graphs.num_graphs == 0
    np.testing.assert_array_equal(graphs.node_ptr, [0])
    np.testing.assert_array_equal(graphs.edge_ptr, [0])
    assert graphs.x.shape == (0, len(NODE_FEATURES)) and graphs.edge_index.shape == (2, 0)


def test_window_starts_leave_out_a_short_tail():
    np.testing.assert_array_equal(window_starts(25, 10, 10), [0, 10])
    np.testing.assert_array_equal(window_starts(25, 10, 5), [0, 5, 10, 15])
    np.testing.assert_array_equal(window_starts(9, 10, 1), [])


@pytest.mark.parametrize("window,stride", [(1, 1), (10, 0)])
def test_invalid_window_or_stride(tmp_path, window, stride):
    path = write_recording(tmp_path / "r.csv", [row(k, A) for k in range(20)])
    with pytest.raises(ValueError, match="window must be >= 2 and stride >= 1"):
        build_window_graphs(read_frames(path), window, stride)
