"""Replicates aggregated by seed: statistics against scipy, grouping by config, pairing by seed.

Run directories are written by hand in the shape ``kdgat-train`` leaves them (config.yaml,
metrics.json, status.json), with known numbers, so every expected value is computed here from
those numbers with numpy and scipy, independently of :mod:`kdgat.evaluation.aggregate`.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from kdgat.cli import main
from kdgat.evaluation.aggregate import (DATA_KEY, IGNORED_KEYS, comparisons, estimate,
                                        group_runs, paired_difference, read_run)
from kdgat.grid import GridPoint

T01, T02, T05 = ("test_01_known_vehicle_known_attack", "test_02_unknown_vehicle_known_attack",
                 "test_05_suppress")
TEACHER = "set_01/classifier/gat/teacher/no/all_samples"
STUDENT = "set_01/classifier/gat/student/standard/all_samples"
PLAIN_STUDENT = "set_01/classifier/gat/student/no/all_samples"
TINY = "set_01/classifier/gat/tiny/no/all_samples"
VGAE = "set_01/unsupervised/vgae/teacher/no/normals_only"
GAT_INPUT = TEACHER
FUSION = "set_01/fusion/dqn/teacher/no/all_samples"

# The shape of a real config.yaml (kdgat-train trainer=smoke size=tiny), trimmed to its sections.
CONFIG = yaml.safe_load("""
grid: {modality: automotive, dataset: set_01, learning_type: classifier, model: gat, size: teacher,
       distillation: 'no', mode: all_samples}
seed: 0
runs_root: /runs
data_root: /data
cache_dir: /runs/.cache
datamodule:
  _target_: kdgat.data.datamodule.CANGraphDataModule
  dataset: set_01
  data_root: /data
  cache_dir: /runs/.cache
  window: 100
  stride: 100
  batch_size: 64
  seed: 0
  unseen_id_rate: 0.25
network: {_target_: kdgat.models.builders.gat, _partial_: true, hidden: 8, heads: 2, num_layers: 1}
module:
  optimizer: {_target_: kdgat.training.settings.OptimizerSettings, name: adam, lr: 0.001}
  distillation: {_target_: kdgat.training.settings.DistillationSettings, kind: 'no', alpha: 0.7,
                 temperature: 4.0, teacher_run: null}
  monitor: val/loss
  _target_: kdgat.training.classifier.ClassifierModule
curriculum: {_target_: kdgat.training.settings.CurriculumSettings, enabled: false, scorer_run: null}
trainer: {_target_: lightning.pytorch.Trainer, max_epochs: 5, enable_progress_bar: false,
          log_every_n_steps: 10}
