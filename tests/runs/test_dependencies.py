"""Dependencies: which completed run a point uses, the message when none exists, and the record.

Completed runs here are hand-written (a ``status.json``), which is all that resolution reads;
the slow test at the end follows the printed command for real.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kdgat.grid import GridPoint
from kdgat.runs.dependencies import PIN_KEYS, MissingDependency, resolve
from kdgat.runs.rundir import set_status

STUDENT = GridPoint("automotive", "synthetic", "classifier", "gat", "student", "standard", "all_samples")
TEACHER = "automotive_synthetic_classifier_gat_teacher_no_all_samples"
TEACHER_PATH = "automotive/synthetic/classifier/gat/teacher/no/all_samples"
TRAIN = [str(Path(sys.executable).parent / "kdgat-train")]


def make_run(root: Path, point_path: str, number: int, status: str = "completed") -> Path:
    """A run directory with what resolution and the pre-allocation check read: ``status.json``,
    a ``config.yaml`` naming a kdgat network and a checkpoint of plain data."""
    import torch

    run_dir = root / point_path / f"run_{number:03d}"
    (run_dir / "checkpoints").mkdir(parents=True)
    set_status(run_dir, status)
    grid = dict(zip(("modality", "dataset", "learning_type", "model", "size", "distillation", "mode"),
                    point_path.split("/")))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(
        {"grid": grid, "seed": 0, "network": {"_target_": "kdgat.models.builders.gat", "_partial_": True}}))
    torch.save({"state_dict": {}}, run_dir / "checkpoints" / "best.ckpt")
    return run_dir


def environment(tmp_path_factory) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDGAT_")}
    env["KDGAT_CACHE_DIR"] = str(tmp_path_factory.getbasetemp() / "kdgat-cache")
    return env


# --------------------------------------------------------------------------- resolve()
def test_the_newest_completed_run_is_used(tmp_path):
    make_run(tmp_path, TEACHER_PATH, 1)
    newest = make_run(tmp_path, TEACHER_PATH, 2)
    make_run(tmp_path, TEACHER_PATH, 3, "failed")
    make_run(tmp_path, TEACHER_PATH, 4, "running")
    broken = tmp_path / TEACHER_PATH / "run_005"
    broken.mkdir()
    (broken / "status.json").write_text('{"status": "compl')
    assert resolve(STUDENT, tmp_path, {}) == {"teacher": newest}


def test_a_pin_wins_over_the_newest_and_must_be_completed(tmp_path):
    oldest = make_run(tmp_path, TEACHER_PATH, 1)
    make_run(tmp_path, TEACHER_PATH, 2)
    failed = make_run(tmp_path, TEACHER_PATH, 3, "failed")
    assert resolve(STUDENT, tmp_path, {"teacher": str(oldest)}) == {"teacher": oldest}
    for pin in (failed, tmp_path / "nowhere" / "run_001"):
        with pytest.raises(MissingDependency, match=f"module.distillation.teacher_run={pin}: not a "
                                                    "completed run directory"):
            resolve(STUDENT, tmp_path, {"teacher": str(pin)})


def test_points_without_dependencies_need_nothing(tmp_path):
    point = STUDENT.with_(size="teacher", distillation="no")
    assert resolve(point, tmp_path, {}) == {}


def test_fusion_and_curriculum_find_every_role(tmp_path):
    vgae = make_run(tmp_path, "automotive/synthetic/unsupervised/vgae/tiny/no/normals_only", 1)
    gat = make_run(tmp_path, "automotive/synthetic/classifier/gat/tiny/no/all_samples", 1)
    scorer = make_run(tmp_path, "automotive/synthetic/unsupervised/vgae/teacher/no/normals_only", 1)
    fusion = GridPoint("automotive", "synthetic", "fusion", "dqn", "tiny", "no", "all_samples")
    assert resolve(fusion, tmp_path, {}) == {"vgae": vgae, "gat": gat}
    curriculum = GridPoint("automotive", "synthetic", "classifier", "gat", "tiny", "no", "curriculum")
    assert resolve(curriculum, tmp_path, {}) == {"scorer": scorer}


def test_a_missing_dependency_says_what_where_and_how(tmp_path):
    with pytest.raises(MissingDependency) as refused:
        resolve(STUDENT, tmp_path, {"teacher": None}, "data_root=/data")
    message = str(refused.value)
    assert f"needs its teacher, grid point {TEACHER}" in message
    assert f"no completed run was found in {tmp_path / TEACHER_PATH}" in message
    assert f"kdgat-train experiment={TEACHER} runs_root={tmp_path} data_root=/data" in message
    assert f"{PIN_KEYS['teacher']}=RUN_DIR" in message


# --------------------------------------------------------------------------- the record in the run dir
def compose(*overrides: str):
    from hydra import compose as hydra_compose, initialize

    from kdgat.config.store import store

    store.add_to_hydra_store(overwrite_ok=True)
    with initialize(version_base="1.3", config_path=None):
        return hydra_compose("train", overrides=list(overrides))


@pytest.mark.parametrize("pinned", [False, True])
def test_the_run_records_the_teacher_it_uses(pinned, tmp_path):
    from kdgat.train import prepare_run

    older = make_run(tmp_path, TEACHER_PATH, 1)
    newest = make_run(tmp_path, TEACHER_PATH, 2)
    overrides = ["model=gat", "size=student", "distillation=standard", f"runs_root={tmp_path}",
                 "tracking.enabled=false"]
    if pinned:
        overrides.append(f"module.distillation.teacher_run={older}")
    point, run_dir, needs = prepare_run(compose(*overrides), overrides)
    teacher = older if pinned else newest
    assert point == STUDENT and needs == {"teacher": teacher}
    assert run_dir == tmp_path / STUDENT.path / "run_001"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["module"]["distillation"]["teacher_run"] == str(teacher.resolve())
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "running" and status["dependencies"] == {"teacher": str(teacher.resolve())}


def test_a_missing_dependency_stops_kdgat_train_before_any_run_dir(tmp_path_factory, tmp_path):
    empty = tmp_path / "empty"
    result = subprocess.run([*TRAIN, "model=gat", "size=student", "distillation=standard",
                             f"runs_root={empty}"], capture_output=True, text=True,
                            env=environment(tmp_path_factory), cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    assert f"grid point {TEACHER}" in result.stderr
    assert f"no completed run was found in {empty.resolve() / TEACHER_PATH}" in result.stderr
    assert f"  kdgat-train experiment={TEACHER} runs_root={empty.resolve()}\n" in result.stderr
    assert "module.distillation.teacher_run=RUN_DIR" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("run_*"))


@pytest.mark.slow
def test_the_printed_command_creates_the_teacher_and_the_student_then_runs(tmp_path_factory, tmp_path):
    env, empty = environment(tmp_path_factory), tmp_path / "empty"
    student = ["model=gat", "size=student", "distillation=standard", f"runs_root={empty}",
               "trainer=smoke", "tracking.enabled=false"]

    def train(args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([*TRAIN, *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=600)

    refused = train(student)
    assert refused.returncode == 2
    lines = refused.stderr.splitlines()
    suggested = shlex.split(lines[lines.index("Create it with:") + 1])
    assert suggested[0] == "kdgat-train"
    created = train([*suggested[1:], "trainer=smoke", "tracking.enabled=false"])
    assert created.returncode == 0, created.stderr[-3000:]
    (teacher,) = (empty / TEACHER_PATH).glob("run_*")

    distilled = train(student)
    assert distilled.returncode == 0, distilled.stderr[-3000:]
    (run_dir,) = (empty / STUDENT.path).glob("run_*")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["module"]["distillation"]["teacher_run"] == str(teacher.resolve())
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "completed" and status["dependencies"] == {"teacher": str(teacher.resolve())}
    history = json.loads((run_dir / "metrics.json").read_text())["history"]
    assert history["train/kd_loss"] and all(value > 0 for value in history["train/kd_loss"])
