"""``kdgat status`` and :func:`kdgat.runs.inventory.pipeline_points` on hand-written run directories."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kdgat.cli import main
from kdgat.grid import InvalidGridPoint, dependencies
from kdgat.runs.inventory import pipeline_points, point_runs, read_run
from test_grid_cli import fake_run, point

TEACHER_VGAE = "hcrl_sa/unsupervised/vgae/teacher/no/normals_only"
TEACHER_GAT = "hcrl_sa/classifier/gat/teacher/no/all_samples"
STUDENT_VGAE = "hcrl_sa/unsupervised/vgae/student/standard/normals_only"
STUDENT_GAT = "hcrl_sa/classifier/gat/student/standard/all_samples"
FUSION_TEACHER = "hcrl_sa/fusion/dqn/teacher/no/all_samples"
FUSION_STUDENT = "hcrl_sa/fusion/dqn/student/standard/all_samples"


@pytest.fixture(autouse=True)
def isolated_runs_root(monkeypatch, tmp_path):
    monkeypatch.setenv("KDGAT_RUNS_ROOT", str(tmp_path / "runs"))


# --------------------------------------------------------------------------- pipeline_points
def test_pipeline_points_of_a_dataset_in_dependency_order():
    points = pipeline_points("hcrl_sa")
    assert [p.path.removeprefix("automotive/") for p in points] == [
        TEACHER_VGAE, TEACHER_GAT, STUDENT_VGAE, STUDENT_GAT, FUSION_TEACHER,
        "hcrl_sa/fusion/mlp/teacher/no/all_samples", FUSION_STUDENT,
        "hcrl_sa/fusion/mlp/student/standard/all_samples"]
    for index, p in enumerate(points):
        for need in dependencies(p):
            assert need.point in points[:index], f"{p.name} comes before its {need.role}"


@pytest.mark.parametrize("sizes, distillation", [
    (("student",), "standard"), (("tiny", "huge", "intermediate"), "standard"),
    (("student",), "topology_preserving"), (("teacher",), "standard")])
def test_pipeline_points_include_what_they_need(sizes, distillation):
    points = pipeline_points("set_01", sizes=sizes, distillation=distillation)
    assert len(points) == len(set(points))
    for index, p in enumerate(points):
        assert p.dataset == "set_01" and p.validate()
        for need in dependencies(p):
            assert need.point in points[:index]
    assert {p.size for p in points} == set(sizes) | ({"teacher"} if set(sizes) & {"tiny", "student", "intermediate"} else set())


def test_pipeline_points_reject_unknown_dataset_and_size():
    with pytest.raises(InvalidGridPoint, match="valid dataset values here: synthetic, hcrl_ch"):
        pipeline_points("hcrl_ss")
    with pytest.raises(InvalidGridPoint, match="valid size values here: tiny, student"):
        pipeline_points("hcrl_sa", sizes=("small",))


# --------------------------------------------------------------------------- reading runs
def test_corrupt_missing_and_odd_status_files_read_as_unreadable(tmp_path):
    p = point(TEACHER_GAT)
    run = fake_run(tmp_path, TEACHER_GAT, 1)
    (run / "status.json").write_text('{"status": "compl')
    assert (read_run(p, run).status, str(run / "status.json") in read_run(p, run).problem) == ("unreadable", True)
    (run / "status.json").write_text('["completed"]')
    assert "expected a JSON object" in read_run(p, run).problem
    (run / "status.json").write_text('{"status": "exploded"}')
    assert "unknown status 'exploded'" in read_run(p, run).problem
    (run / "status.json").unlink()
    assert read_run(p, run).problem == f"{run / 'status.json'}: missing"


def test_newest_completed_run_stands_for_the_point(tmp_path):
    fake_run(tmp_path, TEACHER_GAT, 2, f1=0.7)
    fake_run(tmp_path, TEACHER_GAT, 9, "failed")
    fake_run(tmp_path, TEACHER_GAT, 10, "running")
    fake_run(tmp_path, TEACHER_GAT, 1, f1=0.5)
    found = point_runs(tmp_path, point(TEACHER_GAT))
    assert [r.name for r in found.runs] == ["run_010", "run_009", "run_002", "run_001"]
    assert (found.state, found.completed.name, found.counts()) == ("done", "run_002", {"running": 1, "failed": 1, "completed": 2})


# --------------------------------------------------------------------------- the command
def rows_of(out: str) -> dict[str, list[str]]:
    """Table lines keyed by their first cell (the point without modality and dataset)."""
    return {line.split()[0]: line.split() for line in out.splitlines() if line and line[0].islower()}


def test_status_of_a_partial_pipeline(kdgat, tmp_path):
    root = tmp_path / "runs"
    teacher = fake_run(root, TEACHER_VGAE, 1, f1=0.61, auroc=0.72)
    fake_run(root, TEACHER_GAT, 1, f1=0.91, auroc=0.97)
    fake_run(root, TEACHER_GAT, 2, "running")  # a re-run in progress beside a completed run
    fake_run(root, STUDENT_VGAE, 1, "failed", error="RuntimeError: CUDA out of memory\nmore lines")
    fake_run(root, STUDENT_GAT, 1, "preempted")
    corrupt = fake_run(root, FUSION_TEACHER, 1)
    (corrupt / "status.json").write_text("{not json")
    other = fake_run(root, "hcrl_sa/classifier/gat/tiny/no/curriculum", 3, f1=0.5, auroc=0.55)
    result = kdgat("status")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.splitlines()[0] == ("== automotive/hcrl_sa: pipeline 2/8 done (2 done, 1 failed, 1 preempted, "
                                   "1 unreadable, 3 missing)")
    rows = rows_of(out)
    assert rows["unsupervised_vgae_teacher_no_normals_only"][1:6] == ["done", "1", "0.6100", "0.7200", str(teacher)]
    gat = rows["classifier_gat_teacher_no_all_samples"]
    assert gat[1:5] == ["done", "2", "0.9100", "0.9700"] and gat[5].endswith("run_001")
    assert "newer run_002 running" in " ".join(gat)
    assert rows["unsupervised_vgae_student_standard_normals_only"][1:5] == ["failed", "1", "n/a", "n/a"]
    assert "RuntimeError: CUDA out of memory" in out and "more lines" not in out
    assert rows["classifier_gat_student_standard_all_samples"][1] == "preempted"
    assert rows["fusion_dqn_teacher_no_all_samples"][1] == "unreadable"
    assert f"{corrupt / 'status.json'}: not valid JSON" in out
    assert rows["fusion_dqn_student_standard_all_samples"][1:6] == ["missing", "0", "n/a", "n/a", "n/a"]
    assert "-- other grid points with runs (1)" in out
    assert rows["classifier_gat_tiny_no_curriculum"][1:6] == ["done", "1", "0.5000", "0.5500", str(other)]
    assert "set_01" not in out  # datasets without runs are left out unless named


def test_named_dataset_without_runs_and_filters(capsys, tmp_path):
    fake_run(tmp_path / "runs", TEACHER_GAT, 1)
    assert main(["status", "--dataset", "set_02", "--dataset", "hcrl_sa", "--filter", "model=gat"]) == 0
    out = capsys.readouterr().out
    heads = [line for line in out.splitlines() if line.startswith("==")]
    # Grid order, whatever the order of the flags.
    assert heads == ["== automotive/hcrl_sa: pipeline 1/2 done (1 done, 1 missing)",
                     "== automotive/set_02: pipeline 0/2 done (2 missing)"]
    assert "vgae" not in out and "dqn" not in out
    assert main(["status", "--dataset", "hcrl_sb"]) == 2
    assert "did you mean 'hcrl_sa'?" in capsys.readouterr().err


def test_empty_runs_root_says_how_to_start(capsys, tmp_path):
    assert main(["status", "--runs-root", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"no runs under {tmp_path / 'none'} (it does not exist)") and "kdgat-train" in out


def test_status_json_and_stale_running_run(capsys, tmp_path):
    # A run started on this host by a process that has exited, without Slurm: likely killed.
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    fake_run(tmp_path / "runs", TEACHER_GAT, 1, "running",
             env={"host": socket.gethostname(), "pid": int(finished.stdout), "slurm": {}})
    fake_run(tmp_path / "runs", TEACHER_VGAE, 1, "running",
             env={"host": socket.gethostname(), "pid": os.getpid(), "slurm": {}})
    assert main(["status", "--json"]) == 0
    (section,) = json.loads(capsys.readouterr().out)
    rows = {row["point"]: row for row in section["pipeline"]}
    assert rows["classifier_gat_teacher_no_all_samples"]["state"] == "running"
    assert rows["classifier_gat_teacher_no_all_samples"]["note"] == f"stale? process {int(finished.stdout)} on this host is gone"
    assert rows["unsupervised_vgae_teacher_no_normals_only"]["note"] == ""
    assert rows["fusion_mlp_student_standard_all_samples"]["state"] == "missing"
    assert section["other"] == []
