"""``kdgat grid``: the valid points, their filters and the runs each has, without importing torch.

Also holds :func:`fake_run`, which ``test_status_cli`` and ``test_report_cli`` import: a run
directory written by hand in the schema ``kdgat-train`` writes (status.json, metrics.json, env.json),
so these tests need no training.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kdgat.cli import main
from kdgat.grid import GridPoint, all_points

SCENARIOS = ("test_01_known_vehicle_known_attack", "test_02_unknown_vehicle_known_attack",
             "test_05_suppress")


@pytest.fixture(autouse=True)
def isolated_runs_root(monkeypatch, tmp_path):
    """In-process ``main([...])`` calls look in an empty runs root, never ./experimentruns."""
    monkeypatch.setenv("KDGAT_RUNS_ROOT", str(tmp_path / "runs"))


def point(name_or_path: str) -> GridPoint:
    """``"hcrl_sa/classifier/gat/student/standard/all_samples"`` (modality automotive implied)."""
    return GridPoint("automotive", *name_or_path.split("/"))


def scenario_metrics(f1, auroc, accuracy=0.9) -> dict:
    """One scenario's entry of metrics.json (``f1=None``: a scenario without attack windows)."""
    positives = 0 if f1 is None else 40
    return {"n": 100, "positives": positives, "negatives": 100 - positives, "threshold": 0.5,
            "tn": 50, "fp": 10, "fn": 5, "tp": 35, "accuracy": accuracy, "precision": 0.8,
            "recall": None if f1 is None else 0.875, "f1": f1, "balanced_accuracy": None if f1 is None else 0.85,
            "mcc": None if f1 is None else 0.7, "fpr": 0.1, "auroc": auroc, "auprc": auroc,
            "notes": [] if f1 is not None else ["no positive windows: AUROC/AUPRC undefined"]}


def fake_run(root: Path, where: str, number: int = 1, status: str = "completed", *,
             f1: dict | float | None = 0.8, auroc: float | None = 0.9, parameters: int = 1000,
             dependencies: dict | None = None, error: str | None = None, env: dict | None = None) -> Path:
    """Write ``root/automotive/{where}/run_{number:03d}`` as kdgat-train leaves it.

    Args:
        f1: pooled F1, or ``{scenario: f1}`` (pooled is then the mean of the defined ones).
        status: ``completed`` / ``running`` / ``failed`` / ``preempted``; only completed runs get
            a metrics.json, as in real runs.
    """
    grid_point = point(where)
    run_dir = root / grid_point.path / f"run_{number:03d}"
    run_dir.mkdir(parents=True)
    dependencies = {role: str(path) for role, path in (dependencies or {}).items()}
    per_scenario = f1 if isinstance(f1, dict) else {s: f1 for s in SCENARIOS[:2]}
    defined = [v for v in per_scenario.values() if v is not None]
    pooled_f1 = sum(defined) / len(defined) if isinstance(f1, dict) else f1
    summary = {"grid_point": grid_point.name, "parameters": parameters, "epochs": 3,
               "best_epoch_metric": 0.2, "monitor": "val/loss", "test_pooled_f1": pooled_f1,
               "test_pooled_auroc": auroc, "threshold": 0.5}
    document = {"history": [{"status": "running", "time": "2026-01-01T00:00:00+00:00"}],
                "grid_point": grid_point.name, "dependencies": dependencies, "status": status,
                "updated": "2026-01-01T00:01:00+00:00", "started": "2026-01-01T00:00:00+00:00"}
    if status == "completed":
        document |= {"summary": summary, "finished": "2026-01-01T00:01:00+00:00"}
        test = {s: scenario_metrics(v, auroc) for s, v in per_scenario.items()}
        test["test_05_suppress"] = scenario_metrics(None, None, accuracy=1.0)
        test["pooled"] = scenario_metrics(pooled_f1, auroc, accuracy=0.85)
        metrics = {"threshold": {"value": 0.5, "rule": "f1", "fit_on": "validation"},
                   "validation": scenario_metrics(0.95, 0.99), "test": test, "summary": summary,
                   "data": {"cache": "/nowhere", "graphs_per_split": {}, "vocabulary_size": 10},
                   "dependencies": dependencies, "history": {"val/loss": [0.3, 0.2]}}
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    if status == "failed":
        document |= {"error": error or "ValueError: boom", "traceback": "Traceback ...",
                     "finished": "2026-01-01T00:01:00+00:00"}
    (run_dir / "status.json").write_text(json.dumps(document, indent=1))
    (run_dir / "env.json").write_text(json.dumps(env or {"host": "elsewhere", "pid": 1, "slurm": {}}))
    return run_dir


