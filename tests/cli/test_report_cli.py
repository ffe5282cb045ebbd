"""``kdgat report`` on hand-written run directories (and once on real ones): runs aggregated by
seed, the tables and comparisons, what is left apart, and the files of ``--out``."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import yaml
from scipy import stats

from kdgat.cli import main
from test_grid_cli import fake_run, point
from test_train_cli import SMOKE, command, output, run, shared_cache, subprocess_env

T01, T02 = "test_01_known_vehicle_known_attack", "test_02_unknown_vehicle_known_attack"
TEACHER_VGAE = "set_01/unsupervised/vgae/teacher/no/normals_only"
TEACHER_GAT = "set_01/classifier/gat/teacher/no/all_samples"
STUDENT_VGAE = "set_01/unsupervised/vgae/student/standard/normals_only"
STUDENT_GAT = "set_01/classifier/gat/student/standard/all_samples"
PLAIN_STUDENT_GAT = "set_01/classifier/gat/student/no/all_samples"
FUSION_TEACHER = "set_01/fusion/dqn/teacher/no/all_samples"
FUSION_STUDENT = "set_01/fusion/dqn/student/standard/all_samples"
PINS = {"teacher": ("module", "distillation", "teacher_run"), "vgae": ("module", "fusion", "vgae_run"),
        "gat": ("module", "fusion", "gat_run")}


@pytest.fixture(autouse=True)
def isolated_runs_root(monkeypatch, tmp_path):
    monkeypatch.setenv("KDGAT_RUNS_ROOT", str(tmp_path / "runs"))


def replicate(root: Path, where: str, number: int = 1, seed: int = 0, *, max_epochs: int = 3,
              **fake_run_args) -> Path:
    """:func:`fake_run` plus the ``config.yaml`` kdgat-train saves (seed, paths, pinned dependencies)."""
    run_dir = fake_run(root, where, number, **fake_run_args)
    config = {"grid": point(where).as_dict(), "seed": seed, "runs_root": str(root),
              "datamodule": {"dataset": where.split("/")[0], "seed": seed, "window": 100},
              "module": {"distillation": {"kind": point(where).distillation, "teacher_run": None}},
              "trainer": {"max_epochs": max_epochs}, "run_dir": str(run_dir)}
    for role, path in (fake_run_args.get("dependencies") or {}).items():
        section, group, key = PINS[role]
        config[section].setdefault(group, {})[key] = str(path)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir


@pytest.fixture
def pipeline_runs(tmp_path) -> dict:
    """A small KD-GAT pipeline on set_01 (seed 0), plus an older and a newer failed GAT teacher run."""
    root = tmp_path / "runs"
    runs = {"root": root}
    runs["old_teacher_gat"] = replicate(root, TEACHER_GAT, 1, f1={T01: 0.1, T02: 0.1}, parameters=1)
    runs["teacher_vgae"] = replicate(root, TEACHER_VGAE, 1, f1={T01: 0.5, T02: 0.7}, auroc=0.75, parameters=4000)
    runs["teacher_gat"] = replicate(root, TEACHER_GAT, 2, f1={T01: 0.9, T02: 0.8}, auroc=0.95, parameters=8000)
    fake_run(root, TEACHER_GAT, 3, "failed")
    runs["student_vgae"] = replicate(root, STUDENT_VGAE, 1, f1={T01: 0.4, T02: 0.7}, auroc=0.7,
                                     parameters=1000, dependencies={"teacher": runs["teacher_vgae"]})
    runs["student_gat"] = replicate(root, STUDENT_GAT, 1, f1={T01: 0.95, T02: 0.6}, auroc=0.9,
                                    parameters=2000, dependencies={"teacher": runs["teacher_gat"]})
    runs["fusion_teacher"] = replicate(root, FUSION_TEACHER, 1, f1=0.9, auroc=0.96, parameters=300,
                                       dependencies={"vgae": runs["teacher_vgae"], "gat": runs["teacher_gat"]})
    runs["fusion_student"] = replicate(root, FUSION_STUDENT, 1, f1=0.7, auroc=0.8, parameters=100, dependencies={
        "teacher": runs["fusion_teacher"], "vgae": runs["student_vgae"], "gat": runs["student_gat"]})
    return runs


def lines_starting(out: str, prefix: str) -> list[list[str]]:
    """The lines that start with ``prefix``, split into cells (``a ± b`` stays one cell)."""
    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.startswith(prefix)]


def block(out: str, title_start: str) -> str:
    """The text of one ``-- title`` table (up to the next blank line)."""
    start = out.index(f"-- {title_start}")
    end = out.find("\n\n", start)
    return out[start:] if end < 0 else out[start:end]


def test_single_runs_report_with_n_1_and_no_interval(kdgat, pipeline_runs):
    result = kdgat("report")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.splitlines()[:2] == ["evaluation protocol: strict (kdgat.evaluation.protocols)",
                                    "== automotive/set_01: 6 point(s), 6 completed run(s) aggregated by seed, "
                                    "1 left apart"]
    overview, per_f1, per_auroc = lines_starting(out, "classifier_gat_teacher_no_all_samples")[:3]
    # n, seeds, params, epochs, threshold, rule, pooled f1 (mean of 0.9, 0.8), auroc, accuracy, run
    assert overview[1:] == ["1", "0", "8000", "3", "0.5000", "f1", "0.8500", "0.9500", "0.8500",
                            str(pipeline_runs["teacher_gat"])]
    assert per_f1[1:] == ["1", "0.9000", "0.8000", "n/a", "0.8500"]  # t05 has no attack windows
    assert per_auroc[1:] == ["1", "0.9500", "0.9500", "n/a", "0.9500"]
    rows = [line for line in out.splitlines() if line.startswith(("unsupervised_", "classifier_", "fusion_"))]
    assert len(rows) > 20 and not any("±" in line for line in rows)  # n = 1: no interval anywhere
    assert "standard deviation" not in out  # nothing has n > 1
    assert "scenarios: t01 = test_01_known_vehicle_known_attack, t02 = test_02_unknown_vehicle_known_attack, " \
           "t05 = test_05_suppress" in out

    students = block(out, "student vs teacher")
    delta, p = lines_starting(students, "classifier_gat_student_standard_all_samples")
    # vs, pairs, ratio, stat, Δt01, Δt02, Δt05, Δpooled: one pair, no interval, no p-value
    assert delta[1:] == ["size=teacher,distillation=no", "1", "0.2500", "Δ", "+0.0500", "-0.2000", "n/a", "-0.0750"]
    assert p[4:] == ["p", "n/a", "n/a", "n/a", "n/a"]
    fusion = block(out, "fusion vs better input")
    delta, _, better = lines_starting(fusion, "fusion_dqn_student_standard_all_samples")
    # pooled: 0.7 against the student GAT's 0.775 (better than the student VGAE's 0.55)
    assert delta[-1] == "-0.0750" and better[-1] == "gat" and better[3] == "better"
    apart = block(out, "left apart")
    (old,) = lines_starting(apart, "classifier_gat_teacher_no_all_samples")
    assert old[1:] == ["run_001", "0", "seed 0 again: the newer run_002 is used"]


def test_replicates_aggregate_and_compare_in_text(capsys, tmp_path):
    root = tmp_path / "runs"
    teacher = {0: 0.85, 1: 0.90, 2: 0.95}
    student = {0: 0.80, 1: 0.86, 2: 0.89, 3: 0.99}
    for seed, value in teacher.items():
        replicate(root, TEACHER_GAT, seed + 1, seed, f1={T01: value, T02: value})
    replicate(root, TEACHER_GAT, 4, 7, f1=0.1, max_epochs=50)  # the newest run, of another config
    assert main(["report", "--runs-root", str(root)]) == 0
    out = capsys.readouterr().out
    (row,) = lines_starting(out, "classifier_gat_teacher_no_all_samples")[:1]
    assert row[1:3] == ["1", "7"]  # the newest run's config is the one reported
    apart = lines_starting(block(out, "left apart"), "classifier_gat_teacher")
    assert [line[1] for line in apart] == ["run_003", "run_002", "run_001"]
    assert all(line[3] == "config differs in trainer.max_epochs (here 3, reported runs 50)" for line in apart)

    (root / point(TEACHER_GAT).path / "run_004" / "status.json").unlink()  # now unreadable: not completed
    for seed, value in student.items():
        replicate(root, STUDENT_GAT, seed + 1, seed, f1={T01: value, T02: value}, parameters=250)
    assert main(["report", "--runs-root", str(root)]) == 0
    out = capsys.readouterr().out
    overview, per_f1, _, spread = lines_starting(out, "classifier_gat_teacher_no_all_samples")[:4]
    half = stats.t.ppf(0.975, 2) * 0.05 / 3 ** 0.5  # sd of 0.85, 0.90, 0.95 is 0.05
    assert overview[1:3] == ["3", "0-2"] and overview[7] == f"0.9000 ± {half:.4f}"
    assert per_f1[2] == f"0.9000 ± {half:.4f}" and spread[1:3] == ["3", "0.0500"]
    delta, p = lines_starting(block(out, "student vs teacher"), "classifier_gat_student_standard_all_samples")
    differences = [student[s] - teacher[s] for s in (0, 1, 2)]  # seed 3 has no teacher
    mean = sum(differences) / 3
    ci = stats.t.ppf(0.975, 2) * stats.tstd(differences) / 3 ** 0.5
    assert delta[2:5] == ["3", "0.2500", "Δ"] and delta[5] == f"{mean:+.4f} ± {ci:.4f}"
    assert delta[-1] == "unpaired seeds: point 3"
    assert p[5] == f"{stats.ttest_rel([student[s] for s in (0, 1, 2)], [teacher[s] for s in (0, 1, 2)]).pvalue:.4f}"


def test_report_out_writes_csv_markdown_json_and_plots(capsys, tmp_path):
    root = tmp_path / "runs"
    teacher = replicate(root, TEACHER_GAT, 1, 0, f1={T01: 0.85, T02: 0.8}, parameters=8000)
    for seed, value in ((1, 0.90), (2, 0.95)):
        replicate(root, TEACHER_GAT, seed + 1, seed, f1={T01: value, T02: 0.8}, parameters=8000)
    for seed, value in ((0, 0.80), (1, 0.86), (2, 0.89)):
        replicate(root, STUDENT_GAT, seed + 1, seed, f1={T01: value, T02: 0.6}, parameters=2000,
                  dependencies={"teacher": teacher})
    # An older student run of another config (written last, then renamed to the oldest number).
    replicate(root, STUDENT_GAT, 4, 0, f1=0.1, max_epochs=1, dependencies={"teacher": teacher})
    folder = root / point(STUDENT_GAT).path
    (folder / "run_004").rename(folder / "run_000")
    out = tmp_path / "report"
    assert main(["report", "--out", str(out), "--metric", "f1"]) == 0
    printed = capsys.readouterr().out
    assert "seed 1 used teacher run_001, paired with run_002" in printed  # learned from another seed
    names = sorted(p.name for p in out.iterdir())
    assert names == ["aggregate.csv", "comparisons.csv", "comparisons_f1_automotive_set_01.png", "distillation.csv",
                     "left_apart.csv", "pooled_f1_automotive_set_01.png", "report.csv", "report.json", "report.md",
                     "scenarios_f1_automotive_set_01.png"]
    with open(out / "report.csv", newline="") as handle:
        runs = list(csv.DictReader(handle))
    assert [(row["size"], row["seed"], Path(row["run_dir"]).name) for row in runs] == [
        ("student", "0", "run_001"), ("student", "1", "run_002"), ("student", "2", "run_003"),  # grid order
        ("teacher", "0", "run_001"), ("teacher", "1", "run_002"), ("teacher", "2", "run_003")]
    assert float(runs[4][f"{T01}.f1"]) == 0.90 and runs[4]["n"] == "3"
    with open(out / "aggregate.csv", newline="") as handle:
        cells = {(row["grid_point"], row["scenario"], row["metric"]): row for row in csv.DictReader(handle)}
    teacher_t01 = cells[("automotive_set_01_classifier_gat_teacher_no_all_samples", T01, "f1")]
    low, high = stats.t.interval(0.95, df=2, loc=0.9, scale=stats.sem([0.85, 0.90, 0.95]))
    assert teacher_t01["n"] == "3" and float(teacher_t01["mean"]) == pytest.approx(0.9)
    assert float(teacher_t01["sd"]) == pytest.approx(0.05) and float(teacher_t01["ci_low"]) == pytest.approx(low)
    assert float(teacher_t01["ci_high"]) == pytest.approx(high) and teacher_t01["seeds"] == "0 1 2"
    assert cells[("automotive_set_01_classifier_gat_teacher_no_all_samples", "test_05_suppress", "auroc")]["n"] == "0"
    with open(out / "comparisons.csv", newline="") as handle:
        compared = {(r["kind"], r["scenario"], r["metric"]): r for r in csv.DictReader(handle)}
    row = compared[("student_vs_teacher", T01, "f1")]
    assert row["reference"] == "automotive_set_01_classifier_gat_teacher_no_all_samples" and row["pairs"] == "3"
    assert float(row["mean_difference"]) == pytest.approx(-0.05)
    assert float(row["p_value"]) == pytest.approx(stats.ttest_rel([0.80, 0.86, 0.89], [0.85, 0.90, 0.95]).pvalue)
    with open(out / "left_apart.csv", newline="") as handle:
        (apart,) = list(csv.DictReader(handle))
    assert Path(apart["run_dir"]).name == "run_000" and apart["keys"] == "trainer.max_epochs"

    markdown = (out / "report.md").read_text()
    half = stats.t.ppf(0.975, 2) * 0.05 / 3 ** 0.5
    assert f"| classifier_gat_teacher_no_all_samples | 3 | 0.900 ± {half:.3f} | 0.800 ± 0.000 | n/a |" in markdown
    assert "### student vs teacher: Δ f1" in markdown
    assert "| classifier_gat_student_standard_all_samples | size=teacher,distillation=no | 3 | 0.250 | -0.050 ± " \
           in markdown
    assert "| classifier_gat_student_standard_all_samples | run_000 | 0 | config differs in trainer.max_epochs" \
           in markdown
    document = json.loads((out / "report.json").read_text())
    assert [p["n"] for p in document["datasets"][0]["points"]] == [3, 3]
    for png in ("pooled", "scenarios", "comparisons"):
        assert (out / f"{png}_f1_automotive_set_01.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_protocol_reports_the_causal_sections_and_skips_runs_without_them(capsys, tmp_path):
    root = tmp_path / "runs"
    causal_f1 = {0: 0.70, 1: 0.74, 2: 0.78}
    for seed, value in causal_f1.items():
        run_dir = replicate(root, TEACHER_GAT, seed + 1, seed, f1={T01: 0.9, T02: 0.9})
        metrics = json.loads((run_dir / "metrics.json").read_text())
        causal = {key: json.loads(json.dumps(metrics[key])) for key in ("test", "validation", "threshold")}
        causal["test"]["pooled"]["f1"] = value
        causal["threshold"] = {"value": 2.5, "rule": "benign_quantile", "fit_on": "validation"}
        metrics |= {"protocol": "strict", "protocols": {"causal_recording": {"unavailable": None, **causal}}}
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    old = replicate(root, TEACHER_GAT, 4, 3, f1={T01: 0.9, T02: 0.9})  # written before the protocol
    assert main(["report", "--runs-root", str(root), "--protocol", "causal_recording", "--json"]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["protocol"] == "causal_recording"
    (part,) = document["datasets"]
    (gat,) = part["points"]
    pooled = gat["scenarios"]["pooled"]["f1"]
    assert gat["n"] == 3 and gat["seeds"] == [0, 1, 2]
    assert pooled["mean"] == pytest.approx(0.74)
    assert f"skipped {old}: it has no causal_recording results (run before the protocol existed)" in captured.err
    assert main(["report", "--runs-root", str(root), "--protocol", "causal_recording"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "evaluation protocol: causal_recording (kdgat.evaluation.protocols)"
    assert main(["report", "--runs-root", str(root), "--json"]) == 0  # strict: all four runs
    strict = json.loads(capsys.readouterr().out)["datasets"][0]["points"][0]
    assert strict["n"] == 4 and strict["scenarios"]["pooled"]["f1"]["mean"] == pytest.approx(0.9)


def test_unreadable_metrics_and_gone_dependency_runs(capsys, tmp_path):
    root = tmp_path / "runs"
    broken = replicate(root, "hcrl_ch/classifier/gat/teacher/no/all_samples", 1)
    (broken / "metrics.json").write_text("{")
    fake_run(root, "hcrl_ch/classifier/gat/teacher/no/all_samples", 2, "running")
    replicate(root, TEACHER_GAT, 4, f1=0.8)
    # The student recorded a teacher run that has since been deleted: still paired by seed.
    replicate(root, STUDENT_GAT, 1, f1=0.6, dependencies={"teacher": root / "gone" / "run_001"})
    assert main(["report"]) == 0
    captured = capsys.readouterr()
    assert f"skipped a completed run whose metrics cannot be read: {broken / 'metrics.json'}: not valid JSON" in captured.err
    assert "hcrl_ch" not in captured.out
    delta = lines_starting(block(captured.out, "student vs teacher"), "classifier_gat_student")[0]
    assert delta[-2:] == ["-0.2000", "seed 0 used teacher run_001, paired with run_004"]


def test_dataset_and_filter_select_and_empty_selection(capsys, pipeline_runs):
    assert main(["report", "--dataset", "set_01", "--filter", "model=gat"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("== automotive/set_01: 2 point(s), 2 completed run(s)")
    assert "vgae" not in out and "fusion vs" not in out
    assert main(["report", "--dataset", "hcrl_sa"]) == 0
    assert capsys.readouterr().out.startswith(f"no completed runs under {pipeline_runs['root']}")
    assert main(["report", "--dataset", "hcrl_sa", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["datasets"] == []
    assert main(["report", "--filter", "dataset=set01"]) == 2
    assert "did you mean 'set_01'?" in capsys.readouterr().err


def test_hand_edited_documents_of_odd_shape_show_as_n_a(capsys, tmp_path):
    """Wrong types inside metrics.json / status.json degrade to n/a, never to a traceback."""
    root = tmp_path / "runs"
    run_dir = replicate(root, TEACHER_GAT, 1)
    (run_dir / "metrics.json").write_text('{"test": [], "summary": "x", "threshold": 3, "dependencies": []}')
    student = replicate(root, STUDENT_GAT, 1, f1=0.5, dependencies={"teacher": run_dir})
    (student / "status.json").write_text(
        '{"status": "completed", "summary": [1], "error": 7, "dependencies": {"teacher": 5}}')
    (student / "config.yaml").write_text("[not, a, mapping]")
    assert main(["report", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    teacher_row = lines_starting(out, "classifier_gat_teacher_no_all_samples")[0]
    assert teacher_row[1:] == ["1", "0", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", str(run_dir)]
    student_row = lines_starting(out, "classifier_gat_student_standard_all_samples")[0]
    assert student_row[1:4] == ["1", "?", "1000"]  # its config cannot be read: seed unknown, not paired
    assert "student vs teacher" in out and lines_starting(block(out, "student vs teacher"), "classifier")[0][2] == "0"
    assert main(["status"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line[:1].islower()}
    # status.json without a usable summary: the metrics come from metrics.json
    assert rows["classifier_gat_student_standard_all_samples"][1:5] == ["done", "1", "0.5000", "0.9000"]
    assert rows["classifier_gat_teacher_no_all_samples"][1:5] == ["done", "1", "0.8000", "0.9000"]


def test_real_runs_of_two_seeds_aggregate_and_another_config_stays_apart(tmp_path, tmp_path_factory):
    """Three real kdgat-train runs: the saved configs of seeds 0 and 1 differ only where allowed."""
    root = tmp_path / "runs"
    env = subprocess_env(shared_cache(tmp_path_factory))
    for extra in (["seed=5", "trainer.max_epochs=2"], ["seed=0"], ["seed=1"]):
        result = run([*command("kdgat-train"), *SMOKE, f"runs_root={root}", *extra], env, tmp_path)
        assert result.returncode == 0, output(result)
    result = run([*command("kdgat"), "report", "--runs-root", root, "--json"], env, tmp_path)
    assert result.returncode == 0, output(result)
    (points,) = [part["points"] for part in json.loads(result.stdout)["datasets"]]
    (tiny,) = points
    assert tiny["grid_point"] == "automotive_synthetic_classifier_gat_tiny_no_all_samples"
    assert tiny["n"] == 2 and tiny["seeds"] == [0, 1]
    assert [Path(r).name for r in tiny["runs"]] == ["run_003", "run_002"]
    (apart,) = tiny["left_apart"]
    assert Path(apart["run_dir"]).name == "run_001" and apart["keys"] == ["trainer.max_epochs"]
    pooled = tiny["scenarios"]["pooled"]["f1"]
    values = [json.loads((Path(r) / "metrics.json").read_text())["test"]["pooled"]["f1"] for r in tiny["runs"]]
    assert pooled["n"] == 2 and pooled["mean"] == pytest.approx(sum(values) / 2)
    result = run([*command("kdgat"), "report", "--runs-root", root], env, tmp_path)
    assert result.returncode == 0 and "2 completed run(s) aggregated by seed, 1 left apart" in result.stdout
    # Every real run carries the causal_recording protocol beside the strict one.
    result = run([*command("kdgat"), "report", "--runs-root", root, "--protocol", "causal_recording", "--json"],
                 env, tmp_path)
    assert result.returncode == 0, output(result)
    (causal,) = json.loads(result.stdout)["datasets"][0]["points"]
    documents = [json.loads((Path(r) / "metrics.json").read_text()) for r in causal["runs"]]
    values = [d["protocols"]["causal_recording"]["test"]["pooled"]["f1"] for d in documents]
    assert causal["n"] == 2 and causal["scenarios"]["pooled"]["f1"]["mean"] == pytest.approx(sum(values) / 2)
