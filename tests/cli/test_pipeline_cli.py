"""``kdgat pipeline``: the plan in dependency order, skipping what is done, refusing typos early."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kdgat.grid import dependencies
from kdgat.runs.inventory import pipeline_points
from test_grid_cli import fake_run
from test_train_cli import command, env, output, read, run, run_dirs  # noqa: F401

STEP = re.compile(r"^\s+(\d+)\. \[(run|skip)\] (\S+)  \(needs: (.*)\)$")


@pytest.fixture
def pipeline(env, tmp_path):
    """``pipeline(*args)``: ``kdgat pipeline ARGS runs_root=tmp_path/runs`` in a subprocess."""
    root = tmp_path / "runs"

    def call(*args: str, timeout: float = 300):
        return run([*command("kdgat"), "pipeline", f"runs_root={root}", *args], env, tmp_path, timeout)
    call.root = root
    return call


def steps(stdout: str) -> list[tuple[str, str, list[str]]]:
    """``(action, point name, needs)`` of every planned step, in order."""
    found = []
    for line in stdout.splitlines():
        match = STEP.match(line)
        if match:
            assert int(match.group(1)) == len(found) + 1
            needs = [] if match.group(4) == "-" else match.group(4).split(", ")
            found.append((match.group(2), match.group(3), needs))
    return found


def complete_all(root: Path, dataset: str = "synthetic") -> list[Path]:
    """A completed (hand-written) run for every point of the dataset's pipeline."""
    return [fake_run(root, point.path.removeprefix("automotive/"))
            for point in pipeline_points(dataset)]


def test_dry_run_lists_points_in_dependency_order_and_runs_nothing(pipeline):
    result = pipeline("dataset=synthetic", "--dry-run")
    assert result.returncode == 0, output(result)
    planned = steps(result.stdout)
    expected = pipeline_points("synthetic")
    assert [name for _, name, _ in planned] == [p.name for p in expected]
    # 2 baselines + teacher VGAE and GAT + student VGAE and GAT, distilled and not + teacher DQN
    # and MLP + student DQN and MLP, distilled and not
    assert len(planned) == 14 and {action for action, _, _ in planned} == {"run"}
    for index, (_, name, needs) in enumerate(planned):
        assert needs == [need.point.name for need in dependencies(expected[index])]
        assert set(needs) <= {n for _, n, _ in planned[:index]}, f"{name} is planned before a need"
        assert f"experiment={name} runs_root={pipeline.root}" in result.stdout
    # Every distilled student runs beside its un-distilled control, which needs no teacher.
    by_name = {name: needs for _, name, needs in planned}
    prefix = "automotive_synthetic_"
    for model in ("unsupervised_vgae", "classifier_gat"):
        mode = "normals_only" if model.endswith("vgae") else "all_samples"
        assert f"{prefix}{model}_student_standard_{mode}" in by_name
        assert by_name[f"{prefix}{model}_student_no_{mode}"] == []
    for model in ("dqn", "mlp"):
        assert by_name[f"{prefix}fusion_{model}_student_no_all_samples"] == [
            f"{prefix}unsupervised_vgae_student_no_normals_only",
            f"{prefix}classifier_gat_student_no_all_samples"]
    assert not pipeline.root.exists()  # no run dir, no logs


def test_completed_points_are_skipped_unless_forced(pipeline):
    runs = complete_all(pipeline.root)
    result = pipeline("dataset=synthetic")
    assert result.returncode == 0, output(result)
    assert [action for action, _, _ in steps(result.stdout)] == ["skip"] * 14
    assert "pipeline: 0 completed, 14 skipped, 0 failed, 0 not run" in result.stdout
    assert run_dirs(pipeline.root) == set(runs)

    forced = pipeline("dataset=synthetic", "--force", "--dry-run")
    assert [action for action, _, _ in steps(forced.stdout)] == ["run"] * 14

    # Only a point without a completed run is run again.
    student_gat = next(r for r in runs if "/classifier/gat/student/" in str(r))
    (student_gat / "status.json").write_text((student_gat / "status.json").read_text()
                                             .replace('"completed"', '"failed"'))
    partial = pipeline("dataset=synthetic", "--dry-run")
    assert [(action, name) for action, name, _ in steps(partial.stdout) if action == "run"] == [
        ("run", "automotive_synthetic_classifier_gat_student_standard_all_samples")]


