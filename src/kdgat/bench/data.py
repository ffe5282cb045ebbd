"""Data-layer benchmark: kdgat's vectorized path next to straightforward baselines, same input, one run.

1. Preprocessing, raw ``.csv.gz`` → graph cache, in a fresh process (its peak memory is reported),
   against :func:`baseline_window_graphs`: pandas reading plus a Python loop per window, the way
   such code is usually first written.
2. Reloading the cache in a fresh process (time and peak memory).
3. Batch assembly from the cache against PyG's ``Batch.from_data_list`` on the same graphs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kdgat.data.graphs import _log_ms


def baseline_window_graphs(path: str | Path, window: int = 100, stride: int = 100,
                           first_frame: int = 0, num_frames: int | None = None) -> list[dict]:
    """The reference: read with pandas, then build each window's graph in a Python loop.

    Computes exactly the features of :func:`kdgat.data.graphs.build_window_graphs` (tests hold the
    two equal), so the benchmark compares equal work.
    """
    import pandas as pd

    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    can_id = np.array([int(value, 16) for value in table["arbitration_id"]], dtype=np.int64)
    payloads = [bytes.fromhex(value) for value in table["data_field"]]
    dlc = np.array([len(p) for p in payloads], dtype=np.float64)
    payload = np.array([list(p.ljust(8, b"\0")) for p in payloads], dtype=np.float64).reshape(-1, 8)
    timestamp = table["timestamp"].astype(float).to_numpy()
    attack = table["attack"].astype(int).to_numpy()
    end = len(table) if num_frames is None else first_frame + num_frames
    graphs = []
    for start in range(first_frame, end - window + 1, stride):
        ids, times = can_id[start:start + window], timestamp[start:start + window]
        nodes = sorted(set(ids.tolist()))
        index = {node: i for i, node in enumerate(nodes)}
        x = []
        for node in nodes:
            positions = np.flatnonzero(ids == node)
            rows = payload[start + positions]
            gaps = _log_ms(np.diff(times[positions]))
            x.append([len(positions) / window, dlc[start + positions].mean(),
                      *(rows.mean(axis=0) / 255), *(rows.std(axis=0) / 255),
                      gaps.mean() if len(gaps) else 0.0, gaps.std() if len(gaps) else 0.0,
                      positions[0] / (window - 1), positions[-1] / (window - 1)])
        edges: dict[tuple[int, int], list[float]] = {}
        for p in range(window - 1):
            pair = (index[ids[p]], index[ids[p + 1]])
            count_gap = edges.setdefault(pair, [0, 0.0])
            count_gap[0] += 1
            count_gap[1] += float(_log_ms(np.array(times[p + 1] - times[p])))
        pairs = sorted(edges)
        graphs.append({
            "x": np.array(x, dtype=np.float32), "can_id": np.array(nodes, dtype=np.int64),
            "edge_index": np.array(pairs, dtype=np.int64).reshape(-1, 2),
            "edge_attr": np.array([[edges[p][0] / (window - 1), edges[p][1] / edges[p][0]]
                                   for p in pairs], dtype=np.float32).reshape(-1, 2),
            "y": int(attack[start:start + window].max()),
        })
    return graphs


def _child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line, here with its own peak memory."""
    code += ("\nimport resource as _r\n"
             "print(json.dumps({**_result, 'peak_rss_mb': _r.getrusage(_r.RUSAGE_SELF).ru_maxrss / 1024}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"benchmark step failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


_PREPARE = """
import json, time
t0 = time.perf_counter()
from kdgat.data.cache import load_or_build
from kdgat.data.layout import discover
from kdgat.data.prepare import PrepareParams
t1 = time.perf_counter()
cache = load_or_build(discover({folder!r}), PrepareParams(), {cache!r}, {dataset!r})
t2 = time.perf_counter()
rows = sum(f["rows"] for f in cache.meta["files"])
_result = {{"seconds": t2 - t1, "import_seconds": t1 - t0, "frames": rows,
           "graphs": int(len(cache["y"])), "folder": str(cache.folder)}}
"""

_RELOAD = """
import json, time
from kdgat.data.cache import load_or_build
from kdgat.data.layout import discover
from kdgat.data.prepare import PrepareParams
from kdgat.data.batch import GraphStore
t1 = time.perf_counter()
store = GraphStore(load_or_build(discover({folder!r}), PrepareParams(), {cache!r}, {dataset!r}))
t2 = time.perf_counter()
_result = {{"seconds": t2 - t1, "graphs": len(store)}}
"""


def _bench_baseline(recordings, rows: dict[str, int], files: int | None) -> dict:
    chosen = recordings if files is None else recordings[:files]
    started = time.perf_counter()
    graphs = sum(len(baseline_window_graphs(recording.path)) for recording in chosen)
    frames = sum(rows[recording.relpath] for recording in chosen)
    return {"seconds": time.perf_counter() - started, "frames": frames, "graphs": graphs,
            "files": len(chosen)}


def _bench_batches(cache_folder: str, batch_size: int, batches: int = 200) -> dict:
    from torch_geometric.data import Batch, Data

    from kdgat.data.batch import GraphStore
    from kdgat.data.cache import GraphCache

    store = GraphStore(GraphCache(Path(cache_folder)))
    rng = np.random.default_rng(0)
    train = store.graphs_of("train")
    chosen = [rng.choice(train, size=batch_size, replace=False) for _ in range(batches)]
    # Steady state, as in every epoch after the first: one untimed pass faults the memory-mapped
    # pages in (the cold first pass is reported separately), and PyG gets the same warm-up.
    started = time.perf_counter()
    for graphs in chosen:
        store.assemble(graphs)
    cold = time.perf_counter() - started
    started = time.perf_counter()
    for graphs in chosen:
        store.assemble(graphs)
    ours = time.perf_counter() - started

    singles = {int(g): store.assemble(np.array([g])) for g in np.unique(np.concatenate(chosen))}
    data = {g: Data(x=b.x, node_id=b.node_id, edge_index=b.edge_index, edge_attr=b.edge_attr,
                    y=b.y) for g, b in singles.items()}
    for graphs in chosen[:20]:
        Batch.from_data_list([data[int(g)] for g in graphs])
    started = time.perf_counter()
    for graphs in chosen:
        Batch.from_data_list([data[int(g)] for g in graphs])
    pyg = time.perf_counter() - started
    total = batches * batch_size
    return {"ours_graphs_per_s": total / ours, "cold_graphs_per_s": total / cold,
            "pyg_graphs_per_s": total / pyg, "ratio": pyg / ours}


def main(args) -> int:
    from kdgat.data.layout import discover

    root = Path(args.data_root or os.environ.get("KDGAT_DATA_ROOT") or "../shared/data/can-train-and-test")
    folder = root / args.dataset
    if not folder.is_dir():
        raise FileNotFoundError(f"benchmark data {folder} not found; pass --data-root DIR (the folder "
                                f"holding {args.dataset}/) or set KDGAT_DATA_ROOT")
    layout = discover(folder)
    with tempfile.TemporaryDirectory(prefix="kdgat-bench-") as cache:
        prepared = _child(_PREPARE.format(folder=str(folder), cache=cache, dataset=args.dataset))
        reloaded = _child(_RELOAD.format(folder=str(folder), cache=cache, dataset=args.dataset))
        rows = {f["relpath"]: f["rows"] for f in json.loads(
            (Path(prepared["folder"]) / "meta.json").read_text())["files"]}
        baseline = _bench_baseline(list(layout.recordings), rows, args.baseline_files)
        batches = _bench_batches(prepared["folder"], args.batch_size)

    ours_rate = prepared["frames"] / prepared["seconds"]
    base_rate = baseline["frames"] / baseline["seconds"]
    print(f"kdgat bench data — {folder} ({len(layout.recordings)} distinct files, "
          f"{prepared['frames']:,} frames, {prepared['graphs']:,} graphs; cpus={os.cpu_count()})")
    print(f"preprocess raw→cache : {prepared['seconds']:7.2f} s  {ours_rate:12,.0f} frames/s  "
          f"peak RSS {prepared['peak_rss_mb']:,.0f} MB  (+{prepared['import_seconds']:.1f} s imports)")
    print(f"baseline per-window  : {baseline['seconds']:7.2f} s  {base_rate:12,.0f} frames/s  "
          f"on {baseline['files']} file(s), {baseline['frames']:,} frames")
    print(f"  speed-up           : {ours_rate / base_rate:7.1f}x")
    print(f"cached reload        : {reloaded['seconds']:7.3f} s  peak RSS {reloaded['peak_rss_mb']:,.0f} MB "
          f"(fresh process, includes hashing the inputs)")
    print(f"batch assembly (B={args.batch_size}): {batches['ours_graphs_per_s']:12,.0f} graphs/s "
          f"(first, cold pass {batches['cold_graphs_per_s']:,.0f}); PyG Batch.from_data_list "
          f"{batches['pyg_graphs_per_s']:12,.0f} graphs/s on the same graphs; ratio {batches['ratio']:.1f}x")
    return 0
