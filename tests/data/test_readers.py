"""Frame logs through python-can: candump ``.log``, Vector ``.asc``, ``.blf`` written by python-can's
own writers, read back by :func:`kdgat.data.readers.read_recording`."""

from __future__ import annotations

import can
import numpy as np
import pytest

from conftest import TEST_01, TRAIN_01, periodic_rows
from kdgat.data.frames import FrameFormatError
from kdgat.data.layout import discover
from kdgat.data.prepare import PrepareParams, prepare
from kdgat.data.readers import read_recording

T0 = 1700000000.0
MESSAGES = [
    can.Message(timestamp=T0 + 0.000100, arbitration_id=0x081, is_extended_id=False,
                data=bytes.fromhex("7F84690000000069")),
    can.Message(timestamp=T0 + 0.001250, arbitration_id=0x4F1, is_extended_id=False, data=b""),
    can.Message(timestamp=T0 + 0.002500, arbitration_id=0x18FEF100, is_extended_id=True,
                data=bytes([1, 2, 3])),
    can.Message(timestamp=T0 + 0.003000, arbitration_id=0x123, is_extended_id=False,
                is_remote_frame=True, dlc=2),  # remote frame: no payload of the sender
    can.Message(timestamp=T0 + 0.003500, arbitration_id=0x000, is_error_frame=True),
    can.Message(timestamp=T0 + 0.010000, arbitration_id=0x7FF, is_extended_id=False,
                data=bytes([0xFF] * 8)),
]
DATA = [m for m in MESSAGES if not (m.is_remote_frame or m.is_error_frame)]


def write_log(path, writer: str):
    if writer == "Logger":
        log = can.Logger(str(path))  # the writer is chosen by the suffix
    elif writer == "ASCWriter":
        log = can.ASCWriter(str(path))
    elif writer == "CanutilsLogWriter":
        log = can.CanutilsLogWriter(str(path), channel="vcan0")
    else:
        log = can.BLFWriter(str(path))
    with log:
        for message in MESSAGES:
            log.on_message_received(message)
    return path


@pytest.mark.parametrize("name,writer", [
    ("capture.log", "CanutilsLogWriter"), ("logger.log", "Logger"), ("capture.asc", "ASCWriter"),
    ("logger.asc", "Logger"), ("capture.blf", "BLFWriter"),
])
def test_logs_written_by_python_can_read_back(tmp_path, name, writer):
    frames = read_recording(write_log(tmp_path / name, writer))
    assert len(frames) == len(DATA)
    np.testing.assert_array_equal(frames.can_id, [m.arbitration_id for m in DATA])
    np.testing.assert_array_equal(frames.dlc, [len(m.data) for m in DATA])
    np.testing.assert_array_equal(frames.payload, [list(bytes(m.data).ljust(8, b"\0")) for m in DATA])
    # .asc keeps times relative to the start of the log; compare times relative to the first frame
    np.testing.assert_allclose(frames.timestamp - frames.timestamp[0],
                               [m.timestamp - DATA[0].timestamp for m in DATA], atol=2e-6)
    np.testing.assert_array_equal(frames.attack, 0)  # logs carry no labels
    np.testing.assert_array_equal(frames.line, np.arange(1, len(DATA) + 1))
    assert frames.source == str(tmp_path / name)


def test_a_log_file_takes_part_in_a_dataset(tmp_path):
    root = tmp_path / "mine"
    (root / TRAIN_01).mkdir(parents=True)
    log = can.CanutilsLogWriter(str(root / TRAIN_01 / "drive.log"), channel="can0")
    with log:
        for k in range(60):
            log.on_message_received(can.Message(timestamp=T0 + k / 100, arbitration_id=0x100 + k % 4,
                                                is_extended_id=False, data=bytes([k])))
    (root / TEST_01).mkdir()
    (root / TEST_01 / "DoS-x.csv").write_text(
        "timestamp,arbitration_id,data_field,attack\n" + "\n".join(periodic_rows(30, [0x100])) + "\n")
    layout = discover(root)
    assert [r.relpath for r in layout.train] == [f"{TRAIN_01}/drive.log"]
    _, meta = prepare(layout, PrepareParams(window=10, stride=10))
    assert meta["files"][0]["rows"] == 60 and meta["graphs_per_split"]["train"] == 4
    assert meta["vocabulary"] == [0x100, 0x101, 0x102, 0x103]


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "capture.trc"
    path.write_text("x")
    with pytest.raises(FrameFormatError, match="unsupported recording format") as caught:
        read_recording(path)
    assert str(path) in str(caught.value)


def test_missing_log(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "gone.log")):
        read_recording(tmp_path / "gone.log")


def test_log_without_data_frames(tmp_path):
    path = tmp_path / "empty.log"
    path.write_text("")
    with pytest.raises(FrameFormatError, match="holds no data frames") as caught:
        read_recording(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("name,content", [
    ("garbage.blf", b"this is not a BLF file at all" * 10),  # wrong magic
    ("short.blf", b"LOGG"),  # header cut short
    ("broken.log", b"(1700000000.000100) vcan0 081#00\nnot a candump line\n"),
])
def test_unreadable_log_names_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(FrameFormatError, match="python-can could not read this log") as caught:
        read_recording(path)
    assert str(path) in str(caught.value)


def test_csv_goes_through_the_csv_parser(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("timestamp,arbitration_id,data_field,attack\n1.5,081,00FF,1\n")
    frames = read_recording(path)
    assert frames.can_id.tolist() == [0x81] and frames.attack.tolist() == [1]
    path.write_text("timestamp,arbitration_id,data_field,attack\n1.5,081,00FF,1\n1.6,XYZ,,0\n")
    assert read_recording(path, on_error="skip").skipped_rows == 1
