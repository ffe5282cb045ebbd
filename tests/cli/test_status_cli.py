"""``kdgat status`` and :func:`kdgat.runs.inventory.pipeline_points` on hand-written run directories.

Dead runs: runs left ``running``/``preempted`` by a killed or cancelled Slurm job, judged from a
fake ``squeue``/``sacct`` on PATH (every call logged), and a local run whose writer was really
SIGKILLed. The same against the real private Slurm: tests/slurm/test_dead_runs.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import kdgat_command
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
MAJORITY = "hcrl_sa/baseline/majority/teacher/no/all_samples"
WINDOW_STATS = "hcrl_sa/baseline/window_stats/teacher/no/all_samples"


@pytest.fixture(autouse=True)
def isolated_runs_root(monkeypatch, tmp_path):
    monkeypatch.setenv("KDGAT_RUNS_ROOT", str(tmp_path / "runs"))


# --------------------------------------------------------------------------- pipeline_points
def test_pipeline_points_of_a_dataset_in_dependency_order():
    points = pipeline_points("hcrl_sa")
    assert [p.path.removeprefix("automotive/") for p in points] == [
        MAJORITY, WINDOW_STATS, TEACHER_VGAE, TEACHER_GAT, STUDENT_VGAE, STUDENT_GAT,
        "hcrl_sa/unsupervised/vgae/student/no/normals_only",
        "hcrl_sa/classifier/gat/student/no/all_samples", FUSION_TEACHER,
        "hcrl_sa/fusion/mlp/teacher/no/all_samples", FUSION_STUDENT,
        "hcrl_sa/fusion/mlp/student/standard/all_samples",
        "hcrl_sa/fusion/dqn/student/no/all_samples", "hcrl_sa/fusion/mlp/student/no/all_samples"]
    for index, p in enumerate(points):
        for need in dependencies(p):
            assert need.point in points[:index], f"{p.name} comes before its {need.role}"


@pytest.mark.parametrize("sizes, distillation", [
    (("teacher", "student"), "standard"), (("tiny", "intermediate"), "topology_preserving")])
def test_every_distilled_pipeline_point_has_its_undistilled_twin(sizes, distillation):
    """``kdgat report`` pairs a distilled point with its ``distillation=no`` twin by seed."""
    points = pipeline_points("hcrl_sa", sizes=sizes, distillation=distillation)
    distilled = [p for p in points if p.distillation != "no"]
    assert {p.size for p in distilled} == set(sizes) - {"teacher"}
    for p in distilled:
        twin = p.with_(distillation="no")
        assert twin in points, f"{p.name} has no un-distilled control"
        assert "teacher" not in {need.role for need in dependencies(twin)}


def test_a_pipeline_without_distillation_lists_no_distilled_point():
    points = pipeline_points("hcrl_sa", sizes=("student",), distillation="no")
    assert {p.distillation for p in points} == {"no"}
    assert {p.size for p in points if p.learning_type != "baseline"} == {"student"}  # no teacher needed
    assert len(points) == 6  # 2 baselines, VGAE, GAT, DQN, MLP


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
    fake_run(root, MAJORITY, 1, f1=0.0, auroc=0.5)
    baseline = fake_run(root, WINDOW_STATS, 1, f1=0.42, auroc=0.81)
    result = kdgat("status")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # The baselines are pipeline points, listed first (they need nothing).
    assert out.splitlines()[0] == ("== automotive/hcrl_sa: pipeline 4/14 done (4 done, 1 failed, "
                                   "1 preempted, 7 missing, 1 unreadable)")
    assert out.splitlines()[3].split()[:2] == ["baseline_majority_teacher_no_all_samples", "done"]
    rows = rows_of(out)
    assert rows["baseline_window_stats_teacher_no_all_samples"][1:6] == ["done", "1", "0.4200", "0.8100", str(baseline)]
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
    # The GATs: teacher, distilled student and un-distilled student.
    assert heads == ["== automotive/hcrl_sa: pipeline 1/3 done (1 done, 2 missing)",
                     "== automotive/set_02: pipeline 0/3 done (3 missing)"]
    assert "vgae" not in out and "dqn" not in out
    assert main(["status", "--dataset", "hcrl_sb"]) == 2
    assert "did you mean 'hcrl_sa'?" in capsys.readouterr().err


def test_empty_runs_root_says_how_to_start(capsys, tmp_path):
    assert main(["status", "--runs-root", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"no runs under {tmp_path / 'none'} (it does not exist)") and "kdgat-train" in out


def test_status_json_and_stale_running_run(capsys, tmp_path):
    # A run started on this host by a process that has exited, without Slurm: killed.
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(finished.stdout)
    host = socket.gethostname()
    dead = fake_run(tmp_path / "runs", TEACHER_GAT, 1, "running", env={"host": host, "pid": pid, "slurm": {}})
    fake_run(tmp_path / "runs", TEACHER_VGAE, 1, "running", env={"host": host, "pid": os.getpid(), "slurm": {}})
    # Another container with this host name (its own pid namespace): its pids mean nothing here.
    other = fake_run(tmp_path / "runs", STUDENT_GAT, 1, "running",
                     env={"host": host, "pid": pid, "slurm": {}, "pid_namespace": "pid:[1]"})
    # Read alone (kdgat grid, report), a dead local run is only suspected; nothing is written.
    assert point_runs(tmp_path / "runs", point(TEACHER_GAT)).newest.problem == f"stale? process {pid} on this host is gone"
    assert json.loads((dead / "status.json").read_text())["status"] == "running"
    assert main(["status", "--json"]) == 0
    captured = capsys.readouterr()
    (section,) = json.loads(captured.out)
    rows = {row["point"]: row for row in section["pipeline"]}
    why = f"killed: its process {pid} on {host} is gone and the run never finished"
    assert (rows["classifier_gat_teacher_no_all_samples"]["state"], rows["classifier_gat_teacher_no_all_samples"]["note"]) == ("failed", why)
    assert captured.err == f"{dead}: failed ({why})\n\n"
    assert json.loads((dead / "status.json").read_text())["status"] == "failed"
    assert (rows["unsupervised_vgae_teacher_no_normals_only"]["state"], rows["unsupervised_vgae_teacher_no_normals_only"]["note"]) == ("running", "")
    assert (rows["classifier_gat_student_standard_all_samples"]["state"], rows["classifier_gat_student_standard_all_samples"]["note"]) == ("running", "")
    assert json.loads((other / "status.json").read_text())["status"] == "running"
    assert rows["fusion_mlp_student_standard_all_samples"]["state"] == "missing"
    assert section["other"] == []


# --------------------------------------------------------------------------- dead runs
FAKE_SLURM = """#!{python}
import json, os, sys
scenario = json.load(open(os.environ["FAKE_SLURM"]))
name = os.path.basename(sys.argv[0])
with open(scenario["log"], "a") as log:
    log.write(json.dumps([name, *sys.argv[1:]]) + "\\n")
