"""Baseline detectors without a graph network: the majority class, and a classifier on window
statistics.

They answer a reviewer's first two questions about any detection number: what does predicting the
majority class score on these windows, and what does a standard classifier on simple per-window
statistics (:mod:`kdgat.data.window_stats`) score on the same windows? Both fit in one pass, on
the training windows only, and score a window with a number that is higher for "more likely an
attack", so the decision threshold, metrics, predictions and plots are the ones of every other
run (:mod:`kdgat.training.baseline`).

A fitted baseline is plain numbers: :meth:`state` gives JSON scalars and NumPy arrays (the
logistic regression's scaler, coefficients and intercept; the boosted trees' split features,
thresholds, children and leaf values) and :func:`from_state` rebuilds a scorer from them, with
NumPy alone. Nothing is pickled, so a shared run directory cannot run code when it is loaded.
scikit-learn is imported only inside ``fit``.
"""

from __future__ import annotations

import numpy as np

CLASSIFIERS = ("gradient_boosting", "logistic_regression")


def _labels(labels) -> np.ndarray:
    labels = np.asarray(labels).astype(np.int64)
    if len(labels) == 0:
        raise ValueError("a baseline needs at least one training window to fit")
    return labels


class MajorityBaseline:
    """Every window gets the share of attack windows in training (scikit-learn's
    ``DummyClassifier(strategy="prior")``), so all scores are equal: at the threshold 0.5 (the
    ``fixed`` rule its config selects) every window is predicted the training majority class.
    """

    kind = "majority"
    uses_window_statistics = False

    def __init__(self, prior: float | None = None):
        self.prior = prior

    def fit(self, features, labels, seed: int = 0) -> "MajorityBaseline":
        self.prior = float(_labels(labels).mean())
        return self

    def decision(self, features) -> np.ndarray:
        """The score of each window: the training attack share. Shapes: features (G, F) → (G,)."""
        return np.full(len(features), self.prior, dtype=np.float64)

    @property
    def parameters(self) -> int:
        return 1

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {"kind": self.kind, "prior": self.prior}, {}


class WindowStatsBaseline:
    """A scikit-learn classifier on per-window statistics; scores are its log-odds of an attack.

    Args:
        classifier: ``"gradient_boosting"`` (``HistGradientBoostingClassifier``, no early stopping)
            or ``"logistic_regression"`` (L2, on features standardized with the training moments).
            (default: ``"gradient_boosting"``)
        top_ids: CAN ids in the id histogram: those found in the most training windows.
            (default: ``32``)
        max_iter: boosting rounds, or the solver's iteration limit. (default: ``200``)
        learning_rate: shrinkage of each boosting round. (default: ``0.1``)
        max_leaf_nodes: leaves per tree. (default: ``31``)
        min_samples_leaf: training windows per leaf at least. (default: ``20``)
        l2_regularization: L2 penalty on leaf values. (default: ``0.0``)
        C: inverse L2 strength of the logistic regression. (default: ``1.0``)
    """

    kind = "window_stats"
    uses_window_statistics = True

    def __init__(self, classifier: str = "gradient_boosting", top_ids: int = 32, max_iter: int = 200,
                 learning_rate: float = 0.1, max_leaf_nodes: int = 31, min_samples_leaf: int = 20,
                 l2_regularization: float = 0.0, C: float = 1.0):
        if classifier not in CLASSIFIERS:
            raise ValueError(f"network.classifier={classifier!r} is not valid; choose one of: "
                             f"{', '.join(CLASSIFIERS)}")
        for name, value, least in (("top_ids", top_ids, 0), ("max_iter", max_iter, 1),
                                   ("max_leaf_nodes", max_leaf_nodes, 2),
                                   ("min_samples_leaf", min_samples_leaf, 1)):
            if value < least:
                raise ValueError(f"network.{name}={value} must be >= {least}")
        for name, value in (("learning_rate", learning_rate), ("C", C)):
            if not value > 0:
                raise ValueError(f"network.{name}={value} must be positive")
        if l2_regularization < 0:
            raise ValueError(f"network.l2_regularization={l2_regularization} must be >= 0")
        self.settings = dict(classifier=classifier, top_ids=top_ids, max_iter=max_iter,
                             learning_rate=learning_rate, max_leaf_nodes=max_leaf_nodes,
                             min_samples_leaf=min_samples_leaf, l2_regularization=l2_regularization,
                             C=C)
        self.classifier, self.top_ids = classifier, top_ids
        self.arrays: dict[str, np.ndarray] = {}
        self.iterations: int | None = None

    def fit(self, features, labels, seed: int = 0) -> "WindowStatsBaseline":
        """Fit on training windows. Shapes: features (G, F), labels (G,) of 0/1."""
        features, labels = np.asarray(features, dtype=np.float64), _labels(labels)
        if len(np.unique(labels)) < 2:
            raise ValueError(f"the training windows hold only {'attack' if labels[0] else 'benign'} "
                             "windows; a classifier needs both classes")
        fit = _fit_boosting if self.classifier == "gradient_boosting" else _fit_logistic
        self.arrays, self.iterations = fit(features, labels, seed, self.settings)
        return self

    def decision(self, features) -> np.ndarray:
        """Log-odds of an attack per window. Shapes: features (G, F) → (G,) float64."""
        features = np.asarray(features, dtype=np.float64)
        if not self.arrays:
            raise ValueError("the baseline is not fitted")
        if self.classifier == "logistic_regression":
            a = self.arrays
            return ((features - a["mean"]) / a["scale"]) @ a["coef"] + a["intercept"][0]
        return _tree_decision(features, self.arrays)

    @property
    def parameters(self) -> int:
        """Fitted numbers the score depends on: coefficients and intercept, or one threshold per
        split and one value per leaf plus the initial log-odds."""
        if self.classifier == "logistic_regression":
            return int(self.arrays["coef"].size + 1)
        return int(len(self.arrays["value"]) + 1)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {"kind": self.kind, **self.settings, "iterations": self.iterations}, dict(self.arrays)


