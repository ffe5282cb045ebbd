"""Which vehicle and which attack each recording belongs to, and the validation that holds one out.

Validation is either ``block`` (the last ``val_fraction`` of every training file, see
:mod:`kdgat.data.prepare`) or leave-one-group-out: every training recording of one group (a
vehicle, an attack type or a file) goes wholly to validation, every other training recording wholly
to training. Test folders are never part of a group. The grouping of each dataset's files lives
here, in :data:`DATASET_GROUPS`, and nowhere else:

- the attack type is :func:`kdgat.data.layout.attack_type_from_name` (``DoS-kia`` → ``dos``); in
  ``attack`` grouping benign recordings (``attack-free-*``, ``accessory-N``) are never a group and
  always stay in training: the held-out attack's recordings hold benign frames themselves;
- the vehicle is the last ``-`` part of the file name, lower-cased (``fuzzing-Spark`` → ``spark``),
  which each declared dataset constrains to the vehicles it has; hcrl_ch was recorded on one
  vehicle, so it has no vehicle grouping;
- the file group is the file name without its suffix (``DoS-kia``); training files of one name
  form one group.

A dataset not in the table follows the file-name rule (:data:`FILE_NAME_RULE`): attack type from
the name's prefix, vehicle from its last ``-`` part, no default holdout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from kdgat.data.layout import RECORDING_SUFFIXES, DatasetLayout, Recording
from kdgat.data.quoting import printable

GROUPINGS = ("vehicle", "attack", "file")
VALIDATIONS = ("block",) + GROUPINGS


@dataclass(frozen=True)
class DatasetGroups:
    """How one dataset's file names give each recording's vehicle, and the default holdouts.

    Args:
        vehicles: regular expression the vehicle (the last ``-`` part of a file name, lower-cased)
            must match in full; ``None``: the dataset has one vehicle, vehicle grouping is refused.
        defaults: the holdout used per grouping when ``datamodule.holdout`` is not set.
        note: what the names mean (shown by ``kdgat data check`` and in errors).
        declared: ``False`` only for :data:`FILE_NAME_RULE`.
    """

    vehicles: str | None
    defaults: dict[str, str] = field(default_factory=dict)
    note: str = ""
    declared: bool = True


_SET_NOTE = ("the names (DoS-1, accessory-2, targeted_payload_fuzzing-2, systematic-4) end in a "
             "number, the recording's vehicle / run number: the only vehicle the names give (they "
             "do not say which numbers share a car); no default holdout, since which files a copy "
             "of the bundle holds varies")

DATASET_GROUPS: dict[str, DatasetGroups] = {
    # vehicle kia holds out attack-free-kia and DoS-kia (both classes) and trains on
    # attack-free-sonata and fuzzing-sonata (both classes); attack dos holds out DoS-kia.
    "hcrl_sa": DatasetGroups(
        vehicles="kia|sonata|spark", defaults={"vehicle": "kia", "attack": "dos"},
        note="Kia Soul, Hyundai Sonata, Chevrolet Spark: the vehicle is the name's suffix, "
             "case-insensitive (fuzzing-Spark → spark)"),
    "synthetic": DatasetGroups(  # the same shape as hcrl_sa, see kdgat.data.synth._PLAN
        vehicles="sedan|hatchback|pickup", defaults={"vehicle": "sedan", "attack": "dos"},
        note="generated vehicles sedan, hatchback, pickup: the vehicle is the name's suffix"),
    "hcrl_ch": DatasetGroups(
        vehicles=None,
        note="HCRL Car-Hacking was recorded on one vehicle (Hyundai YF Sonata); numbers in its "
             "names count recordings, not vehicles"),
    **{f"set_0{k}": DatasetGroups(vehicles=r"\d+", note=_SET_NOTE) for k in range(1, 5)},
}
FILE_NAME_RULE = DatasetGroups(
    vehicles=".+", declared=False,
    note="not a declared dataset: the attack type is the name's prefix and the vehicle its last "
         "'-' part (no default holdout)")


def dataset_groups(dataset: str) -> DatasetGroups:
    """The dataset's entry of :data:`DATASET_GROUPS`, else :data:`FILE_NAME_RULE`."""
    return DATASET_GROUPS.get(dataset, FILE_NAME_RULE)


def stem(path: str | Path) -> str:
    """The file name without its recording suffix: ``train_02_with_attacks/DoS-kia.csv.gz`` → ``DoS-kia``."""
    name = Path(path).name
    for suffix in RECORDING_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def vehicle_of(path: str | Path, dataset: str) -> str:
    """The vehicle a file name gives (lower-cased last ``-`` part), checked against the table.

    Raises:
        ValueError: the dataset has one vehicle, or the name gives no vehicle it declares.
    """
    groups = dataset_groups(dataset)
    if groups.vehicles is None:
        raise ValueError(f"dataset {dataset!r} has no vehicle grouping: {groups.note}; use "
                         "datamodule.validation=attack or file (or block)")
    name = stem(path)
    vehicle = name.rsplit("-", 1)[-1].lower() if "-" in name else ""
    if not re.fullmatch(groups.vehicles, vehicle):
        rule = f"dataset {dataset!r}" if groups.declared else "the file-name rule"
        raise ValueError(f"{printable(path)}: the name gives no vehicle that {rule} knows (the part "
                         f"after the last '-' must match {groups.vehicles!r}, found {vehicle!r}); "
                         "rename the file or use datamodule.validation=attack or file")
    return vehicle


