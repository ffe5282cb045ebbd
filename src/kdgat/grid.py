"""The experiment grid: its seven dimensions, which points are valid, and what each one needs.

Every validity rule lives here (the config store, ``kdgat grid``, the pipeline and the entry point
all ask this module), and nothing here imports torch, so composing and checking every grid point
is fast.

A point's name is ``{modality}_{dataset}_{learning_type}_{model}_{size}_{distillation}_{mode}``
and its runs live under ``{modality}/{dataset}/{learning_type}/{model}/{size}/{distillation}/{mode}/``.
"""

from __future__ import annotations

import itertools
from dataclasses import astuple, dataclass, fields

from kdgat.data.datasets import MODALITIES

LEARNING_TYPES = {"unsupervised": ("vgae",), "classifier": ("gat",), "fusion": ("dqn", "mlp"),
                  "baseline": ("majority", "window_stats")}
MODEL_LEARNING_TYPE = {model: lt for lt, models in LEARNING_TYPES.items() for model in models}
SIZES = ("tiny", "student", "intermediate", "teacher", "huge")
DISTILLATIONS = ("no", "standard", "topology_preserving")
MODES = {"vgae": ("all_samples", "normals_only"), "gat": ("all_samples", "curriculum"),
         "dqn": ("all_samples",), "mlp": ("all_samples",),
         "majority": ("all_samples",), "window_stats": ("all_samples",)}
ALL_MODES = ("all_samples", "normals_only", "curriculum")
# Sizes a teacher can be distilled into: strictly smaller than the teacher.
DISTILLABLE_SIZES = SIZES[: SIZES.index("teacher")]
# Fusion agents see no graph, so structure-preserving distillation does not apply to them.
GRAPH_MODELS = ("vgae", "gat")
# Which VGAE and GAT runs a fusion point combines, and which VGAE scores curriculum difficulty.
FUSION_INPUT_MODES = {"vgae": "normals_only", "gat": "all_samples"}
CURRICULUM_SCORER_MODE = "normals_only"
# Baselines (a majority-class detector, a classifier on window statistics) are no neural network:
# nothing scales them and nothing is distilled into them, so they take one size, the reference
# level every other model is compared at, and distillation "no".
BASELINE_MODELS = LEARNING_TYPES["baseline"]
BASELINE_SIZE = "teacher"


class InvalidGridPoint(ValueError):
    """A combination of grid values that the rules reject; the message lists the valid values."""


@dataclass(frozen=True, order=True)
class GridPoint:
    """One point of the grid (all seven dimensions)."""

    modality: str
    dataset: str
    learning_type: str
    model: str
    size: str
    distillation: str
    mode: str

    @property
    def name(self) -> str:
        return "_".join(astuple(self))

    @property
    def path(self) -> str:
        return "/".join(astuple(self))

    def as_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def with_(self, **changes) -> "GridPoint":
        return GridPoint(**{**self.as_dict(), **changes})

    def validate(self) -> "GridPoint":
        """Raise :class:`InvalidGridPoint` naming the bad dimension and its valid values here."""
        def bad(dimension: str, valid) -> InvalidGridPoint:
            value = getattr(self, dimension)
            return InvalidGridPoint(f"{dimension}={value!r} is not valid for {self.describe()}; "
                                    f"valid {dimension} values here: {', '.join(valid)}")

        if self.modality not in MODALITIES:
            raise bad("modality", MODALITIES)
        if self.dataset not in MODALITIES[self.modality]:
            raise bad("dataset", MODALITIES[self.modality])
        if self.model not in MODEL_LEARNING_TYPE:
            raise bad("model", MODEL_LEARNING_TYPE)
        if self.learning_type != MODEL_LEARNING_TYPE[self.model]:
            raise bad("learning_type", (MODEL_LEARNING_TYPE[self.model],))
        if self.size not in valid_sizes(self.model):
            raise bad("size", valid_sizes(self.model))
        if self.mode not in MODES[self.model]:
            raise bad("mode", MODES[self.model])
        if self.distillation not in valid_distillations(self.model, self.size):
            raise bad("distillation", valid_distillations(self.model, self.size))
        return self

    def describe(self) -> str:
        return (f"model={self.model} (learning_type={self.learning_type}) size={self.size} "
                f"distillation={self.distillation} mode={self.mode} dataset={self.dataset}")


def valid_sizes(model: str) -> tuple[str, ...]:
    """Every size for the neural models; a baseline's one size (``BASELINE_SIZE``)."""
    return (BASELINE_SIZE,) if model in BASELINE_MODELS else SIZES


def valid_distillations(model: str, size: str) -> tuple[str, ...]:
    if size not in DISTILLABLE_SIZES or model in BASELINE_MODELS:
        return ("no",)
    return DISTILLATIONS if model in GRAPH_MODELS else ("no", "standard")


def all_points(filters: dict[str, str | list[str]] | None = None) -> list[GridPoint]:
    """Every valid grid point, optionally filtered (``{"dataset": "hcrl_sa", "size": ["teacher"]}``)."""
    filters = {k: [v] if isinstance(v, str) else list(v) for k, v in (filters or {}).items()}
    unknown = set(filters) - {f.name for f in fields(GridPoint)}
    if unknown:
        raise InvalidGridPoint(f"unknown grid dimension(s) {sorted(unknown)}; dimensions: "
                               f"{[f.name for f in fields(GridPoint)]}")
    points = []
    for modality, datasets in MODALITIES.items():
        for dataset, (model, learning_type) in itertools.product(datasets, MODEL_LEARNING_TYPE.items()):
            for size in valid_sizes(model):
                for distillation, mode in itertools.product(valid_distillations(model, size),
                                                            MODES[model]):
                    point = GridPoint(modality, dataset, learning_type, model, size, distillation, mode)
                    if all(getattr(point, k) in v for k, v in filters.items()):
                        points.append(point)
    return points


@dataclass(frozen=True)
class Dependency:
    """A run another point needs: its role (``teacher``, ``vgae``, ``gat``, ``scorer``) and point."""

    role: str
    point: GridPoint


def dependencies(point: GridPoint) -> list[Dependency]:
    """The grid points whose completed runs ``point`` needs before it can start.

    - distilled models need their teacher: same point with size ``teacher``, distillation ``no``;
    - fusion needs a VGAE and a GAT of its size and distillation (see ``FUSION_INPUT_MODES``);
    - curriculum needs a teacher VGAE to score window difficulty.
    """
    needs = []
    if point.distillation != "no":
        needs.append(Dependency("teacher", point.with_(size="teacher", distillation="no")))
    if point.learning_type == "fusion":
        for model, learning_type in (("vgae", "unsupervised"), ("gat", "classifier")):
            distillation = "standard" if point.distillation != "no" else "no"
            needs.append(Dependency(model, point.with_(learning_type=learning_type, model=model,
                                                       distillation=distillation,
                                                       mode=FUSION_INPUT_MODES[model])))
    if point.mode == "curriculum":
        needs.append(Dependency("scorer", point.with_(
            learning_type="unsupervised", model="vgae", size="teacher", distillation="no",
            mode=CURRICULUM_SCORER_MODE)))
    return needs
