"""Configs, checkpoints and runs from elsewhere cannot run code: every known gadget, with a canary.

Each case plants one way of getting code executed — a tampered ``config.yaml`` given to
``kdgat reproduce``, or a planted teacher run found by an ordinary student run — that, if it were
executed, would create the canary file. Each must be refused with exit 2 and kdgat's message,
before any new run directory exists, and the canary must never appear.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import pytest
import torch
import yaml

from test_train_cli import SMOKE, TINY_GAT, output, run_dirs  # noqa: F401
from test_train_cli import command, env, read, run, train  # noqa: F401

pytestmark = pytest.mark.usefixtures("env")


class Canary:
    """Unpickling this runs ``touch PATH``."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


@pytest.fixture(scope="module")
def trained(train, tmp_path_factory) -> Path:
    """A completed smoke run of the tiny GAT (module-wide: copied, never modified)."""
    root = tmp_path_factory.mktemp("runs")
    result = train(root, *SMOKE, "seed=0")
    assert result.returncode == 0, output(result)
    return root / TINY_GAT / "run_001"


def copy_run(source: Path, root: Path, point: str = TINY_GAT) -> Path:
    """A copy of ``source`` as ``run_001`` of ``point`` under ``root`` (its config pointed there)."""
    import shutil

    run_dir = root / point / "run_001"
    shutil.copytree(source, run_dir)
    config = read(run_dir / "config.yaml")
    config["runs_root"], config["run_dir"] = str(root), str(run_dir)
    # It claims to be a run of the point it was planted in.
    config["grid"] = dict(zip(("modality", "dataset", "learning_type", "model", "size", "distillation",
                               "mode"), point.split("/")))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir


def _optimizer(node):
    return lambda config, canary, folder: config["module"].update(optimizer=node(canary, folder))


def _hub_repo(canary: Path, folder: Path) -> str:
    (folder / "hubconf.py").write_text(f"import os\nos.system('touch {canary}')\n"
                                       "def model():\n    return None\n")
    return str(folder)


def _pickle_file(canary: Path, folder: Path) -> str:
    path = folder / "evil.pkl"
    path.write_bytes(pickle.dumps(Canary(canary)))
    return str(path)


def _interpolated(config, canary, folder):
    config["evil"] = "train.os.system"
    config["module"]["optimizer"] = {"_target_": "kdgat.${evil}", "_args_": [f"touch {canary}"]}


def _created(config, canary, folder):
    # No _target_ as written: oc.create builds one only when the config is resolved.
    config["module"]["optimizer"] = (
        "${oc.create:'{\"_target_\": \"os.system\", \"_args_\": [\"touch " + str(canary) + "\"]}'}")


TAMPERED = {
    "os.system": _optimizer(lambda c, f: {"_target_": "os.system", "_args_": [f"touch {c}"]}),
    "os.system through torch": _optimizer(lambda c, f: {"_target_": "torch.os.system",
                                                        "_args_": [f"touch {c}"]}),
    "in a trainer callback": lambda config, c, f: config["trainer"].update(
        callbacks=[{"_target_": "os.system", "_args_": [f"touch {c}"]}]),
    "kdgat.launch.slurm._run": _optimizer(lambda c, f: {"_target_": "kdgat.launch.slurm._run",
                                                        "_args_": [["touch", str(c)]]}),
    "kdgat.runs.rundir._git alias": _optimizer(lambda c, f: {
        "_target_": "kdgat.runs.rundir._git", "_args_": ["-c", f"alias.x=!touch {c}", "x"]}),
    "kdgat.runs.rundir.write_atomic": _optimizer(lambda c, f: {
        "_target_": "kdgat.runs.rundir.write_atomic", "_args_": [str(c), "pwned"]}),
    "kdgat.${evil} interpolation": _interpolated,
    "oc.create builds a target": _created,
    "torch.load weights_only false": _optimizer(lambda c, f: {
        "_target_": "torch.load", "f": _pickle_file(c, f), "weights_only": False}),
    "torch.hub.load from a folder": _optimizer(lambda c, f: {
        "_target_": "torch.hub.load", "repo_or_dir": _hub_repo(c, f), "model": "model",
        "source": "local", "trust_repo": True}),
    "a saved allow_targets": lambda config, c, f: (
        config.update(allow_targets=["os.system"]),
        config["module"].update(optimizer={"_target_": "os.system", "_args_": [f"touch {c}"]})),
}


