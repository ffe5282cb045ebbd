"""The allow-list of ``_target_``s: exactly the callables kdgat's store generates.

The tampered configs and planted runs of every known gadget, end to end with a canary file, are in
``tests/cli/test_untrusted_configs.py``.
"""

from __future__ import annotations

import re

import pytest
from omegaconf import OmegaConf

from kdgat.runs.allowlist import DisallowedTarget, allowed_targets, check_extra_targets, check_targets


def compose(*overrides: str):
    from hydra import compose as hydra_compose, initialize

    from kdgat.config.store import store

    store.add_to_hydra_store(overwrite_ok=True)
    with initialize(version_base="1.3", config_path=None):
        return hydra_compose("train", overrides=list(overrides))


@pytest.mark.parametrize("experiment", [
    "automotive_synthetic_classifier_gat_student_standard_all_samples",
    "automotive_synthetic_unsupervised_vgae_tiny_topology_preserving_normals_only",
    "automotive_synthetic_fusion_dqn_teacher_no_all_samples",
    "automotive_synthetic_fusion_mlp_student_no_all_samples"])
def test_every_target_of_a_shipped_config_is_allowed(experiment):
    cfg = compose(f"experiment={experiment}", "scheduler=cosine", "optimizer=sgd")
    check_targets(cfg)
    check_targets(OmegaConf.to_container(cfg, resolve=True))


def test_the_list_is_derived_from_the_store_and_every_name_resolves():
    from hydra.utils import get_object

    from kdgat.models.builders import BUILDERS

    names = allowed_targets()
    # Every network builder the store registers is there without a second list.
    assert {f"kdgat.models.builders.{model}" for model in BUILDERS} <= names
    assert {"lightning.pytorch.Trainer", "kdgat.data.datamodule.CANGraphDataModule",
            "kdgat.training.classifier.ClassifierModule"} <= names
    assert all(callable(get_object(name)) for name in names)
    # Whole packages are not: only the exact callables.
    assert not {n for n in names if not n.startswith(("kdgat.", "lightning.pytorch.Trainer"))}


@pytest.mark.parametrize("target", [
    "os.system", "torch.load", "torch.hub.load", "torch.os.system", "kdgat.launch.slurm._run",
    "kdgat.runs.rundir._git", "kdgat.runs.rundir.write_atomic", "kdgat.train.main", "kdgat",
    "kdgat.models.no_such_builder", "lightning.pytorch.Trainer.fit"])
def test_any_other_name_is_refused_whether_or_not_it_resolves(target):
    with pytest.raises(DisallowedTarget, match=re.escape(
            f"refusing to instantiate _target_ '{target}' at module.optimizer: it is not one of the "
            "callables kdgat's configs instantiate")):
        check_targets({"module": {"optimizer": {"_target_": target, "_args_": ["id"]}}})


def test_targets_are_found_anywhere_and_interpolations_are_never_resolved():
    nested = OmegaConf.create({"a": [{"b": {"c": [{"_target_": "os.system"}]}}]})
    with pytest.raises(DisallowedTarget, match=r"at a\[0\]\.b\.c\[0\]"):
        check_targets(nested)
    with pytest.raises(DisallowedTarget, match="at <root>: a _target_ must be a string"):
        check_targets({"_target_": ["kdgat.train.main"]})
    # Even when it would resolve to an allowed name, an interpolation in a _target_ is refused.
    interpolated = OmegaConf.create({"name": "lightning.pytorch.Trainer", "node": {"_target_": "${name}"}})
    with pytest.raises(DisallowedTarget, match="an interpolation or resolver in a _target_ is never resolved"):
        check_targets(interpolated)


def test_a_target_that_only_appears_after_resolution_is_refused():
    created = OmegaConf.create({"node": "${oc.create:'{\"_target_\": \"os.system\"}'}"})
    check_targets(OmegaConf.to_container(created, resolve=False))  # nothing to see as written
    with pytest.raises(DisallowedTarget, match=r"\(resolved\): refusing to instantiate _target_ 'os.system' at node"):
        check_targets(created)


def test_outside_targets_are_allowed_only_by_name_and_must_resolve():
    node = {"trainer": {"callbacks": [{"_target_": "lightning.pytorch.callbacks.Timer"}]}}
    with pytest.raises(DisallowedTarget):
        check_targets(node)
    check_targets(node, allow=["lightning.pytorch.callbacks.Timer"])
    with pytest.raises(DisallowedTarget, match="cannot be resolved"):
        check_extra_targets(["lightning.pytorch.callbacks.NoSuchTimer"])
    with pytest.raises(DisallowedTarget, match="not a dotted name"):
        check_extra_targets(["kdgat.${evil}"])
    with pytest.raises(DisallowedTarget, match="not a callable"):
        check_extra_targets(["os.sep"])
