"""MLflow tracking, from the run directory, never able to fail a training run.

A finished run is logged from its files: one MLflow experiment per dataset, one MLflow run per
run directory (name ``{grid point}/run_NNN``), params = the flattened config, tags = the grid
dimensions, git commit and Slurm ids, metrics = the per-epoch curves plus the validation and test
metrics, artifacts = config, metrics, predictions and plots. Runs of one ``-m`` sweep become
children of a sweep parent run. If MLflow cannot be reached, ``tracking.json`` in the run
directory says ``pending`` and ``kdgat mlflow-sync`` logs it later; nothing is lost because
everything is logged from files that stay in the run directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

TRACKING_FILE = "tracking.json"
PARENT_ENV = "KDGAT_SWEEP_DIR"  # set for the jobs of a sweep; parents are kept per experiment there


@dataclass
class TrackingSettings:
    """Args:
        enabled: log runs to MLflow at all.
        tracking_uri: any MLflow tracking URI; ``None`` means ``sqlite:///<runs root>/mlflow.db``.
    """

    enabled: bool = True
    tracking_uri: Optional[str] = None


def default_uri(runs_root: str | Path) -> str:
    return f"sqlite:///{Path(runs_root).resolve()}/mlflow.db"


def experiment_name(config: dict) -> str:
    grid = config["grid"]
    return f"kdgat/{grid['modality']}/{grid['dataset']}"


def _flatten(node, prefix: str = "") -> dict[str, str]:
    flat = {}
    if isinstance(node, dict):
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
    elif isinstance(node, list):
        flat[prefix[:-1]] = json.dumps(node)
    else:
        flat[prefix[:-1]] = str(node)
    return {k: v[:6000] for k, v in flat.items()}


def _client(uri: str):
    # Fail fast instead of retrying for minutes against an unreachable server.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def ensure_experiment(uri: str, name: str) -> str:
    """The id of experiment ``name``, created if missing (under a lock for SQLite stores)."""
    from kdgat.data.cache import file_lock

    def get_or_create(artifacts: str | None = None) -> str:
        client = _client(uri)
        found = client.get_experiment_by_name(name)
        return found.experiment_id if found else client.create_experiment(name, artifact_location=artifacts)

    if uri.startswith("sqlite:///"):
        # Two processes creating one fresh SQLite store race in its migrations (SLURM.md).
        database = Path(uri[len("sqlite:///"):])
        database.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(database.with_suffix(".lock")):
            # Artifacts beside the database, not in ./mlruns of whatever directory ran the job.
            return get_or_create((database.parent / "mlartifacts" / name.replace("/", "_")).resolve().as_uri())
    return get_or_create()


def _sweep_parent(client, uri: str, experiment_id: str, sweep_dir: Path) -> str:
    """The sweep's parent run in this experiment of this store, created by the first job that
    needs it (per store: experiment ids of two stores coincide, so ``kdgat mlflow-sync
    --tracking-uri`` to another store must not reuse a parent id of the first)."""
    from kdgat.data.cache import file_lock

    registry = sweep_dir / "mlflow_parents.json"
    key = f"{uri}#{experiment_id}"
    with file_lock(sweep_dir / "mlflow_parents.lock"):
        parents = json.loads(registry.read_text()) if registry.is_file() else {}
        if key not in parents:
            run = client.create_run(experiment_id, run_name=f"sweep {sweep_dir.name}",
                                    tags={"kdgat.sweep_dir": str(sweep_dir)})
            parents[key] = run.info.run_id
            registry.write_text(json.dumps(parents))
        return parents[key]


def log_run_dir(run_dir: Path, uri: str) -> str:
    """Log one run directory to MLflow (re-using its MLflow run if it was logged before)."""
    import yaml
    from mlflow.entities import Metric, Param

    run_dir = Path(run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    status = json.loads((run_dir / "status.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    environment = json.loads((run_dir / "env.json").read_text()) if (run_dir / "env.json").is_file() else {}
    previous = read_tracking(run_dir)

    client = _client(uri)
    experiment_id = ensure_experiment(uri, experiment_name(config))
    tags = {f"kdgat.{k}": v for k, v in config["grid"].items()}
    tags.update({"kdgat.run_dir": str(run_dir), "kdgat.status": status.get("status", ""),
                 "mlflow.source.git.commit": environment.get("git_commit") or "",
                 "kdgat.git_dirty": str(environment.get("git_dirty"))})
    tags.update({f"kdgat.slurm.{k}": v for k, v in environment.get("slurm", {}).items()})
    sweep_dir = status.get("sweep_dir")
    if sweep_dir:
        tags["mlflow.parentRunId"] = _sweep_parent(client, uri, experiment_id, Path(sweep_dir))
    run_id = previous.get("run_id") if previous.get("tracking_uri") == uri else None
    if run_id is None:
        point = status.get("grid_point") or "_".join(str(v) for v in config["grid"].values())
        run_id = client.create_run(experiment_id, run_name=f"{point}/{run_dir.name}", tags=tags).info.run_id
        # Remembered at once: if logging fails further on, a retry completes this MLflow run
        # instead of leaving it RUNNING beside a duplicate.
        write_tracking(run_dir, status="pending", tracking_uri=uri, run_id=run_id, params_logged=False)
    else:
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
    if not previous.get("params_logged"):  # params are immutable in MLflow: log them once
        params = [Param(k, v) for k, v in _flatten(config).items()]
        for start in range(0, len(params), 100):
            client.log_batch(run_id, params=params[start:start + 100])
        write_tracking(run_dir, params_logged=True)
    values = []
    for name, series in metrics.get("history", {}).items():
        values += [Metric(name, float(v), 0, step) for step, v in enumerate(series) if v is not None]
    for section in ("validation", "test"):
        scopes = {"": metrics[section]} if section == "validation" else metrics.get(section, {})
        for scope, numbers in scopes.items():
            for key, value in (numbers or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    name = f"{section}/{scope}/{key}" if scope else f"{section}/{key}"
                    values.append(Metric(name, float(value), 0, 0))
    for start in range(0, len(values), 500):
        client.log_batch(run_id, metrics=values[start:start + 500])
    for name in ("config.yaml", "overrides.yaml", "metrics.json", "env.json", "status.json",
                 "predictions.csv.gz"):
        if (run_dir / name).is_file():
            client.log_artifact(run_id, str(run_dir / name))
    if (run_dir / "plots").is_dir():
        client.log_artifacts(run_id, str(run_dir / "plots"), artifact_path="plots")
    terminal = {"completed": "FINISHED", "failed": "FAILED"}.get(status.get("status"))
    if terminal:
        client.set_terminated(run_id, terminal)
    write_tracking(run_dir, status="logged", tracking_uri=uri, run_id=run_id, params_logged=True)
    return run_id


def read_tracking(run_dir: Path) -> dict:
    path = Path(run_dir) / TRACKING_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def write_tracking(run_dir: Path, **fields) -> None:
    from kdgat.runs.rundir import now, write_json

    write_json(Path(run_dir) / TRACKING_FILE, {**read_tracking(run_dir), **fields, "updated": now()})


def track(run_dir: Path, settings: TrackingSettings, runs_root: str | Path) -> str | None:
    """Log a finished run; on any failure, mark it pending for ``kdgat mlflow-sync`` and go on."""
    if not settings.enabled:
        return None
    uri = settings.tracking_uri or default_uri(runs_root)
    try:
        return log_run_dir(run_dir, uri)
    except Exception as err:  # tracking must never fail training
        write_tracking(run_dir, status="pending", tracking_uri=uri, error=f"{type(err).__name__}: {err}")
        print(f"kdgat: MLflow logging failed ({type(err).__name__}: {err}); the run is kept in "
              f"{run_dir} and `kdgat mlflow-sync` will send it later")
        return None
