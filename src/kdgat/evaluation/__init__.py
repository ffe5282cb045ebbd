"""Evaluation: thresholds, metrics, per-window predictions, plots and tables.

Pure functions over numpy arrays: no Lightning, no config objects. matplotlib and scikit-learn are
imported inside the functions that need them, so importing this package stays cheap.
"""

from kdgat.evaluation.metrics import POOLED, binary_metrics, evaluate_scenarios, metrics_document
from kdgat.evaluation.plots import plot_confusion_matrix, plot_learning_curves, plot_roc_pr
from kdgat.evaluation.predictions import COLUMNS, read_predictions, write_predictions
from kdgat.evaluation.report import results_table
from kdgat.evaluation.thresholds import THRESHOLD_RULES, choose_threshold, predict

__all__ = [
    "COLUMNS",
    "POOLED",
    "THRESHOLD_RULES",
    "binary_metrics",
    "choose_threshold",
    "evaluate_scenarios",
    "metrics_document",
    "plot_confusion_matrix",
    "plot_learning_curves",
    "plot_roc_pr",
    "predict",
    "read_predictions",
    "results_table",
    "write_predictions",
]