def test_count_of_the_whole_grid_and_of_a_filter(kdgat):
    result = kdgat("grid", "--count")
    assert result.returncode == 0, result.stderr
    # 7 datasets x (22 VGAE + 22 GAT + 8 DQN + 8 MLP + 2 baselines); see docs/grid.md.
    assert result.stdout.strip() == "434" == str(len(all_points()))
    result = kdgat("grid", "--filter", "dataset=hcrl_sa,set_01", "--filter", "size=teacher", "--count")
    # Teacher per dataset: VGAE 2 modes + GAT 2 modes + DQN + MLP + the two baselines.
    assert result.returncode == 0 and result.stdout.strip() == "16"


def test_filters_combine_and_repeat(capsys):
    assert main(["grid", "--filter", "model=gat", "--filter", "model=vgae", "--filter",
                 "dataset=set_02", "--filter", "distillation=topology_preserving", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    # 3 distillable sizes x 2 models x 2 modes each.
    assert len(rows) == 12
    assert {r["model"] for r in rows} == {"gat", "vgae"} and {r["dataset"] for r in rows} == {"set_02"}
    assert {r["size"] for r in rows} == {"tiny", "student", "intermediate"}


@pytest.mark.parametrize("flag, expected", [
    ("sise=teacher", ["unknown dimension 'sise'", "did you mean 'size'?", "dimensions: modality, dataset"]),
    ("dataset=hcrl_ss", ["no value 'hcrl_ss'", "did you mean 'hcrl_sa'?", "valid dataset values: synthetic, hcrl_ch"]),
    ("mode=normal_only", ["did you mean 'normals_only'?", "all_samples, normals_only, curriculum"]),
    ("size", ["expects KEY=VALUE"]),
    ("size=", ["expects KEY=VALUE"]),
])
def test_unknown_filter_exits_2_with_the_valid_values(capsys, flag, expected):
    assert main(["grid", "--filter", flag]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kdgat grid: error: ")
    for text in expected:
        assert text in err


def test_unknown_filter_through_the_command(kdgat):
    result = kdgat("grid", "--filter", "modle=gat")
    assert result.returncode == 2 and result.stdout == ""
    assert "unknown dimension 'modle' (did you mean 'model'?)" in result.stderr


def test_listing_shows_paths_and_runs(kdgat, tmp_path):
    root = tmp_path / "runs"  # the fixture's KDGAT_RUNS_ROOT
    fake_run(root, "hcrl_sa/classifier/gat/teacher/no/all_samples", 1)
    fake_run(root, "hcrl_sa/classifier/gat/teacher/no/all_samples", 2, "failed")
    fake_run(root, "hcrl_sa/unsupervised/vgae/teacher/no/normals_only", 1, "running")
    result = kdgat("grid", "--filter", "dataset=hcrl_sa", "--filter", "size=teacher")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["point", "path", "runs", "newest", "completed"]
    gat = next(line for line in lines if line.startswith("automotive_hcrl_sa_classifier_gat_teacher_no_all_samples"))
    assert gat.split()[1:] == ["automotive/hcrl_sa/classifier/gat/teacher/no/all_samples", "2",
                               "run_002", "failed", "run_001"]
    vgae = next(line for line in lines if "vgae_teacher_no_normals_only" in line)
    assert vgae.split()[2:] == ["1", "run_001", "running", "-"]
    assert lines[-1].startswith("8 point(s); 2 with runs, 1 with a completed run")  # 6 models + 2 baselines

    result = kdgat("grid", "--filter", "dataset=hcrl_sa", "--filter", "size=teacher", "--json",
                   "--runs-root", root)
    rows = {r["point"]: r for r in json.loads(result.stdout)}
    gat = rows["automotive_hcrl_sa_classifier_gat_teacher_no_all_samples"]
    assert (gat["runs"], gat["newest_status"], gat["model"]) == (2, "failed", "gat")
    assert gat["completed_run"] == str(root / gat["path"] / "run_001")
    assert rows["automotive_hcrl_sa_fusion_dqn_teacher_no_all_samples"]["newest_status"] is None


def test_missing_runs_root_still_lists_the_grid(capsys, tmp_path):
    assert main(["grid", "--filter", "dataset=synthetic", "--filter", "model=dqn",
                 "--runs-root", str(tmp_path / "nowhere")]) == 0
    out = capsys.readouterr().out
    assert "8 point(s); 0 with runs" in out and "which does not exist" in out


def test_grid_command_never_imports_torch(tmp_path):
    """Listing the grid (and scanning runs) stays a fraction of a second: no torch, no Lightning."""
    fake_run(tmp_path, "synthetic/classifier/gat/student/no/all_samples")
    code = ("import sys, io, contextlib\n"
            "import kdgat.cli.grid\n"
            "assert 'torch' not in sys.modules, 'importing kdgat.cli.grid imported torch'\n"
            "from kdgat.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['grid', '--runs-root', {str(tmp_path)!r}]) == 0\n"
            "heavy = sorted(m for m in ('torch', 'lightning', 'torch_geometric', 'mlflow', 'hydra') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDGAT_")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
