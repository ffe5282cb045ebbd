"""Evaluation protocols: how a window's score becomes an attack / benign decision.

Two protocols are computed for every run and kept apart in ``metrics.json``, so a report never
mixes them (``kdgat report --protocol NAME`` picks one):

``strict`` (the ``test`` section, always reported)
    One threshold is fit on validation windows and applied, unchanged, to every test window. A
    score means the same thing on every vehicle; a new vehicle whose benign traffic scores higher
    than the training vehicles' is flagged wholesale.

``causal_recording`` (``protocols.causal_recording``)
    Each window's *evidence* (the model's score on an unbounded scale: the GAT's logit margin,
    the log of the VGAE's reconstruction error, the logit of a fused score) is standardised
    against the same recording's **earlier** windows only: ``z = (e - median) / scale`` over the
    last ``history`` windows that ended before this window starts, with ``scale`` = 1.4826 × MAD
    (never below ``floor`` × the validation reference scale). No label of the recording and no
    frame at or after the window is used, so a detector running on a live bus could compute the
    same number. Until ``min_history`` earlier windows exist, the reference is the benign
    validation windows' median and scale (what the strict protocol would use). The threshold on
    ``z`` is fit on validation windows standardised the same way: by default at the
    ``1 - benign_fpr`` quantile of the benign validation windows' ``z`` (a false-alarm budget),
    or with the run's ``f1`` / ``youden`` rule, or a fixed ``z``.

**The gate.** An attack that lasts (hcrl_sa's test recordings are about 40 % attack windows, in
long stretches) would otherwise become the recording's reference and stop looking unusual. With
``gate_z`` set (the default, 3.0), an earlier window enters the reference only if its own ``z``
was below ``gate_z``, except the recording's first ``min_history`` windows, which always enter
(they are the recording's own benign reference, so a new vehicle's shifted traffic is learned
from its start). Only the detector's own earlier outputs decide, never a label. ``gate_z: null``
lets every earlier window in. What the gate assumes: a recording starts benign. A recording
attacked from its first window is standardised against its attack; benign traffic that drifts
further than ``gate_z`` scales from the reference is flagged until the recording ends. This is
why the protocol is reported beside the strict one, never instead of it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass

# numpy is imported where used: the store and the CLI import this module on the --help path.

STRICT = "strict"
CAUSAL_RECORDING = "causal_recording"
PROTOCOLS: tuple[str, ...] = (STRICT, CAUSAL_RECORDING)
CAUSAL_RULES: tuple[str, ...] = ("benign_quantile", "f1", "youden", "fixed")
MAD_TO_SD = 1.4826  # the MAD of a normal distribution times this is its standard deviation


@dataclass(frozen=True)
class CausalSettings:
    """Settings of the ``causal_recording`` protocol (``kdgat-train protocol.NAME=VALUE``).

    Attributes:
        history: earlier windows of the recording the reference is taken from (the most recent).
        min_history: fewer earlier windows than this: the validation reference is used.
        floor: the smallest scale, as a fraction of the validation reference scale.
        rule: how the threshold on ``z`` is fit on validation: ``benign_quantile`` (the
            ``1 - benign_fpr`` quantile of benign validation ``z``), ``f1``, ``youden`` (as
            ``threshold_rule``), or ``fixed`` (``fixed_z``, fitting nothing).
        benign_fpr: the false-alarm budget of ``benign_quantile``.
        fixed_z: the threshold of ``rule=fixed``.
        gate_z: an earlier window enters the reference only with ``z < gate_z`` (after the
            recording's first ``min_history`` windows); ``None``: every earlier window enters.
    """

    history: int = 1000
    min_history: int = 20
    floor: float = 0.1
    rule: str = "benign_quantile"
    benign_fpr: float = 0.01
    fixed_z: float = 3.0
    gate_z: float | None = 3.0

    def __post_init__(self):
        problems = []
        if not (isinstance(self.history, int) and self.history >= 1):
            problems.append(f"protocol.history={self.history!r} must be an integer >= 1")
        if not (isinstance(self.min_history, int) and 0 <= self.min_history <= self.history):
            problems.append(f"protocol.min_history={self.min_history!r} must be an integer from 0 "
                            f"to protocol.history ({self.history})")
        if not (self.floor > 0):
            problems.append(f"protocol.floor={self.floor!r} must be > 0")
        if self.rule not in CAUSAL_RULES:
            problems.append(f"protocol.rule={self.rule!r} must be one of {', '.join(CAUSAL_RULES)}")
        if not (0 < self.benign_fpr < 1):
            problems.append(f"protocol.benign_fpr={self.benign_fpr!r} must lie strictly between 0 and 1")
        if self.gate_z is not None and not (self.gate_z > 0 and math.isfinite(self.gate_z)):
            problems.append(f"protocol.gate_z={self.gate_z!r} must be a finite number > 0, or null "
                            "(every earlier window enters the reference)")
        if problems:
            raise ValueError("; ".join(problems))


def protocol_settings(cfg) -> CausalSettings:
    """The settings in a run config's ``protocol`` node (a config saved before it: the defaults)."""
    from omegaconf import OmegaConf

    node = OmegaConf.select(cfg, "protocol")
    if node is None:
        return CausalSettings()
    values = OmegaConf.to_container(node, resolve=True)
    return CausalSettings(**{k: v for k, v in values.items() if not k.startswith("_")})


def reference(evidence, labels=None) -> tuple[float, float]:
    """``(median, scale)`` of the benign windows' evidence (all windows when none is benign).

    The scale is 1.4826 × MAD, or the standard deviation where the MAD is 0, or 1.
    """
    import numpy as np

    evidence = np.asarray(evidence, dtype=np.float64)
    if labels is not None and (np.asarray(labels) == 0).any():
        evidence = evidence[np.asarray(labels) == 0]
    if len(evidence) == 0:
        return 0.0, 1.0
    center = float(np.median(evidence))
    scale = MAD_TO_SD * float(np.median(np.abs(evidence - center)))
    if not scale > 0:
        scale = float(np.std(evidence))
    return center, scale if scale > 0 else 1.0


def causal_standardise(evidence, recordings, starts, window: int, fallback: tuple[float, float],
                       settings: CausalSettings = CausalSettings()):
    """Each window's evidence standardised against its recording's earlier windows.

    Args:
        evidence: ``(K,)`` evidence per window.
        recordings: ``(K,)`` which recording each window belongs to (any hashable codes).
        starts: ``(K,)`` first frame of each window in its recording.
        window: frames per window (a window ``j`` is "earlier" than ``i`` when it ends before
            ``i`` starts: ``starts[j] + window <= starts[i]``).
        fallback: ``(median, scale)`` used while a recording has fewer than ``min_history``
            earlier windows (:func:`reference` of the benign validation windows).
    """
    import numpy as np

    evidence = np.asarray(evidence, dtype=np.float64)
    recordings, starts = np.asarray(recordings), np.asarray(starts, dtype=np.int64)
    if not (len(evidence) == len(recordings) == len(starts)):
        raise ValueError(f"evidence, recordings and starts differ in length: {len(evidence)}, "
                         f"{len(recordings)}, {len(starts)}")
    z = np.empty(len(evidence))
    floor = settings.floor * fallback[1]
    for code in np.unique(recordings):
        where = np.flatnonzero(recordings == code)
        where = where[np.argsort(starts[where], kind="stable")]
        values = evidence[where]
        z[where] = _one_recording(values, starts[where], window, fallback, floor, settings)
    return z


def _one_recording(values, first, window: int, fallback: tuple[float, float], floor: float,
                   settings: CausalSettings):
    """:func:`causal_standardise` of one recording's windows, in start order (no gate: every
    earlier window enters the reference, as with an infinite gate)."""
    import numpy as np

    z = np.empty(len(values))
    reference_values: deque = deque(maxlen=settings.history)
    needed = max(settings.min_history, 1)
    gate = math.inf if settings.gate_z is None else settings.gate_z
    ended = 0  # windows [0, ended) have ended before the current one starts
    center, scale = fallback
    for i in range(len(values)):
        changed = False
        while ended < i and first[ended] + window <= first[i]:
            if ended < settings.min_history or z[ended] < gate:
                reference_values.append(values[ended])
                changed = True
            ended += 1
        if changed and len(reference_values) >= needed:
            history = np.fromiter(reference_values, dtype=np.float64, count=len(reference_values))
            center = float(np.median(history))
            scale = MAD_TO_SD * float(np.median(np.abs(history - center)))
        elif len(reference_values) < needed:
            center, scale = fallback
        z[i] = (values[i] - center) / max(scale, floor)
    return z


def causal_threshold(z, labels, settings: CausalSettings) -> float:
    """The threshold on ``z``, fit on validation windows by ``settings.rule``."""
    import numpy as np

    from kdgat.evaluation.thresholds import choose_threshold

    if settings.rule == "fixed":
        return float(settings.fixed_z)
    if settings.rule == "benign_quantile":
        benign = np.asarray(z)[np.asarray(labels) == 0]
        if len(benign) == 0:
            raise ValueError("protocol.rule=benign_quantile needs benign validation windows, and "
                             "validation has none; use protocol.rule=fixed protocol.fixed_z=VALUE")
        # The smallest threshold that flags at most benign_fpr of the benign validation windows.
        return float(np.quantile(benign, 1.0 - settings.benign_fpr, method="higher")) + 1e-9
    return choose_threshold(z, labels, rule=settings.rule)


def settings_document(settings: CausalSettings, fallback: tuple[float, float]) -> dict:
    """What ``metrics.json`` records of how the protocol was computed."""
    return {**asdict(settings), "reference_median": float(fallback[0]),
            "reference_scale": float(fallback[1]), "evidence_fit_on": "validation (benign windows)"}


def protocol_view(metrics: dict, protocol: str) -> tuple[dict | None, str | None]:
    """``metrics.json`` as seen under ``protocol``: its ``test``, ``validation`` and ``threshold``
    sections replaced by the protocol's, so every reader of those sections reads one protocol.

    Returns ``(view, None)``, or ``(None, why)`` when the run did not compute the protocol.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    recorded = metrics.get("protocol", STRICT)
    if protocol == recorded:
        return metrics, None
    section = (metrics.get("protocols") or {}).get(protocol)
    if not isinstance(section, dict):
        return None, f"it has no {protocol} results (run before the protocol existed)"
    if section.get("unavailable"):
        return None, f"its {protocol} results are unavailable: {section['unavailable']}"
    view = {**metrics, "protocol": protocol}
    for key in ("test", "validation", "threshold"):
        view[key] = section[key]
    return view, None
