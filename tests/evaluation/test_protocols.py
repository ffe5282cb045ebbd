"""The ``causal_recording`` evaluation protocol: a window's score standardised against its own
recording's earlier windows only, its threshold fit on validation, and the view reports read."""

from __future__ import annotations

import numpy as np
import pytest

from kdgat.evaluation.protocols import (CAUSAL_RECORDING, MAD_TO_SD, STRICT, CausalSettings,
                                       causal_standardise, causal_threshold, protocol_view, reference)

WINDOW = 10


def brute_force(evidence, recordings, starts, window, fallback, settings):
    """The definition, one window at a time in each recording's order: median and 1.4826 * MAD of
    the last ``history`` windows of the same recording that ended before this one starts and
    entered the reference (its first ``min_history`` windows, then those whose z was below the gate)."""
    z = np.full(len(evidence), np.nan)
    order = sorted(range(len(evidence)), key=lambda j: (starts[j], j))
    rank = {j: sum(1 for k in order[:position] if recordings[k] == recordings[j])
            for position, j in enumerate(order)}
    for i in order:
        earlier = [j for j in order if recordings[j] == recordings[i] and starts[j] + window <= starts[i]]
        entered = [j for j in earlier if settings.gate_z is None or rank[j] < settings.min_history
                   or z[j] < settings.gate_z][-settings.history:]
        if len(entered) < max(settings.min_history, 1):
            center, scale = fallback
        else:
            values = evidence[entered]
            center = np.median(values)
            scale = MAD_TO_SD * np.median(np.abs(values - center))
        z[i] = (evidence[i] - center) / max(scale, settings.floor * fallback[1])
    return z


