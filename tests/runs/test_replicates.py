"""Replicates (``replicates=N``), seed pairing of dependencies, and pins checked against the need."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kdgat.runs.dependencies import MissingDependency, pairing, resolve
from kdgat.train import replicate_seeds

from .test_dependencies import STUDENT, TEACHER_PATH, compose, make_run

TRAIN = [sys.executable, "-m", "kdgat.train"]
TINY_GAT = "automotive/synthetic/classifier/gat/tiny/no/all_samples"


def with_seed(run_dir: Path, seed: int) -> Path:
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["seed"] = seed
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir


# --------------------------------------------------------------------------- replicates=N
@pytest.mark.parametrize("argv, seeds, left", [
    (["replicates=3"], [0, 1, 2], []),
    (["seed=10", "model=vgae", "replicates=2"], [10, 11], ["model=vgae"]),
    (["model=vgae"], None, ["model=vgae"]),
])
def test_replicates_become_consecutive_seeds(argv, seeds, left):
    assert replicate_seeds(argv) == seeds
    assert argv == left


@pytest.mark.parametrize("argv, message", [
    (["replicates=0"], "a positive integer"), (["replicates=five"], "a positive integer"),
    (["replicates=3", "seed=1,2"], "sweep explicit seeds without it")])
def test_bad_replicates_are_refused_with_the_way_out(argv, message):
    with pytest.raises(ValueError, match=message):
        replicate_seeds(argv)


def test_kdgat_train_replicates_runs_one_run_dir_per_seed(tmp_path):
    result = subprocess.run([*TRAIN, "replicates=2", "seed=3", "trainer=smoke", "size=tiny",
                             "tracking.enabled=false", f"runs_root={tmp_path}"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted((tmp_path / TINY_GAT).glob("run_*"))
    assert [yaml.safe_load((r / "config.yaml").read_text())["seed"] for r in runs] == [3, 4]
    assert [json.loads((r / "status.json").read_text())["seed"] for r in runs] == [3, 4]


def test_replicates_on_a_cluster_are_one_array_task_per_seed(tmp_path):
    result = subprocess.run([*TRAIN, "cluster=osc_pitzer", "model=gat,vgae", "replicates=3",
                             f"runs_root={tmp_path}/runs", "--dry-run"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120, env={**_clean_env(), "KDGAT_SLURM_ACCOUNT": "PAS0000"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("#!/bin/bash") == 1 and "#SBATCH --array=0-5%" in result.stdout
    for seed in range(3):
        assert result.stdout.count(f"seed={seed}") == 2  # once per model


def _clean_env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "KDGAT_"))}


# --------------------------------------------------------------------------- pairing by seed
def test_seed_s_of_a_student_uses_seed_s_of_its_teacher(tmp_path):
    from kdgat.train import prepare_run

    teachers = {seed: with_seed(make_run(tmp_path, TEACHER_PATH, number), seed)
                for number, seed in ((1, 0), (2, 1), (3, 2))}
    for seed in (0, 1, 2):
        overrides = ["model=gat", "size=student", "distillation=standard", f"runs_root={tmp_path}",
                     f"seed={seed}"]
        _, run_dir, needs = prepare_run(compose(*overrides), overrides)
        assert needs == {"teacher": teachers[seed]}
        status = json.loads((run_dir / "status.json").read_text())
        assert status["seed"] == seed
        assert status["pairing"] == {"teacher": {"run": str(teachers[seed]), "seed": seed, "same_seed": True}}


def test_without_a_teacher_of_its_seed_the_newest_is_used_and_the_mismatch_recorded(tmp_path, capsys):
    from kdgat.train import prepare_run

    teacher = with_seed(make_run(tmp_path, TEACHER_PATH, 1), 0)
    overrides = ["model=gat", "size=student", "distillation=standard", f"runs_root={tmp_path}", "seed=7"]
    _, run_dir, needs = prepare_run(compose(*overrides), overrides)
    assert needs == {"teacher": teacher}
    assert json.loads((run_dir / "status.json").read_text())["pairing"]["teacher"]["same_seed"] is False
    assert "no usable teacher run with seed 7" in capsys.readouterr().err
    assert pairing({"teacher": teacher}, 0)["teacher"]["same_seed"] is True


# --------------------------------------------------------------------------- pins that do not fit
def test_a_pin_of_another_grid_point_is_refused_naming_both(tmp_path):
    tiny = with_seed(make_run(tmp_path, TINY_GAT, 1), 0)
    with pytest.raises(MissingDependency) as err:
        resolve(STUDENT, tmp_path, {"teacher": str(tiny)})
    message = str(err.value)
    assert "it is a run of automotive_synthetic_classifier_gat_tiny_no_all_samples" in message
    assert "needs its teacher, a completed run of grid point " \
           "automotive_synthetic_classifier_gat_teacher_no_all_samples" in message


def test_a_vgae_pinned_as_the_gat_input_of_fusion_is_refused(tmp_path):
    from kdgat.grid import GridPoint

    fusion = GridPoint("automotive", "synthetic", "fusion", "dqn", "teacher", "no", "all_samples")
    vgae = with_seed(make_run(tmp_path, "automotive/synthetic/unsupervised/vgae/teacher/no/normals_only", 1), 0)
    with pytest.raises(MissingDependency, match="it is a run of automotive_synthetic_unsupervised_vgae"):
        resolve(fusion, tmp_path, {"gat": str(vgae), "vgae": str(vgae)})


def test_a_run_without_checkpoints_is_never_picked_and_refused_when_pinned(tmp_path):
    newest = with_seed(make_run(tmp_path, TEACHER_PATH, 2), 0)
    (newest / "checkpoints" / "best.ckpt").unlink()  # what +trainer.fast_dev_run=true leaves
    with pytest.raises(MissingDependency, match=r"skipped run_002: it has no checkpoints/best.ckpt"):
        resolve(STUDENT, tmp_path, {})
    older = with_seed(make_run(tmp_path, TEACHER_PATH, 1), 0)
    assert resolve(STUDENT, tmp_path, {}) == {"teacher": older}
    with pytest.raises(MissingDependency, match="has no checkpoints/best.ckpt"):
        resolve(STUDENT, tmp_path, {"teacher": str(newest)})


def test_a_refused_pin_leaves_no_run_directory(tmp_path):
    result = subprocess.run([*TRAIN, "size=student", "distillation=standard", f"runs_root={tmp_path}",
                             f"module.distillation.teacher_run={with_seed(make_run(tmp_path, TINY_GAT, 1), 0)}"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120, env=_clean_env())
    assert result.returncode == 2, result.stderr
    assert "it is a run of automotive_synthetic_classifier_gat_tiny_no_all_samples" in result.stderr
    assert not (tmp_path / STUDENT.path).exists()


# --------------------------------------------------------------------------- pipelines
def test_a_pipeline_with_replicates_pairs_every_job_with_the_same_seed(tmp_path):
    """``kdgat pipeline replicates=2``: every point once per seed; on Slurm seed s of the fusion
    agents waits (afterok) for seed s of its VGAE and GAT only."""
    env = {**_clean_env(), "KDGAT_SLURM_ACCOUNT": "PAS0000"}
    local = subprocess.run([sys.executable, "-m", "kdgat.cli", "pipeline", "dataset=synthetic", "size=teacher",
                            "replicates=2", "seed=4", f"runs_root={tmp_path}/runs", "--dry-run"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=120, env=env)
    assert local.returncode == 0, local.stderr
    assert " × 2 seeds (4-5)" in local.stdout
    runs = re.findall(r"\[run\] (\S+)@seed(\d)", local.stdout)
    points = {name for name, _ in runs}
    assert sorted(runs) == sorted((name, seed) for name in points for seed in "45")
    fusion = "automotive_synthetic_fusion_dqn_teacher_no_all_samples@seed5  (needs: " \
             "automotive_synthetic_unsupervised_vgae_teacher_no_normals_only@seed5, " \
             "automotive_synthetic_classifier_gat_teacher_no_all_samples@seed5)"
    assert fusion in local.stdout and "seed=5" in local.stdout

    slurm = subprocess.run([sys.executable, "-m", "kdgat.cli", "pipeline", "dataset=synthetic",
                            "cluster=osc_cardinal", "size=teacher", "replicates=2",
                            f"runs_root={tmp_path}/runs", "--dry-run"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=120, env=env)
    assert slurm.returncode == 0, slurm.stderr
    jobs = dict((name, number) for number, name in re.findall(r"^# ---- job (\d+): (\S+)", slurm.stdout, re.M))
    assert len(jobs) == slurm.stdout.count("#!/bin/bash") == 2 * len(points)
    for seed in (0, 1):
        needs = [jobs[f"automotive_synthetic_{p}@seed{seed}"] for p in
                 ("unsupervised_vgae_teacher_no_normals_only", "classifier_gat_teacher_no_all_samples")]
        script = slurm.stdout.split(f"# ---- job {jobs[f'automotive_synthetic_fusion_dqn_teacher_no_all_samples@seed{seed}']}:")[1]
        assert f"#SBATCH --dependency='afterok:<job {needs[0]}>:<job {needs[1]}>'" in script.split("# ---- job")[0]
