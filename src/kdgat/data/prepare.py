"""Recordings → one flat graph store with train / val / test splits, vocabulary and scalers.

The rules that keep the evaluation honest live here:

- windows are cut inside one file (each file is turned into graphs on its own);
- training files with the same content are counted once (:func:`kdgat.data.layout.discover`);
- validation is the last ``val_fraction`` of every training file, separated from the training
  part by one window of unused frames, never a random sample of windows (``validation="block"``);
  or, leave-one-group-out, every training recording of one vehicle, attack type or file, whole
  (:mod:`kdgat.data.groups`);
- the CAN-id vocabulary and the feature scalers are fit on the training part only;
- test folders are only ever test splits.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Optional

import numpy as np

from kdgat.data.frames import Frames, OnError
from kdgat.data.graphs import EDGE_FEATURES, NODE_FEATURES, WindowGraphs, build_window_graphs
from kdgat.data.groups import ValidationPlan, check_validation_setting, plan_validation, vehicle_of
from kdgat.data.layout import DatasetLayout, Recording
from kdgat.data.quoting import printable
from kdgat.data.readers import read_recording
from kdgat.data.settings import check_windowing

TRAIN, VAL = 0, 1  # split codes; test scenario k has code 2 + k


@dataclass(frozen=True)
class PrepareParams:
    """How recordings become graphs (part of the cache key).

    Args:
        window: frames per window (default 100).
        stride: frames between window starts (default 100).
        val_fraction: share of each training file's frames held out at its end for validation
            (``validation="block"`` only).
        on_error: ``"fail"`` on malformed rows, or ``"skip"`` them (counted in the cache's metadata).
        validation: ``"block"`` (default), or ``"vehicle"``, ``"attack"``, ``"file"``: hold out
            whole training recordings of one group (:func:`kdgat.data.groups.plan_validation`).
        holdout: the held-out group; ``None``: the dataset's default (grouped modes only).
    """

    window: int = 100
    stride: int = 100
    val_fraction: float = 0.2
    on_error: OnError = "fail"
    validation: str = "block"
    holdout: Optional[str] = None

    def __post_init__(self):
        check_windowing(self.window, self.stride, self.val_fraction)
        check_validation_setting(self.validation, self.holdout, prefix="")
        if self.on_error not in ("fail", "skip"):
            raise ValueError(f"on_error must be 'fail' or 'skip', got {self.on_error!r}")


def _segments(frames: Frames, recording: Recording, params: PrepareParams, role: str = "block"):
    """(split code, first frame, frame count) of the parts of one file; ``role`` (a training
    file's, :meth:`ValidationPlan.role`): ``"block"`` cuts it, ``"train"`` / ``"val"`` keep it whole."""
    n = len(frames)
    if recording.split != "train":
        return [(None, 0, n)]
    if role != "block":  # a whole recording, so no gap is needed: no window crosses recordings
        return [(TRAIN if role == "train" else VAL, 0, n)]
    cut = int(n * (1.0 - params.val_fraction))
    # One window of frames between the two parts keeps validation windows from touching training.
    return [(TRAIN, 0, cut), (VAL, cut + params.window, max(n - cut - params.window, 0))]


def _graphs_of(recording: Recording, params: PrepareParams, role: str | None = None,
               vehicle: str | None = None):
    frames = read_recording(recording.path, on_error=params.on_error)
    parts = [(code, build_window_graphs(frames, params.window, params.stride, first, count))
             for code, first, count in _segments(frames, recording, params, role or "block")]
    summary = {
        "relpath": recording.relpath, "split": recording.split, "attack_type": recording.attack_type,
        "role": role, "vehicle": vehicle,
        "sha256": recording.sha256, "rows": len(frames), "attack_rows": int(frames.attack.sum()),
        "skipped_rows": frames.skipped_rows, "blank_lines": frames.blank_lines,
        "issues": [str(issue) for issue in frames.issues[:20]],
        "windows": int(sum(g.num_graphs for _, g in parts)),
    }
    return parts, summary


def _concat(pieces: list[WindowGraphs]) -> dict[str, np.ndarray]:
    node_counts = np.concatenate([np.diff(g.node_ptr) for g in pieces])
    edge_counts = np.concatenate([np.diff(g.edge_ptr) for g in pieces])
    return {
        "node_ptr": np.concatenate([[0], np.cumsum(node_counts)]).astype(np.int64),
        "edge_ptr": np.concatenate([[0], np.cumsum(edge_counts)]).astype(np.int64),
        "x": np.concatenate([g.x for g in pieces]),
        "node_can_id": np.concatenate([g.node_can_id for g in pieces]),
        "edge_index": np.concatenate([g.edge_index for g in pieces], axis=1),
        "edge_attr": np.concatenate([g.edge_attr for g in pieces]),
        "y": np.concatenate([g.y for g in pieces]),
        "attack_frames": np.concatenate([g.attack_frames for g in pieces]),
        "start_frame": np.concatenate([g.start_frame for g in pieces]),
    }


def _moments(values: np.ndarray) -> tuple[list[float], list[float]]:
    mean = values.mean(axis=0, dtype=np.float64)
    std = values.std(axis=0, dtype=np.float64)
    return mean.tolist(), np.where(std > 1e-8, std, 1.0).tolist()


def validation_plan(layout: DatasetLayout, params: PrepareParams,
                    dataset: str | None = None) -> ValidationPlan:
    """Which training recordings train and which validate under ``params`` (grouped modes need the
    dataset name: it picks the grouping table, :data:`kdgat.data.groups.DATASET_GROUPS`)."""
    if params.validation != "block" and dataset is None:
        raise ValueError(f"validation={params.validation!r} groups the recordings by their dataset's "
                         "table (kdgat.data.groups): pass the dataset name")
    return plan_validation(layout, dataset or "", params.validation, params.holdout)


def _vehicle(relpath: str, dataset: str | None) -> str | None:
    """The vehicle the name gives, for the record only (``None`` where it gives none)."""
    if dataset is None:
        return None
    try:
        return vehicle_of(relpath, dataset)
    except ValueError:
        return None


def prepare(layout: DatasetLayout, params: PrepareParams, workers: int | None = None,
            dataset: str | None = None):
    """Turn every recording of a dataset into graphs.

    Args:
        layout: the recordings (:func:`kdgat.data.layout.discover`).
        params: how (:class:`PrepareParams`).
        workers: reader threads (default: one per file, at most one per CPU).
        dataset: the dataset name; needed by a grouped validation (its grouping table).

    Returns:
        ``(arrays, meta)``: the flat arrays of all graphs (see :class:`WindowGraphs`, plus per-graph
        ``split``, ``file_index``, ``window_index``; ``x`` and ``edge_attr`` standardized with the
        training split's moments, which ``meta`` records) and a JSON-able description with the files
        (each with its ``role``: ``block``, ``train``, ``val`` or ``None`` for test files), split
        names, the validation plan (``validation``), vocabulary, scalers and counts.
    """
    plan = validation_plan(layout, params, dataset)
    params = replace(params, holdout=plan.holdout)  # the default resolved, as recorded
    recordings = list(layout.recordings)
    test_names = list(layout.tests)
    workers = workers or min(len(recordings), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda r: _graphs_of(
            r, params, plan.role(r.relpath) if r.split == "train" else None,
            _vehicle(r.relpath, dataset)), recordings))

    pieces, split, file_index, window_index = [], [], [], []
    for index, (recording, (parts, _)) in enumerate(zip(recordings, results)):
        for code, graphs in parts:
            code = code if code is not None else 2 + test_names.index(recording.split)
            pieces.append(graphs)
            split.append(np.full(graphs.num_graphs, code, dtype=np.int8))
            file_index.append(np.full(graphs.num_graphs, index, dtype=np.int32))
            window_index.append(np.arange(graphs.num_graphs, dtype=np.int32))
    arrays = _concat(pieces)
    arrays["split"] = np.concatenate(split)
    arrays["file_index"] = np.concatenate(file_index)
    arrays["window_index"] = np.concatenate(window_index)

    graph_of_node = np.repeat(np.arange(len(arrays["y"])), np.diff(arrays["node_ptr"]))
    graph_of_edge = np.repeat(np.arange(len(arrays["y"])), np.diff(arrays["edge_ptr"]))
    train_nodes = arrays["split"][graph_of_node] == TRAIN
    train_edges = arrays["split"][graph_of_edge] == TRAIN
    if not train_nodes.any():
        what = ("the training files" if plan.validation == "block" else
                f"the training recordings left by holdout {plan.holdout!r} ({', '.join(plan.train)})")
        raise ValueError(f"{printable(layout.root)}: {what} give no complete window of "
                         f"{params.window} frames; lower window= or add training data")
    x_mean, x_std = _moments(arrays["x"][train_nodes])
    e_mean, e_std = _moments(arrays["edge_attr"][train_edges])
    # Stored standardized (with the training split's moments), so batches need no arithmetic.
    arrays["x"] = ((arrays["x"] - np.asarray(x_mean, np.float32)) / np.asarray(x_std, np.float32)).astype(np.float32)
    arrays["edge_attr"] = ((arrays["edge_attr"] - np.asarray(e_mean, np.float32)) / np.asarray(e_std, np.float32)).astype(np.float32)
    vocabulary, vocabulary_windows = np.unique(arrays["node_can_id"][train_nodes], return_counts=True)
    split_names = ["train", "val"] + test_names
    meta = {
        "params": asdict(params),
        "root": str(layout.root),
        "files": [summary for _, summary in results],
        "duplicates_dropped": [list(pair) for pair in layout.duplicates],
        "splits": split_names,
        "validation": plan.describe(),
        "graphs_per_split": {name: int((arrays["split"] == code).sum())
                             for code, name in enumerate(split_names)},
        "attacks_per_split": {name: int(arrays["y"][arrays["split"] == code].sum())
                              for code, name in enumerate(split_names)},
        # ids of training windows and in how many training windows each occurs
        "vocabulary": vocabulary.tolist(), "vocabulary_windows": vocabulary_windows.tolist(),
        "node_features": list(NODE_FEATURES), "edge_features": list(EDGE_FEATURES),
        "node_scaler": {"mean": x_mean, "std": x_std},
        "edge_scaler": {"mean": e_mean, "std": e_std},
        "num_nodes": int(len(arrays["x"])), "num_edges": int(len(arrays["edge_attr"])),
    }
    return arrays, meta
