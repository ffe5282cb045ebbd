"""Loading a completed run's network (a teacher, a fusion input, a curriculum scorer) strictly.

Upstream loaded teachers with ``strict=False`` and silently trained against a half-loaded network
(UPSTREAM mistake 8): here a checkpoint that does not fit is an error naming the checkpoint.
"""

from __future__ import annotations

import re
import shutil

import pytest
import torch
from hydra_zen import to_yaml

from kdgat.runs.allowlist import DisallowedTarget
from kdgat.training.stage import build_module
from kdgat.training.teachers import IncompatibleCheckpoint, load_network

from .conftest import (compose_config, graph_dims, grid_point, make_datamodule, network_conf,
                       one_batch_per_class)


def copy_run(run, to, network: tuple[str, str] | None = None):
    """A copy of a completed run, optionally with another ``network`` node in its config."""
    shutil.copytree(run.path, to)
    if network is not None:
        (to / "config.yaml").write_text(to_yaml({"network": network_conf(*network)}))
    return to


def outputs(net, batch):
    net.eval()
    with torch.no_grad():
        return net(batch.x, batch.node_id, batch.edge_index, batch.edge_attr, batch.batch,
                   batch.num_graphs)


@pytest.mark.parametrize("name", ["gat", "vgae"])
def test_a_matching_checkpoint_loads_strictly_and_reproduces_the_outputs(teacher_runs, datamodule, name):
    run = teacher_runs[name]
    loaded = load_network(run.path, graph_dims(datamodule))
    trained = run.module.network
    assert type(loaded) is type(trained)
    assert loaded.state_dict().keys() == trained.state_dict().keys()
    for key, value in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    batch = one_batch_per_class(datamodule)
    expected, got = outputs(trained, batch), outputs(loaded, batch)
    if name == "vgae":
        expected, got = expected.x_hat, got.x_hat
    assert torch.equal(got, expected)


def test_a_checkpoint_of_another_shape_is_refused_naming_it(teacher_runs, datamodule, tmp_path):
    # The run's config builds a student-size GAT, its checkpoint holds a tiny one.
    run = copy_run(teacher_runs["gat_tiny"], tmp_path / "run_001", network=("gat", "student"))
    checkpoint = run / "checkpoints" / "best.ckpt"
    with pytest.raises(IncompatibleCheckpoint, match=re.escape(str(checkpoint))) as raised:
        load_network(run, graph_dims(datamodule))
    message = str(raised.value)
    assert "does not fit" in message and "kdgat.models.builders.gat" in message
    assert "size mismatch" in message  # torch's strict-load report, naming the tensors


def test_a_checkpoint_with_missing_weights_is_refused(teacher_runs, datamodule, tmp_path):
    run = copy_run(teacher_runs["gat"], tmp_path / "run_001")
    checkpoint = run / "checkpoints" / "best.ckpt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    dropped = next(k for k in state["state_dict"] if k.startswith("network.head"))
    del state["state_dict"][dropped]
    torch.save(state, checkpoint)
    with pytest.raises(IncompatibleCheckpoint, match="Missing key") as raised:
        load_network(run, graph_dims(datamodule))
    assert dropped[len("network."):] in str(raised.value)


def test_a_teacher_trained_on_other_data_dimensions_is_refused(teacher_runs, datamodule):
    dims = graph_dims(datamodule)
    other = {**dims, "num_ids": dims["num_ids"] + 4}
    with pytest.raises(IncompatibleCheckpoint, match="trained on data of dimensions") as raised:
        load_network(teacher_runs["gat"].path, other)
    assert str(teacher_runs["gat"].path) in str(raised.value)
    assert str(other["num_ids"]) in str(raised.value)


def test_build_module_refuses_a_teacher_of_another_vocabulary(teacher_runs, synthetic_root, cache_dir):
    """Through the stage's own wiring: data prepared with other OOV buckets has another number of
    embedding rows, and the teacher is refused before training starts."""
    datamodule = make_datamodule(synthetic_root, cache_dir, oov_buckets=3)
    cfg = compose_config("model=gat", "size=tiny", "distillation=standard")
    with pytest.raises(IncompatibleCheckpoint, match="num_ids"):
        build_module(cfg, grid_point(cfg), datamodule, {"teacher": teacher_runs["gat"].path})


def test_build_module_attaches_the_loaded_teacher_frozen(teacher_runs, datamodule):
    cfg = compose_config("model=gat", "size=tiny", "distillation=standard")
    module = build_module(cfg, grid_point(cfg), datamodule, {"teacher": teacher_runs["gat"].path})
    teacher = module.teacher
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    for key, value in teacher_runs["gat"].module.network.state_dict().items():
        assert torch.equal(teacher.state_dict()[key], value), key
    assert module.distillation.kind == "standard"


def test_a_missing_checkpoint_or_config_is_an_error_naming_the_file(teacher_runs, tmp_path):
    run = copy_run(teacher_runs["gat"], tmp_path / "run_001")
    (run / "checkpoints" / "best.ckpt").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(run / "checkpoints" / "best.ckpt"))):
        load_network(run)
    (run / "config.yaml").unlink()
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        load_network(run)


def test_a_checkpoint_without_data_dimensions_is_refused(teacher_runs, tmp_path):
    run = copy_run(teacher_runs["gat"], tmp_path / "run_001")
    checkpoint = run / "checkpoints" / "best.ckpt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    torch.save({"state_dict": state["state_dict"]}, checkpoint)
    with pytest.raises(IncompatibleCheckpoint, match="no data_dims"):
        load_network(run)


def test_a_config_naming_a_foreign_callable_is_never_instantiated(teacher_runs, tmp_path):
    run = copy_run(teacher_runs["gat"], tmp_path / "run_001")
    marker = tmp_path / "executed"
    (run / "config.yaml").write_text(
        f"network:\n  _target_: os.system\n  command: touch {marker}\n")
    with pytest.raises(DisallowedTarget, match="os.system"):
        load_network(run)
    assert not marker.exists()
