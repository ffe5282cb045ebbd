"""Windows of frames → graphs, for all windows of a recording at once.

A window is ``window`` consecutive frames of one file (windows start every ``stride`` frames and
never cross a file boundary). Its graph has one node per distinct CAN id in the window and a
directed edge u→v for every pair where a frame of id v directly followed a frame of id u (unique
pairs; the number of such transitions and their mean time gap are the edge features). Node
features summarize the id's frames in the window: how often it was sent, its payload bytes (mean
and spread), its inter-arrival times and where in the window it appeared.

Everything is computed with one sort of (window, id) keys and segment reductions, so the cost is a
few numpy passes over the frames, not a Python loop per window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdgat.data.frames import MAX_PAYLOAD_BYTES, Frames

NODE_FEATURES = (
    ("count", "dlc_mean")
    + tuple(f"byte{i}_mean" for i in range(MAX_PAYLOAD_BYTES))
    + tuple(f"byte{i}_std" for i in range(MAX_PAYLOAD_BYTES))
    + ("iat_log_mean", "iat_log_std", "first_position", "last_position")
)
EDGE_FEATURES = ("transitions", "gap_log_mean")


@dataclass
class WindowGraphs:
    """The graphs of consecutive windows, as flat arrays.

    Shapes:
        node_ptr, edge_ptr: (K + 1,) offsets of each window's nodes and edges.
        x: (N, len(NODE_FEATURES)) float32 raw (unscaled) node features.
        node_can_id: (N,) int64 CAN id of each node.
        edge_index: (2, E) int32 source and target rows, local to the window's nodes.
        edge_attr: (E, len(EDGE_FEATURES)) float32 raw edge features.
        y: (K,) uint8, 1 if any frame of the window is an attack.
        attack_frames: (K,) int32 attack frames per window.
        start_frame: (K,) int64 index of the window's first frame in its recording.
    """

    node_ptr: np.ndarray
    edge_ptr: np.ndarray
    x: np.ndarray
    node_can_id: np.ndarray
    edge_index: np.ndarray
    edge_attr: np.ndarray
    y: np.ndarray
    attack_frames: np.ndarray
    start_frame: np.ndarray

    @property
    def num_graphs(self) -> int:
        return len(self.y)


def _log_ms(seconds: np.ndarray) -> np.ndarray:
    # CAN periods span 1 ms to seconds; a log scale keeps them comparable.
    return np.log1p(np.maximum(seconds, 0.0) * 1e3)


def window_starts(num_frames: int, window: int, stride: int) -> np.ndarray:
    """First frame of every complete window; a shorter tail is left out."""
    if num_frames < window:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, num_frames - window + 1, stride, dtype=np.int64)


def build_window_graphs(frames: Frames, window: int = 100, stride: int = 100,
                        first_frame: int = 0, num_frames: int | None = None) -> WindowGraphs:
    """Build the graphs of every window in ``frames[first_frame : first_frame + num_frames]``.

    Args:
        frames: one recording.
        window: frames per window (default 100).
        stride: frames between window starts (default 100: no overlap).
        first_frame: where the segment starts (validation blocks are segments of a file).
        num_frames: the segment's length (default: to the end of the file).
    """
    if window < 2 or stride < 1:
        raise ValueError(f"window must be >= 2 and stride >= 1, got window={window}, stride={stride}")
    if num_frames is None:
        num_frames = len(frames) - first_frame
    starts = first_frame + window_starts(num_frames, window, stride)
    num_windows = len(starts)
    frame = (starts[:, None] + np.arange(window)).ravel()  # (K*W,) frames of each window in order

    ids, compact = np.unique(frames.can_id[frame], return_inverse=True)
    window_of = np.repeat(np.arange(num_windows, dtype=np.int64), window)
    key = window_of * max(len(ids), 1) + compact
    # One stable sort groups the frames by (window, id) while keeping their time order in a group.
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    is_first = np.ones(len(sorted_key), dtype=bool)
    is_first[1:] = sorted_key[1:] != sorted_key[:-1]
    group_start = np.flatnonzero(is_first)
    node_of_sorted = np.cumsum(is_first) - 1
    node_of_frame = np.empty_like(node_of_sorted)
    node_of_frame[order] = node_of_sorted
    node_key = sorted_key[group_start]
    node_window = node_key // max(len(ids), 1)
    num_nodes = len(node_key)

    # Node features from segment sums over the sorted frames.
    # float64: the variance is E[b²] - E[b]², which cancels badly in float32 for a byte that
    # changes once in a window (std off by up to ~40%).
    payload = frames.payload[frame[order]].astype(np.float64)
    dlc = frames.dlc[frame[order]].astype(np.float64)
    sums = np.add.reduceat(np.column_stack([np.ones_like(dlc), dlc, payload, payload * payload]),
                           group_start, axis=0) if num_nodes else np.zeros((0, 18), np.float64)
    count = sums[:, 0]
    byte_mean = sums[:, 2:10] / count[:, None]
    byte_std = np.sqrt(np.maximum(sums[:, 10:18] / count[:, None] - byte_mean**2, 0.0))
    time_sorted = frames.timestamp[frame[order]]
    same_node = node_of_sorted[1:] == node_of_sorted[:-1]
    gaps = _log_ms(np.diff(time_sorted))[same_node]
    gap_node = node_of_sorted[1:][same_node]
    gap_count = np.bincount(gap_node, minlength=num_nodes)
    gap_sum = np.bincount(gap_node, weights=gaps, minlength=num_nodes)
    gap_sq = np.bincount(gap_node, weights=gaps * gaps, minlength=num_nodes)
    with np.errstate(invalid="ignore", divide="ignore"):
        iat_mean = np.where(gap_count > 0, gap_sum / gap_count, 0.0)
        iat_std = np.sqrt(np.maximum(np.where(gap_count > 0, gap_sq / gap_count, 0.0) - iat_mean**2, 0))
    position = (order % window).astype(np.float32) / (window - 1)
    # [:num_nodes]: with no complete window (a file or segment shorter than one) there is no group.
    group_end = np.append(group_start[1:], len(order))[:num_nodes] - 1
    x = np.column_stack([
        count / window, sums[:, 1] / count, byte_mean / 255.0, byte_std / 255.0,
        iat_mean, iat_std, position[group_start], position[group_end],
    ]).astype(np.float32)

    # Edges: consecutive frames inside a window; unique (u, v) pairs per window.
    by_window = node_of_frame.reshape(num_windows, window)
    src, dst = by_window[:, :-1].ravel(), by_window[:, 1:].ravel()
    times = frames.timestamp[frame].reshape(num_windows, window)
    transition_gap = _log_ms(np.diff(times, axis=1)).ravel()
    edge_key, edge_of = np.unique(src * max(num_nodes, 1) + dst, return_inverse=True)
    edge_src, edge_dst = edge_key // max(num_nodes, 1), edge_key % max(num_nodes, 1)
    transitions = np.bincount(edge_of, minlength=len(edge_key))
    gap_mean = np.bincount(edge_of, weights=transition_gap, minlength=len(edge_key)) / np.maximum(transitions, 1)
    edge_window = node_window[edge_src] if len(edge_key) else np.zeros(0, np.int64)

    bounds = np.arange(num_windows + 1)
    node_ptr = np.searchsorted(node_window, bounds).astype(np.int64)
    edge_ptr = np.searchsorted(edge_window, bounds).astype(np.int64)
    local = node_ptr[edge_window]
    attack_frames = frames.attack[frame].reshape(num_windows, window).sum(axis=1, dtype=np.int32)
    return WindowGraphs(
        node_ptr=node_ptr, edge_ptr=edge_ptr, x=x,
        node_can_id=ids[node_key % max(len(ids), 1)].astype(np.int64),
        edge_index=np.stack([edge_src - local, edge_dst - local]).astype(np.int32),
        edge_attr=np.column_stack([transitions / (window - 1), gap_mean]).astype(np.float32),
        y=(attack_frames > 0).astype(np.uint8), attack_frames=attack_frames,
        start_frame=starts,
    )
