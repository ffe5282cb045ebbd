"""Evaluation: thresholds, metrics, per-window predictions, plots and tables.

Pure functions over numpy arrays: no Lightning, no config objects. matplotlib and scikit-learn are
imported inside the functions that need them, so importing this package stays cheap.
"""

from importlib import import_module

# Names resolved on first use (PEP 562), so importing one light submodule (the protocol names of
# ``kdgat.evaluation.protocols`` on the ``kdgat --help`` path) does not import numpy.
_SUBMODULE = {
    "POOLED": "metrics", "binary_metrics": "metrics", "evaluate_scenarios": "metrics",
    "metrics_document": "metrics",
    "plot_confusion_matrix": "plots", "plot_learning_curves": "plots", "plot_roc_pr": "plots",
    "COLUMNS": "predictions", "read_predictions": "predictions", "write_predictions": "predictions",
    "results_table": "report",
    "THRESHOLD_RULES": "thresholds", "choose_threshold": "thresholds", "predict": "thresholds",
}


def __getattr__(name: str):
    if name in _SUBMODULE:
        return getattr(import_module(f"kdgat.evaluation.{_SUBMODULE[name]}"), name)
    raise AttributeError(f"module 'kdgat.evaluation' has no attribute {name!r}")


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
