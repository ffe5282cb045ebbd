"""Scoring a trained stage on validation and test windows, and the honest test evaluation.

The decision threshold is chosen on validation scores only and then applied, unchanged, to every
test scenario; metrics are reported per scenario and pooled. That is the ``strict`` protocol (the
``test`` section of ``metrics.json``); the ``causal_recording`` protocol
(:mod:`kdgat.evaluation.protocols`) is computed from the same scores beside it, in
``protocols.causal_recording``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kdgat.evaluation.protocols import (CAUSAL_RECORDING, STRICT, CausalSettings, causal_standardise,
                                       causal_threshold, reference, settings_document)
from kdgat.evaluation.thresholds import FIXED_THRESHOLD


@torch.no_grad()
def score_graphs(module, store, graphs: np.ndarray, batch_size: int = 512,
                 device: torch.device | str = "cpu", score=None) -> np.ndarray:
    """Scores of the windows ``graphs`` (indices into ``store``), in that order.

    Args:
        module: a stage (its ``score``) or any network, put in eval mode on ``device``.
        score: ``batch -> (G,)`` (or ``(G, C)``) to use instead of ``module.score``.
    """
    module.eval()
    module.to(device)
    score = score or module.score
    scores = []
    for start in range(0, len(graphs), batch_size):
        batch = store.assemble(graphs[start:start + batch_size]).to(device)
        scores.append(score(batch).float().cpu().numpy())
    return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)


def scores_and_evidence(module, store, graphs: np.ndarray, device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """``(score, evidence)`` of the windows ``graphs`` in one pass.

    The evidence is the score on an unbounded scale (``module.score_evidence``, where the module has it:
    the GAT's logit margin instead of its saturating probability); otherwise the score itself.
    """
    pair = getattr(module, "score_evidence", None)
    if pair is None:
        score = score_graphs(module, store, graphs, device=device)
        return score, score.astype(np.float64)
    both = score_graphs(module, store, graphs, device=device, score=lambda b: torch.stack(pair(b), -1))
    both = both.reshape(-1, 2)
    return both[:, 0], both[:, 1].astype(np.float64)


def evaluate(module, datamodule, run_dir: Path, threshold_rule: str = "f1",
             device: torch.device | str = "cpu", threshold_fixed: float = FIXED_THRESHOLD,
             protocol: CausalSettings | None = None) -> dict:
    """Choose the threshold on validation, score every test scenario, write the run's files.

    Writes ``metrics.json``, ``predictions.csv.gz`` (test windows), ``validation_predictions.csv.gz``
    (the windows both thresholds were fit on, same columns) and ``plots/roc_pr.png`` /
    ``plots/confusion_matrix.png`` into ``run_dir`` and returns the metrics document.

    Args:
        threshold_rule: how the threshold is fit on validation (``f1``, ``youden``, ``fixed``;
            :func:`kdgat.evaluation.thresholds.choose_threshold`).
        threshold_fixed: the threshold of ``threshold_rule="fixed"``, on the scale of the module's
            scores (a probability for the GAT and fusion, a reconstruction error for the VGAE).
        protocol: settings of the ``causal_recording`` protocol (default settings when ``None``).
    """
    from kdgat.evaluation.metrics import binary_metrics, evaluate_scenarios, metrics_document
    from kdgat.evaluation.plots import plot_confusion_matrix, plot_roc_pr
    from kdgat.evaluation.predictions import COLUMNS, write_predictions
    from kdgat.evaluation.thresholds import choose_threshold

    store = datamodule.store
    protocol = protocol or CausalSettings()
    val_graphs = store.graphs_of("val")
    val_scores, val_evidence = scores_and_evidence(module, store, val_graphs, device=device)
    val_labels = store.y[val_graphs].astype(np.int64)
    threshold = choose_threshold(val_scores, val_labels, rule=threshold_rule, fixed=threshold_fixed)
    # causal_recording: evidence standardised against each recording's own earlier windows.
    file_index = np.asarray(store.cache["file_index"])
    start_frame = np.asarray(store.cache["start_frame"])
    window = int(store.meta["params"]["window"])
    fallback = reference(val_evidence, val_labels)

    def standardise(graphs, evidence):
        return causal_standardise(evidence, file_index[graphs], start_frame[graphs], window,
                                  fallback, protocol)

    val_z = standardise(val_graphs, val_evidence)
    try:
        z_threshold = causal_threshold(val_z, val_labels, protocol)
    except ValueError as err:  # recorded in metrics.json; the strict protocol stands alone
        z_threshold, unavailable = np.inf, str(err)
    else:
        unavailable = None

    files = store.meta["files"]
    relpaths = np.array([f["relpath"] for f in files], dtype=object)  # one entry per file
    attack_types = np.array([f["attack_type"] for f in files], dtype=object)
    window_index = np.asarray(store.cache["window_index"])
    columns = COLUMNS + ("evidence", "causal_z", "causal_prediction")  # the strict ones first

    def add_rows(rows, scenario, graphs, labels, scores, evidence, z):
        where = file_index[graphs]
        for key, values in zip(columns, (
                relpaths[where], window_index[graphs], np.full(len(graphs), scenario, dtype=object),
                labels, np.where(labels == 1, attack_types[where], "benign"), scores,
                (scores >= threshold).astype(np.int64), evidence, z,
                (z >= z_threshold).astype(np.int64))):
            rows[key].append(values)

    # Validation windows too: how both thresholds were fit can be checked, and recomputed.
    val_rows = {key: [] for key in columns}
    add_rows(val_rows, "validation", val_graphs, val_labels, val_scores, val_evidence, val_z)
    by_scenario, by_scenario_z = {}, {}
    rows = {key: [] for key in columns}
    for scenario in datamodule.test_names:
        graphs = store.graphs_of(scenario)
        scores, evidence = scores_and_evidence(module, store, graphs, device=device)
        z = standardise(graphs, evidence)
        labels = store.y[graphs].astype(np.int64)
        by_scenario[scenario] = (labels, scores)
        by_scenario_z[scenario] = (labels, z)
        add_rows(rows, scenario, graphs, labels, scores, evidence, z)

    causal = {"unavailable": unavailable, "settings": settings_document(protocol, fallback)}
    if unavailable is None:
        causal.update({
            "threshold": {"value": float(z_threshold), "rule": protocol.rule, "fit_on": "validation"},
            "validation": binary_metrics(val_labels, val_z, z_threshold),
            "test": evaluate_scenarios(by_scenario_z, z_threshold)})
    document = metrics_document(
        validation=binary_metrics(val_labels, val_scores, threshold),
        test=evaluate_scenarios(by_scenario, threshold), threshold=threshold,
        threshold_rule=threshold_rule,
        extra={"protocol": STRICT, "protocols": {CAUSAL_RECORDING: causal}})
    (run_dir / "plots").mkdir(exist_ok=True)
    write_predictions(run_dir / "predictions.csv.gz", {k: np.concatenate(v) for k, v in rows.items()})
    write_predictions(run_dir / "validation_predictions.csv.gz",
                      {k: np.concatenate(v) for k, v in val_rows.items()})
    plot_roc_pr(by_scenario, run_dir / "plots" / "roc_pr.png")
    pooled = document["test"]["pooled"]
    plot_confusion_matrix(pooled["tn"], pooled["fp"], pooled["fn"], pooled["tp"],
                          run_dir / "plots" / "confusion_matrix.png", title="pooled test windows")
    return document
