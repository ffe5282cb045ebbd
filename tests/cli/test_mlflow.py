"""MLflow tracking from the run directory: what a run logs, sweep parents, and logging later.

The tracking store is a SQLite file beside the runs (the default, ``sqlite:///<runs root>/mlflow.db``),
read back here with ``MlflowClient``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from test_train_cli import TINY_GAT, command, env, output, read, run, train  # noqa: F401

EXPERIMENT = "kdgat/automotive/synthetic"
POINTS = {"tiny": "automotive_synthetic_classifier_gat_tiny_no_all_samples",
          "student": "automotive_synthetic_classifier_gat_student_no_all_samples"}


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def logged_runs(uri: str) -> dict[str, object]:
    """The MLflow runs of kdgat run directories in ``uri``, by run directory."""
    mlflow = client(uri)
    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None, f"no experiment {EXPERIMENT!r} in {uri}"
    found = mlflow.search_runs([experiment.experiment_id])
    return {run.data.tags["kdgat.run_dir"]: run for run in found if "kdgat.run_dir" in run.data.tags}


@pytest.fixture(scope="module")
def sweep(train, tmp_path_factory) -> Path:
    """A two-point smoke sweep (tiny and student GAT), tracked to the default store."""
    root = tmp_path_factory.mktemp("runs")
    result = train(root, "-m", "trainer=smoke", "size=tiny,student")
    assert result.returncode == 0, output(result)
    return root


@pytest.mark.parametrize("size", ["tiny", "student"])
def test_a_run_logs_name_params_metrics_and_artifacts(size, sweep):
    uri = f"sqlite:///{sweep}/mlflow.db"
    assert (sweep / "mlflow.db").is_file()
    run_dir = sweep / TINY_GAT.replace("/tiny/", f"/{size}/") / "run_001"
    tracking = read(run_dir / "tracking.json")
    assert tracking["status"] == "logged" and tracking["tracking_uri"] == uri

    logged = logged_runs(uri)[str(run_dir)]
    assert logged.info.run_id == tracking["run_id"]
    assert logged.info.run_name == f"{POINTS[size]}/run_001"
    assert logged.info.status == "FINISHED"
    params, tags, metrics = logged.data.params, logged.data.tags, logged.data.metrics
    for dimension, value in read(run_dir / "config.yaml")["grid"].items():
        assert params[f"grid.{dimension}"] == value and tags[f"kdgat.{dimension}"] == value
    assert params["trainer.max_epochs"] == "1" and params["seed"] == "0"
    assert tags["kdgat.status"] == "completed"
    document = read(run_dir / "metrics.json")
    assert metrics["test/pooled/f1"] == pytest.approx(document["test"]["pooled"]["f1"])
    assert metrics["validation/f1"] == pytest.approx(document["validation"]["f1"])
    assert "test/test_01_known_vehicle_known_attack/f1" in metrics
    causal = document["protocols"]["causal_recording"]
    assert metrics["causal_recording/test/pooled/f1"] == pytest.approx(causal["test"]["pooled"]["f1"])
    assert metrics["causal_recording/validation/fpr"] == pytest.approx(causal["validation"]["fpr"])

    mlflow = client(uri)
    artifacts = {a.path for a in mlflow.list_artifacts(logged.info.run_id)}
    assert {"config.yaml", "metrics.json", "status.json", "env.json", "plots", "predictions.csv.gz",
            "validation_predictions.csv.gz"} <= artifacts
    plots = {Path(a.path).name for a in mlflow.list_artifacts(logged.info.run_id, "plots")}
    assert plots == {p.name for p in (run_dir / "plots").glob("*.png")} and "roc_pr.png" in plots


def test_the_runs_of_a_sweep_share_a_parent_run(sweep):
    uri = f"sqlite:///{sweep}/mlflow.db"
    children = logged_runs(uri)
    assert len(children) == 2
    parents = {run.data.tags.get("mlflow.parentRunId") for run in children.values()}
    assert len(parents) == 1 and None not in parents
    parent = client(uri).get_run(parents.pop())
    (sweep_dir,) = sweep.glob(".sweeps/*")
    assert parent.info.run_name == f"sweep {sweep_dir.name}"
    assert parent.data.tags["kdgat.sweep_dir"] == str(sweep_dir)


def test_an_unreachable_store_never_fails_training_and_sync_sends_the_run_later(train, env, tmp_path):
    root = tmp_path / "runs"
    unreachable = "sqlite:////proc/nonexistent/x.db"
    result = train(root, "trainer=smoke", "size=tiny", f"tracking.tracking_uri={unreachable}")
    assert result.returncode == 0, output(result)
    assert "kdgat mlflow-sync" in result.stdout + result.stderr
    run_dir = root / TINY_GAT / "run_001"
    assert read(run_dir / "status.json")["status"] == "completed"
    tracking = read(run_dir / "tracking.json")
    assert tracking["status"] == "pending" and tracking["tracking_uri"] == unreachable
    assert tracking["error"]

    def sync(*args: str):
        return run([*command("kdgat"), "mlflow-sync", "--runs-root", root, *args], env, tmp_path)

    still = sync()  # the store each run tried is still unreachable
    assert still.returncode == 1, output(still)
    assert "0 logged, 1 still pending" in still.stdout
    assert read(run_dir / "tracking.json")["status"] == "pending"

    uri = f"sqlite:///{root}/mlflow.db"
    sent = sync("--tracking-uri", uri)
    assert sent.returncode == 0, output(sent)
    assert "1 logged, 0 still pending" in sent.stdout
    tracking = read(run_dir / "tracking.json")
    assert tracking["status"] == "logged" and tracking["tracking_uri"] == uri
    logged = logged_runs(uri)[str(run_dir)]
    assert logged.info.run_id == tracking["run_id"]
    assert logged.data.metrics["test/pooled/f1"] == pytest.approx(
        read(run_dir / "metrics.json")["test"]["pooled"]["f1"])

    again = sync("--tracking-uri", uri)  # nothing pending any more
    assert again.returncode == 0 and "0 logged, 0 still pending" in again.stdout
    assert len(logged_runs(uri)) == 1


def test_a_run_logged_halfway_is_completed_by_sync_without_a_duplicate(sweep, env, tmp_path):
    """Logging that fails after the MLflow run was created (here: the artifact folder is a file)
    leaves it pending; the retry finishes that same MLflow run."""
    import shutil

    root = tmp_path / "runs"
    source = sweep / TINY_GAT / "run_001"
    run_dir = root / TINY_GAT / "run_001"
    shutil.copytree(source, run_dir, ignore=shutil.ignore_patterns("tracking.json", "checkpoints"))
    blocker = root / "mlartifacts" / EXPERIMENT.replace("/", "_")
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way")
    uri = f"sqlite:///{root}/mlflow.db"

    def sync():
        return run([*command("kdgat"), "mlflow-sync", "--all", "--runs-root", root, "--tracking-uri",
                    uri], env, tmp_path)

    failed = sync()
    assert failed.returncode == 1 and "1 still pending" in failed.stdout, output(failed)
    pending = read(run_dir / "tracking.json")
    assert pending["status"] == "pending" and pending["run_id"]
    blocker.unlink()
    sent = sync()
    assert sent.returncode == 0, output(sent)
    (logged,) = logged_runs(uri).values()
    assert logged.info.run_id == pending["run_id"] and logged.info.status == "FINISHED"
    assert "config.yaml" in {a.path for a in client(uri).list_artifacts(logged.info.run_id)}
    # It joined its sweep's parent run in this store, not a parent id of the store the sweep used.
    parent = logged.data.tags["mlflow.parentRunId"]
    assert client(uri).get_run(parent).info.run_name.startswith("sweep ")


def test_the_sweep_creates_the_store_before_its_jobs_start(sweep):
    """The launching process creates the SQLite store (its Default experiment is made with the
    schema) before the first job starts, so jobs finishing together never migrate it at once."""
    import datetime

    default = client(f"sqlite:///{sweep}/mlflow.db").get_experiment("0")
    created = datetime.datetime.fromtimestamp(default.creation_time / 1000, datetime.timezone.utc)
    first = min(datetime.datetime.fromisoformat(read(path)["started"])
                for path in sweep.glob("automotive/**/run_*/status.json"))
    assert created < first + datetime.timedelta(seconds=1), (created, first)
