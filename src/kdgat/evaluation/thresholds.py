"""Decision thresholds: turning window scores into attack / benign decisions.

A score is anything where higher means "more likely an attack". A window is predicted an attack
when ``score >= threshold``; :func:`predict` is the single place that rule lives. What a fixed
threshold (``threshold_rule=fixed threshold_fixed=VALUE``) means depends on the model's score:

- GAT classifier (``classifier``): the attack-class probability, in [0, 1]; 0.5 is the argmax;
- fusion (``dqn``, ``mlp``): a fused probability-like score, in [0, 1];
- VGAE (``unsupervised``): a reconstruction error (node mean of feature MSE plus weighted id
  cross-entropy), >= 0 and unbounded, on a scale set by the data and the model: 0.5 means
  nothing in particular, so take VALUE from that model's benign validation scores;
- baselines: ``majority`` scores every window with the training attack share (0.5 predicts the
  training majority class); ``window_stats`` scores log-odds (0 is probability 0.5).

Thresholds are fit on validation windows only. The earlier KD-GAT code fit them on test scores
(UPSTREAM.md, mistake 5), so :func:`choose_threshold` takes validation arrays and nothing else.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

ThresholdRule = Literal["f1", "youden", "fixed"]
THRESHOLD_RULES: tuple[str, ...] = ("f1", "youden", "fixed")
# Rules that fit the threshold to validation labels: they need benign and attack windows there.
RULES_NEEDING_BOTH_CLASSES: tuple[str, ...] = ("f1", "youden")
# rule="fixed"'s threshold unless given another: the default of kdgat-train's threshold_fixed.
FIXED_THRESHOLD = 0.5


def fixed_rule_hint() -> str:
    """How ``kdgat-train`` selects a fixed threshold, with what VALUE means per model."""
    return (f"threshold_rule=fixed threshold_fixed=VALUE (decides attack at score >= VALUE, "
            f"default {FIXED_THRESHOLD}, fitting nothing on validation; VALUE is on the model's "
            "score scale: a probability in [0, 1] for the GAT and fusion, a reconstruction error "
            ">= 0 for the VGAE)")


def one_class_options() -> str:
    """The ways out of a validation split with one class, naming keys ``kdgat-train`` accepts."""
    return (f"{fixed_rule_hint()}; a larger datamodule.val_fraction=... (default 0.2), so that the "
            "validation block at the end of each training file reaches its attacks; or a "
            "validation that holds out whole training recordings by group (datamodule.validation="
            "vehicle|attack|file datamodule.holdout=NAME; `kdgat data check` lists the groups)")


def check_labels_scores(labels, scores, what: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    """Validate a pair of per-window arrays and return them as ``(bool labels, float64 scores)``.

    Args:
        labels: 1-D array of 0/1 (or bool) window labels, 1 = attack.
        scores: 1-D array of finite scores, same length.
        what (str, optional): Name used in error messages. (default: ``"scores"``)
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 1 or scores.ndim != 1 or len(labels) != len(scores):
        raise ValueError(
            f"{what}: labels and scores must be 1-D arrays of one length, "
            f"got shapes {labels.shape} and {scores.shape}"
        )
    if labels.dtype != bool:
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(f"{what}: labels must be 0 (benign) or 1 (attack), got {np.unique(labels)[:10]}")
        labels = labels.astype(bool)
    if not np.isfinite(scores).all():
        # NaN scores mean a diverged model; ranking them would silently give arbitrary metrics.
        raise ValueError(f"{what}: {int((~np.isfinite(scores)).sum())} scores are NaN or infinite")
    return labels, scores


def predict(scores, threshold: float) -> np.ndarray:
    """Attack decisions ``score >= threshold`` as an int64 array of 0/1."""
    return (np.asarray(scores, dtype=np.float64) >= threshold).astype(np.int64)


def _candidates(unique_scores: np.ndarray) -> np.ndarray:
    """One threshold per way of splitting the sorted unique scores.

    Candidate ``k`` predicts an attack for exactly the scores ``>= unique_scores[k]``: ``k = 0`` is
    the lowest score itself (everything an attack); ``k >= 1`` is the midpoint between neighbours,
    which leaves a margin on both sides for unseen test scores.
    """
    lower, upper = unique_scores[:-1], unique_scores[1:]
    midpoints = lower / 2 + upper / 2  # halves first: a + b could overflow
    # Neighbouring floats have no float strictly between them: the midpoint rounds onto one of
    # them, and rounding down onto ``lower`` would move that score to the wrong side.
    midpoints = np.where(midpoints > lower, midpoints, upper)
    return np.concatenate([unique_scores[:1], midpoints])


def choose_threshold(
    val_scores,
    val_labels,
    rule: ThresholdRule = "f1",
    fixed: float = FIXED_THRESHOLD,
) -> float:
    r"""Choose the decision threshold on **validation** windows.

    Only validation data may be passed here: test windows are for measuring, never for fitting
    (UPSTREAM.md, mistake 5). Candidates are the midpoints between consecutive sorted unique
    validation scores, plus the lowest score (everything predicted an attack).

    * ``"f1"`` maximizes :math:`F_1 = 2TP / (2TP + FP + FN)`.
    * ``"youden"`` maximizes Youden's :math:`J = TPR - FPR`.
    * ``"fixed"`` returns ``fixed`` unchanged (the only rule that accepts a one-class validation set).

    Ties go to the largest threshold (fewest false alarms), so the result does not depend on the
    order of the windows.

    Args:
        val_scores: 1-D validation scores, higher = more likely an attack.
        val_labels: 1-D validation labels, 0 = benign, 1 = attack.
        rule (str, optional): ``"f1"``, ``"youden"`` or ``"fixed"``. (default: ``"f1"``)
        fixed (float, optional): The threshold returned by ``rule="fixed"``, on the scale of the
            scores (see the module docstring); ``kdgat-train``'s ``threshold_fixed``.
            (default: :data:`FIXED_THRESHOLD`, 0.5)
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"threshold rule must be one of {', '.join(THRESHOLD_RULES)}, got {rule!r}")
    if rule == "fixed":
        return float(fixed)
    labels, scores = check_labels_scores(val_labels, val_scores, what="validation")
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        missing = "attack" if positives == 0 else "benign"
        raise ValueError(
            f"threshold rule {rule!r} needs validation windows of both classes, but validation has "
            f"no {missing} windows ({len(labels)} windows); rule='fixed' needs none "
            f"(choose_threshold(..., rule='fixed', fixed=VALUE)). In kdgat-train: {one_class_options()}"
        )

    unique_scores, inverse = np.unique(scores, return_inverse=True)
    # Counts of attack / benign windows at or above each unique score (candidate k's positives).
    tp = np.cumsum(np.bincount(inverse, weights=labels, minlength=len(unique_scores))[::-1])[::-1]
    predicted = np.cumsum(np.bincount(inverse, minlength=len(unique_scores))[::-1])[::-1]
    tp = tp.astype(np.int64)
    fp = predicted - tp
    if rule == "f1":
        # Equal ratios of integers divide to the same float, so ties compare exactly.
        objective = 2 * tp / (2 * tp + fp + (positives - tp))
    else:
        # J scaled by positives * negatives stays an exact integer.
        objective = tp * negatives - fp * positives
    best = np.flatnonzero(objective == objective.max())[-1]
    return float(_candidates(unique_scores)[best])
