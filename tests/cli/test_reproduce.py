"""``kdgat reproduce RUN_DIR``: the round trip, and every way a saved config can be unfit to run.

A saved ``config.yaml`` is data a user may have edited, damaged or been sent: reproduce must run
it only when it is a kdgat run config whose ``_target_``s are all on the allow-list, and
otherwise say why and leave nothing behind that looks like a run.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml

from test_train_cli import SMOKE, TINY_GAT, command, env, output, read, run, run_dirs, train  # noqa: F401


@pytest.fixture(scope="module")
def reproduce(env, tmp_path_factory):
    """``reproduce(*args)``: ``kdgat reproduce ARGS`` in a subprocess."""
    cwd = tmp_path_factory.mktemp("cwd")
    return lambda *args: run([*command("kdgat"), "reproduce", *args], env, cwd)


@pytest.fixture(scope="module")
def trained(train, tmp_path_factory) -> Path:
    """A completed smoke run of the tiny GAT (module-wide: do not modify it)."""
    root = tmp_path_factory.mktemp("runs")
    result = train(root, *SMOKE, "seed=0")
    assert result.returncode == 0, output(result)
    return root / TINY_GAT / "run_001"


def metric_values(document: dict, prefix: str = "") -> dict[str, float]:
    """Every number of a metrics document's validation, test and threshold sections, flattened."""
    flat = {}
    for key, value in document.items():
        if prefix == "" and key not in ("validation", "test", "threshold"):
            continue
        if isinstance(value, dict):
            flat.update(metric_values(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = value
    return flat


def new_run(before: set[Path], root: Path) -> Path:
    (created,) = run_dirs(root) - before
    return created


# --------------------------------------------------------------------------- the round trip
def test_reproduce_reruns_into_a_new_run_dir_with_the_same_metrics(reproduce, trained):
    root = trained.parents[7]
    before = run_dirs(root)
    result = reproduce(trained)
    assert result.returncode == 0, output(result)
    assert "REPRODUCED" in result.stdout
    again = new_run(before, root)
    assert again.parent == trained.parent and again.name > trained.name
    assert read(again / "status.json")["status"] == "completed"

    original, repeated = read(trained / "metrics.json"), read(again / "metrics.json")
    original_values, repeated_values = metric_values(original), metric_values(repeated)
    assert original_values.keys() == repeated_values.keys()
    assert "test.pooled.f1" in original_values and "threshold.value" in original_values
    for key, value in original_values.items():
        assert repeated_values[key] == pytest.approx(value, abs=1e-6), key
    # The same config, apart from where it ran.
    config, config_again = read(trained / "config.yaml"), read(again / "config.yaml")
    assert Path(config_again.pop("run_dir")) == again.resolve()
    assert Path(config.pop("run_dir")) == trained.resolve()
    assert config_again == config
    assert any(str(trained) in line for line in read(again / "overrides.yaml"))


def test_reproduce_with_a_changed_seed_reports_different(reproduce, trained):
    root = trained.parents[7]
    before = run_dirs(root)
    result = reproduce(trained, "seed=1")
    assert result.returncode == 1, output(result)
    assert "DIFFERENT" in result.stdout and "REPRODUCED" not in result.stdout
    again = new_run(before, root)
    assert read(again / "config.yaml")["seed"] == 1
    assert read(again / "status.json")["status"] == "completed"


def test_an_override_of_a_key_the_config_lacks_is_refused(reproduce, trained):
    before = run_dirs(trained.parents[7])
    result = reproduce(trained, "trainer.max_epoch=3")
    assert result.returncode == 2, output(result)
    assert "override not applicable" in result.stderr and "max_epoch" in result.stderr
    assert run_dirs(trained.parents[7]) == before


# --------------------------------------------------------------------------- configs that must not run
@pytest.fixture
def copy_of(trained, tmp_path):
    """A copy of the trained run in a fresh runs root (whose config.yaml points there); returns
    ``(run_dir, edit)`` where ``edit(function)`` rewrites its config.yaml through ``function``."""
    config = read(trained / "config.yaml")
    config["runs_root"] = str(tmp_path / "runs")
    run_dir = tmp_path / "runs" / TINY_GAT / "run_001"
    run_dir.mkdir(parents=True)
    for name in ("status.json", "metrics.json"):
        (run_dir / name).write_text((trained / name).read_text())
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))

    def edit(function) -> None:
        document = read(run_dir / "config.yaml")
        function(document)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(document))
    return run_dir, edit


def refused(result, root: Path, before: set[Path], *messages: str) -> None:
    """Exit 2 with a message (no traceback), and nothing new that looks like a run."""
    assert result.returncode == 2, output(result)
    for message in messages:
        assert message in result.stderr, output(result)
    assert "Traceback" not in result.stderr
    assert run_dirs(root) == before
    assert not [p for p in root.rglob("status.json") if read(p)["status"] != "completed"]