def majority() -> MajorityBaseline:
    """The majority-class baseline (:class:`MajorityBaseline`)."""
    return MajorityBaseline()


def window_stats(classifier: str = "gradient_boosting", top_ids: int = 32, max_iter: int = 200,
                 learning_rate: float = 0.1, max_leaf_nodes: int = 31, min_samples_leaf: int = 20,
                 l2_regularization: float = 0.0, C: float = 1.0) -> WindowStatsBaseline:
    """The window-statistics baseline (:class:`WindowStatsBaseline`, same arguments)."""
    return WindowStatsBaseline(classifier, top_ids=top_ids, max_iter=max_iter,
                               learning_rate=learning_rate, max_leaf_nodes=max_leaf_nodes,
                               min_samples_leaf=min_samples_leaf,
                               l2_regularization=l2_regularization, C=C)


BASELINE_BUILDERS = {"majority": majority, "window_stats": window_stats}


def from_state(description: dict, arrays: dict[str, np.ndarray]):
    """Rebuild a fitted baseline from :meth:`state` (a JSON dict and plain arrays)."""
    kind = description.get("kind")
    if kind == MajorityBaseline.kind:
        return MajorityBaseline(float(description["prior"]))
    if kind != WindowStatsBaseline.kind:
        raise ValueError(f"unknown baseline kind {kind!r}; known: {', '.join(BASELINE_BUILDERS)}")
    names = ("classifier", "top_ids", "max_iter", "learning_rate", "max_leaf_nodes",
             "min_samples_leaf", "l2_regularization", "C")
    model = WindowStatsBaseline(**{name: description[name] for name in names})
    model.arrays = {name: np.asarray(value) for name, value in arrays.items()}
    model.iterations = description.get("iterations")
    return model


# --------------------------------------------------------------------------- fitting
def _fit_logistic(features, labels, seed, settings):
    from sklearn.linear_model import LogisticRegression

    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)  # a constant feature stays 0 after scaling
    model = LogisticRegression(C=settings["C"], max_iter=settings["max_iter"], random_state=seed)
    model.fit((features - mean) / scale, labels)
    arrays = {"mean": mean, "scale": scale, "coef": model.coef_[0].astype(np.float64),
              "intercept": model.intercept_.astype(np.float64)}
    return arrays, int(model.n_iter_[0])


def _fit_boosting(features, labels, seed, settings):
    from sklearn.ensemble import HistGradientBoostingClassifier

    # No early stopping: it would hold out a random tenth of the training windows, whose
    # neighbours stay in training (DESIGN.md: validation is a contiguous block, never a sample).
    model = HistGradientBoostingClassifier(
        max_iter=settings["max_iter"], learning_rate=settings["learning_rate"],
        max_leaf_nodes=settings["max_leaf_nodes"], min_samples_leaf=settings["min_samples_leaf"],
        l2_regularization=settings["l2_regularization"], early_stopping=False, random_state=seed)
    model.fit(features, labels)
    return _tree_arrays(model), int(model.n_iter_)


def _tree_arrays(model) -> dict[str, np.ndarray]:
    """The fitted trees of a binary ``HistGradientBoostingClassifier`` as flat arrays.

    Node ``k`` of tree ``t`` is row ``root[t] + k``; ``left`` and ``right`` are rows too.
    """
    trees = [predictors[0].nodes for predictors in model._predictors]  # one tree per round
    sizes = np.array([len(nodes) for nodes in trees], dtype=np.int64)
    root = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    nodes = np.concatenate(trees)
    if nodes["is_categorical"].any():
        raise ValueError("categorical splits are not supported by the saved trees")
    offset = np.repeat(root, sizes)
    return {
        "root": root,
        "feature": nodes["feature_idx"].astype(np.int64),
        "threshold": nodes["num_threshold"].astype(np.float64),
        "missing_left": nodes["missing_go_to_left"].astype(bool),
        "left": nodes["left"].astype(np.int64) + offset,
        "right": nodes["right"].astype(np.int64) + offset,
        "is_leaf": nodes["is_leaf"].astype(bool),
        "value": nodes["value"].astype(np.float64),
        "baseline": np.asarray(model._baseline_prediction, dtype=np.float64).ravel(),
    }


def _tree_decision(features: np.ndarray, trees: dict[str, np.ndarray], chunk: int = 8192) -> np.ndarray:
    """Initial log-odds plus every tree's leaf value, as scikit-learn sums them (tree by tree).

    A sample goes left where its feature is ``<= threshold``, and a missing (NaN) one where the
    split learned to send missing values.
    """
    out = np.empty(len(features), dtype=np.float64)
    for start in range(0, len(features), chunk):
        rows = features[start:start + chunk]
        node = np.broadcast_to(trees["root"], (len(rows), len(trees["root"]))).copy()
        sample = np.arange(len(rows))[:, None]
        while True:
            inner = ~trees["is_leaf"][node]
            if not inner.any():
                break
            value = rows[sample, trees["feature"][node]]
            left = np.where(np.isnan(value), trees["missing_left"][node], value <= trees["threshold"][node])
            node = np.where(inner, np.where(left, trees["left"][node], trees["right"][node]), node)
        total = np.full(len(rows), trees["baseline"][0])
        for tree in range(node.shape[1]):
            total += trees["value"][node[:, tree]]
        out[start:start + chunk] = total
    return out
