"""Replicates: the runs of one grid point that differ only in the seed, their statistics, and
comparisons between points paired by seed.

A point's runs are aggregated only when their saved ``config.yaml`` files are equal once the keys
in :data:`IGNORED_KEYS` are set aside (the seed, and paths that say where a run lives, not what it
computes). Every other difference keeps runs apart, and :class:`LeftApart` says which key differed.
The group reported for a point is the one holding its newest completed run (the run dependents
would use); within it, one run per seed (the newest).

Statistics over the ``n`` runs of a group: mean, sample standard deviation (``ddof=1``) and the
two-sided 95 % Student-t confidence interval of the mean (``n - 1`` degrees of freedom). A
comparison pairs two points' runs by the seed in their ``config.yaml`` and reports the mean of
the per-seed differences, its t-interval and the p-value of the paired t-test
(:func:`scipy.stats.ttest_rel`); seeds without a partner are left out and named.

Nothing here reads command-line arguments or prints: ``kdgat report`` does that.
"""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from kdgat.grid import GridPoint, InvalidGridPoint, dependencies
from kdgat.runs.dependencies import PIN_KEYS
from kdgat.runs.inventory import number, section

POOLED = "pooled"
CONFIDENCE = 0.95
# The per-scenario entries of metrics.json that are counts or settings, not metrics to aggregate.
COUNT_KEYS = ("n", "positives", "negatives", "threshold", "tn", "fp", "fn", "tp")
# Metrics where a smaller value is better ("better input" of a fusion point picks the smaller).
LOWER_IS_BETTER = ("fpr",)

# The one list of config keys that may differ between runs aggregated as replicates of a point,
# each with why (a key ends a dotted path; "tracking" covers every "tracking.*" key). Everything
# else in config.yaml must be equal.
IGNORED_KEYS = {
    "seed": "the replicate's seed, what tells replicates apart",
    "datamodule.seed": "interpolated from seed",
    "run_dir": "each run's own directory",
    "runs_root": "absolute path of the runs root: where runs are written, not what they compute",
    "cache_dir": "where prepared graphs are cached; the cache content is keyed by the inputs' hashes",
    "datamodule.cache_dir": "interpolated from cache_dir",
    "data_root": "a path; the data are compared by their identity instead (DATA_KEY)",
    "datamodule.data_root": "interpolated from data_root; compared as DATA_KEY",
    "tracking": "where metrics are logged (MLflow), not what is computed",
    "trainer.enable_progress_bar": "terminal display only",
    "trainer.enable_model_summary": "terminal display only",
    "trainer.log_every_n_steps": "how often training metrics are logged, not what is computed",
    "replicates": "how many seeds the launching command asked for, not what this run computed",
    **{key: f"a path; compared by the grid point of the {role} run used (DEPENDENCY_PREFIX)"
       for role, key in PIN_KEYS.items()},
}
# Compared instead of data_root: the prepared-graph cache key recorded in metrics.json
# ("data.cache"), a hash of every input file and the preparation parameters, so one dataset read
# from two folders still matches and a changed file does not.
DATA_KEY = "data (prepared-graph cache key)"
# Compared instead of each pinned dependency path: the grid point of the run it names.
DEPENDENCY_PREFIX = "grid point of "


# --------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class Estimate:
    """``n`` values summarized: mean, standard deviation (ddof=1) and 95 % t-interval of the mean.

    ``sd`` and the interval are ``None`` for ``n < 2``; every field is ``None`` for ``n = 0``.
    """

    n: int
    mean: float | None = None
    sd: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None

    @property
    def half_width(self) -> float | None:
        return None if self.ci_high is None else self.ci_high - self.mean


@dataclass(frozen=True)
class PairedEstimate(Estimate):
    """An :class:`Estimate` of per-seed differences ``a - b``, with the paired t-test's p-value.

    ``p_value`` is ``None`` for fewer than two pairs, or when every difference is the same (the
    test statistic is undefined).
    """

    p_value: float | None = None
    seeds: tuple = ()


