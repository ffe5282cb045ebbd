"""The synthetic dataset: layout, file format, determinism and the attacks it simulates.

Files are parsed with plain ``csv`` here, independent of kdgat's own reader.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import statistics
from pathlib import Path

import pytest

from kdgat.data.synth import synthesize

FOLDERS = {
    "train_01_attack_free", "train_02_with_attacks",
    "test_01_known_vehicle_known_attack", "test_02_unknown_vehicle_known_attack",
    "test_03_known_vehicle_unknown_attack", "test_04_unknown_vehicle_unknown_attack",
    "test_05_suppress", "test_06_masquerade",
}
EPOCH = 1672531200.0
TIMESTAMP = re.compile(r"^\d+\.\d+$")
CAN_ID = re.compile(r"^[0-9A-F]{3}$")
PAYLOAD = re.compile(r"^(?:[0-9A-F]{2}){0,8}$")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("synth") / "synthetic", seed=0)


@pytest.fixture(scope="module")
def rows(dataset):
    """relative path -> [(timestamp, id, payload, attack)] with every field checked as it is read."""
    parsed = {}
    for path in sorted(dataset.root.rglob("*.csv.gz")):
        with gzip.open(path, "rt", newline="") as handle:
            reader = csv.reader(handle)
            assert next(reader) == ["timestamp", "arbitration_id", "data_field", "attack"]
            records = []
            for line, (ts, can_id, payload, attack) in enumerate(reader, start=2):
                assert TIMESTAMP.match(ts) and CAN_ID.match(can_id) and PAYLOAD.match(payload), \
                    f"{path}:{line}: {ts},{can_id},{payload},{attack}"
                assert attack in ("0", "1"), f"{path}:{line}"
                records.append((float(ts), can_id, payload, attack == "1"))
        parsed[path.relative_to(dataset.root).as_posix()] = records
    return parsed


def attack_files(rows, kind):
    return {name: records for name, records in rows.items() if Path(name).name.startswith(kind + "-")}


def test_layout_matches_the_bundle(dataset, rows):
    assert {p.name for p in dataset.root.iterdir()} == FOLDERS
    assert all(p.parent.name in FOLDERS for p in dataset.root.rglob("*") if p.is_file())
    on_disk = {name: (len(r), sum(a for *_, a in r)) for name, r in rows.items()}
    assert on_disk == {name: (n, attacks) for name, n, attacks in dataset.files}
    assert [name for name, *_ in dataset.files] == sorted(on_disk)
    names = {Path(name).name.split("-")[0] for name in rows}
    assert names == {"attack", "DoS", "fuzzing", "spoofing", "suppress", "masquerade"}
    # small is small: a whole pipeline must train on it in minutes on a laptop CPU
    assert all(10_000 <= n <= 40_000 for _, n, _ in dataset.files)
    assert 250_000 <= dataset.rows <= 400_000


def test_train_02_holds_byte_identical_copies_of_train_01(dataset):
    benign = sorted((dataset.root / "train_01_attack_free").iterdir())
    assert len(benign) == 2
    for path in benign:
        copy = dataset.root / "train_02_with_attacks" / path.name
        assert copy.read_bytes() == path.read_bytes()
    assert len(list((dataset.root / "train_02_with_attacks").iterdir())) > len(benign)


def test_clock_starts_at_the_epoch_and_never_goes_back(rows):
    for name, records in rows.items():
        times = [t for t, *_ in records]
        assert times[0] == EPOCH, name
        assert all(a <= b for a, b in zip(times, times[1:])), name
        assert 10 < times[-1] - EPOCH < 40, name


def test_empty_payloads_occur_in_benign_and_attack_rows(rows):
    benign = rows["train_01_attack_free/attack-free-sedan.csv.gz"]
    assert sum(payload == "" for _, _, payload, _ in benign) > 100
    fuzzing = [r for records in attack_files(rows, "fuzzing").values() for r in records if r[3]]
    assert any(payload == "" for _, _, payload, _ in fuzzing)


def test_attack_shares_are_plausible(rows):
    for name, records in rows.items():
        share = sum(a for *_, a in records) / len(records)
        if Path(name).name.startswith(("attack-free", "suppress")):
            assert share == 0, name
        else:
            assert 0.005 < share < 0.4, (name, share)


def test_attacks_come_in_bursts(rows):
    for name, records in rows.items():
        times = [t for t, *_, a in records if a]
        if times:
            gaps = [b - a for a, b in zip(times, times[1:]) if b - a > 0.5]
            assert len(gaps) >= 2, name  # at least three bursts separated by quiet intervals
            assert times[0] - EPOCH > 1.0, name  # a benign stretch before the first burst


def test_dos_floods_id_000_with_zeros(rows):
    for name, records in attack_files(rows, "DoS").items():
        attack = {(can_id, payload) for _, can_id, payload, a in records if a}
        assert attack == {("000", "0" * 16)}, name
        assert all(can_id != "000" for _, can_id, _, a in records if not a), name


def test_fuzzing_sends_random_ids(rows):
    for name, records in attack_files(rows, "fuzzing").items():
        benign_ids = {can_id for _, can_id, _, a in records if not a}
        attack_ids = {can_id for _, can_id, _, a in records if a}
        assert 25 <= len(benign_ids) <= 40, name
        assert len(attack_ids) > 500 and len(attack_ids - benign_ids) > 450, name


def inter_arrival(records, can_id, attack):
    times = [t for t, i, _, a in records if i == can_id and a == attack]
    return statistics.median(b - a for a, b in zip(times, times[1:]))


def test_spoofing_injects_one_legitimate_id_faster_with_other_payloads(rows):
    for name, records in attack_files(rows, "spoofing").items():
        (target,) = {can_id for _, can_id, _, a in records if a}
        assert inter_arrival(records, target, True) < inter_arrival(records, target, False) / 2, name
        legit = {p for _, i, p, a in records if i == target and not a}
        forged = {p for _, i, p, a in records if i == target and a}
        assert legit and len(legit & forged) <= len(forged) / 10, name


def test_masquerade_replaces_one_id_at_its_own_period(rows):
    for name, records in attack_files(rows, "masquerade").items():
        (target,) = {can_id for _, can_id, _, a in records if a}
        legit, forged = inter_arrival(records, target, False), inter_arrival(records, target, True)
        assert forged == pytest.approx(legit, rel=0.2), name
        # within a burst the target ID is sent only by the attacker: one run of forged frames each
        flags = [a for _, i, _, a in records if i == target]
        runs = sum(now and not before for before, now in zip([False] + flags, flags))
        times = [t for t, *_, a in records if a]
        assert runs == 1 + sum(b - a > 0.5 for a, b in zip(times, times[1:])), name


def test_suppress_silences_an_id_without_labels(rows):
    for name, records in attack_files(rows, "suppress").items():
        assert not any(a for *_, a in records), name
        by_id = {}
        for t, can_id, _, _ in records:
            by_id.setdefault(can_id, []).append(t)
        # one ID that is normally sent every 50 ms or faster falls silent for more than a second
        silenced = [i for i, ts in by_id.items()
                    if statistics.median(b - a for a, b in zip(ts, ts[1:])) <= 0.051
                    and max(b - a for a, b in zip(ts, ts[1:])) > 1.0]
        assert len(silenced) == 1, name


def test_unknown_vehicle_has_mostly_other_ids(rows):
    def benign_ids(vehicle):
        return {i for name, records in rows.items() if name.endswith(f"-{vehicle}.csv.gz")
                for _, i, _, a in records if not a}

    sedan, hatchback, pickup = benign_ids("sedan"), benign_ids("hatchback"), benign_ids("pickup")
    assert all(25 <= len(ids) <= 40 for ids in (sedan, hatchback, pickup))
    assert 0.3 < len(sedan & hatchback) / len(sedan | hatchback) < 0.9  # partial overlap
    assert len(pickup & (sedan | hatchback)) / len(pickup) < 0.25
    # the unknown vehicle only appears in the unknown-vehicle test folders
    assert {name.split("/")[0] for name in rows if "pickup" in name} == {
        "test_02_unknown_vehicle_known_attack", "test_04_unknown_vehicle_unknown_attack"}


def test_same_seed_same_bytes_other_seed_other_bytes(dataset, tmp_path):
    again = tmp_path / "again"
    again.mkdir()  # an existing empty folder is fine
    synthesize(again, seed=0)
    other = synthesize(tmp_path / "other", seed=1)
    for name, *_ in dataset.files:
        data = (dataset.root / name).read_bytes()
        assert (again / name).read_bytes() == data, name
        assert (other.root / name).read_bytes() != data, name
        assert data[4:8] == b"\0\0\0\0" and not data[3] & 0x08, name  # gzip: mtime 0, no file name
        with gzip.open(io.BytesIO(data)) as handle:
            assert handle.readline() == b"timestamp,arbitration_id,data_field,attack\n"
            assert handle.readline().startswith(b"1672531200.0,"), name  # written like set_0x


def test_medium_is_about_five_times_small(dataset, tmp_path):
    medium = synthesize(tmp_path / "medium", seed=0, scale="medium")
    assert [name for name, *_ in medium.files] == [name for name, *_ in dataset.files]
    assert 4.5 < medium.rows / dataset.rows < 5.5


def test_refuses_to_overwrite(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="delete it or pass another out_dir"):
        synthesize(tmp_path / "taken")
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # no partial folder left behind
    with pytest.raises(ValueError, match="small"):
        synthesize(tmp_path / "new", scale="large")
