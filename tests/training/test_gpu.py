"""Every stage trains on a CUDA device and evaluates (run on the GPU machine; skipped in CI)."""

from __future__ import annotations

import json

import pytest
import torch

from .conftest import only_run

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device (the GPU machine); CI has none")]

GPU = ("trainer=gpu", "trainer.max_epochs=2", "size=tiny", "tracking.enabled=false")
STAGES = {  # in dependency order: fusion needs the VGAE and GAT of its size
    "unsupervised/vgae/tiny/no/normals_only": ("model=vgae", "mode=normals_only"),
    "classifier/gat/tiny/no/all_samples": ("model=gat",),
    "fusion/dqn/tiny/no/all_samples": ("model=dqn",),
    "fusion/mlp/tiny/no/all_samples": ("model=mlp",),
}


def test_every_stage_trains_on_the_gpu_and_evaluates(kdgat_train, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    for overrides in STAGES.values():
        kdgat_train(runs, *GPU, *overrides)
    for path in STAGES:
        run = only_run(runs, f"automotive/synthetic/{path}")
        assert json.loads((run / "status.json").read_text())["status"] == "completed"
        assert json.loads((run / "env.json").read_text())["gpu"]["name"] == torch.cuda.get_device_name(0)
        config = (run / "config.yaml").read_text()
        assert "accelerator: gpu" in config
        pooled = json.loads((run / "metrics.json").read_text())["test"]["pooled"]
        assert 0.0 <= pooled["f1"] <= 1.0 and pooled["auroc"] is not None