def estimate(values, confidence: float = CONFIDENCE) -> Estimate:
    """Mean, sample standard deviation and Student-t confidence interval of ``values``.

    Args:
        values: Numbers (``None`` entries are not allowed: filter undefined metrics first).
        confidence (float, optional): Coverage of the two-sided interval. (default: ``0.95``)
    """
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return Estimate(0)
    mean = math.fsum(values) / n
    if n == 1:
        return Estimate(1, mean)
    sd = statistics.stdev(values)
    from scipy.stats import t

    half = float(t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return Estimate(n, mean, sd, mean - half, mean + half)


def paired_difference(a: dict, b: dict, confidence: float = CONFIDENCE) -> PairedEstimate:
    """The differences ``a[seed] - b[seed]`` over the seeds both define, summarized and tested.

    Args:
        a (dict): Seed -> value of the first point (``None`` values are skipped).
        b (dict): Seed -> value of the reference point.
    """
    seeds = tuple(sorted(s for s in a if s in b and a[s] is not None and b[s] is not None))
    differences = [a[s] - b[s] for s in seeds]
    summary = estimate(differences, confidence)
    p_value = None
    if summary.n >= 2 and summary.sd and summary.sd > 0:
        from scipy.stats import ttest_rel

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p_value = float(ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue)
    return PairedEstimate(summary.n, summary.mean, summary.sd, summary.ci_low, summary.ci_high,
                          p_value, seeds)


# --------------------------------------------------------------------------- runs and configs
@dataclass
class RunRecord:
    """One completed run: its metrics, its comparable config and the seed it recorded."""

    run_dir: Path
    metrics: dict
    config: dict | None = None  # flat comparable config (comparable_config); None if unreadable
    seed: int | None = None
    problem: str | None = None  # why config.yaml could not be read

    def value(self, scenario: str, metric: str) -> float | None:
        return number(section(section(self.metrics, "test"), scenario).get(metric))

    @property
    def scenarios(self) -> list[str]:
        return list(section(self.metrics, "test"))

    def recorded_dependency(self, role: str) -> str | None:
        """The run directory this run used for ``role``, as its metrics.json recorded it."""
        recorded = section(self.metrics, "dependencies").get(role)
        return recorded if isinstance(recorded, str) else None


def read_run(run_dir: Path, metrics: dict) -> RunRecord:
    """A :class:`RunRecord` of a completed run whose ``metrics.json`` is already read."""
    import yaml

    run_dir = Path(run_dir)
    path = run_dir / "config.yaml"
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return RunRecord(run_dir, metrics, problem=f"{path}: missing")
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        return RunRecord(run_dir, metrics, problem=f"{path}: not readable YAML ({err})")
    if not isinstance(config, dict):
        return RunRecord(run_dir, metrics, problem=f"{path}: not a mapping")
    seed = config.get("seed")
    seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
    return RunRecord(run_dir, metrics, comparable_config(config, metrics), seed)


def flatten(document: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists stay values)."""
    flat = {}
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _ignored(key: str) -> bool:
    return any(key == name or key.startswith(name + ".") for name in IGNORED_KEYS)


def dependency_point(run_dir) -> str:
    """The grid point a run directory belongs to (from its path), else the path itself."""
    parts = Path(str(run_dir)).parts
    if len(parts) >= 8 and parts[-1].startswith("run_"):
        try:
            return GridPoint(*parts[-8:-1]).validate().name
        except InvalidGridPoint:
            pass
    return str(run_dir)


def comparable_config(config: dict, metrics: dict) -> dict:
    """The flat config with :data:`IGNORED_KEYS` removed, pinned dependency paths replaced by
    their grid point and the data identified by :data:`DATA_KEY`."""
    flat = flatten(config)
    comparable = {key: value for key, value in flat.items() if not _ignored(key)}
    for role, key in PIN_KEYS.items():
        used = section(metrics, "dependencies").get(role) or flat.get(key)
        if used:
            comparable[DEPENDENCY_PREFIX + key] = dependency_point(used)
    cache = section(metrics, "data").get("cache")
    comparable[DATA_KEY] = (Path(cache).name if isinstance(cache, str) and cache
                            else f"data_root={flat.get('data_root')}")
    return comparable


def config_differences(config: dict, reference: dict) -> list[tuple[str, object, object]]:
    """``(key, value here, value in reference)`` for every key whose values differ, sorted."""
    absent = "(absent)"
    return [(key, config.get(key, absent), reference.get(key, absent))
            for key in sorted(set(config) | set(reference))
            if config.get(key, absent) != reference.get(key, absent)]


# --------------------------------------------------------------------------- grouping
@dataclass
class LeftApart:
    """A completed run not aggregated with its point's reported runs, and why."""

    run: RunRecord
    reason: str
    keys: list[str] = field(default_factory=list)  # the config keys that differed


@dataclass
class PointGroup:
    """The runs aggregated for one grid point (one per seed, newest first) and those left apart."""

    point: GridPoint
    runs: list[RunRecord]
    left_apart: list[LeftApart] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def seeds(self) -> list:
        return sorted((run.seed for run in self.runs if run.seed is not None))

    @property
    def newest(self) -> RunRecord:
        return self.runs[0]

    @property
    def scenarios(self) -> list[str]:
        """Test scenarios in the order the runs list them, ``pooled`` last."""
        found = dict.fromkeys(s for run in self.runs for s in run.scenarios if s != POOLED)
        return list(found) + [POOLED]

    @property
    def metrics(self) -> list[str]:
        """Every metric a scenario of a run holds (counts excluded), in first-seen order."""
        found = {}
        for run in self.runs:
            for values in section(run.metrics, "test").values():
                if isinstance(values, dict):
                    found.update((k, None) for k, v in values.items()
                                 if k not in COUNT_KEYS and (number(v) is not None or v is None))
        return list(found)

    def values(self, scenario: str, metric: str) -> dict:
        """Seed -> value of the runs with a known seed (``None`` where undefined)."""
        return {run.seed: run.value(scenario, metric) for run in self.runs if run.seed is not None}

    def estimate(self, scenario: str, metric: str) -> Estimate:
        """Over every aggregated run where the metric is defined (a seedless single run too)."""
        return estimate([v for v in (run.value(scenario, metric) for run in self.runs) if v is not None])

    def summary(self, key: str) -> Estimate:
        """An entry of metrics.json ``summary`` (``parameters``, ``epochs``) over the runs."""
        return estimate([v for v in (number(section(run.metrics, "summary").get(key)) for run in self.runs)
                         if v is not None])

    def threshold(self) -> tuple[Estimate, str | None]:
        """The decision thresholds over the runs, and the rule (the newest run's)."""
        values = [number(section(run.metrics, "threshold").get("value")) for run in self.runs]
        rule = section(self.newest.metrics, "threshold").get("rule")
        return estimate([v for v in values if v is not None]), rule


def _describe(differences: list[tuple[str, object, object]], shown: int = 3) -> str:
    parts = [f"{key} (here {here!r}, reported runs {there!r})" for key, here, there in differences[:shown]]
    more = f" and {len(differences) - shown} more" if len(differences) > shown else ""
    return f"config differs in {', '.join(parts)}{more}"


def group_runs(point: GridPoint, runs: list[RunRecord]) -> PointGroup:
    """Aggregate the completed runs of ``point`` (``runs`` newest first) that differ only in the seed.

    The reported group is the newest run with a readable config and every run whose comparable
    config equals it; of several runs with one seed the newest is kept. A run whose config cannot
    be read is left apart, unless no run's config can be read: the newest run then stands alone.
    """
    if not runs:
        raise ValueError(f"group_runs needs at least one run of {point.name}")
    readable = [run for run in runs if run.config is not None]
    if not readable:
        return PointGroup(point, [runs[0]], [LeftApart(run, f"cannot be compared: {run.problem}")
                                             for run in runs[1:]])
    reference = readable[0]
    group, left_apart, by_seed = [], [], {}
    for run in runs:
        if run.config is None:
            left_apart.append(LeftApart(run, f"cannot be compared: {run.problem}"))
            continue
        differences = config_differences(run.config, reference.config)
        if differences:
            left_apart.append(LeftApart(run, _describe(differences), [key for key, _, _ in differences]))
        elif run.seed is not None and run.seed in by_seed:
            left_apart.append(LeftApart(run, f"seed {run.seed} again: the newer "
                                             f"{by_seed[run.seed].run_dir.name} is used"))
        else:
            by_seed.setdefault(run.seed, run)
            group.append(run)
    return PointGroup(point, group, left_apart)


# --------------------------------------------------------------------------- comparisons
# What each comparison subtracts; the first point of a comparison minus its reference.
COMPARISONS = {
    "distillation_vs_none": "distilled − the same point without distillation",
    "student_vs_teacher": "this size − the teacher (size teacher, distillation no)",
    "fusion_vs_better_input": "fusion − the better of its inputs (higher mean over the paired "
                              "seeds; lower for fpr)",
}


@dataclass(frozen=True)
class Difference:
    """One cell of a comparison: the paired difference and which reference it was taken against."""

    estimate: PairedEstimate
    reference: str | None  # the role of the reference used (the better input for fusion)
    means: dict  # role (and "point") -> mean over the paired seeds


@dataclass
class Comparison:
    """A point against one or more reference points (role -> group), paired by seed."""

    kind: str
    group: PointGroup
    references: dict[str, PointGroup]

    @property
    def paired_seeds(self) -> list:
        seeds = set(self.group.seeds)
        for reference in self.references.values():
            seeds &= set(reference.seeds)
        return sorted(seeds)

    @property
    def unpaired(self) -> dict[str, list]:
        """Seeds of each side (``point`` or a role) that have no partner on every other side."""
        paired = set(self.paired_seeds)
        sides = {"point": self.group, **self.references}
        return {name: [s for s in group.seeds if s not in paired] for name, group in sides.items()
                if any(s not in paired for s in group.seeds)}

    def difference(self, scenario: str, metric: str) -> Difference:
        """The point minus its (better) reference over the seeds where all sides are defined."""
        mine = self.group.values(scenario, metric)
        theirs = {role: group.values(scenario, metric) for role, group in self.references.items()}
        seeds = [s for s in self.paired_seeds
                 if mine.get(s) is not None and all(v.get(s) is not None for v in theirs.values())]
        means = {role: (math.fsum(values[s] for s in seeds) / len(seeds) if seeds else None)
                 for role, values in {"point": mine, **theirs}.items()}
        if not seeds:
            return Difference(paired_difference({}, {}), None, means)
        pick = min if metric in LOWER_IS_BETTER else max
        better = pick(self.references, key=lambda role: means[role])
        chosen = {s: mine[s] for s in seeds}
        return Difference(paired_difference(chosen, theirs[better]), better, means)

    def dependency_mismatches(self) -> list[str]:
        """Paired seeds whose run learned from another run of the reference than its seed partner."""
        notes = []
        by_seed = {run.seed: run for run in self.group.runs}
        for role, reference in self.references.items():
            partners = {run.seed: run for run in reference.runs}
            for seed in self.paired_seeds:
                recorded = by_seed[seed].recorded_dependency(role)
                if recorded and Path(recorded).name != partners[seed].run_dir.name:
                    notes.append(f"seed {seed} used {role} {Path(recorded).name}, "
                                 f"paired with {partners[seed].run_dir.name}")
        return notes


def comparisons(groups: dict[GridPoint, PointGroup]) -> list[Comparison]:
    """Every paired comparison the groups allow, for any model of the grid.

    - ``distillation_vs_none``: a distilled point against the same point with ``distillation=no``;
    - ``student_vs_teacher``: a point of another size against ``size=teacher, distillation=no``;
    - ``fusion_vs_better_input``: a point with input dependencies (roles other than ``teacher``
      and ``scorer``, see :func:`kdgat.grid.dependencies`) against the better of them.
    """
    found = []
    for point, group in groups.items():
        if point.distillation != "no":
            plain = groups.get(point.with_(distillation="no"))
            if plain is not None:
                found.append(Comparison("distillation_vs_none", group, {"no distillation": plain}))
        if point.size != "teacher":
            teacher = groups.get(point.with_(size="teacher", distillation="no"))
            if teacher is not None:
                found.append(Comparison("student_vs_teacher", group, {"teacher": teacher}))
        inputs = {need.role: groups.get(need.point) for need in dependencies(point)
                  if need.role not in ("teacher", "scorer")}
        if inputs and all(inputs.values()):
            found.append(Comparison("fusion_vs_better_input", group, inputs))
    return found
