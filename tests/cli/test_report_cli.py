"""``kdgat report`` on hand-written run directories: tables, comparisons and the files of ``--out``."""

from __future__ import annotations

import csv

import pytest

from kdgat.cli import main
from test_grid_cli import fake_run

T01, T02 = "test_01_known_vehicle_known_attack", "test_02_unknown_vehicle_known_attack"
TEACHER_VGAE = "set_01/unsupervised/vgae/teacher/no/normals_only"
TEACHER_GAT = "set_01/classifier/gat/teacher/no/all_samples"
STUDENT_VGAE = "set_01/unsupervised/vgae/student/standard/normals_only"
STUDENT_GAT = "set_01/classifier/gat/student/standard/all_samples"
FUSION_TEACHER = "set_01/fusion/dqn/teacher/no/all_samples"
FUSION_STUDENT = "set_01/fusion/dqn/student/standard/all_samples"


@pytest.fixture(autouse=True)
def isolated_runs_root(monkeypatch, tmp_path):
    monkeypatch.setenv("KDGAT_RUNS_ROOT", str(tmp_path / "runs"))


@pytest.fixture
def pipeline_runs(tmp_path) -> dict:
    """A small KD-GAT pipeline on set_01, plus an older and a newer failed run of the GAT teacher."""
    root = tmp_path / "runs"
    runs = {"root": root}
    fake_run(root, TEACHER_GAT, 1, f1={T01: 0.1, T02: 0.1}, parameters=1)  # older: not reported
    runs["teacher_vgae"] = fake_run(root, TEACHER_VGAE, 1, f1={T01: 0.5, T02: 0.7}, auroc=0.75, parameters=4000)
    runs["teacher_gat"] = fake_run(root, TEACHER_GAT, 2, f1={T01: 0.9, T02: 0.8}, auroc=0.95, parameters=8000)
    fake_run(root, TEACHER_GAT, 3, "failed")
    runs["student_vgae"] = fake_run(root, STUDENT_VGAE, 1, f1={T01: 0.4, T02: 0.7}, auroc=0.7,
                                    parameters=1000, dependencies={"teacher": runs["teacher_vgae"]})
    runs["student_gat"] = fake_run(root, STUDENT_GAT, 1, f1={T01: 0.95, T02: 0.6}, auroc=0.9,
                                   parameters=2000, dependencies={"teacher": runs["teacher_gat"]})
    runs["fusion_teacher"] = fake_run(root, FUSION_TEACHER, 1, f1=0.9, auroc=0.96, parameters=300,
                                      dependencies={"vgae": runs["teacher_vgae"], "gat": runs["teacher_gat"]})
    runs["fusion_student"] = fake_run(root, FUSION_STUDENT, 1, f1=0.7, auroc=0.8, parameters=100, dependencies={
        "teacher": runs["fusion_teacher"], "vgae": runs["student_vgae"], "gat": runs["student_gat"]})
    return runs


def lines_starting(out: str, prefix: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if line.startswith(prefix)]


def test_report_tables_and_comparisons(kdgat, pipeline_runs):
    result = kdgat("report")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.splitlines()[0] == "== automotive/set_01: 6 completed point(s), newest completed run of each"
    overview, per_f1, per_auroc = lines_starting(out, "classifier_gat_teacher_no_all_samples")
    # params, epochs, threshold, rule, pooled f1 (mean of 0.9, 0.8), auroc, accuracy, run
    assert overview[1:] == ["8000", "3", "0.5000", "f1", "0.8500", "0.9500", "0.8500", str(pipeline_runs["teacher_gat"])]
    assert per_f1[1:] == ["0.9000", "0.8000", "n/a", "0.8500"]  # t05 has no attack windows
    assert per_auroc[1:] == ["0.9500", "0.9500", "n/a", "0.9500"]
    assert "scenarios: t01 = test_01_known_vehicle_known_attack, t02 = test_02_unknown_vehicle_known_attack, " \
           "t05 = test_05_suppress" in out

    assert "-- distillation: student vs the teacher run it learned from" in out
    student_gat = lines_starting(out, "classifier_gat_student_standard_all_samples")[3]  # after 3 tables
    # params, teacher params, ratio, Δt01, Δt02, Δt05, Δpooled, teacher run
    assert student_gat[1:9] == ["2000", "8000", "0.2500", "0.0500", "-0.2000", "n/a", "-0.0750",
                                str(pipeline_runs["teacher_gat"])]
    fusion_rows = lines_starting(out, "fusion_dqn_student_standard_all_samples")
    fusion = fusion_rows[-1]
    # fusion f1, vgae f1 (0.55), gat f1 (0.775), gain over the best input, vgae run, gat run
    assert fusion[1:7] == ["0.7000", "0.5500", "0.7750", "-0.0750", str(pipeline_runs["student_vgae"]),
                           str(pipeline_runs["student_gat"])]
    distilled_fusion = fusion_rows[-2]  # fusion agents are distilled too: against their teacher
    assert distilled_fusion[1:4] == ["100", "300", "0.3333"]


