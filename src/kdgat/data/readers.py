"""Read any supported recording into :class:`~kdgat.data.frames.Frames`.

The can-train-and-test CSV (plain or gzip) is read by :mod:`kdgat.data.frames`. Frame logs that
users capture from their own vehicle — candump ``.log``, Vector ``.asc``, ``.blf`` — are read
through python-can. Such logs carry no attack labels: every frame is labelled 0 (benign).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdgat.data.frames import MAX_PAYLOAD_BYTES, FrameFormatError, Frames, OnError, read_frames

CAN_LOG_SUFFIXES = (".log", ".asc", ".blf")


def read_can_log(path: str | Path) -> Frames:
    """Read a python-can frame log (candump ``.log``, ``.asc``, ``.blf``); labels are all 0.

    Error frames and remote frames are left out (they carry no payload of the sender).
    """
    import struct
    import zlib

    import can  # python-can; only needed for these formats
    from can.io.blf import BLFParseError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such CAN log")
    times, ids, dlcs, payloads = [], [], [], []
    try:
        with can.LogReader(str(path)) as reader:
            for message in reader:
                if message.is_error_frame or message.is_remote_frame:
                    continue
                data = bytes(message.data)[:MAX_PAYLOAD_BYTES]
                times.append(message.timestamp)
                ids.append(message.arbitration_id)
                dlcs.append(len(data))
                payloads.append(data.ljust(MAX_PAYLOAD_BYTES, b"\0"))
    # BLFParseError, struct.error and zlib.error are what python-can raises on a damaged .blf
    except (ValueError, OSError, EOFError, BLFParseError, struct.error, zlib.error) as err:
        raise FrameFormatError(str(path), f"{path}: python-can could not read this log ({err})") from err
    if not times:
        raise FrameFormatError(str(path), f"{path}: the log holds no data frames")
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
    raise FrameFormatError(str(path), f"{path}: unsupported recording format; expected .csv, "
                           f".csv.gz or a python-can log ({', '.join(CAN_LOG_SUFFIXES)})")
