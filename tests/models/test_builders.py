"""The import-light model builders: same signatures as the classes, every size builds, no torch.

The config store ``builds`` its ``network`` options from :mod:`kdgat.models.builders`, whose
functions repeat each class's constructor arguments so that composing a config never imports
torch. These tests keep the two from drifting apart.
"""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import torch

from kdgat.models import builders
from kdgat.models.fusion import DQNFusion, MLPFusion
from kdgat.models.gat import GATClassifier
from kdgat.models.sizes import SIZE_NAMES, build_model, count_parameters
from kdgat.models.vgae import VGAE

CLASSES = {"gat": GATClassifier, "vgae": VGAE, "dqn": DQNFusion, "mlp": MLPFusion}
DIMS = dict(num_ids=12, in_channels=5, edge_dim=3)


def parameters(function) -> list[tuple[str, object]]:
    """(name, default) of every argument, ``self`` left out; tuples and lists compare alike."""
    listed = []
    for name, parameter in inspect.signature(function).parameters.items():
        if name == "self":
            continue
        default = parameter.default
        listed.append((name, tuple(default) if isinstance(default, (list, tuple)) else default))
    return listed


def test_every_model_has_a_builder_and_sizes():
    assert set(builders.BUILDERS) == set(CLASSES)
    for model in CLASSES:
        assert tuple(builders.SIZES[model]) == SIZE_NAMES == builders.SIZE_NAMES


@pytest.mark.parametrize("model", sorted(CLASSES))
def test_builder_signature_matches_the_class_constructor(model):
    assert parameters(builders.BUILDERS[model]) == parameters(CLASSES[model].__init__)


@pytest.mark.parametrize("model", sorted(CLASSES))
def test_size_numbers_are_constructor_arguments(model):
    names = {name for name, _ in parameters(CLASSES[model].__init__)}
    for size, numbers in builders.SIZES[model].items():
        assert set(numbers) <= names, (size, set(numbers) - names)


@pytest.mark.parametrize("model", sorted(CLASSES))
def test_builder_passes_every_argument_through(model):
    """A non-default value of each argument reaches the class (a builder that dropped one would
    build the class default silently)."""
    changed = {"gat": dict(emb_dim=3, hidden=6, heads=2, num_layers=2, jk_mode="max", head_hidden=5,
                           dropout=0.0, num_classes=3),
               "vgae": dict(emb_dim=3, hidden=[8, 4], latent_dim=5, heads=2, dropout=0.0,
                            id_weight=0.2, neighbour_weight=0.3, kl_weight=0.4, score_id_weight=0.5),
               "dqn": dict(state_dim=7, hidden=9, num_layers=2, num_actions=5, dropout=0.1),
               "mlp": dict(state_dim=7, hidden=9, num_layers=2, dropout=0.1)}[model]
    assert {name for name, _ in parameters(builders.BUILDERS[model])} - set(DIMS) == set(changed)
    dims = DIMS if model in ("gat", "vgae") else {}
    torch.manual_seed(0)
    built = builders.BUILDERS[model](**dims, **changed)
    torch.manual_seed(0)
    direct = CLASSES[model](**dims, **{k: tuple(v) if isinstance(v, list) else v
                                       for k, v in changed.items()})
    assert type(built) is CLASSES[model]
    assert str(built) == str(direct)
    assert built.state_dict().keys() == direct.state_dict().keys()
    for key, value in built.state_dict().items():
        assert torch.equal(value, direct.state_dict()[key]), key
    if model == "vgae":
        assert (built.id_weight, built.neighbour_weight, built.kl_weight, built.score_id_weight) == (
            0.2, 0.3, 0.4, 0.5)


def toy_graphs():
    """Two graphs of 4 and 3 nodes."""
    torch.manual_seed(0)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 0, 5, 6]])
    return (torch.randn(7, DIMS["in_channels"]), torch.randint(0, DIMS["num_ids"], (7,)), edge_index,
            torch.randn(6, DIMS["edge_dim"]), torch.tensor([0, 0, 0, 0, 1, 1, 1]), 2)


@pytest.mark.parametrize("size", SIZE_NAMES)
@pytest.mark.parametrize("model", sorted(CLASSES))
def test_every_model_builds_and_runs_at_every_size(model, size):
    numbers = builders.SIZES[model][size]
    if model in ("gat", "vgae"):
        net = builders.BUILDERS[model](**DIMS, **numbers).eval()
        out = net(*toy_graphs())
        if model == "gat":
            assert out.shape == (2, 2)
        else:
            assert out.x_hat.shape == (7, DIMS["in_channels"])
            assert out.mu.shape == (7, numbers["latent_dim"])
        same = build_model(model, size, **DIMS)
    else:
        net = builders.BUILDERS[model](**numbers).eval()
        out = net(torch.randn(3, 15))
        assert out.shape == ((3, 21) if model == "dqn" else (3,))
        same = build_model(model, size)
    assert torch.isfinite(out if isinstance(out, torch.Tensor) else out.x_hat).all()
    # The builder and the sizes module agree on what "{model} {size}" is.
    assert count_parameters(net) == count_parameters(same)


@pytest.mark.parametrize("model", sorted(CLASSES))
def test_sizes_grow_from_tiny_to_huge(model):
    dims = DIMS if model in ("gat", "vgae") else {}
    counts = [count_parameters(builders.BUILDERS[model](**dims, **builders.SIZES[model][size]))
              for size in SIZE_NAMES]
    assert counts == sorted(counts) and len(set(counts)) == len(counts), counts


def test_store_network_options_build_what_the_builders_build():
    """Each ``network={model}_{size}`` option instantiates to the builder with that size's numbers
    (and the class defaults elsewhere), the data dimensions left for the stage to fill in."""
    from hydra_zen import instantiate

    from kdgat.config.store import DATA_DIMS, store

    def plain(values: dict) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    for model, builder in builders.BUILDERS.items():
        for size, numbers in builders.SIZES[model].items():
            partial = instantiate(store["network", f"{model}_{size}"])
            assert partial.func is builder
            expected = {name: default for name, default in parameters(builder)
                        if name not in DATA_DIMS} | numbers
            assert plain(partial.keywords) == plain(expected), (model, size)


def test_builders_and_config_store_do_not_import_torch():
    code = ("import sys; import kdgat.models.builders, kdgat.config.store; "
            "heavy = sorted(m for m in ('torch', 'torch_geometric', 'lightning', 'mlflow') "
            "if m in sys.modules); print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"importing the builders/store imported {result.stdout}"
