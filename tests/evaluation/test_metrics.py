import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn import metrics as skm

from kdgat.evaluation import binary_metrics, evaluate_scenarios, metrics_document, results_table


def _windows(seed: int, n: int = 400, attack_share: float = 0.3):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < attack_share).astype(int)
    scores = rng.normal(loc=labels * 1.2, scale=1.0)
    return labels, scores


def _is_plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_plain(v) for v in value)
    return value is None or type(value) in (int, float, str, bool)


@pytest.mark.parametrize("seed", range(4))
def test_metrics_match_scikit_learn(seed):
    labels, scores = _windows(seed)
    threshold = 0.6
    predicted = (scores >= threshold).astype(int)
    result = binary_metrics(labels, scores, threshold)

    tn, fp, fn, tp = skm.confusion_matrix(labels, predicted).ravel()
    assert (result["tn"], result["fp"], result["fn"], result["tp"]) == (tn, fp, fn, tp)
    counts = (result["n"], result["positives"], result["negatives"])
    assert counts == (len(labels), labels.sum(), len(labels) - labels.sum())
    expected = {
        "accuracy": skm.accuracy_score(labels, predicted),
        "precision": skm.precision_score(labels, predicted),
        "recall": skm.recall_score(labels, predicted),
        "f1": skm.f1_score(labels, predicted),
        "balanced_accuracy": skm.balanced_accuracy_score(labels, predicted),
        "mcc": skm.matthews_corrcoef(labels, predicted),
        "auroc": skm.roc_auc_score(labels, scores),
        "auprc": skm.average_precision_score(labels, scores),
        "fpr": fp / (fp + tn),
    }
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, abs=1e-12), name
    assert result["threshold"] == threshold
    assert result["notes"] == []
    assert _is_plain(result)
    json.dumps(result, allow_nan=False)


def test_scenario_without_attacks_reports_auroc_undefined_not_zero():
    rng = np.random.default_rng(0)
    labels = np.zeros(50, dtype=int)  # a suppress scenario: no attack windows at all
    scores = rng.random(50)
    result = binary_metrics(labels, scores, 0.9)
    assert result["auroc"] is None and result["auprc"] is None
    assert "no positive windows: AUROC/AUPRC undefined" in result["notes"]
    assert result["recall"] is None and result["balanced_accuracy"] is None and result["mcc"] is None
    # False alarms are well defined without attacks: they are what this scenario measures.
    assert result["fp"] == int((scores >= 0.9).sum()) > 0
    assert result["fpr"] == pytest.approx(result["fp"] / 50)
    assert result["f1"] == 0.0  # every alarm is false: F1 is 0 by its definition, not by convention
    json.dumps(result, allow_nan=False)


def test_scenario_without_attacks_or_alarms_has_undefined_f1():
    result = binary_metrics(np.zeros(5, dtype=int), np.full(5, 0.1), 0.5)
    assert result["f1"] is None and result["accuracy"] == 1.0 and result["fpr"] == 0.0
    assert "no predicted positives: precision set to 0" in result["notes"]
    assert any("F1" in note for note in result["notes"])


def test_scenario_without_benign_windows_has_undefined_fpr():
    result = binary_metrics(np.ones(5, dtype=int), np.linspace(0, 1, 5), 0.5)
    assert result["fpr"] is None and result["auroc"] is None
    assert "no negative windows: AUROC/AUPRC undefined" in result["notes"]
    assert result["recall"] == pytest.approx(3 / 5)


def test_no_alarms_gives_zero_precision_and_mcc_with_notes():
    labels, scores = _windows(1)
    result = binary_metrics(labels, scores, threshold=1e9)
    assert result["precision"] == 0.0 and result["recall"] == 0.0 and result["mcc"] == 0.0
    assert "no predicted positives: precision set to 0" in result["notes"]
    assert "constant predictions: MCC set to 0" in result["notes"]
    assert result["auroc"] == pytest.approx(skm.roc_auc_score(labels, scores))


def test_pooled_equals_metrics_of_the_concatenation():
    scenarios = {f"t0{i}": _windows(i, n=100 + 50 * i) for i in range(1, 4)}
    scenarios["s01_suppress"] = (np.zeros(60, dtype=int), np.random.default_rng(9).normal(size=60))
    result = evaluate_scenarios(scenarios, threshold=0.5)
    assert list(result) == ["t01", "t02", "t03", "s01_suppress", "pooled"]
    labels = np.concatenate([labels for labels, _ in scenarios.values()])
    scores = np.concatenate([scores for _, scores in scenarios.values()])
    assert result["pooled"] == binary_metrics(labels, scores, 0.5)
    assert result["t02"] == binary_metrics(*scenarios["t02"], 0.5)
    assert result["s01_suppress"]["auroc"] is None


def test_evaluate_scenarios_names_the_bad_scenario():
    with pytest.raises(ValueError, match="'t02'.*zero windows"):
        evaluate_scenarios({"t01": _windows(0), "t02": ([], [])}, 0.5)
    with pytest.raises(ValueError, match="reserved"):
        evaluate_scenarios({"pooled": _windows(0)}, 0.5)


