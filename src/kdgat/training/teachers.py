"""Loading the network of a completed run — a teacher, or a fusion input — strictly.

The network is rebuilt from the run's own saved config (its ``network`` node, allow-listed) and
data dimensions, and its weights are loaded with ``strict=True``: a checkpoint that does not fit
is an error naming both shapes, never a silent partial load (upstream mistake 8).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from kdgat.runs.allowlist import check_targets
from kdgat.training.checkpoints import load_checkpoint


class IncompatibleCheckpoint(RuntimeError):
    """A checkpoint whose weights do not fit the network its run's config builds."""


def read_run(run_dir: str | Path, checkpoint: str = "best.ckpt"):
    """The saved config and checkpoint of a completed run, both checked: the network's
    ``_target_`` is one kdgat generates (no ``allow_targets`` from the run's own config is
    honoured) and the checkpoint is plain data. Called before a dependent run allocates its
    directory, so a planted or damaged run is refused before anything exists."""
    from omegaconf import OmegaConf

    run_dir = Path(run_dir)
    config_path, ckpt_path = run_dir / "config.yaml", run_dir / "checkpoints" / checkpoint
    for path in (config_path, ckpt_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: {run_dir} is not a completed kdgat run")
    config = OmegaConf.load(config_path)
    if "network" not in config:
        raise IncompatibleCheckpoint(f"{config_path} has no network section; not a kdgat run config")
    check_targets(config.network, where=str(config_path))
    return config, load_checkpoint(ckpt_path)


def load_network(run_dir: str | Path, expected_dims: dict | None = None,
                 checkpoint: str = "best.ckpt") -> nn.Module:
    """Rebuild and load the network of a completed run.

    Args:
        run_dir: the run directory (with ``config.yaml`` and ``checkpoints/``).
        expected_dims: data dimensions the caller's data has (``num_ids``, ...); a teacher trained
            on another vocabulary or feature set is refused.
        checkpoint: which checkpoint file (default ``best.ckpt``).
    """
    from hydra.utils import instantiate

    run_dir = Path(run_dir)
    config_path, ckpt_path = run_dir / "config.yaml", run_dir / "checkpoints" / checkpoint
    config, state = read_run(run_dir, checkpoint)
    dims = state.get("hyper_parameters", {}).get("data_dims")
    if dims is None:
        raise IncompatibleCheckpoint(f"{ckpt_path} has no data_dims hyper-parameters; not a kdgat checkpoint")
    if expected_dims is not None and any(dims.get(k) != v for k, v in expected_dims.items()):
        raise IncompatibleCheckpoint(
            f"{run_dir} was trained on data of dimensions {dims}, but this run's data has "
            f"{expected_dims}; the teacher must be trained on the same dataset and preparation "
            "settings (window, stride, val_fraction, oov_buckets)")
    network = instantiate(config.network)(**dims)
    weights = {k[len("network."):]: v for k, v in state["state_dict"].items() if k.startswith("network.")}
    try:
        network.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise IncompatibleCheckpoint(
            f"{ckpt_path} does not fit the network that {config_path} builds "
            f"({config.network._target_}): {err}") from err
    return network
