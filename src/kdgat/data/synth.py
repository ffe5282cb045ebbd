"""A synthetic CAN-bus dataset in the can-train-and-test layout, so nothing needs downloading.

The simulation follows how a real bus looks in the can-train-and-test bundle:

- **Vehicles.** Two *known* vehicles (``sedan``, ``hatchback``: 34 IDs each, 22 shared, same
  platform so shared IDs carry the same messages) appear in training and in the known-vehicle test
  folders; one *unknown* vehicle (``pickup``) has mostly other IDs and other periods and appears only
  in ``test_02`` and ``test_04``.
- **Messages.** Every ID is sent periodically (10 ms ... 1 s, lower IDs faster as on real buses)
  with small jitter and a per-recording clock drift; frames of all ECUs are merged in time order.
  Payloads are 0-8 bytes made of constant bytes, status flags that toggle rarely, slowly varying
  signals (speed/rpm-like reflected random walks, 8 or 16 bit), rolling counters and a checksum.
- **Attacks** are injected into a fresh benign recording in bursts (attack intervals alternating
  with quiet ones); the injected frames are labelled ``attack=1``. DoS floods ID ``000`` with zero
  payloads; fuzzing sends random IDs, lengths and payloads; spoofing adds forged frames of one ID at
  a higher rate than its own; masquerade removes one ID's legitimate frames and sends forged ones at
  its normal period; suppression removes one ID's frames and labels nothing, like the real
  ``suppress`` files. Known attacks (DoS, fuzzing) are in training; spoofing and masquerade only in
  the unknown-attack test folders.

Every file's clock starts at exactly 1672531200.0 and timestamps have microsecond resolution. Files
are gzip-compressed with a fixed header, so one seed always gives byte-identical files.
"""

from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

