"""Where datasets, caches and runs live, and the datasets kdgat knows by name.

``data_root`` holds datasets in the can-train-and-test layout (override, else ``KDGAT_DATA_ROOT``);
``cache_dir`` holds prepared graphs (override, else ``KDGAT_CACHE_DIR``, else ``.cache/`` under the
runs root); the runs root is ``runs_root`` (override, else ``KDGAT_RUNS_ROOT``, else
``experimentruns``). The ``synthetic`` dataset is generated on first use when ``data_root`` does
not hold one, so nothing needs downloading to start.

A dataset name is one folder name, never a path: ``dataset=../..`` would read outside
``data_root`` and write outside ``cache_dir`` (:func:`check_dataset_name`).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from kdgat.data.quoting import printable

MODALITIES = {
    "automotive": ("synthetic", "hcrl_ch", "hcrl_sa", "set_01", "set_02", "set_03", "set_04"),
}
DATASETS = tuple(name for names in MODALITIES.values() for name in names)
# One folder name: no separator, no "." or "..", no leading dot or dash, nothing a shell or a
# terminal treats specially.
_FOLDER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")


def check_folder_name(value: object, setting: str) -> str:
    """Return ``value`` if it is one plain folder name, else raise a ValueError naming ``setting``.

    A plain name is letters, digits and ``_ . + -``, starting with a letter, digit or ``_``, at
    most 128 characters: no separator, no ``.`` or ``..``, no NUL, nothing a terminal interprets.
    """
    if isinstance(value, str) and _FOLDER_NAME.fullmatch(value) and value not in (".", ".."):
        return value
    raise ValueError(f"{setting}={value!r} is not valid: it must be one folder name made of "
                     "letters, digits and _ . + - (starting with a letter, digit or _), never a path")


def check_dataset_name(name: object) -> str:
    """Return ``name`` if it can name a dataset, else raise; call it wherever a setting is checked.

    Dataset names become folders of ``data_root`` and of ``cache_dir``, so anything that could
    leave those folders (``../..``, ``/etc``, ``a/b``, ``.``) is refused (:func:`check_folder_name`).

    Raises:
        ValueError: the message names the setting and says how to use data stored elsewhere.
    """
    try:
        return check_folder_name(name, "dataset")
    except ValueError as err:
        raise ValueError(f"{err} (e.g. dataset=hcrl_sa). To use data stored elsewhere, set "
                         "data_root=DIR to the folder that holds the dataset's folder (and "
                         "cache_dir=DIR for its prepared graphs)") from None


def runs_root(override: str | os.PathLike | None = None) -> Path:
    return Path(override or os.environ.get("KDGAT_RUNS_ROOT") or "experimentruns")


def cache_root(override: str | os.PathLike | None = None,
               runs: str | os.PathLike | None = None) -> Path:
    return Path(override or os.environ.get("KDGAT_CACHE_DIR") or runs_root(runs) / ".cache")


def data_root(override: str | os.PathLike | None = None) -> Path | None:
    value = override or os.environ.get("KDGAT_DATA_ROOT")
    return Path(value) if value else None


def synthetic_folder(cache_dir: Path, scale: str, seed: int) -> Path:
    check_folder_name(scale, "synth_scale")
    if not isinstance(seed, int):
        raise ValueError(f"synth_seed={seed!r} must be an integer")
    return Path(cache_dir) / "synthetic-data" / f"{scale}-seed{seed}"


def dataset_folder(name: str, data_dir: str | os.PathLike | None = None,
                   cache_dir: str | os.PathLike | None = None, synth_scale: str = "small",
                   synth_seed: int = 0) -> Path:
    """The folder of dataset ``name``, generating the synthetic one on first use.

    Raises:
        ValueError: ``name`` is not a plain folder name (:func:`check_dataset_name`).
        FileNotFoundError: the dataset is not under ``data_root`` (or ``data_root`` is not set);
            the message says where it looked and how to point kdgat at the data.
    """
    check_dataset_name(name)
    root = data_root(data_dir)
    if root is not None and (root / name).is_dir():
        return root / name
    if name == "synthetic":
        return ensure_synthetic(cache_root(cache_dir), synth_scale, synth_seed)
    if root is None:
        raise FileNotFoundError(
            f"dataset {name!r} needs its data: set data_root=DIR (or KDGAT_DATA_ROOT) to the folder "
            f"that holds {name}/ (the can-train-and-test bundle); only 'synthetic' works without it")
    if not root.is_dir():
        raise FileNotFoundError(f"data_root {printable(root)} does not exist; set data_root=DIR or "
                                "KDGAT_DATA_ROOT to the folder holding the datasets")
    present = sorted(p.name for p in root.iterdir() if p.is_dir())
    raise FileNotFoundError(f"dataset {name!r} not found in data_root {printable(root)}; it holds: "
                            f"{present or 'nothing'}. Known datasets: {list(DATASETS)}")


def ensure_synthetic(cache_dir: Path, scale: str = "small", seed: int = 0) -> Path:
    """Generate the synthetic dataset once; concurrent callers wait for the first one."""
    from kdgat.data.cache import file_lock  # deferred: keeps this module import-light
    from kdgat.data.synth import SCALES, synthesize

    if scale not in SCALES:  # checked before any folder or lock file is made
        raise ValueError(f"synth_scale={scale!r} is not valid; choose one of: {', '.join(SCALES)}")
    folder = synthetic_folder(cache_dir, scale, seed)
    with file_lock(folder.parent / f"{folder.name}.lock"):
        if not (folder / ".complete").is_file():
            staging = folder.parent / f".{folder.name}.staging-{os.getpid()}"
            synthesize(staging, seed=seed, scale=scale)
            (staging / ".complete").touch()
            if folder.exists():
                shutil.rmtree(folder)
            os.rename(staging, folder)
    return folder