tracking: {_target_: kdgat.tracking.TrackingSettings, enabled: false, tracking_uri: null}
threshold_rule: f1
allow_targets: []
run_dir: /runs/x/run_001
""")


def scenario(f1, auroc=None, fpr=0.1) -> dict:
    """One scenario of metrics.json; ``f1=None`` is a scenario without attack windows."""
    return {"n": 100, "positives": 0 if f1 is None else 40, "negatives": 60, "threshold": 0.5,
            "tn": 50, "fp": 10, "fn": 5, "tp": 35, "accuracy": 0.9, "precision": 0.8, "recall": 0.875,
            "f1": f1, "balanced_accuracy": 0.85, "mcc": 0.7, "fpr": fpr,
            "auroc": auroc if f1 is not None else None, "auprc": auroc, "notes": []}


def write_run(root: Path, where: str, number: int, seed: int, f1: dict, *, changes: dict | None = None,
              dependencies: dict | None = None, cache_key: str = "abc123", fpr: dict | None = None,
              config: bool = True) -> Path:
    """``root/automotive/{where}/run_{number:03d}`` with a config.yaml, metrics.json, status.json.

    Args:
        f1: scenario (``pooled`` included) -> F1; AUROC is F1 + 0.05.
        changes: dotted config key -> value, set after the seed and paths.
    """
    point = GridPoint("automotive", *where.split("/"))
    run_dir = root / point.path / f"run_{number:03d}"
    run_dir.mkdir(parents=True)
    document = copy.deepcopy(CONFIG)
    document["grid"] = point.as_dict()
    document["seed"] = document["datamodule"]["seed"] = seed
    document["run_dir"] = str(run_dir)
    for key, value in (changes or {}).items():
        *parents, last = key.split(".")
        node = document
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    if config:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(document))
    dependencies = {role: str(path) for role, path in (dependencies or {}).items()}
    metrics = {"threshold": {"value": 0.5, "rule": "f1", "fit_on": "validation"},
               "validation": scenario(0.99, 0.99),
               "test": {name: scenario(value, None if value is None else value + 0.05,
                                       (fpr or {}).get(name, 0.1)) for name, value in f1.items()},
               "summary": {"grid_point": point.name, "parameters": 1000, "epochs": 5},
               "data": {"cache": f"/runs/.cache/set_01/{cache_key}", "vocabulary_size": 10},
               "dependencies": dependencies, "history": {"val/loss": [0.3, 0.2]}}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "status.json").write_text(json.dumps({
        "status": "completed", "grid_point": point.name, "seed": seed, "dependencies": dependencies,
        "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:01:00+00:00"}))
    (run_dir / "env.json").write_text(json.dumps({"host": "elsewhere", "pid": 1, "slurm": {}}))
    return run_dir


def load(run_dir: Path):
    return read_run(run_dir, json.loads((run_dir / "metrics.json").read_text()))


def group_of(*run_dirs: Path):
    """The group of the runs' point (``run_dirs`` newest first, as kdgat report passes them)."""
    point = GridPoint(*Path(run_dirs[0]).parts[-8:-1])
    return group_runs(point, [load(run) for run in run_dirs])


