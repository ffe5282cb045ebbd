import numpy as np
import pytest

from kdgat.evaluation import plot_confusion_matrix, plot_learning_curves, plot_roc_pr
from kdgat.evaluation.plots import split_drawable

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path, expected):
    assert path == expected
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5_000  # axes, text and lines, not an empty canvas
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def _scenarios():
    rng = np.random.default_rng(0)
    labels = (rng.random(300) < 0.3).astype(int)
    return {
        "t01": (labels, rng.normal(labels * 2.0, 1.0)),
        "t02": (labels[:100], rng.normal(labels[:100] * 0.5, 1.0)),
        "s01_suppress": (np.zeros(50, dtype=int), rng.random(50)),
    }


def test_learning_curves_png(tmp_path):
    history = {
        "train_loss": [1.0, 0.6, 0.4, 0.35],
        "val_loss": [1.1, 0.7, None, 0.5],  # a gap: validation skipped one epoch
        "val_f1": [0.5, 0.7, 0.8, 0.82],
    }
    _assert_png(plot_learning_curves(history, tmp_path / "plots" / "learning_curves.png"),
                tmp_path / "plots" / "learning_curves.png")


def test_learning_curves_need_data(tmp_path):
    with pytest.raises(ValueError, match="non-empty"):
        plot_learning_curves({"val_loss": []}, tmp_path / "empty.png")


def test_roc_pr_png_with_a_one_class_scenario(tmp_path):
    _assert_png(plot_roc_pr(_scenarios(), tmp_path / "roc_pr.png"), tmp_path / "roc_pr.png")


def test_one_class_scenarios_are_skipped_not_drawn():
    drawable, skipped = split_drawable({**_scenarios(), "all_attack": (np.ones(5, int), np.arange(5.0))})
    assert list(drawable) == ["t01", "t02"]
    assert skipped == ["s01_suppress", "all_attack"]


def test_roc_pr_png_when_nothing_is_drawable(tmp_path):
    scenarios = {"s01_suppress": (np.zeros(10, dtype=int), np.linspace(0, 1, 10))}
    _assert_png(plot_roc_pr(scenarios, tmp_path / "roc_pr.png"), tmp_path / "roc_pr.png")


def test_confusion_matrix_png(tmp_path):
    path = tmp_path / "confusion_matrix.png"
    _assert_png(plot_confusion_matrix(950, 12, 30, 208, path, title="t01 (pooled)"), path)


def test_confusion_matrix_png_with_an_empty_class(tmp_path):
    path = tmp_path / "confusion_matrix.png"
    _assert_png(plot_confusion_matrix(40, 10, 0, 0, path, title="s01_suppress"), path)