@pytest.mark.parametrize("typo, message", [
    ("trainr.max_epochs=1", "did you mean 'trainer'?"),
    ("trainer.max_epoch=1", "Key 'max_epoch' not in"),
    ("size=giant", "valid size values here"),
    ("monitor=val/acc", "monitor='val/acc' is not valid; choose one of: val/loss, val/auroc"),
])
def test_a_typo_fails_before_anything_runs(typo, message, pipeline):
    result = pipeline("dataset=synthetic", "trainer=smoke", typo)
    assert result.returncode == 2, output(result)
    assert message in result.stderr
    assert run_dirs(pipeline.root) == set()
    assert not (pipeline.root / ".pipelines").exists()


@pytest.mark.slow
def test_a_whole_pipeline_runs_locally_then_skips_what_is_done(pipeline):
    """All 14 points (baselines, teachers, tiny students distilled and not, fusion), one smoke
    epoch each."""
    args = ("dataset=synthetic", "size=tiny", "trainer=smoke", "tracking.enabled=false")
    result = pipeline(*args, timeout=1200)
    assert result.returncode == 0, output(result)
    assert "pipeline: 14 completed, 0 skipped, 0 failed, 0 not run" in result.stdout
    points = pipeline_points("synthetic", sizes=("tiny",))
    runs = {}
    for point in points:
        (run_dir,) = (pipeline.root / point.path).glob("run_*")
        runs[point] = run_dir
        status = read(run_dir / "status.json")
        assert status["status"] == "completed"
        assert status["dependencies"] == {need.role: str(runs[need.point].resolve())
                                          for need in dependencies(point)}
    assert len(list((pipeline.root / ".pipelines").glob("*/*.log"))) == 14

    again = pipeline(*args)
    assert again.returncode == 0, output(again)
    assert "pipeline: 0 completed, 14 skipped" in again.stdout
    assert run_dirs(pipeline.root) == set(runs.values())


def test_jobs_runs_independent_steps_at_once_and_each_after_what_it_needs(tmp_path):
    """``kdgat pipeline --jobs N``'s scheduler on real processes: at most N at once, a step only
    after its needs completed, a failed need leaves its dependents not run."""
    import json
    import sys

    from kdgat.cli.pipeline import execute

    def step(key, needs=(), fail=False):
        code = (f"import json, sys, time; start = time.time(); time.sleep(0.6); "
                f"open({str(tmp_path / key)!r} + '.json', 'w').write(json.dumps([start, time.time()])); "
                f"sys.exit({1 if fail else 0})")
        return {"key": key, "action": "run", "need_keys": list(needs), "command": [sys.executable, "-c", code]}

    steps = [step("a"), step("b"), step("c"), step("d", ["a", "b"]), step("bad", fail=True),
             step("after_bad", ["bad"]), {"key": "old", "action": "skip", "need_keys": [], "command": []},
             step("after_old", ["old"])]
    logs = tmp_path / "logs"
    logs.mkdir()
    results = execute(steps, logs, jobs=2)
    assert results == {"completed": 5, "skipped": 1, "failed": 1, "not run": 1}
    spans = {path.stem: json.loads(path.read_text()) for path in tmp_path.glob("*.json")}
    assert "after_bad" not in spans and set(spans) == {"a", "b", "c", "d", "bad", "after_old"}
    events = sorted([(t0, 1) for t0, _ in spans.values()] + [(t1, -1) for _, t1 in spans.values()],
                    key=lambda e: (e[0], e[1]))
    level = peak = 0
    for _, change in events:
        level += change
        peak = max(peak, level)
    assert peak == 2  # two at once, never three
    assert spans["d"][0] >= max(spans["a"][1], spans["b"][1])
    assert len(list(logs.glob("*.log"))) == 6  # every step that ran has its log
