"""The baselines: window statistics against a direct computation, the fitted state against
scikit-learn, and the baseline stage through ``kdgat-train``, ``kdgat reproduce``, ``kdgat status``
and ``kdgat report`` on the synthetic dataset.
"""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from kdgat.data.graphs import build_window_graphs
from kdgat.data.layout import discover
from kdgat.data.prepare import PrepareParams, prepare
from kdgat.data.readers import read_recording
from kdgat.data.window_stats import (FIXED_FEATURES, IdReference, cache_window_statistics,
                                     feature_names, window_statistics)
from kdgat.grid import GridPoint, InvalidGridPoint, all_points, dependencies
from kdgat.models.baselines import from_state, window_stats
from kdgat.training.baseline import load_baseline

from .conftest import check_run_dir, only_run

MAJORITY = "automotive/synthetic/baseline/majority/teacher/no/all_samples"
WINDOW_STATS = "automotive/synthetic/baseline/window_stats/teacher/no/all_samples"
QUIET = ["tracking.enabled=false"]


# --------------------------------------------------------------------------- window statistics
def direct_statistics(frames, window: int, reference: IdReference) -> np.ndarray:
    """The statistics of each complete window, frame by frame in plain Python (the definition)."""
    known = dict(zip(reference.known_ids.tolist(), reference.frequency.tolist()))
    rows = []
    for start in range(0, len(frames.can_id) - window + 1, window):
        ids = frames.can_id[start:start + window].tolist()
        times = frames.timestamp[start:start + window].tolist()
        payload = frames.payload[start:start + window].astype(float) / 255.0
        counts = Counter(ids)
        shares = {i: c / window for i, c in counts.items()}
        log_gap = [math.log1p(max(b - a, 0.0) * 1e3) for a, b in zip(times, times[1:])]
        id_gaps = []
        for can_id in counts:
            own = [t for i, t in zip(ids, times) if i == can_id]
            id_gaps += [math.log1p(max(b - a, 0.0) * 1e3) for a, b in zip(own, own[1:])]
        top = {i: shares.get(i, 0.0) for i in reference.top_ids.tolist()}
        rows.append([
            len(counts), -sum(p * math.log2(p) for p in shares.values()), max(shares.values()),
            sum(p * known.get(i, 0.0) for i, p in shares.items()), min(known.get(i, 0.0) for i in counts),
            len(set(zip(ids, ids[1:]))), sum(log_gap) / len(log_gap),
            float(np.mean(id_gaps)) if id_gaps else 0.0, float(np.std(id_gaps)) if id_gaps else 0.0,
            float(np.mean(frames.dlc[start:start + window])),
            *payload.mean(axis=0), *payload.std(axis=0), 1.0 - sum(top.values()), *top.values(),
        ])
    return np.array(rows)


def test_window_statistics_of_a_hand_written_recording(make_dataset):
    """Two windows of 6 frames, written out by hand: ids, gaps (ms), payloads and DLCs."""
    t = 100.0
    lines, frames = [], [  # (gap before the frame in ms, id, payload)
        (0, 0x100, b"\x01\x02"), (1, 0x200, b""), (2, 0x100, b"\x03\x04"), (1, 0x300, b"\xff" * 8),
        (4, 0x100, b"\x01\x02"), (1, 0x200, b""),
        (10, 0x100, b"\x01\x02"), (1, 0x100, b"\x01\x02"), (1, 0x100, b"\x01\x02"), (1, 0x7FF, b"\x80"),
        (1, 0x100, b"\x01\x02"), (3, 0x100, b"\x00\x00"),
    ]
    for gap, can_id, payload in frames:
        t += gap / 1e3
        lines.append(f"{t:.6f},{can_id:03X},{payload.hex().upper()},0")
    folder = make_dataset({"train_01_attack_free/a.csv": lines})
    recording = read_recording(folder / "train_01_attack_free" / "a.csv")
    graphs = build_window_graphs(recording, window=6, stride=6)
    # Training saw 0x100 in every window, 0x200 in half, 0x300 in a quarter; 0x7FF never.
    reference = IdReference(np.array([0x100, 0x200, 0x300]), np.array([1.0, 0.5, 0.25]),
                            top_ids=np.array([0x100, 0x300]))
    got = window_statistics(graphs.x, graphs.node_ptr, graphs.node_can_id, graphs.edge_ptr,
                            graphs.edge_attr, 6, reference)
    expected = direct_statistics(recording, 6, reference)
    assert got.shape == (2, len(FIXED_FEATURES) + 2) == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    named = dict(zip(feature_names(reference), got[1]))
    # Window 2: 0x100 five times, 0x7FF once (unseen in training).
    assert named["distinct_ids"] == 2 and named["id_share_100"] == pytest.approx(5 / 6)
    assert named["id_share_300"] == 0 and named["other_id_share"] == pytest.approx(1 / 6)
    assert named["id_frequency_min"] == 0 and named["id_frequency_mean"] == pytest.approx(5 / 6)
    assert named["id_entropy"] == pytest.approx(-(5 / 6) * math.log2(5 / 6) - (1 / 6) * math.log2(1 / 6))
    assert named["distinct_transitions"] == 3  # 100→100, 100→7FF, 7FF→100