def report_json(root: Path, *args: str, capsys) -> dict:
    assert main(["report", "--runs-root", str(root), "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


# --------------------------------------------------------------------------- statistics
def test_estimate_matches_numpy_and_scipy():
    values = [0.91, 0.95, 0.87, 0.99, 0.93]
    result = estimate(values)
    low, high = stats.t.interval(0.95, df=4, loc=np.mean(values), scale=stats.sem(values))
    assert result.n == 5
    assert result.mean == pytest.approx(np.mean(values), abs=1e-12)
    assert result.sd == pytest.approx(np.std(values, ddof=1), abs=1e-12)
    assert (result.ci_low, result.ci_high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    # By hand: 1..5 has sd sqrt(2.5), t(0.975, 4) = 2.776445, half-width 2.776445 * sqrt(2.5 / 5).
    pinned = estimate([1, 2, 3, 4, 5])
    assert pinned.sd == pytest.approx(math.sqrt(2.5)) and pinned.half_width == pytest.approx(1.963243, abs=1e-6)


def test_one_value_has_no_spread_and_none_has_nothing():
    single = estimate([0.8])
    assert (single.n, single.mean, single.sd, single.ci_low, single.ci_high) == (1, 0.8, None, None, None)
    assert estimate([]).mean is None


def test_paired_difference_matches_ttest_rel_over_the_shared_seeds():
    a = {0: 0.90, 1: 0.94, 2: 0.88, 3: 0.97, 7: 0.5}   # seed 7: no partner
    b = {0: 0.85, 1: 0.93, 2: 0.80, 3: 0.90, 4: 0.99, 5: None}  # seed 4: no partner; 5 undefined
    result = paired_difference(a, b)
    seeds = [0, 1, 2, 3]
    x, y = np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds])
    differences = x - y
    assert result.seeds == (0, 1, 2, 3) and result.n == 4
    assert result.mean == pytest.approx(differences.mean(), abs=1e-12)
    assert result.sd == pytest.approx(differences.std(ddof=1), abs=1e-12)
    low, high = stats.t.interval(0.95, df=3, loc=differences.mean(), scale=stats.sem(differences))
    assert (result.ci_low, result.ci_high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert result.p_value == pytest.approx(stats.ttest_rel(x, y).pvalue, abs=1e-12)
    # The same p from the t statistic written out: t = mean / (sd / sqrt(n)), two-sided, n - 1 df.
    t_statistic = differences.mean() / (differences.std(ddof=1) / 2.0)
    assert result.p_value == pytest.approx(2 * stats.t.sf(abs(t_statistic), 3), abs=1e-12)


def test_identical_differences_and_single_pairs_have_no_p_value():
    assert paired_difference({0: 0.5, 1: 0.6}, {0: 0.4, 1: 0.5}).p_value is None  # sd 0
    single = paired_difference({0: 0.5}, {0: 0.4})
    assert single.n == 1 and single.mean == pytest.approx(0.1) and single.p_value is None and single.ci_low is None


# --------------------------------------------------------------------------- grouping
def test_runs_differing_only_in_seed_and_paths_are_aggregated(tmp_path):
    f1 = {T01: 0.9, "pooled": 0.9}
    first = write_run(tmp_path / "a", TEACHER, 1, 0, f1)
    # Another runs root, cache and data folder, progress bar and tracking: same computation.
    moved = write_run(tmp_path / "b", TEACHER, 2, 1, f1, changes={
        "runs_root": "/elsewhere", "cache_dir": "/scratch/cache", "datamodule.cache_dir": "/scratch/cache",
        "data_root": "/mnt/data", "datamodule.data_root": "/mnt/data", "tracking.enabled": True,
        "tracking.tracking_uri": "sqlite:///x.db", "trainer.enable_progress_bar": True, "replicates": 5})
    group = group_of(moved, first)
    assert [run.seed for run in group.runs] == [1, 0] and group.left_apart == []
    assert {"seed", "datamodule.seed", "run_dir", "runs_root", "cache_dir", "tracking"} <= set(IGNORED_KEYS)


@pytest.mark.parametrize(("changes", "key"), [
    ({"trainer.max_epochs": 50}, "trainer.max_epochs"),
    ({"datamodule.unseen_id_rate": 0.0}, "datamodule.unseen_id_rate"),
    ({"module.optimizer.lr": 0.01}, "module.optimizer.lr"),
    ({"threshold_rule": "youden"}, "threshold_rule"),
    ({"network.hidden": 16}, "network.hidden"),
    ({"new_setting": 1}, "new_setting"),  # a key the reported runs do not have at all
])
def test_a_run_differing_in_any_other_key_is_left_apart_naming_the_key(tmp_path, changes, key):
    older = write_run(tmp_path, TEACHER, 1, 0, {"pooled": 0.7}, changes=changes)
    newer = [write_run(tmp_path, TEACHER, n, n, {"pooled": 0.9}) for n in (2, 3)]
    group = group_of(newer[1], newer[0], older)
    assert [run.run_dir for run in group.runs] == [newer[1], newer[0]]
    (apart,) = group.left_apart
    assert apart.run.run_dir == older and apart.keys == [key]
    assert apart.reason.startswith(f"config differs in {key} (here ")
    assert group.estimate("pooled", "f1").mean == pytest.approx(0.9)  # 0.7 never mixed in


def test_data_compared_by_cache_key_not_by_folder(tmp_path):
    changed = write_run(tmp_path, TEACHER, 1, 0, {"pooled": 0.7}, cache_key="other")
    newest = write_run(tmp_path, TEACHER, 2, 1, {"pooled": 0.9})
    (apart,) = group_of(newest, changed).left_apart
    assert apart.keys == [DATA_KEY] and "'other'" in apart.reason and "'abc123'" in apart.reason


def test_dependencies_compared_by_grid_point_not_by_path(tmp_path):
    root = tmp_path / "runs"
    teachers = [write_run(root, TEACHER, n, n - 1, {"pooled": 0.9}) for n in (1, 2)]
    tiny = write_run(root, TINY, 1, 0, {"pooled": 0.5})
    pin = "module.distillation.teacher_run"

    def student(number, seed, teacher):
        return write_run(root, STUDENT, number, seed, {"pooled": 0.8}, dependencies={"teacher": teacher},
                         changes={pin: str(teacher), "module.distillation.kind": "standard"})

    from_tiny = student(1, 5, tiny)
    students = [student(2, 0, teachers[0]), student(3, 1, teachers[1])]  # two teacher runs: same point
    group = group_of(students[1], students[0], from_tiny)
    assert sorted(run.seed for run in group.runs) == [0, 1]
    (apart,) = group.left_apart
    assert apart.run.run_dir == from_tiny and apart.keys == [f"grid point of {pin}"]
    assert "automotive_set_01_classifier_gat_tiny_no_all_samples" in apart.reason


def test_same_seed_twice_keeps_the_newer_and_unreadable_configs_stay_apart(tmp_path):
    old = write_run(tmp_path, TEACHER, 1, 0, {"pooled": 0.1})
    bare = write_run(tmp_path, TEACHER, 2, 1, {"pooled": 0.2}, config=False)
    new = write_run(tmp_path, TEACHER, 3, 0, {"pooled": 0.9})
    group = group_of(new, bare, old)
    assert [run.run_dir for run in group.runs] == [new]
    reasons = {item.run.run_dir.name: item.reason for item in group.left_apart}
    assert reasons["run_001"] == "seed 0 again: the newer run_003 is used"
    assert reasons["run_002"] == f"cannot be compared: {bare / 'config.yaml'}: missing"


# --------------------------------------------------------------------------- the report's numbers
def test_report_json_statistics_per_scenario_and_metric(tmp_path, capsys):
    root = tmp_path / "runs"
    values = {0: 0.90, 1: 0.96, 2: 0.93}
    for number, (seed, value) in enumerate(values.items(), start=1):
        write_run(root, TEACHER, number, seed, {T01: value, T05: None, "pooled": value - 0.1})
    document = report_json(root, capsys=capsys)
    (point,) = document["datasets"][0]["points"]
    assert point["n"] == 3 and point["seeds"] == [0, 1, 2] and point["left_apart"] == []
    f1 = point["scenarios"][T01]["f1"]
    sample = np.array(list(values.values()))
    low, high = stats.t.interval(0.95, df=2, loc=sample.mean(), scale=stats.sem(sample))
    assert f1["n"] == 3 and f1["mean"] == pytest.approx(sample.mean()) and f1["sd"] == pytest.approx(sample.std(ddof=1))
    assert (f1["ci_low"], f1["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert point["scenarios"][T01]["auroc"]["mean"] == pytest.approx(sample.mean() + 0.05)
    assert point["scenarios"][T05]["auroc"] == {"n": 0, "mean": None, "sd": None, "ci_low": None, "ci_high": None}
    assert set(point["scenarios"][T01]) == {"accuracy", "precision", "recall", "f1", "balanced_accuracy",
                                            "mcc", "fpr", "auroc", "auprc"}
    assert document["ignored_config_keys"]["seed"]


def test_distillation_pairs_by_seed_and_names_unpaired_seeds(tmp_path, capsys):
    root = tmp_path / "runs"
    distilled = {0: 0.91, 1: 0.95, 2: 0.90, 4: 0.99}   # seed 4 has no undistilled partner
    plain = {0: 0.88, 1: 0.90, 2: 0.89, 3: 0.70}       # seed 3 has no distilled partner
    for seed, value in plain.items():
        write_run(root, PLAIN_STUDENT, seed + 1, seed, {T01: value, "pooled": value})
    for seed, value in distilled.items():
        write_run(root, STUDENT, seed + 1, seed, {T01: value, "pooled": value},
                  changes={"module.distillation.kind": "standard"})
    found = {c["kind"]: c for c in report_json(root, capsys=capsys)["datasets"][0]["comparisons"]}
    comparison = found["distillation_vs_none"]
    assert comparison["grid_point"] == "automotive_set_01_classifier_gat_student_standard_all_samples"
    assert comparison["references"] == {"no distillation": "automotive_set_01_classifier_gat_student_no_all_samples"}
    assert comparison["paired_seeds"] == [0, 1, 2]
    assert comparison["unpaired_seeds"] == {"point": [4], "no distillation": [3]}
    result = comparison["scenarios"][T01]["f1"]
    x, y = [distilled[s] for s in (0, 1, 2)], [plain[s] for s in (0, 1, 2)]
    assert result["n"] == 3 and result["seeds"] == [0, 1, 2]
    assert result["mean"] == pytest.approx(np.mean(np.subtract(x, y)))
    assert result["p_value"] == pytest.approx(stats.ttest_rel(x, y).pvalue)
    low, high = stats.t.interval(0.95, df=2, loc=np.mean(np.subtract(x, y)), scale=stats.sem(np.subtract(x, y)))
    assert (result["ci_low"], result["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    # No teacher runs here: no student-vs-teacher comparison is invented.
    assert set(found) == {"distillation_vs_none"}


def test_fusion_against_the_better_input_per_scenario(tmp_path, capsys):
    root = tmp_path / "runs"
    # The GAT is better on t01, the VGAE on t02; on fpr (lower is better) the VGAE is better.
    vgae = {0: (0.60, 0.95), 1: (0.62, 0.97), 2: (0.58, 0.93)}
    gat = {0: (0.90, 0.50), 1: (0.94, 0.55), 2: (0.92, 0.45)}
    fusion = {0: (0.93, 0.90), 1: (0.95, 0.92), 2: (0.91, 0.95), 3: (0.99, 0.99)}
    for seed, (t01, t02) in vgae.items():
        write_run(root, VGAE, seed + 1, seed, {T01: t01, T02: t02, "pooled": t01}, fpr={T01: 0.05})
    for seed, (t01, t02) in gat.items():
        write_run(root, GAT_INPUT, seed + 1, seed, {T01: t01, T02: t02, "pooled": t01}, fpr={T01: 0.20})
    for seed, (t01, t02) in fusion.items():
        write_run(root, FUSION, seed + 1, seed, {T01: t01, T02: t02, "pooled": t01}, fpr={T01: 0.10})
    (comparison,) = [c for c in report_json(root, capsys=capsys)["datasets"][0]["comparisons"]
                     if c["kind"] == "fusion_vs_better_input"]
    assert comparison["references"] == {"vgae": "automotive_set_01_unsupervised_vgae_teacher_no_normals_only",
                                        "gat": "automotive_set_01_classifier_gat_teacher_no_all_samples"}
    assert comparison["paired_seeds"] == [0, 1, 2] and comparison["unpaired_seeds"] == {"point": [3]}
    t01, t02 = comparison["scenarios"][T01]["f1"], comparison["scenarios"][T02]["f1"]
    assert t01["reference"] == "gat" and t02["reference"] == "vgae"
    assert t01["means"]["gat"] == pytest.approx(0.92) and t01["means"]["vgae"] == pytest.approx(0.60)
    fused, better = [fusion[s][0] for s in range(3)], [gat[s][0] for s in range(3)]
    assert t01["mean"] == pytest.approx(np.mean(np.subtract(fused, better)))
    assert t01["p_value"] == pytest.approx(stats.ttest_rel(fused, better).pvalue)
    assert t02["mean"] == pytest.approx(np.mean([fusion[s][1] - vgae[s][1] for s in range(3)]))
    fpr = comparison["scenarios"][T01]["fpr"]
    assert fpr["reference"] == "vgae" and fpr["mean"] == pytest.approx(0.05)  # 0.10 - 0.05


def test_comparisons_are_generic_over_grid_points(tmp_path):
    """A point of any model is compared with its own teacher and undistilled variant by name."""
    root = tmp_path / "runs"
    groups = {}
    for where in (TEACHER, STUDENT, PLAIN_STUDENT, TINY):
        run = write_run(root, where, 1, 0, {"pooled": 0.5})
        group = group_of(run)
        groups[group.point] = group
    kinds = sorted((c.kind, c.group.point.size, c.group.point.distillation) for c in comparisons(groups))
    assert kinds == [("distillation_vs_none", "student", "standard"),
                     ("student_vs_teacher", "student", "no"), ("student_vs_teacher", "student", "standard"),
                     ("student_vs_teacher", "tiny", "no")]