@pytest.mark.parametrize("target, where", [
    ("os.system", "module"), ("os.system", "module.optimizer"), ("os.system", "trainer.callbacks[0]"),
    ("torch.os.system", "module.optimizer")])
def test_a_foreign_target_is_refused_and_never_called(where, target, reproduce, copy_of):
    """``torch.os.system`` starts like an allowed name but resolves to ``os.system``."""
    run_dir, edit = copy_of
    marker = Path(f"/tmp/pwned-{uuid.uuid4().hex}")
    evil = {"_target_": target, "_args_": [f"touch {marker}"]}

    def plant(config):
        if where == "module":
            config["module"]["_target_"] = target
            config["module"]["_args_"] = [f"touch {marker}"]
        elif where == "module.optimizer":
            config["module"]["optimizer"] = evil
        else:
            config["trainer"]["callbacks"] = [evil]
    edit(plant)
    root = run_dir.parents[7]
    before = run_dirs(root)
    result = reproduce(run_dir)
    refused(result, root, before, f"refusing to instantiate _target_ '{target}'",
            f"at {where}", "not one of the callables kdgat's configs instantiate")
    assert not marker.exists()


def test_a_foreign_target_given_as_an_override_is_refused(reproduce, copy_of):
    run_dir, _ = copy_of
    root = run_dir.parents[7]
    before = run_dirs(root)
    result = reproduce(run_dir, "module.optimizer._target_=subprocess.run")
    refused(result, root, before, "the overrides: refusing to instantiate _target_ 'subprocess.run'")


def _delete(*keys):
    def edit(config):
        node = config
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]
    return edit


@pytest.mark.parametrize("damage, messages", [
    ("text:grid: [modality, dataset\nseed: 0\n", ["config.yaml is not valid YAML"]),
    ("text:", ["is not a kdgat run config: missing ['grid', 'seed', 'runs_root'"]),
    ("text:- just\n- a list\n", ["is not a kdgat run config: missing"]),
    (_delete("network"), ["is not a kdgat run config: missing ['network']"]),
    (_delete("grid", "mode"), ["grid must hold exactly", "missing ['mode']"]),
    (lambda c: c["grid"].update(size="giant"), ["size='giant' is not valid", "valid size values here: tiny"]),
    (lambda c: c.update(grid=3), ["grid must be a mapping"]),
    (_delete("module", "_target_"), ["module must be a mapping with a _target_"]),
    (lambda c: c.update(trainer="lightning"), ["trainer must be a mapping with a _target_"]),
], ids=["invalid-yaml", "empty", "a-list", "no-network", "grid-without-mode", "invalid-size",
        "grid-not-a-mapping", "module-without-target", "trainer-not-a-mapping"])
def test_a_damaged_config_is_refused_with_a_clear_message(damage, messages, reproduce, copy_of):
    run_dir, edit = copy_of
    if isinstance(damage, str):
        (run_dir / "config.yaml").write_text(damage.removeprefix("text:"))
    else:
        edit(damage)
    root = run_dir.parents[7]
    before = run_dirs(root)
    refused(reproduce(run_dir), root, before, str(run_dir / "config.yaml"), *messages)


def test_a_folder_that_is_not_a_run_dir_is_refused(reproduce, tmp_path):
    (tmp_path / "notes.txt").write_text("not a run")
    refused(reproduce(tmp_path), tmp_path, set(), "is not a kdgat run directory: it has no config.yaml")
    refused(reproduce(tmp_path / "run_404"), tmp_path, set(), "no such run directory")


# --------------------------------------------------------------------------- moved runs
def test_a_moved_run_reproduces_into_the_runs_root_it_lives_in_now(reproduce, trained, tmp_path):
    """Its config still names the original absolute runs root; nothing may be written there."""
    import shutil

    original = trained.parents[7]
    moved_root = tmp_path / "moved"
    shutil.copytree(original, moved_root)
    moved = moved_root / TINY_GAT / trained.name
    before_original, before_moved = run_dirs(original), run_dirs(moved_root)
    assert read(moved / "config.yaml")["runs_root"] == str(original.resolve())

    result = reproduce(moved, "tracking.enabled=true")

    assert result.returncode == 0, output(result)
    again = new_run(before_moved, moved_root)
    assert again.parent == moved.parent
    assert read(again / "config.yaml")["runs_root"] == str(moved_root.resolve())
    assert run_dirs(original) == before_original  # nothing new beside the original
    assert (moved_root / "mlflow.db").is_file() and not (original / "mlflow.db").exists()
    assert read(again / "tracking.json")["status"] == "logged"


def test_reproduce_into_another_runs_root(reproduce, trained, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    result = reproduce(trained, "--runs-root", elsewhere)
    assert result.returncode == 0, output(result)
    (again,) = run_dirs(elsewhere)
    assert again == elsewhere / TINY_GAT / "run_001"
    assert read(again / "config.yaml")["runs_root"] == str(elsewhere.resolve())
