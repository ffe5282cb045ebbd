"""Leave-one-group-out validation (``datamodule.validation=vehicle|attack|file``) next to block.

Grouped validation holds out whole training recordings of one vehicle, attack type or file; test
folders are never part of it. On the synthetic dataset (the same shape as hcrl_sa: training
recordings attack-free-sedan, attack-free-hatchback, DoS-sedan, fuzzing-hatchback) and on the real
hcrl_sa (skipped where ../shared/data is absent).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kdgat.data.cache import cache_key, load_or_build
from kdgat.data.groups import plan_validation, vehicle_of
from kdgat.data.layout import discover
from kdgat.data.prepare import TRAIN, VAL, PrepareParams, prepare
from kdgat.data.settings import DataSettings
from tests.conftest import KNOWN_IDS, TRAIN_01, TRAIN_02, TEST_01, periodic_rows

TRAIN_ROOT = "train_01_attack_free", "train_02_with_attacks"
SEDAN = ("train_01_attack_free/attack-free-sedan.csv.gz", "train_02_with_attacks/DoS-sedan.csv.gz")
HATCHBACK = ("train_01_attack_free/attack-free-hatchback.csv.gz",
             "train_02_with_attacks/fuzzing-hatchback.csv.gz")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    from kdgat.data.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("grouped") / "synthetic", seed=0).root


@pytest.fixture(scope="module")
def layout(synthetic):
    return discover(synthetic)


# --------------------------------------------------------------------------- the assignment
@pytest.mark.parametrize("mode, holdout, val", [
    ("vehicle", "sedan", SEDAN),
    ("vehicle", "HATCHBACK", HATCHBACK),  # names match case-insensitively
    ("attack", "dos", SEDAN[1:]),  # benign recordings never leave training
    ("attack", "fuzzing", HATCHBACK[1:]),
    ("file", "attack-free-sedan", SEDAN[:1]),
    ("file", "fuzzing-hatchback", HATCHBACK[1:]),
])
def test_each_mode_holds_out_exactly_the_group(layout, mode, holdout, val):
    plan = plan_validation(layout, "synthetic", mode, holdout)
    training = {r.relpath for r in layout.train}
    assert sorted(plan.val) == sorted(val)
    assert set(plan.train) == training - set(val)
    assert not set(plan.val) & {r.relpath for files in layout.tests.values() for r in files}


def test_default_holdouts_and_block(layout):
    assert plan_validation(layout, "synthetic", "vehicle").holdout == "sedan"
    attack = plan_validation(layout, "synthetic", "attack")
    assert (attack.holdout, attack.default, attack.val) == ("dos", True, SEDAN[1:])
    block = plan_validation(layout, "synthetic")
    assert block.validation == "block" and block.val == block.train == tuple(r.relpath for r in layout.train)


def test_no_default_holdout_lists_the_groups_and_how_to_choose(layout):
    with pytest.raises(ValueError) as caught:
        plan_validation(layout, "synthetic", "file")
    message = str(caught.value)
    assert "no default holdout for datamodule.validation=file" in message
    for name in ("DoS-sedan", "attack-free-hatchback", "attack-free-sedan", "fuzzing-hatchback"):
        assert name in message
    assert "datamodule.holdout=NAME" in message
    assert "-m datamodule.holdout=DoS-sedan,attack-free-hatchback,attack-free-sedan,fuzzing-hatchback" in message


@pytest.mark.parametrize("mode, holdout, valid", [
    ("vehicle", "pickup", "hatchback (2 recordings), sedan (2 recordings)"),  # pickup: test only
    ("attack", "benign", "dos (1 recording), fuzzing (1 recording)"),
    ("attack", "spoofing", "dos (1 recording), fuzzing (1 recording)"),  # a test-only attack
    ("file", "DoS-hatchback", "DoS-sedan (1 recording)"),  # a test file
])
def test_unknown_holdout_is_refused_with_the_valid_names(layout, mode, holdout, valid):
    with pytest.raises(ValueError) as caught:
        plan_validation(layout, "synthetic", mode, holdout)
    message = str(caught.value)
    assert f"datamodule.holdout={holdout!r} names no {mode} group" in message and valid in message


def test_holdout_with_block_and_unknown_mode_are_refused():
    with pytest.raises(ValueError, match=r"datamodule.holdout='kia' needs a grouped validation.*"
                                         r"datamodule.validation=vehicle, attack or file"):
        DataSettings(holdout="kia")
    with pytest.raises(ValueError, match="holdout='kia' needs a grouped validation"):
        PrepareParams(holdout="kia")
    with pytest.raises(ValueError, match=r"datamodule.validation='car' is not valid; choose one of: "
                                         r"block, vehicle, attack, file"):
        DataSettings(validation="car")
    assert DataSettings(validation="vehicle", holdout="kia").holdout == "kia"


def test_one_vehicle_dataset_refuses_vehicle_grouping(make_dataset):
    root = make_dataset({f"{TRAIN_01}/attack-free-1.csv": periodic_rows(40, KNOWN_IDS, seed=1),
                         f"{TRAIN_02}/DoS-1.csv": periodic_rows(40, KNOWN_IDS, seed=2, attacks={5: 0}),
                         f"{TEST_01}/DoS-2.csv": periodic_rows(40, KNOWN_IDS, seed=3)}, name="hcrl_ch")
    with pytest.raises(ValueError) as caught:
        plan_validation(discover(root), "hcrl_ch", "vehicle", "1")
    message = str(caught.value)
    assert "dataset 'hcrl_ch' has no vehicle grouping" in message and "one vehicle" in message
    assert "datamodule.validation=attack or file" in message
    assert plan_validation(discover(root), "hcrl_ch", "attack", "dos").val == (f"{TRAIN_02}/DoS-1.csv",)


def test_holdout_leaving_no_training_recording_is_refused(tiny_dataset):
    # tiny: attack-free-a and DoS-a, one vehicle "a" by the file-name rule (not a declared dataset)
    with pytest.raises(ValueError, match=r"holds out every training recording .* leaving nothing to "
                                         r"train on; its vehicle groups: a \(2 recordings\)"):
        plan_validation(discover(tiny_dataset), "tiny", "vehicle", "a")


def test_vehicle_names_follow_the_table():
    assert vehicle_of("test_02_unknown_vehicle_known_attack/fuzzing-Spark.csv.gz", "hcrl_sa") == "spark"
    assert vehicle_of("train_02_with_attacks/targeted_payload_fuzzing-2.csv.gz", "set_01") == "2"
    assert vehicle_of("x/DoS-truck.csv", "my_capture") == "truck"  # the file-name rule
    with pytest.raises(ValueError, match=r"gives no vehicle that dataset 'hcrl_sa' knows"):
        vehicle_of("train_02_with_attacks/DoS-tesla.csv.gz", "hcrl_sa")


# --------------------------------------------------------------------------- the prepared splits
def _files_by_split(arrays, meta) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for code in np.unique(arrays["split"]):
        indices = np.unique(arrays["file_index"][arrays["split"] == code])
        found[int(code)] = {meta["files"][k]["relpath"] for k in indices}
    return found


def test_grouped_prepare_keeps_recordings_whole(layout):
    arrays, meta = prepare(layout, PrepareParams(validation="vehicle"), dataset="synthetic")
    by_split = _files_by_split(arrays, meta)
    assert by_split[VAL] == set(SEDAN) and by_split[TRAIN] == set(HATCHBACK)
    sha = {f["relpath"]: f["sha256"] for f in meta["files"]}
    assert not {sha[f] for f in by_split[TRAIN]} & {sha[f] for f in by_split[VAL]}
    tests = {r.relpath for files in layout.tests.values() for r in files}
    assert not tests & (by_split[TRAIN] | by_split[VAL])
    for index, file in enumerate(meta["files"]):  # whole recordings: every window, no gap
        if file["split"] == "train":
            windows = arrays["start_frame"][arrays["file_index"] == index]
            assert np.array_equal(windows, np.arange(file["rows"] // 100) * 100)
    assert meta["validation"] == {
        "validation": "vehicle", "holdout": "sedan", "default_holdout": True,
        "train_files": list(HATCHBACK), "val_files": list(SEDAN),
        "groups": {**dict.fromkeys(SEDAN, "sedan"), **dict.fromkeys(HATCHBACK, "hatchback")}}
    assert meta["params"]["holdout"] == "sedan"
    train_nodes = np.repeat(arrays["split"], np.diff(arrays["node_ptr"])) == TRAIN
    assert meta["vocabulary"] == np.unique(arrays["node_can_id"][train_nodes]).tolist()


def test_block_mode_and_its_cache_key_are_unchanged(layout):
    params = PrepareParams()
    old_key = hashlib.sha256(json.dumps({  # the key as computed before grouped validation existed
        "format": 3, "params": {"window": 100, "stride": 100, "val_fraction": 0.2, "on_error": "fail"},
        "files": [(r.relpath, r.split, r.sha256) for r in layout.recordings]},
        sort_keys=True).encode()).hexdigest()[:24]
    assert cache_key(layout, params) == old_key
    arrays, meta = prepare(layout, params)
    by_split = _files_by_split(arrays, meta)
    assert by_split[TRAIN] == by_split[VAL] == {r.relpath for r in layout.train}
    assert meta["validation"]["validation"] == "block"
    assert {f["role"] for f in meta["files"] if f["split"] == "train"} == {"block"}


def test_grouped_keys_differ_and_the_default_shares_its_named_key(layout, tmp_path):
    keys = {cache_key(layout, PrepareParams(validation=mode, holdout=holdout), "synthetic")
            for mode, holdout in (("vehicle", "sedan"), ("vehicle", "hatchback"), ("attack", "dos"))}
    assert len(keys) == 3 and cache_key(layout, PrepareParams()) not in keys
    assert (cache_key(layout, PrepareParams(validation="vehicle"), "synthetic")
            == cache_key(layout, PrepareParams(validation="vehicle", holdout="Sedan"), "synthetic"))
    with pytest.raises(ValueError, match="pass the dataset name"):
        cache_key(layout, PrepareParams(validation="vehicle"))


def test_datamodule_serves_the_held_out_vehicle_as_validation(synthetic, tmp_path):
    from kdgat.data.datamodule import CANGraphDataModule

    datamodule = CANGraphDataModule(dataset="synthetic", data_root=str(synthetic.parent),
                                    cache_dir=str(tmp_path / "cache"), validation="attack")
    assert datamodule.validation_plan().holdout == "dos"
    datamodule.check_validation("f1")  # DoS-sedan holds benign and attack windows
    datamodule.setup()
    store, files = datamodule.store, datamodule.store.meta["files"]
    val_files = {files[k]["relpath"] for k in np.unique(store.cache["file_index"][store.graphs_of("val")])}
    assert val_files == {SEDAN[1]}
    assert datamodule.validation_record["val_files"] == [SEDAN[1]]


def test_one_class_validation_names_the_held_out_recordings_and_other_holdouts(synthetic, tmp_path):
    from kdgat.data.datamodule import CANGraphDataModule, OneClassValidation

    datamodule = CANGraphDataModule(dataset="synthetic", data_root=str(synthetic.parent),
                                    cache_dir=str(tmp_path / "cache"), validation="file",
                                    holdout="attack-free-sedan")
    with pytest.raises(OneClassValidation) as caught:
        datamodule.check_validation("f1")
    message = str(caught.value)
    assert "datamodule.validation=file datamodule.holdout=attack-free-sedan" in message
    assert "no attack windows" in message
    assert "train_01_attack_free/attack-free-sedan.csv.gz: 280 benign, 0 attack" in message
    assert "datamodule.holdout=DoS-sedan (133 benign, 131 attack windows)" in message
    assert "datamodule.holdout=fuzzing-hatchback" in message
    assert "datamodule.holdout=attack-free-hatchback" not in message  # one class too
    assert "datamodule.validation=vehicle or attack" in message and "threshold_rule=fixed" in message
    assert "val_fraction" not in message


# --------------------------------------------------------------------------- the commands
def test_data_check_prints_the_grouping_table(synthetic, kdgat):
    result = kdgat("data", "check", synthetic)
    assert result.returncode == 0, result.stderr
    assert "grouping of synthetic (declared)" in result.stdout
    out = result.stdout.split("grouping of synthetic", 1)[1]  # after the per-file report
    row = next(line for line in out.splitlines() if "train_02_with_attacks/DoS-sedan.csv.gz" in line)
    assert row.split()[1:] == ["train_02_with_attacks", "sedan", "dos", "sedan", "/", "dos", "/", "DoS-sedan"]
    row = next(line for line in out.splitlines() if "test_02_unknown_vehicle_known_attack/DoS-pickup" in line)
    assert "pickup" in row and "test: never in a group" in row
    copy = next(line for line in out.splitlines()
                if line.strip().startswith("train_02_with_attacks/attack-free-sedan"))
    assert "same bytes as train_01_attack_free/attack-free-sedan.csv.gz" in copy
    assert "vehicle: hatchback (2), sedan (2); default holdout: sedan" in out
    assert "attack:  dos (1), fuzzing (1); benign recordings always train; default holdout: dos" in out


def test_kdgat_train_records_the_default_holdout(synthetic, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDGAT_")}
    train = Path(sys.executable).parent / "kdgat-train"
    done = subprocess.run([str(train), f"data_root={synthetic.parent}", f"runs_root={tmp_path / 'runs'}",
                           "trainer=smoke", "datamodule.validation=vehicle"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run = next((tmp_path / "runs").rglob("run_001"))
    config = (run / "config.yaml").read_text()
    assert "validation: vehicle" in config and "holdout: sedan" in config
    cache = json.loads((run / "metrics.json").read_text())["data"]["cache"]
    assert json.loads((Path(cache) / "meta.json").read_text())["validation"]["val_files"] == list(SEDAN)


# --------------------------------------------------------------------------- real hcrl_sa
HCRL_SA_GROUPS = {
    ("vehicle", "kia"): ["train_01_attack_free/attack-free-kia.csv.gz", "train_02_with_attacks/DoS-kia.csv.gz"],
    ("vehicle", "sonata"): ["train_01_attack_free/attack-free-sonata.csv.gz",
                            "train_02_with_attacks/fuzzing-sonata.csv.gz"],
    ("attack", "dos"): ["train_02_with_attacks/DoS-kia.csv.gz"],
    ("attack", "fuzzing"): ["train_02_with_attacks/fuzzing-sonata.csv.gz"],
    ("file", "attack-free-kia"): ["train_01_attack_free/attack-free-kia.csv.gz"],
}


@pytest.fixture(scope="module")
def hcrl_sa(real_data):
    return discover(real_data / "hcrl_sa")


@pytest.mark.realdata
@pytest.mark.parametrize("mode, holdout", list(HCRL_SA_GROUPS))
def test_hcrl_sa_groups(hcrl_sa, mode, holdout):
    plan = plan_validation(hcrl_sa, "hcrl_sa", mode, holdout)
    assert sorted(plan.val) == HCRL_SA_GROUPS[mode, holdout]
    assert all(path.startswith(TRAIN_ROOT) for path in plan.train + plan.val)
    sha = {r.relpath: r.sha256 for r in hcrl_sa.recordings}
    assert not {sha[p] for p in plan.train} & {sha[p] for p in plan.val}
    assert len(plan.train) + len(plan.val) == 4  # the train_02 copies of attack-free-* counted once


@pytest.mark.realdata
def test_hcrl_sa_defaults_and_test_only_vehicle(hcrl_sa):
    assert plan_validation(hcrl_sa, "hcrl_sa", "vehicle").holdout == "kia"
    assert plan_validation(hcrl_sa, "hcrl_sa", "attack").holdout == "dos"
    with pytest.raises(ValueError, match=r"holdout='spark' names no vehicle group .*kia \(2 recordings\), "
                                         r"sonata \(2 recordings\)"):
        plan_validation(hcrl_sa, "hcrl_sa", "vehicle", "spark")  # spark is a test vehicle only


@pytest.mark.realdata
def test_hcrl_sa_vehicle_holdout_prepared(hcrl_sa, tmp_path):
    cache = load_or_build(hcrl_sa, PrepareParams(validation="vehicle"), tmp_path / "cache", "hcrl_sa")
    by_split = _files_by_split(cache.arrays, cache.meta)
    assert by_split[VAL] == set(HCRL_SA_GROUPS["vehicle", "kia"])
    assert by_split[TRAIN] == set(HCRL_SA_GROUPS["vehicle", "sonata"])
    y, split = np.asarray(cache["y"]), np.asarray(cache["split"])
    for code in (TRAIN, VAL):  # both classes on both sides
        assert 0 < y[split == code].sum() < (split == code).sum()


@pytest.mark.realdata
def test_data_check_prints_the_hcrl_sa_grouping(real_data, kdgat):
    out = kdgat("data", "check", real_data / "hcrl_sa").stdout.split("grouping of hcrl_sa", 1)[1]
    row = next(line for line in out.splitlines() if "/fuzzing-Spark" in line)
    assert row.split()[1:4] == ["test_02_unknown_vehicle_known_attack", "spark", "fuzzing"]
    assert "vehicle: kia (2), sonata (2); default holdout: kia" in out
    assert "attack:  dos (1), fuzzing (1); benign recordings always train; default holdout: dos" in out
