"""The baseline stage: fit a non-neural detector in one pass and write the run directory of a run.

A baseline point (``learning_type=baseline``: ``majority``, ``window_stats``) has no training loop,
no epochs and no checkpoints to resume, so it does not go through Lightning. Everything else is
the path of every other stage, on the same prepared windows:

1. the datamodule prepares (or loads) the graph cache of the run's data settings;
2. :class:`BaselineModule` computes the window statistics of every window from the cache
   (:mod:`kdgat.data.window_stats`) and fits the baseline on the training windows only;
3. the fitted state is written as ``checkpoints/baseline.json`` and ``checkpoints/baseline.npz``
   (plain numbers and arrays, read back without pickle) and the windows are scored by the model
   *read back from those files*, so what is evaluated is what was saved;
4. :func:`kdgat.training.evaluate.evaluate` fits the threshold on validation, scores every test
   scenario and writes ``metrics.json``, ``predictions.csv.gz`` and the plots, as for a GNN.

Refitting is deterministic (the seed is the estimator's ``random_state``), so ``kdgat reproduce``
of a baseline run gives the same numbers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from kdgat.grid import GridPoint

STATE_JSON, STATE_ARRAYS = "baseline.json", "baseline.npz"


class BaselineModule:
    """A baseline fitted on the training windows, scoring windows as a trained stage does.

    :func:`kdgat.training.evaluate.evaluate` asks a stage for ``score(batch)``; here the scores of
    every window are computed once, after :meth:`fit`, and looked up by ``batch.graph_index``.

    Args:
        network: an unfitted baseline of :mod:`kdgat.models.baselines`.
        optimizer, scheduler, distillation, monitor: the settings every stage's ``module`` carries
            (so one set of overrides composes for every point of a pipeline). A baseline takes no
            gradient steps, has no epochs to monitor and learns from no teacher, so they are
            unused; ``distillation.kind`` must be ``no``.
    """

    def __init__(self, network, optimizer=None, scheduler=None, distillation=None,
                 monitor: str = "val/loss"):
        kind = getattr(distillation, "kind", "no")
        if kind != "no":
            raise ValueError(f"module.distillation.kind={kind!r}: a baseline learns from no "
                             "teacher; use distillation=no")
        self.network = network
        self.scores: np.ndarray | None = None
        self.inputs: dict = {}

    def fit(self, datamodule, folder: Path, seed: int = 0) -> dict:
        """Fit on ``datamodule``'s training windows, save to ``folder``, score every window.

        Returns what was fitted on: the feature names, training windows and their attack share.
        """
        from kdgat.data.window_stats import IdReference, cache_window_statistics, feature_names

        store = datamodule.store
        names, features = [], np.zeros((len(store), 0))
        if self.network.uses_window_statistics:
            reference = IdReference.from_meta(store.meta, self.network.top_ids)
            features = cache_window_statistics(store.cache, reference)
            names = feature_names(reference)
            self.inputs["top_ids"] = reference.top_ids.tolist()
        train = datamodule.train_graphs()
        labels = store.y[train].astype(np.int64)
        started = time.perf_counter()
        self.network.fit(features[train], labels, seed=seed)
        self.inputs.update(features=names, fit_windows=int(len(train)),
                           fit_attack_share=float(labels.mean()),
                           fit_seconds=round(time.perf_counter() - started, 3))
        save_baseline(folder, self.network, self.inputs)
        self.network, _ = load_baseline(folder)  # score with exactly what was saved
        self.scores = self.network.decision(features)
        return self.inputs

    def score(self, batch):
        import torch

        return torch.from_numpy(self.scores[batch.graph_index.cpu().numpy()])

    def eval(self) -> "BaselineModule":  # what evaluate() calls on a stage; nothing to switch
        return self

    def to(self, device) -> "BaselineModule":  # scores are looked up on the CPU
        return self


def save_baseline(folder: Path, network, inputs: dict) -> None:
    """Write a fitted baseline as ``baseline.json`` (settings, inputs) and ``baseline.npz``."""
    from kdgat.runs.rundir import atomic_file, write_json

    description, arrays = network.state()
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_file(folder / STATE_ARRAYS, "wb") as out:
        np.savez(out, **arrays)
    write_json(folder / STATE_JSON, {**description, "inputs": inputs})


def load_baseline(folder: Path):
    """``(baseline, inputs)`` read from :func:`save_baseline`'s files, without pickle."""
    from kdgat.models.baselines import from_state

    description = json.loads((folder / STATE_JSON).read_text())
    with np.load(folder / STATE_ARRAYS, allow_pickle=False) as arrays:
        loaded = {name: arrays[name] for name in arrays.files}
    return from_state(description, loaded), description.get("inputs", {})


def run_baseline_stage(cfg, point: GridPoint, run_dir: Path) -> dict:
    """Fit, save and evaluate one baseline point into ``run_dir``; returns the metrics document."""
    from hydra.utils import instantiate

    from kdgat.evaluation.protocols import protocol_settings
    from kdgat.runs.rundir import write_json
    from kdgat.training.evaluate import evaluate

    datamodule = instantiate(cfg.datamodule)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = instantiate(cfg.module, network=instantiate(cfg.network))
    inputs = module.fit(datamodule, run_dir / "checkpoints", seed=cfg.seed)
    print(f"kdgat: {point.model} baseline fit on {inputs['fit_windows']} training windows "
          f"in {inputs['fit_seconds']:.1f} s")
    document = evaluate(module, datamodule, run_dir, threshold_rule=cfg.threshold_rule,
                        threshold_fixed=cfg.threshold_fixed, protocol=protocol_settings(cfg))
    pooled = document["test"]["pooled"]
    document["summary"] = {
        "grid_point": point.name, "parameters": module.network.parameters, "epochs": None,
        "iterations": getattr(module.network, "iterations", None), "best_epoch_metric": None,
        "monitor": None, "test_pooled_f1": pooled["f1"], "test_pooled_auroc": pooled["auroc"],
        "threshold": document["threshold"]["value"],
    }
    document["baseline"] = {"kind": point.model, **inputs}
    document["data"] = {"cache": str(datamodule.store.cache.folder),
                        "graphs_per_split": datamodule.store.meta["graphs_per_split"],
                        "vocabulary_size": len(datamodule.store.meta["vocabulary"])}
    document["dependencies"] = {}
    document["history"] = {}
    write_json(run_dir / "metrics.json", document)
    return document