def test_cache_statistics_undo_the_scaling_and_follow_each_file(shared_tiny_dataset):
    """From the standardized cache arrays, per file, equal to the direct computation."""
    arrays, meta = prepare(discover(shared_tiny_dataset), PrepareParams(window=10, stride=10))

    class Cache:  # what GraphCache offers: meta and arrays by name
        def __init__(self):
            self.meta = meta

        def __getitem__(self, name):
            return arrays[name]

    reference = IdReference.from_meta(meta, top_ids=3)
    assert reference.frequency.max() <= 1.0 and len(reference.top_ids) == 3
    statistics = cache_window_statistics(Cache(), reference)
    assert statistics.shape == (len(arrays["y"]), len(feature_names(reference)))
    for index, summary in enumerate(meta["files"]):
        if summary["split"].startswith("train"):
            continue  # training files are cut into blocks; test files are windowed whole
        recording = read_recording(shared_tiny_dataset / summary["relpath"])
        rows = arrays["file_index"] == index
        np.testing.assert_allclose(statistics[rows], direct_statistics(recording, 10, reference),
                                   rtol=1e-5, atol=1e-5, err_msg=summary["relpath"])


# --------------------------------------------------------------------------- fitted state
@pytest.fixture(scope="module")
def toy_data():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(600, 7))
    labels = (features[:, 0] + features[:, 1] ** 2 + rng.normal(size=600) > 1).astype(int)
    features[::37, 2] = np.nan  # missing values follow the learned side of each split
    return features, labels


def test_saved_trees_score_as_scikit_learn(toy_data):
    from sklearn.ensemble import HistGradientBoostingClassifier

    features, labels = toy_data
    model = window_stats(max_iter=30, max_leaf_nodes=8).fit(features, labels, seed=4)
    reference = HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=8, early_stopping=False,
                                               random_state=4).fit(features, labels)
    np.testing.assert_array_equal(model.decision(features), reference.decision_function(features))
    description, arrays = model.state()
    assert all(a.dtype != object for a in arrays.values())
    json.dumps(description)  # plain JSON
    np.testing.assert_array_equal(from_state(description, arrays).decision(features),
                                  reference.decision_function(features))


def test_saved_logistic_regression_scores_as_scikit_learn(toy_data):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels = np.nan_to_num(toy_data[0]), toy_data[1]
    model = window_stats(classifier="logistic_regression", C=0.5).fit(features, labels)
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=200)).fit(features, labels)
    np.testing.assert_allclose(model.decision(features), reference.decision_function(features), atol=1e-6)
    assert model.parameters == features.shape[1] + 1
    restored = from_state(*model.state())
    np.testing.assert_array_equal(restored.decision(features), model.decision(features))


@pytest.mark.parametrize("settings, message", [
    (dict(classifier="svm"), "network.classifier='svm' is not valid; choose one of: gradient_boosting, "
                             "logistic_regression"),
    (dict(max_iter=0), "network.max_iter=0 must be >= 1"),
    (dict(learning_rate=0.0), "network.learning_rate=0.0 must be positive"),
])
def test_bad_baseline_settings_name_the_key(settings, message):
    with pytest.raises(ValueError, match=message):
        window_stats(**settings)