def group_of(recording: Recording, dataset: str, grouping: str) -> str | None:
    """The group of a training recording; ``None`` for a benign recording in ``attack`` grouping
    (never held out)."""
    if grouping == "vehicle":
        return vehicle_of(recording.relpath, dataset)
    if grouping == "attack":
        return None if recording.attack_type == "benign" else recording.attack_type
    if grouping == "file":
        return stem(recording.relpath)
    raise ValueError(f"grouping {grouping!r} is not one of {', '.join(GROUPINGS)}")


def training_groups(layout: DatasetLayout, dataset: str, grouping: str) -> dict[str, list[str]]:
    """Group name → the training recordings (relative paths) in it, in name order."""
    found: dict[str, list[str]] = {}
    for recording in layout.train:
        name = group_of(recording, dataset, grouping)
        if name is not None:
            found.setdefault(name, []).append(recording.relpath)
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class ValidationPlan:
    """Which training recordings train and which validate.

    Args:
        validation: ``block`` or a grouping (``vehicle``, ``attack``, ``file``).
        holdout: the held-out group (``None`` for block).
        default: the holdout is the dataset's declared default (``datamodule.holdout`` unset).
        train: training recordings (relative paths) whose windows train; in block mode all of
            them, each with its last ``val_fraction`` cut off.
        val: training recordings whose windows validate (block mode: all, their last part).
        groups: the group of every training recording (``None``: never held out); empty for block.
    """

    validation: str
    holdout: str | None = None
    default: bool = False
    train: tuple[str, ...] = ()
    val: tuple[str, ...] = ()
    groups: dict[str, str | None] = field(default_factory=dict)

    def role(self, relpath: str) -> str:
        """``"block"``, ``"train"`` or ``"val"`` for a training recording."""
        if self.validation == "block":
            return "block"
        return "val" if relpath in self.val else "train"

    def describe(self) -> dict:
        """A JSON-able record (the cache's ``meta["validation"]``)."""
        return {"validation": self.validation, "holdout": self.holdout, "default_holdout": self.default,
                "train_files": list(self.train), "val_files": list(self.val), "groups": dict(self.groups)}


def check_validation_setting(validation: object, holdout: object, prefix: str = "datamodule.") -> None:
    """The setting rules without data: a known mode, and no holdout with ``block``."""
    if validation not in VALIDATIONS:
        raise ValueError(f"{prefix}validation={validation!r} is not valid; choose one of: "
                         f"{', '.join(VALIDATIONS)} (block: the last val_fraction of every training "
                         "file; vehicle, attack, file: hold out every training recording of one group)")
    if holdout is not None and (not isinstance(holdout, str) or not holdout):
        raise ValueError(f"{prefix}holdout={holdout!r} must be a group name (e.g. kia) or null")
    if validation == "block" and holdout is not None:
        raise ValueError(f"{prefix}holdout={holdout!r} needs a grouped validation: block validation "
                         f"holds out the end of every training file, not a group. Set "
                         f"{prefix}validation=vehicle, attack or file, or drop {prefix}holdout")


def plan_validation(layout: DatasetLayout, dataset: str, validation: str = "block",
                    holdout: str | None = None) -> ValidationPlan:
    """Assign the training recordings of ``layout`` to training and validation.

    Args:
        layout: the dataset's recordings (only its training recordings are ever assigned).
        dataset: the dataset name (picks the table entry).
        validation: ``block`` (default) or a grouping.
        holdout: the group to hold out (matched case-insensitively); ``None``: the dataset's
            default for the grouping.

    Raises:
        ValueError: an unknown mode, a holdout with block, a grouping the dataset lacks, no
            holdout and no default, an unknown holdout, or a holdout that leaves no training
            recording; each message names ``datamodule.validation`` / ``datamodule.holdout`` and
            lists the valid groups.
    """
    check_validation_setting(validation, holdout)
    everything = tuple(r.relpath for r in layout.train)
    if validation == "block":
        return ValidationPlan("block", train=everything, val=everything)
    groups = training_groups(layout, dataset, validation)
    names = ", ".join(f"{name} ({len(files)} recording{'s' * (len(files) > 1)})"
                      for name, files in groups.items()) or "none"
    if validation == "attack":
        names += " (benign recordings are never held out: they always train)"
    choose = (f"choose one with datamodule.holdout=NAME, or run every fold with "
              f"-m datamodule.holdout={','.join(groups)}")
    default = holdout is None
    if default:
        holdout = dataset_groups(dataset).defaults.get(validation)
        if holdout is None:
            raise ValueError(f"dataset {dataset!r} declares no default holdout for "
                             f"datamodule.validation={validation}; its {validation} groups: {names}; {choose}")
    chosen = [name for name in groups if name.casefold() == holdout.casefold()]
    if not chosen:
        raise ValueError(f"datamodule.holdout={holdout!r}{' (the default)' * default} names no "
                         f"{validation} group of the training recordings of dataset {dataset!r}; "
                         f"its {validation} groups: {names}; {choose}")
    val = tuple(relpath for name in chosen for relpath in groups[name])
    train = tuple(relpath for relpath in everything if relpath not in val)
    if not train:
        raise ValueError(f"datamodule.holdout={holdout!r} holds out every training recording of "
                         f"dataset {dataset!r} ({', '.join(val)}), leaving nothing to train on; "
                         f"its {validation} groups: {names}; use datamodule.validation=block or "
                         "another grouping")
    return ValidationPlan(validation, chosen[0], default, train, val,
                          {r.relpath: group_of(r, dataset, validation) for r in layout.train})
