import gzip
import os

import numpy as np
import pytest

from kdgat.evaluation import COLUMNS, read_predictions, write_predictions


def _rows(n: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < 0.4).astype(np.int64)
    score = rng.random(n)
    score[:4] = [1 / 3, 1e-300, 0.1 + 0.2, np.nextafter(0.5, 1.0)]  # values that print badly
    files = np.array(["test_01_known_vehicle/DoS-1.csv", 'odd, "quoted"\nname.csv', "plain.csv"])
    return {
        "file": files[rng.integers(0, 3, n)],
        "window_index": np.arange(n, dtype=np.int64),
        "scenario": np.array(["t01", "s01_suppress"])[rng.integers(0, 2, n)],
        "label": label,
        "attack_type": np.where(label == 1, "dos", ""),
        "score": score,
        "prediction": (score >= 0.5).astype(np.int64),
    }


def _assert_same(read: dict, written: dict):
    assert list(read)[: len(COLUMNS)] == list(COLUMNS)
    for column, values in written.items():
        assert np.array_equal(read[column], values), column
    assert read["score"].dtype == np.float64 and read["label"].dtype == np.int64


@pytest.mark.parametrize("name", ["predictions.csv", "predictions.csv.gz"])
def test_predictions_round_trip_exactly(tmp_path, name):
    rows = _rows()
    path = write_predictions(tmp_path / "run_001" / name, rows)
    _assert_same(read_predictions(path), rows)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    assert [p.name for p in path.parent.iterdir()] == [name]  # no temporary file left behind


def test_float32_scores_round_trip_as_their_exact_values(tmp_path):
    rows = _rows()
    rows["score"] = rows["score"].astype(np.float32)
    read = read_predictions(write_predictions(tmp_path / "p.csv", rows))
    assert np.array_equal(read["score"], rows["score"].astype(np.float64))


def test_extra_columns_keep_their_kind(tmp_path):
    rows = _rows(20)
    rows["vgae_score"] = np.linspace(0, 1, 20)
    rows["alpha_index"] = np.arange(20) % 21
    rows["note"] = np.array(["a", "1.5x"] * 10)
    read = read_predictions(write_predictions(tmp_path / "p.csv.gz", rows))
    _assert_same(read, rows)
    assert list(read)[len(COLUMNS):] == ["vgae_score", "alpha_index", "note"]
    assert read["alpha_index"].dtype == np.int64 and read["vgae_score"].dtype == np.float64


def test_gzip_output_is_byte_identical_for_identical_rows(tmp_path):
    first = write_predictions(tmp_path / "a.csv.gz", _rows()).read_bytes()
    second = write_predictions(tmp_path / "b.csv.gz", _rows()).read_bytes()
    assert first == second
    assert gzip.decompress(first).startswith(",".join(COLUMNS).encode())


def test_zero_rows_round_trip(tmp_path):
    rows = {column: values[:0] for column, values in _rows().items()}
    read = read_predictions(write_predictions(tmp_path / "empty.csv", rows))
    assert all(len(values) == 0 for values in read.values()) and list(read) == list(COLUMNS)


def test_overwrite_replaces_the_file(tmp_path):
    path = write_predictions(tmp_path / "p.csv", _rows(50, seed=1))
    write_predictions(path, _rows(10, seed=2))
    assert len(read_predictions(path)["score"]) == 10


def test_bad_rows_are_rejected_and_leave_nothing(tmp_path):
    rows = _rows(10)
    with pytest.raises(ValueError, match="lack columns \\['score'\\]"):
        write_predictions(tmp_path / "p.csv", {k: v for k, v in rows.items() if k != "score"})
    with pytest.raises(ValueError, match="one length"):
        write_predictions(tmp_path / "p.csv", {**rows, "score": rows["score"][:5]})
    with pytest.raises(ValueError, match="'prediction' must hold only 0 and 1"):
        write_predictions(tmp_path / "p.csv", {**rows, "prediction": rows["score"]})
    assert list(tmp_path.iterdir()) == []


def test_reading_a_file_that_is_not_predictions_fails_clearly(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,loss\n1,0.5\n")
    with pytest.raises(ValueError, match="not a predictions file"):
        read_predictions(path)


def test_written_file_has_ordinary_permissions(tmp_path):
    path = write_predictions(tmp_path / "p.csv", _rows(5))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