@pytest.mark.parametrize("gadget", list(TAMPERED))
def test_a_tampered_config_is_refused_by_reproduce_and_runs_nothing(gadget, trained, tmp_path, capsys):
    from kdgat.cli import main

    root, canary = tmp_path / "runs", tmp_path / "canary"
    run_dir = copy_run(trained, root)
    config = read(run_dir / "config.yaml")
    TAMPERED[gadget](config, canary, tmp_path)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    before = run_dirs(root)

    code = main(["reproduce", str(run_dir)])

    err = capsys.readouterr().err
    assert code == 2, err
    assert "refusing to instantiate _target_" in err and "--allow-target" in err, err
    assert not canary.exists(), f"{gadget}: the canary was created"
    assert run_dirs(root) == before


def test_an_outside_target_named_on_purpose_is_instantiated(trained, tmp_path, capsys):
    """The way out the refusal names: ``--allow-target`` (here a harmless torch optimizer factory
    is swapped for another callable kdgat never generates, and reproduce accepts it)."""
    from kdgat.cli.reproduce import load_run_config
    from kdgat.runs.allowlist import DisallowedTarget

    root = tmp_path / "runs"
    run_dir = copy_run(trained, root)
    config = read(run_dir / "config.yaml")
    config["trainer"]["callbacks"] = [{"_target_": "lightning.pytorch.callbacks.Timer"}]
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(DisallowedTarget, match="lightning.pytorch.callbacks.Timer"):
        load_run_config(run_dir, [])
    cfg = load_run_config(run_dir, [], allow_targets=["lightning.pytorch.callbacks.Timer"])
    assert list(cfg.allow_targets) == ["lightning.pytorch.callbacks.Timer"]
    with pytest.raises(DisallowedTarget, match="cannot be resolved"):
        load_run_config(run_dir, [], allow_targets=["lightning.pytorch.callbacks.NoSuchThing"])


# --------------------------------------------------------------------------- planted teacher runs
TEACHER = "automotive/synthetic/classifier/gat/teacher/no/all_samples"
STUDENT = [*SMOKE, "size=student", "distillation=standard"]


def _evil_checkpoint(run_dir: Path, canary: Path) -> None:
    checkpoint = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["note"] = Canary(canary)
    torch.save(checkpoint, run_dir / "checkpoints" / "best.ckpt")


def _evil_network(run_dir: Path, canary: Path) -> None:
    config = read(run_dir / "config.yaml")
    config["network"] = {"_target_": "os.system", "_args_": [f"touch {canary}"]}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))


@pytest.mark.parametrize("plant, pinned", [(_evil_checkpoint, False), (_evil_checkpoint, True),
                                           (_evil_network, False)],
                         ids=["planted-checkpoint-found", "planted-checkpoint-pinned",
                              "planted-network-target"])
def test_a_planted_teacher_run_is_refused_before_the_student_allocates(plant, pinned, trained, train,
                                                                       tmp_path):
    root, canary = tmp_path / "runs", tmp_path / "canary"
    teacher = copy_run(trained, root, TEACHER)  # a completed-looking teacher of the student
    plant(teacher, canary)
    before = run_dirs(root)
    extra = [f"module.distillation.teacher_run={teacher}"] if pinned else []

    result = train(root, *STUDENT, *extra)

    assert result.returncode == 2, output(result)
    assert "Traceback" not in result.stderr and str(teacher) in result.stderr, output(result)
    assert not canary.exists()
    assert run_dirs(root) == before
