"""Per-window statistics of the prepared graphs: the inputs of the non-graph baseline.

A window's statistics are what a detector without a graph would look at: how its frames spread
over CAN ids (distinct ids, entropy, the share of the most frequent ids, how familiar the ids are
from training), how fast frames arrive (between consecutive frames, and between frames of one
id), and what the payloads hold (mean and spread of each byte, mean DLC).

They are computed from the graph cache, not from the recordings again: a node of a window graph
already summarizes one id's frames in that window (its count, byte means and spreads, inter-arrival
moments; :data:`kdgat.data.graphs.NODE_FEATURES`) and an edge the consecutive-frame transitions
(count and mean log gap), so every statistic is a count-weighted segment reduction over the
cache's flat arrays — a few numpy passes for the whole dataset, never a Python loop per window.
Because they come from the same cache, the baseline sees exactly the windows the GNNs see.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdgat.data.frames import MAX_PAYLOAD_BYTES
from kdgat.data.graphs import EDGE_FEATURES, NODE_FEATURES

_COLUMN = {name: index for index, name in enumerate(NODE_FEATURES)}
_BYTE_MEAN = [_COLUMN[f"byte{i}_mean"] for i in range(MAX_PAYLOAD_BYTES)]
_BYTE_STD = [_COLUMN[f"byte{i}_std"] for i in range(MAX_PAYLOAD_BYTES)]
FIXED_FEATURES = (
    ("distinct_ids", "id_entropy", "top_id_share", "id_frequency_mean", "id_frequency_min",
     "distinct_transitions", "frame_gap_mean", "id_gap_mean", "id_gap_std", "dlc_mean")
    + tuple(f"byte{i}_mean" for i in range(MAX_PAYLOAD_BYTES))
    + tuple(f"byte{i}_std" for i in range(MAX_PAYLOAD_BYTES))
    + ("other_id_share",)
)


@dataclass(frozen=True)
class IdReference:
    """What the training windows say about CAN ids.

    Args:
        known_ids: sorted ids seen in training windows.
        frequency: share of training windows each known id occurs in, in ``(0, 1]``.
        top_ids: the ids of the histogram columns (the ones in the most training windows first).
    """

    known_ids: np.ndarray
    frequency: np.ndarray
    top_ids: np.ndarray

    @classmethod
    def from_meta(cls, meta: dict, top_ids: int) -> "IdReference":
        """From a graph cache's ``meta.json``: its vocabulary and windows per id (training only).

        Args:
            meta: the cache entry's metadata.
            top_ids: number of histogram columns (ties broken by the smaller id).
        """
        known = np.asarray(meta["vocabulary"], dtype=np.int64)
        windows = np.asarray(meta["vocabulary_windows"], dtype=np.float64)
        train_windows = max(int(meta["graphs_per_split"]["train"]), 1)
        order = np.argsort(-windows, kind="stable")[:top_ids]
        return cls(known, windows / train_windows, known[order])

    def frequency_of(self, can_id: np.ndarray) -> np.ndarray:
        """Training-window frequency of each id (0 for an id never seen in training)."""
        can_id = np.asarray(can_id, dtype=np.int64)
        if not len(self.known_ids):
            return np.zeros(len(can_id))
        position = np.minimum(np.searchsorted(self.known_ids, can_id), len(self.known_ids) - 1)
        return np.where(self.known_ids[position] == can_id, self.frequency[position], 0.0)


def feature_names(reference: IdReference) -> list[str]:
    """Column names of :func:`window_statistics`: the fixed ones, then one share per top id."""
    return list(FIXED_FEATURES) + [f"id_share_{can_id:03X}" for can_id in reference.top_ids.tolist()]


def window_statistics(x: np.ndarray, node_ptr: np.ndarray, node_can_id: np.ndarray,
                      edge_ptr: np.ndarray, edge_attr: np.ndarray, window: int,
                      reference: IdReference) -> np.ndarray:
    r"""Statistics of every window from its graph's raw (unscaled) node and edge features.

    With :math:`p_v = c_v / W` the share of the window's :math:`W` frames sent by id :math:`v`:

    * ``distinct_ids`` :math:`= |V|`; ``id_entropy`` :math:`= -\sum_v p_v \log_2 p_v` (bits);
      ``top_id_share`` :math:`= \max_v p_v`;
    * ``id_frequency_mean`` :math:`= \sum_v p_v f_v` and ``id_frequency_min`` :math:`= \min_v f_v`,
      where :math:`f_v` is the share of training windows id :math:`v` occurs in (0 if unseen);
    * ``distinct_transitions``: distinct (previous id, next id) pairs;
      ``frame_gap_mean``: mean :math:`\log(1 + \text{gap in ms})` between consecutive frames;
    * ``id_gap_mean`` / ``id_gap_std``: mean and standard deviation of the same log gap between
      consecutive frames of one id, pooled over the ids (0 when no id repeats);
    * ``dlc_mean``, ``byte{i}_mean``, ``byte{i}_std``: mean DLC, and mean and standard deviation
      over the window's frames of payload byte :math:`i` (divided by 255, zero past the DLC);
    * ``id_share_{ID}``: :math:`p_v` of each id of ``reference.top_ids`` (0 when absent), and
      ``other_id_share``: the share of frames of all other ids.

    Args:
        x: raw node features, columns :data:`kdgat.data.graphs.NODE_FEATURES`.
        node_ptr, edge_ptr: offsets of each window's nodes and edges.
        node_can_id: CAN id of each node.
        edge_attr: raw edge features, columns :data:`kdgat.data.graphs.EDGE_FEATURES`.
        window: frames per window.
        reference: the training windows' ids (:meth:`IdReference.from_meta`).

    Shapes:
        x: (N, len(NODE_FEATURES)); node_ptr, edge_ptr: (G + 1,); node_can_id: (N,);
        edge_attr: (E, len(EDGE_FEATURES)); returns (G, len(feature_names(reference))) float64.
    """
    num_windows = len(node_ptr) - 1
    nodes_per_window = np.diff(node_ptr)
    if num_windows and nodes_per_window.min() < 1:
        raise ValueError("every window graph has at least one node; the arrays are inconsistent")
    window_of_node = np.repeat(np.arange(num_windows), nodes_per_window)
    window_of_edge = np.repeat(np.arange(num_windows), np.diff(edge_ptr))
    x = np.asarray(x, dtype=np.float64)
    # Counts are exact integers (stored as count / window); rounding undoes the float32 scaling.
    count = np.rint(x[:, _COLUMN["count"]] * window)
    share = count / window

    def total(values: np.ndarray, of=window_of_node) -> np.ndarray:  # per-window sums, (G,) or (G, k)
        if values.ndim == 1:
            return np.bincount(of, weights=values, minlength=num_windows)
        return np.stack([total(column, of) for column in values.T], axis=1)

    def extreme(values: np.ndarray, ufunc) -> np.ndarray:
        return ufunc.reduceat(values, node_ptr[:-1]) if num_windows else np.zeros(0)

    frequency = reference.frequency_of(node_can_id)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = total(np.where(share > 0, -share * np.log2(share), 0.0))

    transitions = np.asarray(edge_attr[:, EDGE_FEATURES.index("transitions")], dtype=np.float64)
    gap = np.asarray(edge_attr[:, EDGE_FEATURES.index("gap_log_mean")], dtype=np.float64)
    # transitions is count / (window - 1): the weights of one window sum to 1.
    frame_gap = total(transitions * gap, window_of_edge)

    # Same-id gaps: an id sent c times has c - 1 of them, with mean m and std s (population).
    gaps = np.maximum(count - 1, 0)
    gap_total = total(gaps)
    gap_mean, gap_std = x[:, _COLUMN["iat_log_mean"]], x[:, _COLUMN["iat_log_std"]]
    with np.errstate(divide="ignore", invalid="ignore"):
        id_gap_mean = np.where(gap_total > 0, total(gaps * gap_mean) / gap_total, 0.0)
        second = np.where(gap_total > 0, total(gaps * (gap_std**2 + gap_mean**2)) / gap_total, 0.0)
    id_gap_std = np.sqrt(np.maximum(second - id_gap_mean**2, 0.0))

    byte_mean_node, byte_std_node = x[:, _BYTE_MEAN], x[:, _BYTE_STD]
    byte_mean = total(share[:, None] * byte_mean_node)
    byte_second = total(share[:, None] * (byte_std_node**2 + byte_mean_node**2))
    byte_std = np.sqrt(np.maximum(byte_second - byte_mean**2, 0.0))

    # The histogram: the share of each top id (a window holds an id at most once as a node).
    histogram = np.zeros((num_windows, len(reference.top_ids)))
    order = np.argsort(reference.top_ids, kind="stable")
    sorted_top = reference.top_ids[order]
    if len(sorted_top):
        position = np.minimum(np.searchsorted(sorted_top, node_can_id), len(sorted_top) - 1)
        hit = sorted_top[position] == node_can_id
        histogram[window_of_node[hit], order[position[hit]]] = share[hit]

    columns = [
        nodes_per_window.astype(np.float64), entropy, extreme(share, np.maximum),
        total(share * frequency), extreme(frequency, np.minimum),
        np.diff(edge_ptr).astype(np.float64), frame_gap, id_gap_mean, id_gap_std,
        total(share * x[:, _COLUMN["dlc_mean"]]),
    ]
    return np.column_stack(columns + [byte_mean, byte_std, 1.0 - histogram.sum(axis=1), histogram])


def cache_window_statistics(cache, reference: IdReference) -> np.ndarray:
    """:func:`window_statistics` of every window of a graph cache, in cache order.

    The cache holds node and edge features standardized with the training split's moments
    (``meta.json`` ``node_scaler`` / ``edge_scaler``); they are mapped back to raw values first.

    Args:
        cache: a loaded :class:`kdgat.data.cache.GraphCache`.
        reference: the training windows' ids.
    """
    meta = cache.meta

    def raw(name: str, scaler: str) -> np.ndarray:
        moments = meta[scaler]
        return (np.asarray(cache[name], dtype=np.float64) * np.asarray(moments["std"])
                + np.asarray(moments["mean"]))

    return window_statistics(raw("x", "node_scaler"), np.asarray(cache["node_ptr"]),
                             np.asarray(cache["node_can_id"]), np.asarray(cache["edge_ptr"]),
                             raw("edge_attr", "edge_scaler"), int(meta["params"]["window"]),
                             reference)
