"""Checkpoints that survive a kill, load without running code, and are checked before a resume.

Lightning's default writer stages a checkpoint in ``$TMPDIR`` and moves it into place; on a
cluster whose ``$TMPDIR`` is node-local (OSC's is) that move is a copy, and a job killed during it
leaves a truncated ``last.ckpt`` that the requeued start cannot read — every trained epoch lost.
:class:`AtomicCheckpointIO` writes beside the final name, syncs and renames, and keeps the
checkpoint it replaces as ``NAME.previous``, so a resume always has a good one to fall back to.

Every checkpoint is loaded with ``torch.load(weights_only=True)``: tensors, numbers, strings and
containers only, so a planted or edited checkpoint cannot execute code when unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from kdgat.runs.rundir import TEMPORARY_PREFIX, atomic_file

PREVIOUS_SUFFIX = ".previous"
RESUME_KEYS = ("state_dict", "epoch", "global_step", "loops", "optimizer_states")


class UnreadableCheckpoint(RuntimeError):
    """A checkpoint file that is truncated, damaged or holds more than plain data."""


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """``torch.load(path, weights_only=True)``, with an error that names the file."""
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise UnreadableCheckpoint(
            f"{path} cannot be loaded as plain data ({type(err).__name__}: {str(err)[:300]}); it is "
            "truncated, damaged, or holds pickled objects kdgat never writes") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UnreadableCheckpoint(f"{path} is not a Lightning checkpoint (no state_dict)")
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O: atomic writes in the checkpoint folder, weights-only loads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file():  # keep the one being replaced: a hard link, so `path` stays valid throughout
            previous = path.with_name(path.name + PREVIOUS_SUFFIX)
            staged = path.with_name(f"{TEMPORARY_PREFIX}{previous.name}.{os.getpid()}")
            staged.unlink(missing_ok=True)
            os.link(path, staged)
            os.replace(staged, previous)
        with atomic_file(path, "wb") as out:
            torch.save(checkpoint, out)

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        if weights_only is False:
            raise ValueError("kdgat loads checkpoints with weights_only=True only")
        return load_checkpoint(path, map_location=map_location)

    def remove_checkpoint(self, path) -> None:
        for stale in (Path(path), Path(str(path) + PREVIOUS_SUFFIX)):
            stale.unlink(missing_ok=True)


def remove_partial_writes(folder: Path) -> list[Path]:
    """Delete temporary files a killed writer left in ``folder`` (``.NAME.XXXX``); returns them."""
    folder = Path(folder)
    leftovers = [p for p in folder.glob(f"{TEMPORARY_PREFIX}*.ckpt*") if p.is_file()] if folder.is_dir() else []
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def resume_checkpoint(folder: Path) -> tuple[Optional[Path], list[str]]:
    """The checkpoint a resumed run should continue from, and notes on any that were refused.

    Tried in order: ``last.ckpt``, the one it replaced (``last.ckpt.previous``), ``best.ckpt``
    (all three hold the full training state). Each is loaded as plain data and must hold the
    training state; an unreadable one is renamed ``NAME.unreadable`` (kept for inspection, never
    tried again) and the next is used. ``None`` when no good checkpoint exists: training starts over.
    """
    folder = Path(folder)
    notes = [f"removed partial write {p.name}" for p in remove_partial_writes(folder)]
    for name in ("last.ckpt", "last.ckpt" + PREVIOUS_SUFFIX, "best.ckpt"):
        path = folder / name
        if not path.is_file():
            continue
        try:
            checkpoint = load_checkpoint(path)
            missing = [key for key in RESUME_KEYS if key not in checkpoint]
            if missing:
                raise UnreadableCheckpoint(f"{path} lacks the training state {missing}")
        except UnreadableCheckpoint as err:
            aside = path.with_name(path.name + ".unreadable")
            os.replace(path, aside)
            notes.append(f"{err}; moved to {aside.name}")
            continue
        if name != "last.ckpt":
            notes.append(f"resuming from {name} (epoch {checkpoint['epoch']}) instead of last.ckpt")
        return path, notes
    return None, notes
