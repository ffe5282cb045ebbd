"""Every grid point composes from the store and instantiates; invalid points are refused."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra import compose, initialize
from hydra.utils import instantiate

from kdgat.config.store import store
from kdgat.grid import InvalidGridPoint, all_points
from kdgat.train import grid_point, validate_settings

DIMS = dict(num_ids=24, in_channels=22, edge_dim=2)


@pytest.fixture(scope="module")
def composer():
    store.add_to_hydra_store(overwrite_ok=True)
    with initialize(version_base="1.3", config_path=None):
        yield lambda *overrides: compose("train", overrides=list(overrides))


def _compose_and_instantiate(composer, points) -> dict:
    """Each point's experiment composes to exactly that point, its settings validate, and its
    network and Lightning module instantiate on tiny data dimensions."""
    built = {}
    for point in points:
        cfg = composer(f"experiment={point.name}")
        assert grid_point(cfg) == point
        validate_settings(cfg)
        network = instantiate(cfg.network)
        key = (point.model, point.size, point.learning_type, point.distillation)
        if key in built:  # the module differs only by these; instantiate each kind once
            continue
        if point.learning_type == "baseline":  # an estimator, fit later: nothing to count yet
            module = instantiate(cfg.module, network=network)
            assert module.network.kind == point.model
            built[key] = 0
            continue
        dims = {"state_dim": 15} if point.learning_type == "fusion" else DIMS
        if point.learning_type == "fusion":
            module = instantiate(cfg.module, network=network)
        else:
            module = instantiate(cfg.module, network=network, **dims)
        assert module.distillation.kind == point.distillation
        built[key] = sum(p.numel() for p in module.network.parameters())
    return built


def test_every_point_of_a_dataset_and_one_of_every_dataset(composer):
    # The dataset dimension only sets two names; the other six dimensions are covered in full.
    points = all_points({"dataset": "synthetic"})
    points += [all_points({"dataset": d})[0] for d in ("hcrl_ch", "hcrl_sa", "set_01", "set_02", "set_03", "set_04")]
    built = _compose_and_instantiate(composer, points)
    # module kinds = (model, size, distillation): vgae 11 + gat 11 + dqn 8 + mlp 8 + 2 baselines
    assert len(points) == 68 and len(built) == 40


@pytest.mark.slow
def test_every_grid_point_composes_and_instantiates(composer):
    assert len(_compose_and_instantiate(composer, all_points())) == 40


def test_grid_groups_drive_the_stage(composer):
    cfg = composer("model=vgae", "size=teacher", "mode=normals_only")
    assert cfg.module._target_ == "kdgat.training.unsupervised.UnsupervisedModule"
    assert cfg.network._target_ == "kdgat.models.builders.vgae"
    assert list(cfg.network.hidden) == [480, 240]
    assert cfg.datamodule.train_windows == "normals_only"
    cfg = composer("model=gat", "size=teacher", "mode=curriculum")
    assert cfg.curriculum.enabled is True
    cfg = composer("model=gat", "size=student", "distillation=topology_preserving")
    assert cfg.module.distillation.kind == "topology_preserving"
    assert cfg.module.distillation.temperature == 4.0 and cfg.module.distillation.alpha == 0.7


@pytest.mark.parametrize("overrides, dimension, valid", [
    (("model=vgae", "mode=curriculum"), "mode", "all_samples, normals_only"),
    (("model=gat", "size=teacher", "distillation=standard"), "distillation", "no"),
    (("model=dqn", "size=student", "distillation=topology_preserving"), "distillation", "no, standard"),
    (("model=gat", "size=huge", "distillation=standard"), "distillation", "no"),
    (("model=window_stats",), "size", "teacher"),
    (("model=majority", "size=student"), "size", "teacher"),
    (("model=window_stats", "size=teacher", "mode=normals_only"), "mode", "all_samples"),
])
def test_invalid_combination_names_the_valid_values(composer, overrides, dimension, valid):
    cfg = composer(*overrides)
    with pytest.raises(InvalidGridPoint, match=f"valid {dimension} values here: {valid}$"):
        grid_point(cfg)


def test_unknown_group_option_lists_the_options(composer):
    with pytest.raises(Exception, match="Available options in 'model'"):
        composer("model=transformer")


def test_wrong_type_is_refused_at_composition(composer):
    with pytest.raises(Exception, match="trainer.max_epochs"):
        composer("trainer.max_epochs=many")


def test_bad_setting_value_is_refused_before_any_run(composer):
    cfg = composer("module.optimizer.name=adagrad")
    with pytest.raises(ValueError, match="optimizer.name='adagrad' is not valid; choose one of: adam, adamw, sgd"):
        validate_settings(cfg)


def test_grid_count_and_names():
    points = all_points()
    assert len(points) == 434 == len({p.name for p in points})
    for point in points:
        assert point.validate() is point
    assert len(all_points({"dataset": "hcrl_sa"})) == 62
    assert [p.name for p in all_points({"dataset": "hcrl_sa", "learning_type": "baseline"})] == [
        "automotive_hcrl_sa_baseline_majority_teacher_no_all_samples",
        "automotive_hcrl_sa_baseline_window_stats_teacher_no_all_samples"]


def test_store_and_entry_point_import_no_heavy_packages():
    code = ("import sys, kdgat.train, kdgat.config.store, kdgat.grid; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'lightning', 'torch_geometric', 'mlflow'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
