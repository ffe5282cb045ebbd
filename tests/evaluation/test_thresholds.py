import inspect

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_curve

from kdgat.evaluation import choose_threshold, predict


def _validation(seed: int, n: int = 300):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.3
    # Overlapping classes, rounded so that many windows share a score (ties inside the data).
    scores = np.round(rng.normal(loc=labels * 1.0, scale=0.8), 2)
    return scores, labels.astype(int)


def _all_splits(scores):
    """Every distinct decision a threshold can make on these scores, as thresholds."""
    unique = np.unique(scores)
    return np.concatenate([[-np.inf], unique, [np.inf]])


@pytest.mark.parametrize("seed", range(5))
def test_f1_threshold_maximizes_validation_f1(seed):
    scores, labels = _validation(seed)
    threshold = choose_threshold(scores, labels, rule="f1")
    chosen = f1_score(labels, predict(scores, threshold))
    brute_force = max(f1_score(labels, predict(scores, t), zero_division=0) for t in _all_splits(scores))
    assert chosen == pytest.approx(brute_force, abs=1e-12)
    # The threshold is a midpoint: no validation score sits exactly on it unless neighbours collapse.
    assert threshold not in set(scores) or threshold == scores.min()


@pytest.mark.parametrize("seed", range(5))
def test_youden_threshold_maximizes_tpr_minus_fpr(seed):
    scores, labels = _validation(seed)
    threshold = choose_threshold(scores, labels, rule="youden")
    predicted = predict(scores, threshold)
    tpr = predicted[labels == 1].mean()
    fpr = predicted[labels == 0].mean()
    roc_fpr, roc_tpr, _ = roc_curve(labels, scores)
    assert tpr - fpr == pytest.approx(np.max(roc_tpr - roc_fpr), abs=1e-12)


def test_separable_validation_splits_between_the_classes():
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    labels = np.array([0, 0, 0, 1, 1, 1])
    for rule in ("f1", "youden"):
        assert choose_threshold(scores, labels, rule=rule) == pytest.approx(0.5)


def test_neighbouring_floats_are_still_separated():
    # No float lies strictly between these two; the midpoint must not land on the benign score.
    scores = np.array([1.0, np.nextafter(1.0, 2.0)])
    labels = np.array([0, 1])
    threshold = choose_threshold(scores, labels)
    assert predict(scores, threshold).tolist() == [0, 1]


def test_ties_are_broken_deterministically_towards_fewer_alarms():
    scores = np.array([0.1, 0.4, 0.6, 0.9])
    labels = np.array([1, 0, 0, 1])
    # Candidates: 0.1 (tp=2, fp=2 -> F1 2/3), 0.25 (tp=1, fp=2, fn=1 -> 0.4), 0.5 (tp=1, fp=1, fn=1
    # -> 0.5), 0.75 (tp=1, fn=1 -> 2/3). 0.1 and 0.75 tie exactly; the larger one wins.
    assert choose_threshold(scores, labels) == pytest.approx(0.75)
    rng = np.random.default_rng(0)
    for _ in range(5):
        order = rng.permutation(len(scores))
        assert choose_threshold(scores[order], labels[order]) == pytest.approx(0.75)


def test_threshold_api_takes_validation_data_only():
    parameters = list(inspect.signature(choose_threshold).parameters)
    assert parameters == ["val_scores", "val_labels", "rule", "fixed"]
    assert "validation" in choose_threshold.__doc__.lower()


@pytest.mark.parametrize("missing_class", [0, 1])
@pytest.mark.parametrize("rule", ["f1", "youden"])
def test_one_class_validation_is_an_error_that_suggests_fixed(rule, missing_class):
    scores = np.linspace(0, 1, 10)
    labels = np.full(10, 1 - missing_class)
    with pytest.raises(ValueError, match="rule='fixed'"):
        choose_threshold(scores, labels, rule=rule)
    assert choose_threshold(scores, labels, rule="fixed", fixed=0.3) == 0.3


def test_one_class_hint_names_keys_that_kdgat_train_accepts():
    """The hint names ``threshold_rule=fixed threshold_fixed=VALUE``, and every ``key=`` in it is a
    key of the composed config (the old hint named ``rule='fixed' (with fixed=...)``)."""
    import re

    from omegaconf import OmegaConf

    from kdgat.evaluation.thresholds import FIXED_THRESHOLD, one_class_options
    from tests.training.conftest import compose_config

    with pytest.raises(ValueError) as caught:
        choose_threshold(np.linspace(0, 1, 4), np.zeros(4), rule="f1")
    message = str(caught.value)
    assert "threshold_rule=fixed threshold_fixed=VALUE" in message and "(with fixed=" not in message
    cfg = compose_config("threshold_rule=fixed", "threshold_fixed=0.25")
    assert cfg.threshold_fixed == 0.25 and compose_config().threshold_fixed == FIXED_THRESHOLD
    keys = set(re.findall(r"([a-z_][\w.]*)=", one_class_options()))
    assert {"threshold_rule", "threshold_fixed", "datamodule.val_fraction"} <= keys
    for key in keys:
        assert OmegaConf.select(cfg, key, default="absent") != "absent", key


def test_bad_inputs_are_rejected_with_the_reason():
    with pytest.raises(ValueError, match="f1, youden, fixed"):
        choose_threshold([0.1, 0.9], [0, 1], rule="best")
    with pytest.raises(ValueError, match="NaN"):
        choose_threshold([0.1, np.nan], [0, 1])
    with pytest.raises(ValueError, match="0 \\(benign\\) or 1"):
        choose_threshold([0.1, 0.9], [0, 2])
    with pytest.raises(ValueError, match="one length"):
        choose_threshold([0.1, 0.9, 0.5], [0, 1])


def test_predict_counts_a_score_on_the_threshold_as_an_attack():
    assert predict([0.2, 0.5, 0.7], 0.5).tolist() == [0, 1, 1]
