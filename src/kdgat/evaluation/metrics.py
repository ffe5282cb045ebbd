"""Binary detection metrics per test scenario and pooled, and the ``metrics.json`` document.

Every value is a plain Python ``int``, ``float``, ``str`` or ``None`` so the result goes straight
into JSON. A metric that a scenario cannot define is ``None`` with a line in ``notes``, never 0:
the earlier code reported "AUROC 0.000" for suppress scenarios that have no attack windows and read
it as a model blind spot (UPSTREAM.md, mistake 4).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kdgat.evaluation.thresholds import check_labels_scores, predict

POOLED = "pooled"


def binary_metrics(labels, scores, threshold: float) -> dict[str, Any]:
    r"""Detection metrics of one set of windows at a fixed decision threshold.

    Returns ``n``, ``positives``, ``negatives``, ``threshold``, the confusion matrix ``tn``, ``fp``,
    ``fn``, ``tp``, then ``accuracy``, ``precision``, ``recall``, ``f1``, ``balanced_accuracy``,
    ``mcc``, ``fpr`` (false-positive rate), the threshold-free ``auroc`` and ``auprc`` (average
    precision), and ``notes``.

    * A class absent from ``labels`` makes every metric that needs it ``None`` (AUROC, AUPRC,
      balanced accuracy, MCC; recall without attacks; FPR without benign windows; F1 when there
      are neither attacks nor alarms), with a note.
    * Without any predicted attack, precision is 0 (scikit-learn's ``zero_division=0``), and with
      constant predictions MCC is 0, each with a note.

    Args:
        labels: 1-D window labels, 0 = benign, 1 = attack.
        scores: 1-D window scores, higher = more likely an attack.
        threshold (float): Windows with ``score >= threshold`` are predicted attacks; fit it on
            validation data (:func:`kdgat.evaluation.choose_threshold`).
    """
    labels, scores = check_labels_scores(labels, scores)
    if len(labels) == 0:
        raise ValueError("cannot compute metrics over zero windows")
    predicted = predict(scores, threshold).astype(bool)
    tp = int(np.sum(predicted & labels))
    fp = int(np.sum(predicted & ~labels))
    fn = int(np.sum(~predicted & labels))
    tn = int(np.sum(~predicted & ~labels))
    n, positives, negatives = len(labels), tp + fn, tn + fp
    notes: list[str] = []

    precision = tp / (tp + fp) if tp + fp else 0.0
    if tp + fp == 0:
        notes.append("no predicted positives: precision set to 0")
    recall = tp / positives if positives else None
    fpr = fp / negatives if negatives else None
    f1 = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else None

    both_classes = positives > 0 and negatives > 0
    balanced_accuracy = mcc = auroc = auprc = None
    if both_classes:
        balanced_accuracy = (recall + (1.0 - fpr)) / 2
        denominator = math.sqrt(float((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
        mcc = (tp * tn - fp * fn) / denominator if denominator else 0.0
        if not denominator:
            notes.append("constant predictions: MCC set to 0")
        auroc, auprc = _ranking_metrics(labels, scores)
    for count, name in ((positives, "positive"), (negatives, "negative")):
        if count == 0:
            notes.append(f"no {name} windows: AUROC/AUPRC undefined")
            undefined = ["balanced accuracy", "MCC", "recall" if name == "positive" else "FPR"]
            if f1 is None:
                undefined.append("F1")
            notes.append(f"no {name} windows: {', '.join(undefined)} undefined")

    return {
        "n": n,
        "positives": positives,
        "negatives": negatives,
        "threshold": float(threshold),
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "tp": tp,
        "accuracy": (tp + tn) / n,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "balanced_accuracy": balanced_accuracy,
        "mcc": mcc,
        "fpr": fpr,
        "auroc": auroc,
        "auprc": auprc,
        "notes": notes,
    }


def _ranking_metrics(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    return float(roc_auc_score(labels, scores)), float(average_precision_score(labels, scores))


def selection_metrics(labels, scores) -> dict[str, float]:
    r"""The validation metrics a stage can select its epochs on (``val/auroc``, ``val/auprc``,
    ``val/f1`` in :class:`kdgat.training.base.StageModule`).

    * ``auroc``: area under the ROC curve;
    * ``auprc``: average precision, :math:`\sum_k (R_k - R_{k-1}) P_k` (scikit-learn's
      ``average_precision_score``, no interpolation);
    * ``f1``: the best :math:`F_1` over every threshold of these scores (from
      ``precision_recall_curve``), i.e. the validation F1 that ``threshold_rule=f1`` reaches.

    Each is NaN, never 0, where it is undefined: no windows, a class missing, or a score that is
    not finite (a diverged model).

    Args:
        labels: 1-D window labels, 0 = benign, 1 = attack.
        scores: 1-D window scores, higher = more likely an attack.
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    undefined = {"auroc": math.nan, "auprc": math.nan, "f1": math.nan}
    if len(labels) == 0 or labels.all() or not labels.any() or not np.isfinite(scores).all():
        return undefined
    precision, recall, _ = precision_recall_curve(labels, scores)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    return {"auroc": float(roc_auc_score(labels, scores)),
            "auprc": float(average_precision_score(labels, scores)), "f1": float(f1.max())}


def evaluate_scenarios(scores_by_scenario: dict[str, tuple], threshold: float) -> dict[str, dict]:
    """:func:`binary_metrics` per test scenario, plus ``"pooled"`` over all windows concatenated.

    Args:
        scores_by_scenario (dict): Scenario name -> ``(labels, scores)``, in the order to report.
        threshold (float): The one validation-fit threshold applied to every scenario.
    """
    if not scores_by_scenario:
        raise ValueError("evaluate_scenarios needs at least one scenario")
    if POOLED in scores_by_scenario:
        raise ValueError(f"{POOLED!r} is reserved for the pooled metrics; rename that scenario")
    result, all_labels, all_scores = {}, [], []
    for scenario, (labels, scores) in scores_by_scenario.items():
        try:
            result[scenario] = binary_metrics(labels, scores, threshold)
        except ValueError as error:
            raise ValueError(f"test scenario {scenario!r}: {error}") from error
        all_labels.append(np.asarray(labels))
        all_scores.append(np.asarray(scores, dtype=np.float64))
    result[POOLED] = binary_metrics(np.concatenate(all_labels), np.concatenate(all_scores), threshold)
    return result


def metrics_document(
    validation: dict,
    test: dict,
    threshold: float,
    threshold_rule: str,
    extra: dict | None = None,
) -> dict[str, Any]:
    """The content of a run's ``metrics.json``.

    ``{"threshold": {"value", "rule", "fit_on": "validation"}, "validation": ..., "test":
    {scenario: ..., "pooled": ...}, **extra}``. Validation and test stay in separate sections so
    validation numbers cannot be published as test numbers (UPSTREAM.md, mistake 5); every metrics
    dict that records a threshold must record this one. Numpy scalars are converted to plain Python.

    Args:
        validation (dict): Validation metrics (e.g. :func:`binary_metrics` plus losses).
        test (dict): Output of :func:`evaluate_scenarios`.
        threshold (float): The decision threshold applied to validation and test.
        threshold_rule (str): How it was chosen (``"f1"``, ``"youden"``, ``"fixed"``).
        extra (dict, optional): More top-level entries (epochs, timings, ...). (default: ``None``)
    """
    if POOLED not in test:
        raise ValueError(f"test metrics must include {POOLED!r}; build them with evaluate_scenarios")
    sections = {"validation": validation, **{f"test scenario {k!r}": v for k, v in test.items()}}
    for name, metrics in sections.items():
        if isinstance(metrics, dict) and "threshold" in metrics and metrics["threshold"] != threshold:
            raise ValueError(
                f"{name} metrics were computed at threshold {metrics['threshold']}, "
                f"but the document's threshold is {threshold}"
            )
    document = {
        "threshold": {"value": float(threshold), "rule": threshold_rule, "fit_on": "validation"},
        "validation": validation,
        "test": test,
    }
    clashes = sorted(set(extra or {}) & set(document))
    if clashes:
        raise ValueError(f"extra entries {clashes} would overwrite sections of metrics.json")
    document.update(extra or {})
    return _plain(document, "metrics")


def _plain(value: Any, where: str) -> Any:
    """Recursively convert numpy scalars and arrays to JSON-able Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value}; JSON cannot hold it")
    return value