SCALES = {"small": 1.0, "medium": 5.0}  # multiplies every recording's duration
_EPOCH = 1672531200
_HEADER = b"timestamp,arbitration_id,data_field,attack\n"
# (periods in seconds, share of the IDs) per platform: the unknown vehicle's ECUs use other periods.
_KNOWN_PERIODS = ((0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0), (0.12, 0.18, 0.25, 0.2, 0.1, 0.08, 0.07))
_UNKNOWN_PERIODS = ((0.01, 0.025, 0.04, 0.08, 0.25, 0.5, 1.0), (0.1, 0.2, 0.25, 0.2, 0.1, 0.1, 0.05))
_BENIGN, _TRAIN = "train_01_attack_free", "train_02_with_attacks"
_T01, _T02 = "test_01_known_vehicle_known_attack", "test_02_unknown_vehicle_known_attack"
_T03, _T04 = "test_03_known_vehicle_unknown_attack", "test_04_unknown_vehicle_unknown_attack"
_T05, _T06 = "test_05_suppress", "test_06_masquerade"
# (folder, attack, vehicle, seconds at scale "small"); a vehicle sends 800-1000 frames per second.
_PLAN = (
    (_BENIGN, "attack-free", "sedan", 28), (_BENIGN, "attack-free", "hatchback", 28),
    (_TRAIN, "DoS", "sedan", 20), (_TRAIN, "fuzzing", "hatchback", 20),
    (_T01, "DoS", "hatchback", 16), (_T01, "fuzzing", "sedan", 16),
    (_T02, "DoS", "pickup", 16), (_T02, "fuzzing", "pickup", 16),
    (_T03, "spoofing", "sedan", 16), (_T03, "spoofing", "hatchback", 16),
    (_T04, "spoofing", "pickup", 16), (_T04, "masquerade", "pickup", 16),
    (_T05, "suppress", "sedan", 16), (_T05, "suppress", "hatchback", 16),
    (_T06, "masquerade", "sedan", 16), (_T06, "masquerade", "hatchback", 16),
)


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`synthesize` wrote.

    Args:
        root: the dataset folder.
        files: ``(path relative to root, rows, attack rows)`` per file, sorted by path.
        seed: the seed it was generated from.
        scale: ``"small"`` or ``"medium"``.
    """

    root: Path
    files: list[tuple[str, int, int]]
    seed: int
    scale: str

    @property
    def rows(self) -> int:
        return sum(rows for _, rows, _ in self.files)


class _Message(NamedTuple):
    can_id: int
    period: float
    dlc: int
    roles: tuple[str, ...]  # one per payload byte
    const: tuple[int, ...]  # value of "const"/"flag" bytes, low nibble of "counter" bytes


class _Frames(NamedTuple):
    t: np.ndarray  # seconds since the recording started
    can_id: np.ndarray
    dlc: np.ndarray
    payload: np.ndarray  # (n, 8) uint8; bytes beyond dlc are ignored
    attack: np.ndarray

    def where(self, keep: np.ndarray) -> _Frames:
        return _Frames(*(a[keep] for a in self))

    def plus(self, other: _Frames) -> _Frames:
        return _Frames(*(np.concatenate([a, b]) for a, b in zip(self, other)))


def _roles(dlc: int, rng: np.random.Generator) -> tuple[str, ...]:
    roles = ["const"] * dlc
    if dlc >= 4 and rng.random() < 0.6:
        roles[0:2] = ["w16", "w16lo"]
    for b in range(dlc):
        if roles[b] == "const":
            roles[b] = str(rng.choice(["const", "const", "walk8", "flag"]))
    counter_at = dlc - 1
    if dlc >= 3 and rng.random() < 0.5:
        roles[dlc - 1], counter_at = "checksum", dlc - 2
    if dlc >= 2 and rng.random() < 0.6:
        roles[counter_at] = "counter"
    return tuple(roles)


def _messages(ids: np.ndarray, periods: tuple[tuple[float, ...], tuple[float, ...]],
              rng: np.random.Generator) -> list[_Message]:
    # Periods by quantile, not by draw, so every vehicle gets a similar frame rate; lower IDs win
    # arbitration, so designers give them the fast messages.
    values, shares = periods
    quantiles = (np.arange(len(ids)) + 0.5) / len(ids)
    quota = np.asarray(values)[np.searchsorted(np.cumsum(shares), quantiles)]
    rank = np.argsort(np.argsort(ids))
    dlcs = rng.choice(9, size=len(ids), p=[0.05, 0, 0.04, 0.04, 0.1, 0.1, 0.07, 0.1, 0.5])
    dlcs[0] = 0  # every ID group has an empty message, so every vehicle sends DLC-0 frames
    return [_Message(int(i), float(quota[r]), int(d), _roles(int(d), rng),
                     tuple(int(c) for c in rng.integers(0, 256, int(d))))
            for i, r, d in zip(ids, rank, dlcs)]


def _vehicles(rng: np.random.Generator) -> dict[str, list[_Message]]:
    ids = rng.permutation(np.arange(0x010, 0x700))  # 000 is left to the DoS attacker
    # Shared and own IDs get their periods apart so both known vehicles have the same frame rate.
    groups = (ids[:22], ids[22:34], ids[34:46])
    platform = {m.can_id: m for g in groups for m in _messages(g, _KNOWN_PERIODS, rng)}
    return {
        "sedan": [platform[i] for i in ids[:34]],
        "hatchback": [platform[i] for i in np.r_[ids[:22], ids[34:46]]],
        "pickup": _messages(np.r_[ids[:4], ids[46:76]], _UNKNOWN_PERIODS, rng),
    }


def _walk(n: int, span: float, period: float, rng: np.random.Generator) -> np.ndarray:
    # Reflected random walk in [0, span]; the step scales with sqrt(period) so a signal changes
    # at the same speed per second whatever its message period.
    x = rng.uniform(0, span) + np.cumsum(rng.normal(0, 0.03 * span * np.sqrt(period), n))
    x = np.mod(x, 2 * span)
    return np.where(x > span, 2 * span - x, x).astype(np.int64)


def _payload(msg: _Message, n: int, rng: np.random.Generator, forged: bool = False) -> np.ndarray:
    """Payloads of ``n`` consecutive frames of ``msg``; ``forged`` freezes every signal at an
    attacker's value while constant bytes, counters and checksum stay valid (a careful attacker)."""
    out = np.zeros((n, 8), np.uint8)
    for b, role in enumerate(msg.roles):
        if forged and role in ("flag", "walk8"):
            out[:, b] = rng.integers(0, 256)
        elif forged and role == "w16":
            out[:, b : b + 2] = rng.integers(0, 256, 2)
        elif role == "const":
            out[:, b] = msg.const[b]
        elif role == "flag":
            toggles = np.cumsum(rng.random(n) < 0.002) % 2
            out[:, b] = msg.const[b] ^ (toggles << int(rng.integers(0, 8)))
        elif role == "walk8":
            out[:, b] = _walk(n, 255, msg.period, rng)
        elif role == "w16":
            value = _walk(n, 65535, msg.period, rng)
            out[:, b], out[:, b + 1] = value >> 8, value & 0xFF
        elif role == "counter":
            out[:, b] = ((int(rng.integers(0, 16)) + np.arange(n)) % 16 << 4) | (msg.const[b] & 0x0F)
    if "checksum" in msg.roles:
        out[:, msg.dlc - 1] = (out[:, : msg.dlc - 1].sum(1, dtype=np.int64) + msg.can_id) & 0xFF
    return out