def test_report_out_writes_csv_markdown_and_plot(capsys, pipeline_runs, tmp_path):
    out = tmp_path / "report"
    assert main(["report", "--out", str(out), "--metric", "auroc"]) == 0
    printed = capsys.readouterr().out
    assert "-- auroc per test scenario" in printed and "pooled auroc" in printed
    names = sorted(p.name for p in out.iterdir())
    assert names == ["distillation.csv", "fusion.csv", "pooled_auroc_automotive_set_01.png", "report.csv", "report.md"]
    with open(out / "report.csv", newline="") as handle:
        rows = {row["grid_point"]: row for row in csv.DictReader(handle)}
    assert len(rows) == 6
    gat = rows["automotive_set_01_classifier_gat_teacher_no_all_samples"]
    assert (gat["run_dir"], gat["parameters"], gat["size"]) == (str(pipeline_runs["teacher_gat"]), "8000", "teacher")
    assert float(gat[f"{T02}.auroc"]) == 0.95 and gat["test_05_suppress.auroc"] == ""
    assert float(gat["pooled.accuracy"]) == 0.85
    markdown = (out / "report.md").read_text()
    assert "## automotive/set_01: 6 completed point(s)" in markdown
    assert "| classifier_gat_student_standard_all_samples | 2000 | 8000 | 0.2500 |" in markdown
    with open(out / "fusion.csv", newline="") as handle:
        fusion = list(csv.DictReader(handle))
    assert [row["fusion"] for row in fusion] == ["fusion_dqn_student_standard_all_samples", "fusion_dqn_teacher_no_all_samples"]
    assert fusion[1]["dataset"] == "set_01" and float(fusion[1]["gat auroc"]) == 0.95
    assert (out / "pooled_auroc_automotive_set_01.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unreadable_metrics_and_missing_dependency_runs(capsys, tmp_path):
    root = tmp_path / "runs"
    broken = fake_run(root, "hcrl_ch/classifier/gat/teacher/no/all_samples", 1)
    (broken / "metrics.json").write_text("{")
    fake_run(root, "hcrl_ch/classifier/gat/teacher/no/all_samples", 2, "running")
    teacher = fake_run(root, TEACHER_GAT, 4, f1=0.8)
    # The student recorded a teacher run that has since been deleted: compare with the newest one.
    fake_run(root, STUDENT_GAT, 1, f1=0.6, dependencies={"teacher": root / "gone" / "run_001"})
    assert main(["report"]) == 0
    captured = capsys.readouterr()
    assert f"skipped a completed run whose metrics cannot be read: {broken / 'metrics.json'}: not valid JSON" in captured.err
    assert "hcrl_ch" not in captured.out
    (student,) = [line for line in lines_starting(captured.out, "classifier_gat_student") if str(teacher) in line]
    assert student[7] == "-0.2000"  # Δpooled
    assert f"recorded teacher run {root / 'gone' / 'run_001'} unreadable; compared with newest teacher run_004" in captured.out


def test_dataset_and_filter_select_and_empty_selection(capsys, pipeline_runs):
    assert main(["report", "--dataset", "set_01", "--filter", "model=gat"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "== automotive/set_01: 2 completed point(s), newest completed run of each"
    assert "vgae" not in out and "fusion vs inputs" not in out
    assert main(["report", "--dataset", "hcrl_sa"]) == 0
    assert capsys.readouterr().out.startswith(f"no completed runs under {pipeline_runs['root']}")
    assert main(["report", "--filter", "dataset=set01"]) == 2
    assert "did you mean 'set_01'?" in capsys.readouterr().err


def test_hand_edited_documents_of_odd_shape_show_as_n_a(capsys, tmp_path):
    """Wrong types inside metrics.json / status.json degrade to n/a, never to a traceback."""
    root = tmp_path / "runs"
    run = fake_run(root, TEACHER_GAT, 1)
    (run / "metrics.json").write_text('{"test": [], "summary": "x", "threshold": 3, "dependencies": []}')
    student = fake_run(root, STUDENT_GAT, 1, f1=0.5, dependencies={"teacher": run})
    (student / "status.json").write_text(
        '{"status": "completed", "summary": [1], "error": 7, "dependencies": {"teacher": 5}}')
    assert main(["report", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    teacher_row = lines_starting(out, "classifier_gat_teacher_no_all_samples")[0]
    assert teacher_row[1:8] == ["n/a"] * 7 and teacher_row[8] == str(run)
    assert lines_starting(out, "classifier_gat_student_standard_all_samples")[3][1:4] == ["1000", "n/a", "n/a"]
    assert main(["status"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line[:1].islower()}
    # status.json without a usable summary: the metrics come from metrics.json
    assert rows["classifier_gat_student_standard_all_samples"][1:5] == ["done", "1", "0.5000", "0.9000"]
    assert rows["classifier_gat_teacher_no_all_samples"][1:5] == ["done", "1", "0.8000", "0.9000"]