def test_metrics_document_keeps_validation_and_test_apart():
    threshold = 0.4
    validation = {**binary_metrics(*_windows(7), threshold), "loss": np.float32(0.25)}
    test = evaluate_scenarios({"t01": _windows(8), "s01": (np.zeros(4, int), np.arange(4.0))}, threshold)
    document = metrics_document(validation, test, threshold, "f1", extra={"epochs": np.int64(12)})
    assert document["threshold"] == {"value": 0.4, "rule": "f1", "fit_on": "validation"}
    assert set(document) == {"threshold", "validation", "test", "epochs"}
    assert document["test"]["s01"]["auroc"] is None
    assert type(document["epochs"]) is int and type(document["validation"]["loss"]) is float
    assert _is_plain(document)
    assert json.loads(json.dumps(document, allow_nan=False)) == document


def test_metrics_document_rejects_inconsistent_inputs():
    validation = binary_metrics(*_windows(7), 0.4)
    test = evaluate_scenarios({"t01": _windows(8)}, 0.4)
    with pytest.raises(ValueError, match="threshold 0.4"):
        metrics_document(validation, test, 0.6, "f1")  # metrics computed at another threshold
    with pytest.raises(ValueError, match="pooled"):
        metrics_document(validation, {"t01": test["t01"]}, 0.4, "f1")
    with pytest.raises(ValueError, match="overwrite"):
        metrics_document(validation, test, 0.4, "f1", extra={"test": {}})
    with pytest.raises(ValueError, match="JSON"):
        metrics_document({"loss": float("nan")}, test, 0.4, "f1")


def test_importing_evaluation_stays_cheap():
    code = "import sys, kdgat.evaluation; print(sorted({'matplotlib', 'sklearn', 'torch'} & set(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


# results_table (kdgat.evaluation.report) -------------------------------------------------------


def test_results_table_aligns_and_shows_undefined_as_na():
    rows = [
        {"scenario": "t01", "f1": 0.99912, "auroc": 0.5, "n": 1200},
        {"scenario": "s01_suppress", "f1": 0.0, "auroc": None, "n": 35},
    ]
    table = results_table(rows, ["scenario", "n", "f1", "auroc"])
    assert table.splitlines() == [
        "scenario         n      f1   auroc",
        "------------  ----  ------  ------",
        "t01           1200  0.9991  0.5000",
        "s01_suppress    35  0.0000     n/a",
    ]


def test_results_table_reads_dotted_paths_into_metrics_documents():
    document = {"name": "run_001", "test": {"pooled": {"f1": 0.75, "auroc": None}}}
    columns = ["name", "test.pooled.f1", "test.pooled.auroc"]
    table = results_table([document, {"name": "run_002"}], columns, digits=2)
    lines = table.splitlines()
    assert lines[0].split() == ["name", "test.pooled.f1", "test.pooled.auroc"]
    assert lines[2].split() == ["run_001", "0.75", "n/a"]
    assert lines[3].split() == ["run_002", "n/a", "n/a"]
    # Numbers are right-aligned under their header.
    assert lines[0].index(".f1") + len(".f1") == lines[2].index("0.75") + len("0.75")


# selection_metrics (val/auroc, val/auprc, val/f1) -----------------------------------------------
# Eight windows by hand, highest score first: attacks at ranks 1, 3, 4 and 7.
SELECTION_SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.45, 0.3, 0.2, 0.05])
SELECTION_LABELS = np.array([1, 0, 1, 1, 0, 0, 1, 0])


def test_selection_metrics_match_scikit_learn_on_hand_made_scores():
    from kdgat.evaluation.metrics import selection_metrics

    got = selection_metrics(SELECTION_LABELS, SELECTION_SCORES)
    assert got["auroc"] == pytest.approx(skm.roc_auc_score(SELECTION_LABELS, SELECTION_SCORES))
    assert got["auprc"] == pytest.approx(skm.average_precision_score(SELECTION_LABELS, SELECTION_SCORES))
    # By hand. AUROC: benign windows ranked below each attack, 4 + 3 + 3 + 1 of 4 x 4 pairs.
    # AP: the precision at each attack's rank, averaged: (1/1 + 2/3 + 3/4 + 4/7) / 4.
    # Best F1: flagging the top 4 (score >= 0.6) gives TP 3, FP 1, FN 1: 6 / 8, beating the top
    # 1 (2/5), top 3 (4/7), top 7 (8/11) and everything (8/12).
    assert got["auroc"] == pytest.approx(11 / 16)
    assert got["auprc"] == pytest.approx((1 + 2 / 3 + 3 / 4 + 4 / 7) / 4)
    assert got["f1"] == pytest.approx(0.75)
    brute = max(skm.f1_score(SELECTION_LABELS, SELECTION_SCORES >= t) for t in SELECTION_SCORES)
    assert got["f1"] == pytest.approx(brute)


def test_selection_f1_is_what_threshold_rule_f1_reaches():
    from kdgat.evaluation.metrics import selection_metrics
    from kdgat.evaluation.thresholds import choose_threshold

    for seed in range(4):
        labels, scores = _windows(seed)
        threshold = choose_threshold(scores, labels, rule="f1")
        reached = binary_metrics(labels, scores, threshold)["f1"]
        assert selection_metrics(labels, scores)["f1"] == pytest.approx(reached, abs=1e-12)


@pytest.mark.parametrize("labels, scores", [
    ([0, 0, 0], [0.1, 0.5, 0.9]), ([1, 1], [0.2, 0.4]), ([], []), ([0, 1], [0.3, np.nan])])
def test_selection_metrics_are_nan_never_zero_where_undefined(labels, scores):
    from kdgat.evaluation.metrics import selection_metrics

    got = selection_metrics(labels, scores)
    assert set(got) == {"auroc", "auprc", "f1"} and all(np.isnan(v) for v in got.values())
