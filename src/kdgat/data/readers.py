"""Read any supported recording into :class:`~kdgat.data.frames.Frames`.

The can-train-and-test CSV (plain or gzip) is read by :mod:`kdgat.data.frames`. Frame logs that
users capture from their own vehicle — candump ``.log``, Vector ``.asc``, ``.blf`` — are read
through python-can. Such logs carry no attack labels: every frame is labelled 0 (benign).

python-can's readers can loop for ever on a damaged file (a ``.blf`` object whose size field is 0
is parsed again and again, at full CPU). Reading is therefore watched: a frame that python-can
hands out twice at the same place, more frames than the file can hold, or a file offset that does
not move for ``KDGAT_READ_STALL_SECONDS`` (default 20) ends the read with the file and the offset.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

from kdgat.data.frames import MAX_PAYLOAD_BYTES, FrameFormatError, Frames, OnError, read_frames
from kdgat.data.quoting import printable

CAN_LOG_SUFFIXES = (".log", ".asc", ".blf")
STALL_ENV = "KDGAT_READ_STALL_SECONDS"
DEFAULT_STALL_SECONDS = 20.0
# zlib inflates at most ~1032-fold and a stored CAN frame takes at least 48 bytes of a .blf (32 of
# object header, 16 of frame), so no honest log yields more frames than this per byte on disk.
_MAX_FRAMES_PER_BYTE = 1032 / 48


def stall_seconds() -> float:
    """How long a reader may go without moving through its file (``KDGAT_READ_STALL_SECONDS``)."""
    value = os.environ.get(STALL_ENV, "")
    if not value:
        return DEFAULT_STALL_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise ValueError(f"{STALL_ENV}={value!r} is not valid; give a number of seconds > 0 "
                         f"(default {DEFAULT_STALL_SECONDS:g})")
    return seconds


class _Stalled(BaseException):
    """Raised inside the reading thread by :class:`_StallWatch` (a BaseException, so that no
    ``except Exception`` inside python-can swallows it)."""


def _raise_in(thread_id: int, exception: type[BaseException] | None) -> None:
    """Raise ``exception`` in thread ``thread_id`` at its next bytecode; ``None`` cancels one that
    is still pending. (The only way to stop a pure-Python loop that never returns control.)"""
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exception) if exception is not None else None)


class _StallWatch:
    """Interrupts the calling thread when the offset of file descriptor ``fd`` stays put for
    ``seconds``; ``stalled_at`` is then that offset. Used as a ``with`` block around one read."""

    def __init__(self, fd: int, seconds: float):
        self._fd = os.dup(fd)  # shares the reader's offset; stays valid after the reader closes
        self._seconds, self._target = seconds, threading.get_ident()
        self._lock, self._done = threading.Lock(), threading.Event()
        self.stalled_at: int | None = None
        self._thread = threading.Thread(target=self._watch, name="kdgat-read-watch", daemon=True)

    def _offset(self) -> int:
        return os.lseek(self._fd, 0, os.SEEK_CUR)

    def _watch(self) -> None:
        last, since = self._offset(), time.monotonic()
        while not self._done.wait(min(1.0, self._seconds / 4)):
            offset = self._offset()
            if offset != last:
                last, since = offset, time.monotonic()
            elif time.monotonic() - since >= self._seconds:
                with self._lock:
                    if not self._done.is_set():
                        self.stalled_at = offset
                        _raise_in(self._target, _Stalled)
                return

    def __enter__(self) -> "_StallWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        try:
            with self._lock:
                self._done.set()
            if self.stalled_at is not None:  # fired: drop it if still pending; the caller reports it
                _raise_in(self._target, None)
        finally:  # (a pending _Stalled can only arrive before the line above)
            self._thread.join()
            os.close(self._fd)


def read_can_log(path: str | Path) -> Frames:
    """Read a python-can frame log (candump ``.log``, ``.asc``, ``.blf``); labels are all 0.

    Error frames and remote frames are left out (they carry no payload of the sender).

    Raises:
        FrameFormatError: python-can cannot read the log, makes no progress in it (the message
            names the byte offset), or finds no data frames.
    """
    import struct
    import zlib

    import can  # python-can; only needed for these formats
    from can.io.blf import BLFParseError

    path = Path(path)
    shown = printable(path)
    if not path.is_file():
        raise FileNotFoundError(f"{shown}: no such CAN log")
    size = path.stat().st_size
    max_frames = int(size * _MAX_FRAMES_PER_BYTE) + 1000
    seconds = stall_seconds()
    times, ids, dlcs, payloads = [], [], [], []
    watch = None
    try:
        with can.LogReader(str(path)) as reader:
            file = reader.file
            # BLFReader's position inside the container it parses: it grows from frame to frame,
            # so a frame handed out at the same position and file offset as the one before comes
            # from an object of size 0, which python-can would parse again for ever.
            blf = hasattr(reader, "_pos")
            last_pos = repeat_offset = None
            with _StallWatch(file.fileno(), seconds) as watch:
                for count, message in enumerate(reader):
                    if blf:
                        if reader._pos != last_pos:
                            last_pos, repeat_offset = reader._pos, None
                        elif repeat_offset == (offset := file.tell()):
                            raise FrameFormatError(str(path), (
                                f"{shown}: damaged log at byte offset {offset} of {size}: python-can "
                                "returns the same frame again and again (an object of size 0)"))
                        else:  # a container of one frame: the next frame shows whether it moved
                            repeat_offset = offset
                    if count >= max_frames:
                        raise FrameFormatError(str(path), (
                            f"{shown}: damaged log at byte offset {file.tell()} of {size}: python-can "
                            f"returned more than {max_frames} frames, more than a file of {size} "
                            "bytes can hold"))
                    if message.is_error_frame or message.is_remote_frame:
                        continue
                    data = bytes(message.data)[:MAX_PAYLOAD_BYTES]
                    times.append(message.timestamp)
                    ids.append(message.arbitration_id)
                    dlcs.append(len(data))
                    payloads.append(data.ljust(MAX_PAYLOAD_BYTES, b"\0"))
    except _Stalled:
        offset = watch.stalled_at if watch is not None else "?"
        raise FrameFormatError(str(path), (
            f"{shown}: damaged log at byte offset {offset} of {size}: python-can made no progress "
            f"for {seconds:g} s (it loops on a damaged object); re-export the log. If the file is "
            f"sound but very slow to parse, allow more time with {STALL_ENV}=SECONDS")) from None
    # BLFParseError, struct.error and zlib.error are what python-can raises on a damaged .blf
    except (ValueError, OSError, EOFError, BLFParseError, struct.error, zlib.error) as err:
        if isinstance(err, FrameFormatError):
            raise
        raise FrameFormatError(str(path), f"{shown}: python-can could not read this log "
                               f"({printable(str(err))})") from err
    if not times:
        raise FrameFormatError(str(path), f"{shown}: the log holds no data frames")
    n = len(times)
    return Frames(
        timestamp=np.asarray(times, dtype=np.float64), can_id=np.asarray(ids, dtype=np.int64),
        dlc=np.asarray(dlcs, dtype=np.uint8),
        payload=np.frombuffer(b"".join(payloads), dtype=np.uint8).reshape(n, MAX_PAYLOAD_BYTES).copy(),
        attack=np.zeros(n, dtype=np.uint8), line=np.arange(1, n + 1, dtype=np.int64), source=str(path),
    )


def read_recording(path: str | Path, on_error: OnError = "fail") -> Frames:
    """Read a recording of any supported format, chosen by its suffix."""
    name = str(path).lower()
    if name.endswith(CAN_LOG_SUFFIXES):
        return read_can_log(path)
    if name.endswith((".csv", ".csv.gz")):
        return read_frames(path, on_error=on_error)
    raise FrameFormatError(str(path), f"{printable(path)}: unsupported recording format; expected "
                           f".csv, .csv.gz or a python-can log ({', '.join(CAN_LOG_SUFFIXES)})")
