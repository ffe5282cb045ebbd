"""The prepared-graph cache: flat ``.npy`` arrays keyed by the inputs' hashes and the parameters.

``{cache_dir}/{dataset}/{key}/`` holds one ``.npy`` file per array and ``meta.json``. The key is a
hash of every input file's relative path, split and SHA-256 plus the preparation parameters and the
format version, so a changed input or parameter gives a new key and a rebuild, never a stale reuse.
A grouped validation (``validation=vehicle|attack|file``) adds the mode, the held-out group and the
recordings it holds out; block validation adds nothing, so block keys are those of before.
A build writes into a private temporary folder and renames it into place; concurrent builders of
the same key wait on a file lock and the later ones load what the first one wrote. Loads are
memory-mapped: nothing is read until a batch slices it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np

from kdgat.data.datasets import check_dataset_name
from kdgat.data.layout import DatasetLayout
from kdgat.data.prepare import PrepareParams, prepare, validation_plan
from kdgat.data.quoting import printable

FORMAT_VERSION = 3  # 3: byte spreads summed in float64 (entries of 2 hold float32-cancelled ones)
META = "meta.json"


def cache_key(layout: DatasetLayout, params: PrepareParams, dataset: str | None = None) -> str:
    """The entry's key; ``dataset`` is needed by a grouped validation (it picks the grouping)."""
    description = {
        "format": FORMAT_VERSION,
        "params": {k: v for k, v in asdict(params).items() if k not in ("validation", "holdout")},
        "files": [(r.relpath, r.split, r.sha256) for r in layout.recordings],
    }
    if params.validation != "block":  # the plan itself: a changed grouping table is a new key
        plan = validation_plan(layout, params, dataset)
        description["validation"] = {"mode": plan.validation, "holdout": plan.holdout,
                                     "val": list(plan.val)}
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:24]


@contextmanager
def file_lock(path: Path):
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class GraphCache:
    """A loaded cache entry: memory-mapped arrays plus their metadata."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        with open(self.folder / META) as handle:
            self.meta = json.load(handle)
        for name in self.meta["arrays"]:  # names become file names: never let one leave the folder
            if not (isinstance(name, str) and name.isidentifier()):
                raise ValueError(f"{printable(self.folder / META)} lists the array {name!r}, which is "
                                 f"not a plain name; the cache entry is damaged: delete "
                                 f"{printable(self.folder)} and it is rebuilt")
        # Plain ndarray views of the maps: still backed by the files (nothing is read yet), without
        # np.memmap's per-slice Python overhead, which dominated batch assembly.
        self.arrays = {name: np.load(self.folder / f"{name}.npy", mmap_mode="r").view(np.ndarray)
                       for name in self.meta["arrays"]}

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]


def _write(folder: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        for name, array in arrays.items():
            np.save(temporary / f"{name}.npy", np.ascontiguousarray(array))
        with open(temporary / META, "w") as handle:
            json.dump({**meta, "arrays": sorted(arrays)}, handle, indent=1)
        os.rename(temporary, folder)  # atomic: readers see all of it or none
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def load_or_build(layout: DatasetLayout, params: PrepareParams, cache_dir: str | Path,
                  dataset: str, rebuild: bool = False) -> GraphCache:
    """Load the cache entry of ``layout`` and ``params``, building it first if needed.

    Args:
        layout: the dataset's recordings (their hashes are part of the key).
        params: preparation parameters (part of the key; a grouped validation also puts the
            recordings it holds out into the key).
        cache_dir: the cache root.
        dataset: the dataset name (a folder level of the cache, for people browsing it; a plain
            folder name, see :func:`~kdgat.data.datasets.check_dataset_name`).
        rebuild: build again even if a complete entry exists.
    """
    check_dataset_name(dataset)
    key = cache_key(layout, params, dataset)
    folder = Path(cache_dir) / dataset / key
    with file_lock(Path(cache_dir) / dataset / f"{key}.lock"):
        if rebuild and folder.exists():
            shutil.rmtree(folder)
        if not (folder / META).is_file():
            if folder.exists():  # a hand-damaged entry without its meta.json: build it anew
                shutil.rmtree(folder)
            arrays, meta = prepare(layout, params, dataset=dataset)
            _write(folder, arrays, {**meta, "key": key, "dataset": dataset})
    return GraphCache(folder)
