"""A validation split without both classes is refused before a run directory exists (issue 9, 6).

A threshold rule fit on validation labels (f1, youden) cannot work when validation lacks attack or
benign windows; before this check every such run trained for minutes and then failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import KNOWN_IDS, TEST_01, TRAIN_01, TRAIN_02, TINY_WINDOW, periodic_rows

TRAIN = Path(sys.executable).parent / "kdgat-train"


def _no_val_attacks() -> dict:
    """A tiny dataset whose only training attacks (rows 30-35 of DoS-a) lie before the cut."""
    dos = periodic_rows(100, KNOWN_IDS, seed=2, attacks={k: 0x000 for k in range(30, 36)})
    return {
        f"{TRAIN_01}/attack-free-a.csv": periodic_rows(120, KNOWN_IDS, seed=1),
        f"{TRAIN_02}/DoS-a.csv": dos,
        f"{TEST_01}/DoS-b.csv": periodic_rows(60, KNOWN_IDS, seed=3, attacks={k: 0 for k in range(20, 30)}),
    }


def _train(tmp_path: Path, *overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDGAT_")}
    env["KDGAT_RUNS_ROOT"] = str(tmp_path / "runs")
    return subprocess.run([str(TRAIN), *overrides], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=timeout)


def _run_dirs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "runs").rglob("run_[0-9][0-9][0-9]"))


def _datamodule(root: Path, cache: Path, **settings):
    from kdgat.data.datamodule import CANGraphDataModule

    return CANGraphDataModule(dataset=root.name, data_root=str(root.parent), cache_dir=str(cache),
                              window=TINY_WINDOW, stride=TINY_WINDOW, **settings)


def test_one_class_validation_is_refused_with_files_and_options(make_dataset, tmp_path):
    from kdgat.data.datamodule import OneClassValidation

    root = make_dataset(_no_val_attacks())
    with pytest.raises(OneClassValidation) as caught:
        _datamodule(root, tmp_path / "cache").check_validation("f1")
    message = str(caught.value)
    # cut at row 96 of attack-free-a (gap 96-105, val 106-115: 1 window) and at row 80 of DoS-a
    # (val rows 90-99: 1 window); no validation window holds an attack.
    assert "has 2 windows, 0 attack: no attack windows" in message
    assert f"{TRAIN_01}/attack-free-a.csv: 1 benign, 0 attack" in message
    assert f"{TRAIN_02}/DoS-a.csv: 1 benign, 0 attack" in message
    # the last training attack window starts at row 30: val_fraction >= 1 - (30 - 10) / 100 = 0.8
    assert "datamodule.val_fraction=0.81 or more (now 0.2)" in message
    assert "threshold_rule=fixed" in message and "fixed=...)" not in message
    with pytest.raises(OneClassValidation):
        _datamodule(root, tmp_path / "cache").check_validation("youden")


def test_suggested_val_fraction_puts_attacks_into_validation(make_dataset, tmp_path):
    root = make_dataset(_no_val_attacks())
    datamodule = _datamodule(root, tmp_path / "cache", val_fraction=0.81)
    datamodule.check_validation("f1")  # no error: validation now holds both classes
    datamodule.setup()
    val = datamodule.store.graphs_of("val")
    assert 0 < datamodule.store.y[val].sum() < len(val)


def test_fixed_rule_reads_no_data(make_dataset, tmp_path):
    root = make_dataset(_no_val_attacks())
    _datamodule(root, tmp_path / "cache").check_validation("fixed")
    assert not (tmp_path / "cache").exists()  # nothing prepared for a rule that fits nothing


def test_validation_with_both_classes_passes(tiny_dataset, tmp_path):
    _datamodule(tiny_dataset, tmp_path / "cache").check_validation("f1")  # DoS-a rows 93-95


def test_choose_threshold_hint_names_real_keys():
    from kdgat.evaluation.thresholds import choose_threshold

    with pytest.raises(ValueError) as caught:
        choose_threshold([0.1, 0.2], [0, 0], rule="f1")
    message = str(caught.value)
    assert "(with fixed=...)" not in message
    assert "threshold_rule=fixed" in message and "datamodule.val_fraction" in message
    assert choose_threshold([0.1, 0.2], [0, 0], rule="fixed", fixed=0.3) == 0.3


def test_kdgat_train_refuses_tiny_dataset_then_fixed_runs(make_dataset, tmp_path):
    # a data_root holding synthetic/ serves that folder as the default dataset
    root = make_dataset(_no_val_attacks(), name="synthetic")
    common = [f"data_root={root.parent}",
              f"datamodule.window={TINY_WINDOW}", f"datamodule.stride={TINY_WINDOW}",
              "datamodule.batch_size=4", "trainer=smoke"]
    refused = _train(tmp_path, *common)
    assert refused.returncode == 2, refused.stderr
    assert "no attack windows" in refused.stderr and "threshold_rule=fixed" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert _run_dirs(tmp_path) == []
    done = _train(tmp_path, *common, "threshold_rule=fixed")
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(_run_dirs(tmp_path)) == 1


@pytest.mark.realdata
def test_kdgat_train_refuses_set_01_before_any_run_directory(real_data, tmp_path):
    refused = _train(tmp_path, "dataset=set_01", f"data_root={real_data}", "trainer=smoke")
    assert refused.returncode == 2, refused.stderr[-3000:]
    message = refused.stderr
    assert "dataset 'set_01'" in message and "0 attack: no attack windows" in message
    for name in ("train_01_attack_free/accessory-1.csv.gz", "train_02_with_attacks/DoS-1.csv.gz",
                 "train_02_with_attacks/targeted_payload_fuzzing-2.csv.gz"):
        assert f"{name}: " in message
    assert "threshold_rule=fixed" in message and "datamodule.val_fraction=" in message
    assert "fixed=...)" not in message and "Traceback" not in message
    assert _run_dirs(tmp_path) == []