behaviour = scenario[name]
if "fail" in behaviour:
    sys.stderr.write(behaviour["fail"] + "\\n")
    sys.exit(1)
jobs = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--jobs=")).split(",")
for line in behaviour["lines"]:
    if line.split("|")[0].split(".")[0] in jobs:
        print(line)
"""


def fake_slurm(tmp_path, squeue: dict, sacct: dict | None = None) -> dict:
    """A PATH with fake ``squeue`` and ``sacct`` (each call logged); returns the environment."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    for name in ("squeue", "sacct"):
        script = bin_dir / name
        script.write_text(FAKE_SLURM.format(python=sys.executable))
        script.chmod(0o755)
    scenario = tmp_path / "slurm.json"
    scenario.write_text(json.dumps({"log": str(tmp_path / "slurm-calls.jsonl"), "squeue": squeue,
                                    "sacct": sacct or {"lines": []}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KDGAT_", "SLURM_"))}
    return env | {"PATH": str(bin_dir), "FAKE_SLURM": str(scenario),
                  "KDGAT_RUNS_ROOT": str(tmp_path / "runs")}


def slurm_calls(tmp_path) -> list[list[str]]:
    log = tmp_path / "slurm-calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


def status_cli(tmp_path, env, *args):
    return subprocess.run([*kdgat_command(), "status", *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)


def slurm_run(root, where, job, status="running", *, cluster="kdgat", history_job=False):
    """A run that kdgat-train left under Slurm job JOB (raw id), with its .slurm index entry."""
    run = fake_run(root, where, 1, status, env={"host": "node07", "pid": 4242,
                                               "slurm": {"SLURM_JOB_ID": job}})
    if history_job:
        document = json.loads((run / "status.json").read_text())
        document["history"][0]["job"] = job
        (run / "status.json").write_text(json.dumps(document))
    index = run.parent / ".slurm"
    index.mkdir(exist_ok=True)
    (index / f"{cluster}-{job}.json").write_text(json.dumps(
        {"job": f"{cluster}-{job}", "run_dir": run.name, "slurm_job_id": job}))
    return run


def test_dead_slurm_runs_recorded_from_one_squeue_and_one_sacct_call(tmp_path):
    root = tmp_path / "runs"
    oom = slurm_run(root, TEACHER_VGAE, "101", history_job=True)
    cancelled = slurm_run(root, TEACHER_GAT, "102", "preempted")
    (cancelled / "checkpoints").mkdir()
    leftover = cancelled / "checkpoints" / ".last.ckpt.k3j_x9qa"  # a checkpoint write cut short
    leftover.write_bytes(b"half a checkpoint")
    pending = slurm_run(root, STUDENT_VGAE, "103")  # requeued without a signal: waits to restart
    requeued = slurm_run(root, STUDENT_GAT, "104", "preempted")
    (requeued / ".status.json.abcd1234").write_text("{")  # a live run's write in progress: kept
    unknown = slurm_run(root, FUSION_TEACHER, "105")
    elsewhere = slurm_run(root, FUSION_STUDENT, "106", cluster="ascend")  # another cluster's 106
    reused = slurm_run(root, "hcrl_sa/fusion/mlp/teacher/no/all_samples", "107")  # an old 107 ended
    slurm_run(root, "hcrl_sa/fusion/mlp/student/standard/all_samples", "108", "completed")
    # Cancelled while it waited after a requeue, then purged from the controller: accounting
    # still says REQUEUED, the controller no longer knows it.
    vanished = slurm_run(root, "hcrl_sa/classifier/gat/tiny/no/curriculum", "109", "preempted")
    env = fake_slurm(tmp_path, squeue={"lines": [
        "103|103|PENDING|BeginTime|Unknown|kdgat|", "104|100_4|REQUEUED|None|Unknown|kdgat|"]},
        sacct={"lines": ["101|101|OUT_OF_MEMORY|0:125|None|2026-01-02T00:00:00|kdgat",
                         "101.batch|101.batch|OUT_OF_MEMORY|0:125||2026-01-02T00:00:00|kdgat",
                         "102|102|CANCELLED by 0|0:0|None|2026-01-02T00:00:00|kdgat",
                         "106|106|FAILED|1:0|None|2026-01-02T00:00:00|kdgat",
                         "107|107|COMPLETED|0:0|None|2020-01-01T00:00:00|kdgat",
                         "109|109|REQUEUED|0:0|None|2026-01-02T00:00:00|kdgat"]})
    before = {run: (run / "status.json").read_bytes() for run in (pending, requeued, unknown, elsewhere, reused)}
    original = json.loads((oom / "status.json").read_text())

    result = status_cli(tmp_path, env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # One call each for all runs; sacct only about the jobs squeue does not show alive.
    calls = slurm_calls(tmp_path)
    assert [call[0] for call in calls] == ["squeue", "sacct"], calls
    assert "--jobs=101,102,103,104,105,106,107,109" in calls[0]
    assert "--jobs=101,102,105,106,107,109" in calls[1]
    assert f"{oom}: failed (killed by Slurm: OUT_OF_MEMORY; job 101, exit code 0:125)" in out
    assert f"{cancelled}: cancelled (Slurm job 102 was cancelled by root)" in out
    rows = rows_of(out)
    assert rows["unsupervised_vgae_teacher_no_normals_only"][1] == "failed"
    assert rows["classifier_gat_teacher_no_all_samples"][1] == "cancelled"
    assert rows["unsupervised_vgae_student_standard_normals_only"][1] == "running"
    assert "Slurm job 103 pending (BeginTime)" in " ".join(rows["unsupervised_vgae_student_standard_normals_only"])
    assert rows["classifier_gat_student_standard_all_samples"][1] == "preempted"
    assert "Slurm job 100_4 requeued" in " ".join(rows["classifier_gat_student_standard_all_samples"])
    assert rows["fusion_dqn_teacher_no_all_samples"][1] == "running"
    assert "Slurm job 105 is not known to squeue or sacct here" in out
    assert rows["fusion_dqn_student_standard_all_samples"][1] == "running"
    assert "Slurm job 106 of cluster ascend not checked: this is cluster kdgat" in out
    assert rows["fusion_mlp_teacher_no_all_samples"][1] == "running"
    assert "Slurm job 107 not checked: the job this cluster knows by that id ended 2020-01-01" in out
    assert (f"{vanished}: failed (Slurm job 109 is gone: no longer queued, and accounting last "
            "recorded it REQUEUED)") in out
    assert rows["classifier_gat_tiny_no_curriculum"][1] == "failed"
    # Recorded in status.json, every earlier field kept; untouched where nothing was certain.
    document = json.loads((oom / "status.json").read_text())
    assert document["status"] == "failed" and document["error"].startswith("killed by Slurm: OUT_OF_MEMORY")
    assert document["killed"] | {"time": None} == {
        "by": "slurm", "job": "101", "name": "101", "state": "OUT_OF_MEMORY", "exit_code": "0:125",
        "cluster": "kdgat", "source": "sacct", "end": document["killed"]["end"],
        "recorded_by": f"kdgat status on {socket.gethostname()}", "time": None}
    assert {k: document[k] for k in original if k not in ("status", "updated", "history")} == \
        {k: original[k] for k in original if k not in ("status", "updated", "history")}
    assert document["history"][:-1] == original["history"]
    assert document["history"][-1] | {"time": None} == {"status": "failed", "time": None,
                                                         "killed": "OUT_OF_MEMORY", "job": "101"}
    assert json.loads((cancelled / "status.json").read_text())["killed"]["state"] == "CANCELLED"
    assert not leftover.exists() and (cancelled / "checkpoints").is_dir()
    assert (requeued / ".status.json.abcd1234").exists()
    assert {run: (run / "status.json").read_bytes() for run in before} == before
    assert not list(oom.glob(".status.json.*"))  # the rewrite itself left nothing behind

    # Recorded once: the next listing asks Slurm only about the runs still unfinished.
    again = status_cli(tmp_path, env)
    assert again.returncode == 0 and "OUT_OF_MEMORY" in again.stdout
    assert "--jobs=103,104,105,106,107" in slurm_calls(tmp_path)[2]
    assert len(slurm_calls(tmp_path)) == 4
    assert f"{oom}: failed" not in again.stdout  # nothing newly found dead
    # Other commands read what was recorded.
    grid = subprocess.run([*kdgat_command(), "grid", "--filter", "dataset=hcrl_sa", "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    newest = {row["path"]: row["newest_status"] for row in json.loads(grid.stdout)}
    assert newest[f"automotive/{TEACHER_VGAE}"] == "failed"
    assert newest[f"automotive/{TEACHER_GAT}"] == "cancelled"


@pytest.mark.parametrize("squeue, said", [
    ({"fail": "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"},
     "`squeue` failed: slurm_load_jobs error: Unable to contact slurm controller (connect failure)"),
    (None, "squeue not found on PATH (no Slurm client on this machine)")])
def test_unreachable_slurm_marks_nothing_and_says_so(tmp_path, squeue, said):
    root = tmp_path / "runs"
    running = slurm_run(root, TEACHER_VGAE, "201")
    preempted = slurm_run(root, TEACHER_GAT, "202", "preempted")
    env = fake_slurm(tmp_path, squeue=squeue or {"lines": []},
                     sacct={"lines": ["201|201|OUT_OF_MEMORY|0:125|None|2026-01-02T00:00:00|kdgat"]})
    if squeue is None:
        (tmp_path / "fake-bin" / "squeue").unlink()
    before = {run: (run / "status.json").read_bytes() for run in (running, preempted)}
    result = status_cli(tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert f"Slurm not reachable ({said}): 2 Slurm run(s) shown as last recorded, not checked" in result.stdout
    rows = rows_of(result.stdout)
    assert rows["unsupervised_vgae_teacher_no_normals_only"][1] == "running"
    assert rows["classifier_gat_teacher_no_all_samples"][1] == "preempted"
    assert "Slurm job 202 not checked" in result.stdout
    assert {run: (run / "status.json").read_bytes() for run in before} == before
    assert [call[0] for call in slurm_calls(tmp_path)] == ([] if squeue is None else ["squeue"])


def test_killed_local_run_recorded_failed_and_its_temporary_files_removed(tmp_path):
    """A real local writer SIGKILLed in the middle of kdgat's atomic writes."""
    import signal

    root = tmp_path / "runs"
    run = fake_run(root, TEACHER_GAT, 1, "running", env={})
    (run / "checkpoints").mkdir()
    writer = subprocess.Popen([sys.executable, "-c", f"""
import os, sys, time
from pathlib import Path
from kdgat.runs.rundir import atomic_file, environment, write_json
run = Path({str(run)!r})
write_json(run / "env.json", environment() | {{"slurm": {{}}}})
with atomic_file(run / "checkpoints" / "last.ckpt", "wb") as checkpoint, \\
        atomic_file(run / "metrics.json") as metrics:
    checkpoint.write(b"half"); metrics.write("{{")
    checkpoint.flush(); metrics.flush()
    print("writing", flush=True)
    time.sleep(120)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.wait(timeout=30)
    left = sorted(p.name for p in run.rglob(".*"))
    assert len(left) == 2 and all(name.startswith((".last.ckpt.", ".metrics.json.")) for name in left), left

    env = fake_slurm(tmp_path, squeue={"fail": "must not be asked"})
    result = status_cli(tmp_path, env, "--json")
    assert result.returncode == 0, result.stderr
    (section,) = json.loads(result.stdout)
    row = {r["point"]: r for r in section["pipeline"]}["classifier_gat_teacher_no_all_samples"]
    host = socket.gethostname()
    why = f"killed: its process {writer.pid} on {host} is gone and the run never finished"
    assert (row["state"], row["note"]) == ("failed", why)
    assert f"{run}: failed ({why})" in result.stderr
    assert not list(run.rglob(".*")), "temporary files of the killed writes are left"
    document = json.loads((run / "status.json").read_text())
    assert document["status"] == "failed" and document["killed"]["by"] == "local"
    assert document["killed"]["pid"] == writer.pid and document["grid_point"]
    assert slurm_calls(tmp_path) == []  # a local run never asks Slurm
