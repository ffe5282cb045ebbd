"""``kdgat-train`` as a user runs it: real subprocesses, a ``-m`` sweep, bad input, failures.

Everything trains the ``tiny`` GAT for one smoke epoch (two batches) on the built-in synthetic
dataset, which is generated once into a cache shared by the whole session (:func:`shared_cache`).
The helpers here are imported by the other ``tests/cli`` modules of the experiment system.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent
SMOKE = ["trainer=smoke", "size=tiny", "tracking.enabled=false"]
TINY_GAT = "automotive/synthetic/classifier/gat/tiny/no/all_samples"
HEAVY = ("torch", "lightning", "torch_geometric", "mlflow")


# --------------------------------------------------------------------------- helpers (shared)
def command(name: str) -> list[str]:
    """The console script ``name`` (``kdgat-train`` or ``kdgat``) beside this interpreter."""
    script = BIN / name
    if script.is_file():
        return [str(script)]
    module = {"kdgat-train": "kdgat.train", "kdgat": "kdgat.cli"}[name]
    return [sys.executable, "-m", module]


def shared_cache(tmp_path_factory) -> Path:
    """One graph cache (and synthetic dataset) for every test of the session."""
    return tmp_path_factory.getbasetemp() / "kdgat-cache"


def subprocess_env(cache: Path) -> dict[str, str]:
    """The environment of a child: no KDGAT_* from the caller, the shared cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDGAT_")}
    env["KDGAT_CACHE_DIR"] = str(cache)
    return env


def run(args: list[str], env: dict, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)


