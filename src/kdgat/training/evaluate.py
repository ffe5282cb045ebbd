"""Scoring a trained stage on validation and test windows, and the honest test evaluation.

The decision threshold is chosen on validation scores only and then applied, unchanged, to every
test scenario; metrics are reported per scenario and pooled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kdgat.evaluation.thresholds import FIXED_THRESHOLD


@torch.no_grad()
def score_graphs(module, store, graphs: np.ndarray, batch_size: int = 512,
                 device: torch.device | str = "cpu", score=None) -> np.ndarray:
    """Scores of the windows ``graphs`` (indices into ``store``), in that order.

    Args:
        module: a stage (its ``score``) or any network, put in eval mode on ``device``.
        score: ``batch -> (G,)`` to use instead of ``module.score``.
    """
    module.eval()
    module.to(device)
    score = score or module.score
    scores = []
    for start in range(0, len(graphs), batch_size):
        batch = store.assemble(graphs[start:start + batch_size]).to(device)
        scores.append(score(batch).float().cpu().numpy())
    return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)


def evaluate(module, datamodule, run_dir: Path, threshold_rule: str = "f1",
             device: torch.device | str = "cpu", threshold_fixed: float = FIXED_THRESHOLD) -> dict:
    """Choose the threshold on validation, score every test scenario, write the run's files.

    Writes ``metrics.json``, ``predictions.csv.gz`` and ``plots/roc_pr.png`` /
    ``plots/confusion_matrix.png`` into ``run_dir`` and returns the metrics document.

    Args:
        threshold_rule: how the threshold is fit on validation (``f1``, ``youden``, ``fixed``;
            :func:`kdgat.evaluation.thresholds.choose_threshold`).
        threshold_fixed: the threshold of ``threshold_rule="fixed"``, on the scale of the module's
            scores (a probability for the GAT and fusion, a reconstruction error for the VGAE).
    """
    from kdgat.evaluation.metrics import binary_metrics, evaluate_scenarios, metrics_document
    from kdgat.evaluation.plots import plot_confusion_matrix, plot_roc_pr
    from kdgat.evaluation.predictions import write_predictions
    from kdgat.evaluation.thresholds import choose_threshold

    store = datamodule.store
    val_graphs = store.graphs_of("val")
    val_scores = score_graphs(module, store, val_graphs, device=device)
    val_labels = store.y[val_graphs].astype(np.int64)
    threshold = choose_threshold(val_scores, val_labels, rule=threshold_rule, fixed=threshold_fixed)

    by_scenario, rows = {}, {k: [] for k in ("file", "window_index", "scenario", "label",
                                             "attack_type", "score", "prediction")}
    files = store.meta["files"]
    relpaths = np.array([f["relpath"] for f in files], dtype=object)  # one entry per file
    attack_types = np.array([f["attack_type"] for f in files], dtype=object)
    file_index = np.asarray(store.cache["file_index"])
    window_index = np.asarray(store.cache["window_index"])
    for scenario in datamodule.test_names:
        graphs = store.graphs_of(scenario)
        scores = score_graphs(module, store, graphs, device=device)
        labels = store.y[graphs].astype(np.int64)
        by_scenario[scenario] = (labels, scores)
        rows["file"].append(relpaths[file_index[graphs]])
        rows["window_index"].append(window_index[graphs])
        rows["scenario"].append(np.full(len(graphs), scenario, dtype=object))
        rows["label"].append(labels)
        rows["attack_type"].append(np.where(labels == 1, attack_types[file_index[graphs]], "benign"))
        rows["score"].append(scores)
        rows["prediction"].append((scores >= threshold).astype(np.int64))

    document = metrics_document(
        validation=binary_metrics(val_labels, val_scores, threshold),
        test=evaluate_scenarios(by_scenario, threshold), threshold=threshold,
        threshold_rule=threshold_rule)
    (run_dir / "plots").mkdir(exist_ok=True)
    write_predictions(run_dir / "predictions.csv.gz", {k: np.concatenate(v) for k, v in rows.items()})
    plot_roc_pr(by_scenario, run_dir / "plots" / "roc_pr.png")
    pooled = document["test"]["pooled"]
    plot_confusion_matrix(pooled["tn"], pooled["fp"], pooled["fn"], pooled["tp"],
                          run_dir / "plots" / "confusion_matrix.png", title="pooled test windows")
    return document
