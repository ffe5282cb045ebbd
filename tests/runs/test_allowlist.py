"""The allow-list of ``_target_``s: what a saved or edited config may instantiate.

``kdgat reproduce`` refusing edited configs end to end is in ``tests/cli/test_reproduce.py``.
"""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from kdgat.runs.allowlist import DisallowedTarget, check_targets


def compose(*overrides: str):
    from hydra import compose as hydra_compose, initialize

    from kdgat.config.store import store

    store.add_to_hydra_store(overwrite_ok=True)
    with initialize(version_base="1.3", config_path=None):
        return hydra_compose("train", overrides=list(overrides))


@pytest.mark.parametrize("experiment", [
    "automotive_synthetic_classifier_gat_student_standard_all_samples",
    "automotive_synthetic_unsupervised_vgae_tiny_topology_preserving_normals_only",
    "automotive_synthetic_fusion_dqn_teacher_no_all_samples"])
def test_every_target_of_a_shipped_config_is_allowed(experiment):
    cfg = compose(f"experiment={experiment}", "scheduler=cosine", "optimizer=sgd")
    check_targets(cfg)
    check_targets(OmegaConf.to_container(cfg, resolve=True))


@pytest.mark.parametrize("target", [
    "os.system", "subprocess.Popen", "builtins.eval", "kdgatx.evil", "torchvision.io.read_file",
    "lightning_evil.run", "${oc.env:TARGET}", "kdgat"])
def test_a_target_outside_the_allowed_packages_is_refused(target):
    with pytest.raises(DisallowedTarget, match=f"refusing to instantiate _target_ '{_escaped(target)}' "
                                               "at module.optimizer: only targets under kdgat, torch"):
        check_targets({"module": {"optimizer": {"_target_": target, "_args_": ["id"]}}})


@pytest.mark.parametrize("target, resolved", [
    ("torch.os.system", "os.system"),                 # torch imports os
    ("kdgat.train.os.system", "os.system"),
    ("kdgat.data.datasets.shutil.rmtree", "shutil.rmtree"),
    ("kdgat.train.Path.write_text", "pathlib.Path.write_text"),   # a class imported into kdgat
    ("kdgat.train.zen", "hydra_zen.wrapper._implementations.zen"),  # a function imported into kdgat
])
def test_a_target_reaching_outside_through_an_allowed_package_is_refused(target, resolved):
    with pytest.raises(DisallowedTarget, match=f"'{_escaped(target)}' at trainer.callbacks\\[1\\]: "
                                               f"it resolves to {_escaped(resolved)}, outside"):
        check_targets({"trainer": {"callbacks": [{"_target_": "torch.nn.Identity"},
                                                 {"_target_": target}]}})


def test_targets_are_found_anywhere_and_never_resolved_as_interpolations():
    nested = OmegaConf.create({"a": [{"b": {"c": [{"_target_": "os.system"}]}}]})
    with pytest.raises(DisallowedTarget, match=r"at a\[0\]\.b\.c\[0\]"):
        check_targets(nested)
    with pytest.raises(DisallowedTarget, match="at <root>"):
        check_targets({"_target_": ["kdgat.train.main"]})  # not a string
    # An interpolation is judged as written: it cannot smuggle a name in through the environment.
    interpolated = OmegaConf.create({"evil": "os.system", "node": {"_target_": "${evil}"}})
    with pytest.raises(DisallowedTarget, match="'\\$\\{evil\\}'"):
        check_targets(interpolated)


def test_allowed_names_that_do_not_resolve_are_left_to_instantiation():
    check_targets({"_target_": "kdgat.models.no_such_builder"})
    check_targets({"_target_": "torch.nn.Linear"}, resolve=False)


def _escaped(text: str) -> str:
    import re

    return re.escape(text)