def test_one_class_training_windows_are_refused(toy_data):
    with pytest.raises(ValueError, match="only benign windows; a classifier needs both classes"):
        window_stats().fit(toy_data[0], np.zeros(len(toy_data[1])))


# --------------------------------------------------------------------------- the grid
@pytest.mark.parametrize("changes, message", [
    (dict(size="student"), "valid size values here: teacher"),
    (dict(distillation="standard"), "valid distillation values here: no"),
    (dict(mode="normals_only"), "valid mode values here: all_samples"),
    (dict(learning_type="classifier"), "valid learning_type values here: baseline"),
])
def test_invalid_baseline_points_list_the_valid_values(changes, message):
    point = GridPoint("automotive", "hcrl_sa", "baseline", "window_stats", "teacher", "no", "all_samples")
    assert point.validate() is point and dependencies(point) == []
    with pytest.raises(InvalidGridPoint, match=f"{message}$"):
        point.with_(**changes).validate()
    assert {p.model for p in all_points({"learning_type": "baseline"})} == {"majority", "window_stats"}


def test_the_baseline_targets_are_allowed_by_the_store():
    from kdgat.runs.allowlist import allowed_targets

    assert {"kdgat.models.baselines.majority", "kdgat.models.baselines.window_stats",
            "kdgat.training.baseline.BaselineModule"} <= allowed_targets()


def test_pipeline_starts_with_the_baselines():
    from kdgat.runs.inventory import pipeline_points

    points = pipeline_points("hcrl_sa", sizes=("student",))
    assert [p.model for p in points[:2]] == ["majority", "window_stats"]
    assert [p.learning_type for p in points].count("baseline") == 2


# --------------------------------------------------------------------------- kdgat-train
@pytest.fixture(scope="module")
def baseline_runs(kdgat_train, tmp_path_factory) -> Path:
    """A runs root with one completed run of each baseline, made by ``kdgat-train``."""
    root = tmp_path_factory.mktemp("baseline-runs")
    kdgat_train(root, "experiment=automotive_synthetic_baseline_majority_teacher_no_all_samples", *QUIET)
    kdgat_train(root, "model=window_stats", "size=teacher", "seed=5", *QUIET)
    return root


