"""Batches of window graphs assembled by slicing the cache's flat arrays.

No Python object is built per graph: the node and edge ranges of the requested graphs are turned
into one gather index each, the rows are copied out of the memory-mapped arrays, and the edge
indices are shifted by the batch's node offsets. The result is the tensors a PyG model takes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from kdgat.data.cache import GraphCache

from kdgat.data.settings import DEFAULT_OOV_BUCKETS  # noqa: E402  (re-exported)
_OOV_HASH = 0x9E3779B1  # Knuth's multiplicative hash spreads consecutive ids over the buckets


@dataclass
class GraphBatch:
    """A batch of window graphs (see docs/contracts.md for every field)."""

    x: torch.Tensor
    node_id: torch.Tensor
    edge_index: torch.Tensor
    edge_attr: torch.Tensor
    batch: torch.Tensor
    y: torch.Tensor
    graph_index: torch.Tensor
    num_graphs: int

    def to(self, device) -> "GraphBatch":
        return GraphBatch(**{k: v.to(device) if isinstance(v, torch.Tensor) else v
                             for k, v in self.__dict__.items()})


def ranges(ptr: np.ndarray, graphs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ``arange(ptr[g], ptr[g+1])`` over ``graphs``, and each range's length."""
    start, length = ptr[graphs], ptr[graphs + 1] - ptr[graphs]
    offsets = np.cumsum(length) - length
    return np.arange(length.sum()) - np.repeat(offsets - start, length), length


class CANIdVocabulary:
    """Maps CAN ids to embedding indices: known ids first, unseen ids hashed into OOV buckets.

    Args:
        known_ids: sorted CAN ids seen in training.
        oov_buckets: number of buckets for unseen ids (default 8).
    """

    def __init__(self, known_ids: np.ndarray, oov_buckets: int = DEFAULT_OOV_BUCKETS):
        if oov_buckets < 1:
            raise ValueError(f"oov_buckets must be >= 1, got {oov_buckets}")
        self.known_ids = np.asarray(known_ids, dtype=np.int64)
        self.oov_buckets = oov_buckets

    @property
    def size(self) -> int:
        """Embedding rows needed: known ids plus OOV buckets."""
        return len(self.known_ids) + self.oov_buckets

    def __call__(self, can_id: np.ndarray) -> np.ndarray:
        can_id = np.asarray(can_id, dtype=np.int64)
        position = np.searchsorted(self.known_ids, can_id)
        if len(self.known_ids):
            known = self.known_ids[np.minimum(position, len(self.known_ids) - 1)] == can_id
        else:
            known = np.zeros(len(can_id), dtype=bool)
        return np.where(known, position, self.bucket(can_id))

    def bucket(self, can_id: np.ndarray) -> np.ndarray:
        """The OOV bucket index each id would get if it were unseen."""
        return len(self.known_ids) + ((np.asarray(can_id, dtype=np.int64) * _OOV_HASH) >> 16) % self.oov_buckets


class GraphStore:
    """The graphs of a prepared dataset, ready to be sliced into :class:`GraphBatch` es.

    Args:
        cache: the loaded cache entry.
        vocabulary: the CAN-id mapping (default: every id of the training windows).
    """

    def __init__(self, cache: GraphCache, vocabulary: CANIdVocabulary | None = None):
        self.cache = cache
        self.meta = cache.meta
        self.vocabulary = vocabulary or CANIdVocabulary(np.asarray(self.meta["vocabulary"]))
        self.node_ptr = np.asarray(cache["node_ptr"])
        self.edge_ptr = np.asarray(cache["edge_ptr"])
        self.y = np.asarray(cache["y"])
        self.split = np.asarray(cache["split"])
        # One pass at load instead of a search per batch; int64 is what the embedding takes.
        self.node_id = self.vocabulary(cache["node_can_id"])

    def __len__(self) -> int:
        return len(self.y)

    @property
    def num_node_features(self) -> int:
        return len(self.meta["node_features"])

    @property
    def num_edge_features(self) -> int:
        return len(self.meta["edge_features"])

    def _node_ids(self, nodes, node_count, unseen) -> np.ndarray:
        node_id = np.take(self.node_id, nodes)
        if unseen is not None and unseen.any():
            hidden = np.repeat(unseen, node_count)
            node_id[hidden] = self.vocabulary.bucket(np.take(self.cache["node_can_id"], nodes[hidden]))
        return node_id

    def graphs_of(self, split: str) -> np.ndarray:
        """Indices of the graphs of one split (``train``, ``val`` or a test folder's name)."""
        names = self.meta["splits"]
        if split not in names:
            raise KeyError(f"no split {split!r} in this dataset; splits: {names}")
        return np.flatnonzero(self.split == names.index(split))

    def assemble(self, graphs: np.ndarray, unseen: np.ndarray | None = None) -> GraphBatch:
        """Slice the graphs ``graphs`` (indices into the store) into one batch.

        Args:
            graphs: graph indices into the store.
            unseen: optional boolean per graph: give all its nodes the OOV bucket of their id, as
                if the window came from a vehicle never seen in training (augmentation).
        """
        graphs = np.asarray(graphs, dtype=np.int64)
        nodes, node_count = ranges(self.node_ptr, graphs)
        edges, edge_count = ranges(self.edge_ptr, graphs)
        # np.take is several times faster than fancy indexing for row gathers of 2-D arrays.
        edge_index = np.take(self.cache["edge_index"], edges, axis=1).astype(np.int64)
        edge_index += np.repeat(np.cumsum(node_count) - node_count, edge_count)
        return GraphBatch(
            x=torch.from_numpy(np.take(self.cache["x"], nodes, axis=0)),
            node_id=torch.from_numpy(self._node_ids(nodes, node_count, unseen)),
            edge_index=torch.from_numpy(edge_index),
            edge_attr=torch.from_numpy(np.take(self.cache["edge_attr"], edges, axis=0)),
            batch=torch.from_numpy(np.repeat(np.arange(len(graphs)), node_count)),
            y=torch.from_numpy(np.take(self.y, graphs).astype(np.int64)),
            graph_index=torch.from_numpy(graphs),
            num_graphs=len(graphs),
        )