def output(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"


def run_dirs(root: Path) -> set[Path]:
    """Every ``run_NNN`` directory under ``root``."""
    return {p for p in Path(root).rglob("run_*") if p.is_dir()}


def read(path: Path):
    """A JSON or YAML file (JSON is YAML)."""
    return yaml.safe_load(Path(path).read_text())


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    return subprocess_env(shared_cache(tmp_path_factory))


@pytest.fixture(scope="module")
def train(env, tmp_path_factory):
    """``train(runs_root, *overrides)``: ``kdgat-train`` in a subprocess (cwd: a scratch folder)."""
    cwd = tmp_path_factory.mktemp("cwd")

    def call(runs_root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        # Flags (-m) before every override: argparse takes overrides on one side of them only.
        flags = [a for a in args if a.startswith("-")]
        overrides = [a for a in args if not a.startswith("-")]
        return run([*command("kdgat-train"), *flags, f"runs_root={runs_root}", *overrides], env, cwd,
                   timeout)
    call.cwd = cwd
    return call


# --------------------------------------------------------------------------- --help and --cfg
def imported_modules(stderr: str) -> set[str]:
    """Top-level packages named by ``python -X importtime``'s report."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job", "size=tiny", "model=vgae",
                                                 "mode=normals_only"]])
def test_help_and_cfg_job_work_without_importing_torch(args, env, tmp_path):
    # Hydra's flags come first: argparse takes overrides on one side of them only.
    result = run([sys.executable, "-X", "importtime", "-m", "kdgat.train", *args,
                  f"runs_root={tmp_path}"], env, tmp_path, timeout=120)
    assert result.returncode == 0, output(result)
    modules = imported_modules(result.stderr)
    assert "kdgat" in modules and "hydra" in modules  # the report was read
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))
    if args[0] == "--help":
        assert "Configuration groups" in result.stdout and "kdgat grid" in result.stdout
        assert "model: dqn, gat, majority, mlp, vgae, window_stats" in result.stdout
    else:
        config = yaml.safe_load(result.stdout)
        assert config["grid"]["model"] == "vgae" and config["grid"]["size"] == "tiny"
        assert config["network"]["_target_"] == "kdgat.models.builders.vgae"
        assert config["datamodule"]["train_windows"] == "normals_only"
    assert list(tmp_path.iterdir()) == []  # nothing written: no run dir, no Hydra folder


# --------------------------------------------------------------------------- bad input
def test_unknown_key_is_refused_with_a_did_you_mean(train, tmp_path):
    result = train(tmp_path, "trainr.max_epochs=1")
    assert result.returncode == 2, output(result)
    assert "unknown key 'trainr'" in result.stderr and "did you mean 'trainer'?" in result.stderr
    assert "Traceback" not in result.stderr
    assert run_dirs(tmp_path) == set()


def test_unknown_group_option_lists_the_options(train, tmp_path):
    result = train(tmp_path, "model=transformer")
    assert result.returncode != 0, output(result)
    assert "Could not find 'model/transformer'" in result.stderr
    assert "Available options in 'model'" in result.stderr
    for option in ("dqn", "gat", "mlp", "vgae"):
        assert f"\t{option}\n" in result.stderr
    assert run_dirs(tmp_path) == set()


def test_wrong_type_names_the_key(train, tmp_path):
    result = train(tmp_path, *SMOKE, "trainer.max_epochs=many")
    assert result.returncode != 0, output(result)
    assert "full_key: trainer.max_epochs" in result.stderr
    assert "could not be converted to Integer" in result.stderr
    assert run_dirs(tmp_path) == set()


def test_wrong_type_of_seed_names_the_key(train, tmp_path):
    result = train(tmp_path, *SMOKE, "seed=abc")
    assert result.returncode != 0 and "seed" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("overrides, message", [
    (["model=gat", "size=teacher", "distillation=standard"],
     "distillation='standard' is not valid for model=gat (learning_type=classifier) size=teacher "
     "distillation=standard mode=all_samples dataset=synthetic; valid distillation values here: no"),
    (["model=vgae", "mode=curriculum"], "valid mode values here: all_samples, normals_only"),
    (["model=dqn", "size=student", "distillation=topology_preserving"],
     "valid distillation values here: no, standard"),
])
def test_invalid_grid_combination_lists_the_valid_values(overrides, message, train, tmp_path):
    result = train(tmp_path, "trainer=smoke", "tracking.enabled=false", *overrides)
    assert result.returncode == 2, output(result)
    assert message in result.stderr and "Traceback" not in result.stderr
    assert run_dirs(tmp_path) == set()


@pytest.mark.parametrize("override, message", [
    ("datamodule.batch_size=0", "datamodule.batch_size=0 must be >= 1"),
    ("threshold_rule=best", "threshold_rule='best' is not valid; choose one of: f1, youden, fixed"),
    ("threshold_fixed=nan", "threshold_fixed=nan is not valid: use a finite number"),
    ("monitor=val/accuracy", "monitor='val/accuracy' is not valid; choose one of: val/loss, "
                             "val/auroc, val/auprc, val/f1"),
    ("module.monitor=val/acc", "module.monitor='val/acc' is not valid; choose one of: val/loss, "
                               "val/auroc, val/auprc, val/f1"),
    ("module.optimizer.name=adagrad", "optimizer.name='adagrad' is not valid; choose one of: adam, adamw, sgd"),
    ("datamodule.window=1", "datamodule.window=1: a window is at least 2 frames"),
    ("datamodule.stride=0", "datamodule.stride=0: the stride is at least 1 frame"),
    ("datamodule.val_fraction=1.5", "datamodule.val_fraction=1.5: the validation share of each training file"),
    ("datamodule.num_workers=-1", "datamodule.num_workers=-1 must be >= 0"),
    ("seed=-1", "seed=-1 is not valid: use an integer from 0 to 4294967295"),
    ("protocol.rule=lenient", "protocol.rule='lenient' must be one of benign_quantile, f1, youden, fixed"),
    ("protocol.benign_fpr=0", "protocol.benign_fpr=0.0 must lie strictly between 0 and 1"),
])
def test_bad_setting_value_is_refused_before_any_run_dir(override, message, train, tmp_path):
    result = train(tmp_path, *SMOKE, override)
    assert result.returncode == 2, output(result)
    assert message in result.stderr and "Traceback" not in result.stderr
    assert run_dirs(tmp_path) == set()


# --------------------------------------------------------------------------- failures stay recorded
def test_a_run_failing_inside_training_is_recorded_as_failed(train, tmp_path):
    """The override passes validation, but the data gives no window of that length (with
    ``threshold_rule=fixed`` no validation classes are checked, so the data are first read
    inside the run)."""
    result = train(tmp_path, *SMOKE, "datamodule.window=100000", "threshold_rule=fixed")
    assert result.returncode != 0, output(result)
    (run_dir,) = run_dirs(tmp_path)
    assert run_dir == tmp_path / TINY_GAT / "run_001"
    assert str(run_dir) in result.stderr and "no complete window of 100000 frames" in result.stderr
    status = read(run_dir / "status.json")
    assert status["status"] == "failed"
    assert status["error"].startswith("ValueError:") and "100000" in status["error"]
    assert "Traceback" in status["traceback"] and status["finished"]
    assert [h["status"] for h in status["history"]] == ["running", "failed"]
    assert not (run_dir / "metrics.json").exists()
    # The config that failed is kept, resolved, for a look or a fixed re-run.
    assert read(run_dir / "config.yaml")["datamodule"]["window"] == 100000


# --------------------------------------------------------------------------- -m sweeps
def test_a_sweep_writes_one_run_dir_per_point_and_a_summary(train, tmp_path):
    root = tmp_path / "runs"
    result = train(root, "-m", "trainer=smoke", "size=tiny,student", "tracking.enabled=false")
    assert result.returncode == 0, output(result)
    expected = {root / TINY_GAT / "run_001",
                root / TINY_GAT.replace("/tiny/", "/student/") / "run_001"}
    assert run_dirs(root) == expected
    # Hydra's own output stays out of the way: no multirun/ or outputs/ folders, no job files.
    assert not {p.name for p in train.cwd.iterdir()} & {"multirun", "outputs"}
    assert not [p for p in root.rglob("*") if p.name in ("config.yaml", "metrics.json")
                and p.parent not in expected]

    (summary,) = root.glob(".sweeps/*/summary.json")
    jobs = read(summary)
    assert len(jobs) == 2
    assert {job["run_dir"] for job in jobs} == {str(p) for p in expected}
    assert {job["status"] for job in jobs} == {"completed"}
    for job in jobs:
        assert "size=tiny" in job["overrides"] or "size=student" in job["overrides"]
        assert job["test_pooled_f1"] == read(Path(job["run_dir"]) / "metrics.json")["test"]["pooled"]["f1"]
    for run_dir in expected:
        status = read(run_dir / "status.json")
        assert status["status"] == "completed"
        assert Path(status["sweep_dir"]) == summary.parent
    assert f"sweep summary (2 jobs): {summary}" in result.stdout


def test_summary_names_a_failed_job(train, tmp_path):
    """A job failing at setup does not stop the sweep; the summary says which one and why."""
    root = tmp_path / "runs"
    result = train(root, "-m", *SMOKE, "datamodule.window=100000,50", "datamodule.stride=50")
    jobs = read(next(root.glob(".sweeps/*/summary.json")))
    assert [job["status"] for job in jobs] == ["failed", "completed"], output(result)
    assert "100000" in jobs[0]["error"]
    assert result.returncode != 0