def kdgat(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "kdgat"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "kdgat.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=300)


def scenario_counts(datamodule) -> dict[str, tuple[int, int]]:
    store = datamodule.store
    counts = {}
    for name in datamodule.test_names + ["val"]:
        labels = store.y[store.graphs_of(name)]
        counts[name] = (int(labels.sum()), int((labels == 0).sum()))
    return counts


def test_majority_baseline_matches_the_hand_computation(baseline_runs, datamodule):
    run = only_run(baseline_runs, MAJORITY)
    metrics = check_run_dir(run, datamodule, checkpoints=False)
    train = datamodule.train_graphs()
    prior = float(datamodule.store.y[train].mean())
    assert prior < 0.5  # the synthetic training windows are mostly benign: predict benign
    state = json.loads((run / "checkpoints" / "baseline.json").read_text())
    assert state["prior"] == pytest.approx(prior) and state["inputs"]["fit_windows"] == len(train)
    assert metrics["threshold"] == {"value": 0.5, "rule": "fixed", "fit_on": "validation"}
    pooled_p = pooled_n = 0
    for scenario, (positives, negatives) in scenario_counts(datamodule).items():
        values = metrics["validation"] if scenario == "val" else metrics["test"][scenario]
        # Every window predicted benign: tp = fp = 0, fn = positives, tn = negatives.
        assert (values["tp"], values["fp"], values["fn"], values["tn"]) == (0, 0, positives, negatives)
        assert values["accuracy"] == pytest.approx(negatives / (positives + negatives))
        assert values["f1"] == (0.0 if positives else None)
        assert values["auroc"] == (0.5 if positives and negatives else None)
        if scenario != "val":
            pooled_p, pooled_n = pooled_p + positives, pooled_n + negatives
    assert metrics["test"]["pooled"]["accuracy"] == pytest.approx(pooled_n / (pooled_p + pooled_n))
    assert metrics["test"]["pooled"]["f1"] == 0.0 and metrics["summary"]["parameters"] == 1
    with gzip.open(run / "predictions.csv.gz", "rt") as handle:
        rows = [line.split(",") for line in handle.read().splitlines()[1:]]
    np.testing.assert_allclose([float(r[5]) for r in rows], prior, rtol=1e-6)
    assert {r[6] for r in rows} == {"0"}


def test_window_stats_baseline_writes_the_run_directory(baseline_runs, datamodule):
    run = only_run(baseline_runs, WINDOW_STATS)
    metrics = check_run_dir(run, datamodule, checkpoints=False)
    assert (run / "plots" / "roc_pr.png").is_file() and not (run / "checkpoints" / "best.ckpt").exists()
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["network"]["_target_"] == "kdgat.models.baselines.window_stats"
    assert config["module"]["_target_"] == "kdgat.training.baseline.BaselineModule"
    assert config["threshold_rule"] == "f1" and config["seed"] == 5
    assert metrics["threshold"]["rule"] == "f1"
    assert metrics["summary"]["test_pooled_f1"] == metrics["test"]["pooled"]["f1"]
    names = metrics["baseline"]["features"]
    reference = IdReference.from_meta(datamodule.store.meta, 32)
    assert names == feature_names(reference) and len(reference.top_ids) == min(32, len(reference.known_ids))
    # The trees learned something on windows a majority vote gets wrong.
    assert metrics["test"]["test_01_known_vehicle_known_attack"]["auroc"] > 0.9

    # The saved state (no pickle) scores the windows exactly as the predictions say.
    model, inputs = load_baseline(run / "checkpoints")
    assert inputs["features"] == names
    assert inputs["top_ids"] == reference.top_ids.tolist()
    scores = model.decision(cache_window_statistics(datamodule.store.cache, reference))
    graphs = datamodule.store.graphs_of("test_01_known_vehicle_known_attack")
    with gzip.open(run / "predictions.csv.gz", "rt") as handle:
        rows = handle.read().splitlines()[1:len(graphs) + 1]
    np.testing.assert_allclose([float(r.split(",")[5]) for r in rows], scores[graphs], rtol=1e-6)


def test_reproduce_of_a_baseline_run(baseline_runs):
    run = only_run(baseline_runs, WINDOW_STATS)
    result = kdgat("reproduce", str(run))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "REPRODUCED" in result.stdout and "largest metric difference 0 " in result.stdout
    assert (run.parent / "run_002" / "checkpoints" / "baseline.npz").is_file()
    (run.parent / "run_002").rename(run.parent / ".reproduced")  # the other tests see one run


def test_status_and_report_show_the_baselines(baseline_runs):
    status = kdgat("status", "--runs-root", str(baseline_runs))
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].startswith("== automotive/synthetic: pipeline 2/14 done")
    # Pipeline points, first: they need nothing.
    assert lines[3].split()[:2] == ["baseline_majority_teacher_no_all_samples", "done"]
    assert lines[4].split()[:2] == ["baseline_window_stats_teacher_no_all_samples", "done"]
    report = kdgat("report", "--runs-root", str(baseline_runs))
    assert report.returncode == 0, report.stderr
    rows = [line.split() for line in report.stdout.splitlines() if line.startswith("baseline_")]
    assert {row[0] for row in rows} == {"baseline_majority_teacher_no_all_samples",
                                        "baseline_window_stats_teacher_no_all_samples"}
    assert any("fixed" in row for row in rows)  # the majority's threshold rule


def test_a_wrong_size_is_refused_before_any_run(kdgat_train, tmp_path):
    result = kdgat_train(tmp_path, "model=window_stats", *QUIET, check=False)  # size defaults to student
    assert result.returncode == 2
    assert "size='student' is not valid for model=window_stats" in result.stderr
    assert "valid size values here: teacher" in result.stderr
    assert not list(tmp_path.rglob("run_*"))