def _frames(t: np.ndarray, msg: _Message, payload: np.ndarray, attack: bool) -> _Frames:
    n = len(t)
    can_id, dlc = np.full(n, msg.can_id, np.int64), np.full(n, msg.dlc, np.int64)
    return _Frames(t, can_id, dlc, payload, np.full(n, attack))


def _benign(messages: list[_Message], duration: float, rng: np.random.Generator) -> _Frames:
    drift = 1 + rng.normal(0, 5e-5)  # the recording's clock versus the ECUs'
    parts = []
    for msg in messages:
        period = msg.period * drift
        t = rng.uniform(0, period) + np.arange(int(duration / period) + 1) * period
        t = t[t < duration]
        t = t + np.clip(rng.normal(0, 0.01 * period, len(t)), -0.4 * period, 0.4 * period)
        parts.append(_frames(t, msg, _payload(msg, len(t), rng), False))
    return _Frames(*(np.concatenate(column) for column in zip(*parts)))


def _bursts(duration: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    bursts, start = [], duration * rng.uniform(0.15, 0.25)
    while (end := start + duration * rng.uniform(0.08, 0.12)) < 0.95 * duration:
        bursts.append((start, end))
        start = end + duration * rng.uniform(0.08, 0.14)
    return bursts


def _ticks(bursts: list[tuple[float, float]], interval: float, rng: np.random.Generator) -> np.ndarray:
    """Attacker send times, every ``interval`` seconds with jitter, strictly inside the bursts (so
    a masquerade never interleaves with the legitimate sender it replaced)."""
    parts = []
    for a, b in bursts:
        t = np.arange(a + rng.uniform(0, interval), b, interval)
        t = t + np.clip(rng.normal(0, 0.05 * interval, len(t)), -0.4 * interval, 0.4 * interval)
        parts.append(t[(t >= a) & (t < b)])
    return np.concatenate(parts)


def _target(messages: list[_Message], max_period: float, rng: np.random.Generator) -> _Message:
    # Only messages that carry a signal: forging a constant message would change nothing.
    signals = sorted((m for m in messages if {"w16", "walk8"} & set(m.roles)), key=lambda m: m.period)
    candidates = [m for m in signals if m.period <= max_period] or signals[:3]
    return candidates[int(rng.integers(len(candidates)))]


def _attack(frames: _Frames, kind: str, messages: list[_Message], duration: float,
            rng: np.random.Generator) -> _Frames:
    if kind == "attack-free":
        return frames
    bursts = _bursts(duration, rng)
    in_burst = np.zeros(len(frames.t), bool)
    for a, b in bursts:
        in_burst |= (frames.t >= a) & (frames.t < b)
    if kind == "DoS":
        t = _ticks(bursts, 0.001, rng)
        flood = _Message(0, 0.001, 8, (), ())
        return frames.plus(_frames(t, flood, np.zeros((len(t), 8), np.uint8), True))
    if kind == "fuzzing":
        t = _ticks(bursts, 0.002, rng)
        n = len(t)
        dlc = np.where(rng.random(n) < 0.7, 8, rng.integers(0, 9, n))
        payload = rng.integers(0, 256, (n, 8), dtype=np.uint8)
        return frames.plus(_Frames(t, rng.integers(0, 0x800, n), dlc, payload, np.ones(n, bool)))
    target = _target(messages, {"spoofing": 0.1, "suppress": 0.05, "masquerade": 0.02}[kind], rng)
    if kind == "spoofing":
        t = _ticks(bursts, 0.0025, rng)
        return frames.plus(_frames(t, target, _payload(target, len(t), rng, forged=True), True))
    frames = frames.where(~(in_burst & (frames.can_id == target.can_id)))
    if kind == "suppress":
        return frames
    if kind == "masquerade":
        t = _ticks(bursts, target.period, rng)
        return frames.plus(_frames(t, target, _payload(target, len(t), rng, forged=True), True))
    raise ValueError(f"unknown attack kind {kind!r}")


def _digits(values: np.ndarray, width: int, base: int = 10) -> np.ndarray:
    places = base ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return np.frombuffer(b"0123456789ABCDEF", np.uint8)[(values[:, None] // places) % base]


def _csv(frames: _Frames) -> bytes:
    """The recording as CSV bytes, built as one (rows x 41) character matrix whose unused cells
    are NUL and then dropped: no Python loop per row."""
    us = np.round(frames.t * 1e6).astype(np.int64)
    order = np.argsort(us, kind="stable")
    us = us[order] - us[order[0]]  # re-base the clock like set_0x
    frac = _digits(us % 1_000_000, 6)
    keep = np.logical_or.accumulate(frac[:, ::-1] != ord("0"), axis=1)[:, ::-1]  # no trailing zeros
    keep[:, 0] = True
    dlc = frames.dlc[order]
    payload = frames.payload[order]
    hex_pairs = _digits(payload.reshape(-1).astype(np.int64), 2, 16).reshape(len(us), 16)
    rows = np.zeros((len(us), 41), np.uint8)
    rows[:, 0:10] = _digits(_EPOCH + us // 1_000_000, 10)
    rows[:, 10] = ord(".")
    rows[:, 11:17] = np.where(keep, frac, 0)
    rows[:, [17, 21, 38]] = ord(",")
    rows[:, 18:21] = _digits(frames.can_id[order], 3, 16)
    rows[:, 22:38] = np.where(np.arange(16) < 2 * dlc[:, None], hex_pairs, 0)
    rows[:, 39] = ord("0") + frames.attack[order]
    rows[:, 40] = ord("\n")
    return _HEADER + rows[rows != 0].tobytes()


def synthesize(out_dir: str | os.PathLike, *, seed: int = 0,
               scale: Literal["small", "medium"] = "small") -> SynthSummary:
    """Writes a synthetic CAN dataset in the can-train-and-test layout (see the module docstring).

    ``small`` has 18 files of 15k-28k frames (~375k in all) and trains in minutes on a laptop CPU;
    ``medium`` has five times longer recordings (~1.9M frames). The folder is written beside ``out_dir`` and
    renamed into place, so readers never see half a dataset.

    Args:
        out_dir: the dataset folder to create; it must not exist or be empty.
        seed: the seed of every random choice; the same seed gives byte-identical files.
            (default: :obj:`0`)
        scale: ``"small"`` or ``"medium"``. (default: :obj:`"small"`)
    """
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is not valid; use one of {sorted(SCALES)}")
    root = Path(out_dir)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} already exists and is not an empty folder; delete it or "
                              "pass another out_dir (synthesize never overwrites a dataset)")
    streams = np.random.SeedSequence(seed).spawn(1 + len(_PLAN))
    vehicles = _vehicles(np.random.default_rng(streams[0]))
    partial = root.parent / f".{root.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    files = []
    try:
        for (folder, kind, vehicle, seconds), stream in zip(_PLAN, streams[1:]):
            rng, duration = np.random.default_rng(stream), seconds * SCALES[scale]
            messages = vehicles[vehicle]
            frames = _attack(_benign(messages, duration, rng), kind, messages, duration, rng)
            relpath = f"{folder}/{kind}-{vehicle}.csv.gz"
            (partial / folder).mkdir(parents=True, exist_ok=True)
            (partial / relpath).write_bytes(gzip.compress(_csv(frames), compresslevel=6, mtime=0))
            files.append((relpath, len(frames.t), int(frames.attack.sum())))
            if folder == _BENIGN:  # the bundle repeats every benign file in train_02
                copy = relpath.replace(_BENIGN, _TRAIN)
                (partial / _TRAIN).mkdir(exist_ok=True)
                shutil.copyfile(partial / relpath, partial / copy)
                files.append((copy, len(frames.t), 0))
        try:
            os.rename(partial, root)  # replaces an empty folder atomically; fails on a full one
        except OSError as err:
            raise FileExistsError(f"{root} was filled by someone else while synthesizing; "
                                  "delete it or pass another out_dir") from err
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return SynthSummary(root=root, files=sorted(files), seed=seed, scale=scale)