def recording(n: int, stride: int = 5, seed: int = 0, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(shift, 1.0, n), np.arange(n) * stride


@pytest.mark.parametrize("gate_z", [None, 1.0, 3.0])
def test_matches_the_definition_on_interleaved_recordings_of_overlapping_windows(gate_z):
    settings = CausalSettings(history=15, min_history=4, gate_z=gate_z)
    a, starts_a = recording(60, seed=1)
    b, starts_b = recording(45, stride=10, seed=2, shift=3.0)
    a[30:40] += 8.0  # an attack stretch: the gate keeps it out of the reference
    evidence = np.concatenate([a, b])
    recordings = np.array(["a"] * 60 + ["b"] * 45)
    starts = np.concatenate([starts_a, starts_b])
    order = np.random.default_rng(3).permutation(len(evidence))  # windows arrive in any order
    evidence, recordings, starts = evidence[order], recordings[order], starts[order]
    fallback = (0.5, 2.0)
    z = causal_standardise(evidence, recordings, starts, WINDOW, fallback, settings)
    np.testing.assert_allclose(z, brute_force(evidence, recordings, starts, WINDOW, fallback, settings))


def test_a_window_never_sees_itself_overlapping_or_later_windows_or_other_recordings():
    settings = CausalSettings(history=50, min_history=5)
    evidence, starts = recording(200, stride=5)  # window 10, stride 5: each window overlaps the next
    recordings = np.zeros(200, dtype=int)
    z = causal_standardise(evidence, recordings, starts, WINDOW, (0.0, 1.0), settings)
    k = 120
    changed = evidence.copy()
    changed[k - 1] += 100.0  # overlaps window k (started 5 frames before it): not yet ended
    changed[k + 1:] = 1e6  # everything after window k
    again = causal_standardise(changed, recordings, starts, WINDOW, (0.0, 1.0), settings)
    np.testing.assert_array_equal(again[:k - 1], z[:k - 1])
    assert again[k] == z[k]
    # Another recording's windows, however extreme, change nothing of this one.
    other = np.concatenate([evidence, np.full(50, 1e6)])
    mixed = causal_standardise(other, np.r_[recordings, np.ones(50, dtype=int)], np.r_[starts, np.arange(50) * 5],
                               WINDOW, (0.0, 1.0), settings)
    np.testing.assert_array_equal(mixed[:200], z)
    # A window that did end before window k is part of its reference (without the gate: with
    # it, these extreme windows would be kept out).
    settings = CausalSettings(history=50, min_history=5, gate_z=None)
    z = causal_standardise(evidence, recordings, starts, WINDOW, (0.0, 1.0), settings)
    changed = evidence.copy()
    changed[k - 2] += 100.0
    changed[k - 3] += 100.0
    changed[k - 4] += 100.0
    assert causal_standardise(changed, recordings, starts, WINDOW, (0.0, 1.0), settings)[k] != z[k]


def test_warm_up_windows_use_the_validation_reference():
    settings = CausalSettings(history=100, min_history=20)
    evidence, starts = recording(80)
    fallback = (0.3, 0.7)
    z = causal_standardise(evidence, np.zeros(80), starts, WINDOW, fallback, settings)
    # Window i has i - 1 earlier windows (stride 5, window 10): fewer than 20 up to i = 20.
    np.testing.assert_allclose(z[:21], (evidence[:21] - 0.3) / 0.7)
    assert not np.allclose(z[21:], (evidence[21:] - 0.3) / 0.7)


def test_a_recording_whose_benign_scores_sit_higher_is_not_flagged_wholesale():
    """The reason for the protocol: an unseen vehicle scores higher on benign traffic."""
    settings = CausalSettings()
    val, val_starts = recording(400, seed=4)
    val_labels = np.zeros(400, dtype=int)
    fallback = reference(val, val_labels)
    val_z = causal_standardise(val, np.zeros(400), val_starts, WINDOW, fallback, settings)
    threshold = causal_threshold(val_z, val_labels, settings)
    unseen, starts = recording(2000, seed=5, shift=6.0)  # benign, six reference sds higher
    attack = np.zeros(2000, dtype=bool)
    attack[1500:1550] = True
    unseen[attack] += 12.0  # an attack burst on the unseen vehicle
    z = causal_standardise(unseen, np.zeros(2000), starts, WINDOW, fallback, settings)
    strict_alarms = (unseen[~attack] >= np.quantile(val, 0.99)).mean()
    causal_alarms = (z[settings.min_history + 1:][~attack[settings.min_history + 1:]] >= threshold).mean()
    assert strict_alarms > 0.99  # one global threshold flags the whole vehicle
    assert causal_alarms < 0.03
    assert (z[attack] >= threshold).mean() == 1.0


def test_the_gate_keeps_a_long_attack_out_of_the_reference():
    """Without the gate a lasting attack becomes the recording's normal; with it, it stays flagged."""
    evidence, starts = recording(3000, seed=7)
    attack = np.zeros(3000, dtype=bool)
    attack[1000:2500] = True  # half the recording, one stretch (as hcrl_sa's test recordings)
    evidence[attack] += 10.0
    gated = causal_standardise(evidence, np.zeros(3000), starts, WINDOW, (0.0, 1.0), CausalSettings())
    open_ = causal_standardise(evidence, np.zeros(3000), starts, WINDOW, (0.0, 1.0),
                               CausalSettings(gate_z=None))
    assert (gated[attack] > 3.0).mean() == 1.0
    assert (open_[attack] > 3.0).mean() < 0.5  # the attack took over the reference
    assert (gated[2600:] > 3.0).mean() < 0.01  # benign again after it: the reference held


def test_a_vehicle_shifted_from_its_first_window_is_learned_by_the_warm_up():
    evidence, starts = recording(1000, seed=8, shift=6.0)
    z = causal_standardise(evidence, np.zeros(1000), starts, WINDOW, (0.0, 1.0), CausalSettings())
    assert (z[:21] > 3.0).mean() > 0.9  # the validation reference: the shift shows
    assert (z[21:] > 3.0).mean() < 0.01


def test_a_flat_history_is_scaled_by_the_floor_not_divided_by_zero():
    settings = CausalSettings(history=30, min_history=5, floor=0.25)
    evidence = np.r_[np.full(40, 2.0), 3.0]
    z = causal_standardise(evidence, np.zeros(41), np.arange(41) * WINDOW, WINDOW, (0.0, 2.0), settings)
    assert np.isfinite(z).all()
    assert z[-1] == pytest.approx((3.0 - 2.0) / (0.25 * 2.0))


def test_benign_quantile_keeps_validation_false_alarms_within_the_budget():
    rng = np.random.default_rng(6)
    z = np.r_[rng.normal(0, 1, 5000), rng.normal(6, 1, 300)]
    labels = np.r_[np.zeros(5000, dtype=int), np.ones(300, dtype=int)]
    for budget in (0.001, 0.01, 0.05):
        threshold = causal_threshold(z, labels, CausalSettings(benign_fpr=budget))
        false_alarms = (z[labels == 0] >= threshold).mean()
        assert budget - 0.001 <= false_alarms <= budget
    assert causal_threshold(z, labels, CausalSettings(rule="fixed", fixed_z=4.5)) == 4.5
    f1 = causal_threshold(z, labels, CausalSettings(rule="f1"))
    assert 2.0 < f1 < 5.0
    with pytest.raises(ValueError, match="needs benign validation windows.*protocol.rule=fixed"):
        causal_threshold(z[labels == 1], labels[labels == 1], CausalSettings())


def test_reference_is_of_benign_windows_and_never_zero():
    evidence = np.r_[np.arange(101, dtype=float), np.full(50, 1000.0)]
    labels = np.r_[np.zeros(101, dtype=int), np.ones(50, dtype=int)]
    center, scale = reference(evidence, labels)
    assert center == 50.0 and scale == pytest.approx(MAD_TO_SD * 25.0)
    assert reference(np.full(10, 3.0)) == (3.0, 1.0)
    assert reference(np.r_[np.zeros(9), 10.0])[1] == pytest.approx(3.0)  # MAD 0: the sd


@pytest.mark.parametrize("settings, message", [
    ({"history": 0}, "protocol.history=0 must be an integer >= 1"),
    ({"min_history": 2000}, "protocol.min_history=2000 must be an integer from 0 to protocol.history (1000)"),
    ({"floor": 0.0}, "protocol.floor=0.0 must be > 0"),
    ({"rule": "best"}, "protocol.rule='best' must be one of benign_quantile, f1, youden, fixed"),
    ({"benign_fpr": 1.0}, "protocol.benign_fpr=1.0 must lie strictly between 0 and 1"),
    ({"gate_z": 0.0}, "protocol.gate_z=0.0 must be a finite number > 0, or null"),
])
def test_bad_settings_name_the_key_and_the_valid_values(settings, message):
    with pytest.raises(ValueError) as caught:
        CausalSettings(**settings)
    assert message in str(caught.value)


def test_protocol_view_replaces_every_section_a_report_reads():
    causal = {"unavailable": None, "settings": {}, "threshold": {"value": 2.3, "rule": "benign_quantile"},
              "validation": {"f1": 0.7}, "test": {"pooled": {"f1": 0.6}}}
    metrics = {"protocol": STRICT, "threshold": {"value": 0.5}, "validation": {"f1": 0.9},
               "test": {"pooled": {"f1": 0.8}}, "summary": {"parameters": 10},
               "protocols": {CAUSAL_RECORDING: causal}}
    assert protocol_view(metrics, STRICT) == (metrics, None)
    view, why = protocol_view(metrics, CAUSAL_RECORDING)
    assert why is None and view["protocol"] == CAUSAL_RECORDING
    assert (view["test"], view["validation"], view["threshold"]) == (causal["test"], causal["validation"],
                                                                      causal["threshold"])
    assert view["summary"] == metrics["summary"] and metrics["test"] == {"pooled": {"f1": 0.8}}
    old = {k: v for k, v in metrics.items() if k not in ("protocol", "protocols")}
    assert protocol_view(old, STRICT) == (old, None)  # runs before protocols: strict
    assert protocol_view(old, CAUSAL_RECORDING) == (None, "it has no causal_recording results "
                                                          "(run before the protocol existed)")
    gone = {**metrics, "protocols": {CAUSAL_RECORDING: {"unavailable": "no benign windows"}}}
    assert protocol_view(gone, CAUSAL_RECORDING)[1] == "its causal_recording results are unavailable: no benign windows"
    with pytest.raises(ValueError, match="not one of strict, causal_recording"):
        protocol_view(metrics, "lenient")
