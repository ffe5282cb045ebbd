"""MLflow tracking, from the run directory, never able to fail a training run.

A finished run is logged from its files: one MLflow experiment per dataset, one MLflow run per
run directory (name ``{grid point}/run_NNN``), params = the flattened config, tags = the grid
dimensions, git commit and Slurm ids, metrics = the per-epoch curves plus the validation and test
metrics, artifacts = config, metrics, predictions and plots. A failed run is logged too, with
status FAILED and what it left (config, params, the error from ``status.json``). Runs of one
``-m`` sweep become children of a sweep parent run. If MLflow cannot be reached, ``tracking.json``
in the run directory says ``pending`` and ``kdgat mlflow-sync`` logs it later; nothing is lost
because everything is logged from files that stay in the run directory.

The default store is one SQLite file shared by every job of a runs root. Its schema is created
(and migrated) once, under ``mlflow.lock`` beside it, by the process that launches the jobs
(:func:`prepare_store`); a job that still finds it missing or half-built (a migration killed
halfway, or raced by an older kdgat) rebuilds it under the same lock when it holds no runs, and
otherwise leaves it alone. Concurrent writers wait out SQLite's "database is locked" with
backoff (:class:`_Patient`) instead of giving up.
"""

from __future__ import annotations

import functools
import json
import os
import random
import sqlite3
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Optional

TRACKING_FILE = "tracking.json"
PARENT_ENV = "KDGAT_SWEEP_DIR"  # set for the jobs of a sweep; parents are kept per experiment there
FINISHED = {"completed": "FINISHED", "failed": "FAILED"}  # kdgat status -> MLflow run status
BUSY_SECONDS = 300.0  # how long one MLflow call waits out a busy SQLite store before giving up
_READY: set[str] = set()  # SQLite stores this process found healthy (checked once per process)


@dataclass
class TrackingSettings:
    """Args:
        enabled: log runs to MLflow at all.
        tracking_uri: any MLflow tracking URI; ``None`` means ``sqlite:///<runs root>/mlflow.db``.
    """

    enabled: bool = True
    tracking_uri: Optional[str] = None


class StoreUnusable(RuntimeError):
    """A SQLite store that kdgat cannot use without risking the runs already in it."""


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


# --------------------------------------------------------------------------- a patient client
def _busy(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) is SQLite saying another connection holds the lock."""
    seen = 0
    while err is not None and seen < 8:
        text = str(err).lower()
        if "database is locked" in text or "database table is locked" in text or "sqlite_busy" in text:
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


def _patiently(call, *args, **kwargs):
    """``call(*args, **kwargs)``, retried with jittered exponential backoff while SQLite is busy.

    SQLite refuses a writer at once, without waiting for its busy timeout, when two connections
    would deadlock (both read, both want to write); with dozens of jobs finishing together that
    happens often, and a retry a moment later succeeds. Every call retried here is idempotent
    or failed before it committed.
    """
    deadline = time.monotonic() + BUSY_SECONDS
    attempt = 0
    while True:
        try:
            return call(*args, **kwargs)
        except Exception as err:
            if not _busy(err) or time.monotonic() > deadline:
                raise
        attempt += 1
        time.sleep(min(5.0, 0.05 * 2 ** min(attempt, 7)) * random.uniform(0.5, 1.5))


class _Patient:
    """An ``MlflowClient`` whose every call waits out a busy SQLite store (:func:`_patiently`)."""

    def __init__(self, client):
        self.client = client

    def __getattr__(self, name):
        attribute = getattr(self.client, name)
        return functools.partial(_patiently, attribute) if callable(attribute) else attribute


def _client(uri: str) -> _Patient:
    # Fail fast instead of retrying for minutes against an unreachable server.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from mlflow.tracking import MlflowClient

    if _sqlite_path(uri) is not None:
        _ready_sqlite(uri)
    return _Patient(_patiently(MlflowClient, tracking_uri=uri))


# --------------------------------------------------------------------------- the SQLite store
def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (``None`` for any other store)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def _store_lock(database: Path) -> Path:
    return database.with_suffix(".lock")


def _schema(database: Path) -> dict:
    """What the database file holds: its schema version, its tables, and how many records
    (runs, experiments besides Default, registered models, traces) anyone put in it."""
    if not database.is_file() or database.stat().st_size == 0:
        return {"version": None, "tables": set(), "records": 0}
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=60)
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = None
        if "alembic_version" in tables:
            version = (connection.execute("SELECT version_num FROM alembic_version").fetchone() or [None])[0]
        records = 0
        for table, where in (("runs", ""), ("experiments", " WHERE experiment_id != 0"),
                             ("registered_models", ""), ("trace_info", "")):
            if table in tables:
                records += connection.execute(f"SELECT COUNT(*) FROM {table}{where}").fetchone()[0]
    finally:
        connection.close()
    return {"version": version, "tables": tables, "records": records}


def _healthy(schema: dict) -> bool:
    """At MLflow's latest schema with every table it defines. Leftover ``_alembic_tmp_*`` tables
    (a migration that lost a race) are ignored here, and mean "half-built" only in an empty store."""
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (registers every table)
    from mlflow.store.db.base_sql_model import Base
    from mlflow.store.db.utils import _get_latest_schema_revision

    return (schema["version"] == _get_latest_schema_revision()
            and set(Base.metadata.tables) <= schema["tables"])


def _ready_sqlite(uri: str) -> None:
    """Make sure the SQLite store of ``uri`` exists at the current schema, once per process.

    Under the store's lock: a healthy store is used as it is; a missing one is created (schema
    and migrations); a half-built one that holds nothing (a migration killed or raced halfway) is
    kept aside and created anew. A store that holds records is never moved or migrated: if its
    schema is not current, :class:`StoreUnusable` says what to do, and runs wait as pending.
    """
    if uri in _READY:
        return
    from mlflow.tracking import MlflowClient

    database = _sqlite_path(uri)
    from kdgat.data.cache import file_lock  # numpy stays off the --help path

    with file_lock(_store_lock(database)):
        schema = _schema(database)
        leftovers = any(t.startswith("_alembic_tmp_") for t in schema["tables"])
        if not _healthy(schema) or (leftovers and not schema["records"]):
            if schema["records"]:
                raise StoreUnusable(
                    f"the MLflow store {database} holds {schema['records']} records but is not at the "
                    f"schema this MLflow expects (it is at version {schema['version']}); back it up and run "
                    f"`mlflow db upgrade {uri}`; `kdgat mlflow-sync` then sends the pending runs")
            if schema["tables"]:
                _move_aside(database, schema)
            _patiently(MlflowClient, tracking_uri=uri)  # creates the schema and migrates it
            if not _healthy(_schema(database)):
                raise StoreUnusable(f"the MLflow store {database} could not be created at the "
                                    "current schema")
    _READY.add(uri)


def _move_aside(database: Path, schema: dict) -> None:
    """Keep a half-built store (nothing in it) beside the new one, for anyone who wants to look."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    kept = database.with_name(f"{database.name}.half-built-{stamp}")
    os.replace(database, kept)
    for suffix in ("-journal", "-wal", "-shm"):
        extra = database.with_name(database.name + suffix)
        if extra.exists():
            os.replace(extra, kept.with_name(kept.name + suffix))
    print(f"kdgat: the MLflow store {database} was left half-built (schema version "
          f"{schema['version']}, nothing logged in it); kept it as {kept.name} and created it anew",
          file=sys.stderr)


def prepare_store(uri: str, experiments: Iterable[str] = ()) -> None:
    """Create the tracking store of ``uri`` and its ``experiments`` once, before jobs fan out.

    Called by the launching process (``-m`` sweeps, the Slurm launcher, ``kdgat pipeline``), so
    that jobs starting together find the SQLite schema complete instead of migrating it at once.
    """
    _client(uri)
    for name in experiments:
        ensure_experiment(uri, name)


def _setting(config, key: str):
    """``config[a][b]`` for ``key="a.b"``, from a dict or an OmegaConf config (``None`` if absent)."""
    if not isinstance(config, dict):
        from omegaconf import OmegaConf

        value = OmegaConf.select(config, key, default=None)
        return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    for part in key.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def prepare_stores(configs: Iterable, experiments: bool = True) -> None:
    """:func:`prepare_store` for the composed configs of the jobs about to start (dicts or
    OmegaConf configs with ``tracking``, ``runs_root`` and ``grid``), each store once; with
    ``experiments``, the configs are exactly the jobs' and their experiments are created too.
    A Slurm dry run prepares nothing. Never raises: tracking never stops training."""
    try:
        wanted: dict[str, set[str]] = {}
        for config in configs:
            if _setting(config, "hydra.launcher.dry_run") or _setting(config, "tracking.enabled") is False:
                continue
            uri = _setting(config, "tracking.tracking_uri") or default_uri(_setting(config, "runs_root"))
            names = wanted.setdefault(uri, set())
            if experiments:
                names.add(experiment_name({"grid": _setting(config, "grid")}))
        for uri, names in wanted.items():
            prepare_store(uri, sorted(names))
    except Exception as err:
        print(f"kdgat: MLflow store not prepared ({type(err).__name__}: {err}); jobs create it "
              "when they finish", file=sys.stderr)


def prepare_store_for(runs_root: str | Path, overrides: Iterable[str] = ()) -> None:
    """:func:`prepare_stores` for ``kdgat-train runs_root=RUNS_ROOT *OVERRIDES`` jobs, reading the
    ``tracking.*`` overrides without composing a config (the local ``kdgat pipeline``)."""
    import yaml

    tracking: dict = {}
    for item in overrides:
        key, _, value = item.lstrip("+").partition("=")
        if key in ("tracking.enabled", "tracking.tracking_uri"):
            tracking[key.split(".")[1]] = yaml.safe_load(value) if value else None
    prepare_stores([{"runs_root": str(runs_root), "tracking": tracking}], experiments=False)


def ensure_experiment(uri: str, name: str) -> str:
    """The id of experiment ``name``, created if missing (under the store's lock for SQLite)."""
    client = _client(uri)

    def get_or_create(artifacts: str | None = None) -> str:
        found = client.get_experiment_by_name(name)
        if found is not None and found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)  # runs must land somewhere visible
        return found.experiment_id if found else client.create_experiment(name, artifact_location=artifacts)

    database = _sqlite_path(uri)
    if database is not None:
        from kdgat.data.cache import file_lock  # numpy stays off the --help path

        with file_lock(_store_lock(database)):
            # Artifacts beside the database, not in ./mlruns of whatever directory ran the job.
            return get_or_create((database.parent / "mlartifacts" / name.replace("/", "_")).resolve().as_uri())
    return get_or_create()


# --------------------------------------------------------------------------- logging a run
def _sweep_parent(client, uri: str, experiment_id: str, sweep_dir: Path) -> str:
    """The sweep's parent run in this experiment of this store, created by the first job that
    needs it (per store: experiment ids of two stores coincide, so ``kdgat mlflow-sync
    --tracking-uri`` to another store must not reuse a parent id of the first)."""
    registry = sweep_dir / "mlflow_parents.json"
    key = f"{uri}#{experiment_id}"
    from kdgat.data.cache import file_lock  # numpy stays off the --help path

    with file_lock(sweep_dir / "mlflow_parents.lock"):
        parents = json.loads(registry.read_text()) if registry.is_file() else {}
        if key not in parents:
            run = client.create_run(experiment_id, run_name=f"sweep {sweep_dir.name}",
                                    tags={"kdgat.sweep_dir": str(sweep_dir)})
            parents[key] = run.info.run_id
            registry.write_text(json.dumps(parents))
        return parents[key]


def _existing_run(client, experiment_id: str, run_dir: Path, previous: dict, uri: str) -> str | None:
    """The MLflow run this run directory was logged to in this store before, if any: the id in
    ``tracking.json``, or (after a kill before that was written) the run tagged with this
    directory."""
    from mlflow.exceptions import MlflowException

    if previous.get("tracking_uri") == uri and previous.get("run_id"):
        try:
            found = client.get_run(previous["run_id"])
            if found.info.lifecycle_stage != "deleted":
                return previous["run_id"]
        except MlflowException:  # the store was replaced since: log the run again
            pass
    if "'" in str(run_dir):
        return None
    matches = client.search_runs([experiment_id], filter_string=f"tags.`kdgat.run_dir` = '{run_dir}'",
                                 max_results=1)
    return matches[0].info.run_id if matches else None


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _metrics(document: dict) -> list:
    """Per-epoch curves (step = epoch) and validation/test numbers of a ``metrics.json``."""
    from mlflow.entities import Metric

    values = []
    for name, series in (document.get("history") or {}).items():
        values += [Metric(name, float(v), 0, step) for step, v in enumerate(series) if v is not None]
    # The strict protocol as validation/..., test/...; every other one under its name
    # (causal_recording/test/pooled/f1), so the two are never mixed in the tracking UI either.
    protocols = [("", document)] + [(f"{name}/", part) for name, part in (document.get("protocols") or {}).items()
                                    if isinstance(part, dict) and not part.get("unavailable")]
    for prefix, part in protocols:
        for section in ("validation", "test"):
            scopes = {"": part.get(section)} if section == "validation" else part.get(section) or {}
            for scope, numbers in scopes.items():
                for key, value in (numbers or {}).items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        name = f"{section}/{scope}/{key}" if scope else f"{section}/{key}"
                        values.append(Metric(prefix + name, float(value), 0, 0))
    return values


def log_run_dir(run_dir: Path, uri: str) -> str:
    """Log one run directory to MLflow (re-using its MLflow run if it was logged before).

    Logs what exists: a run that failed before ``metrics.json`` was written is logged with its
    config, params, environment and error, and ends FAILED.
    """
    import yaml
    from mlflow.entities import Param

    run_dir = Path(run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    status = json.loads((run_dir / "status.json").read_text())
    metrics = _read_json(run_dir / "metrics.json")
    environment = _read_json(run_dir / "env.json")
    previous = read_tracking(run_dir)

    client = _client(uri)
    experiment_id = ensure_experiment(uri, experiment_name(config))
    tags = {f"kdgat.{k}": v for k, v in config["grid"].items()}
    tags.update({"kdgat.run_dir": str(run_dir), "kdgat.status": status.get("status", ""),
                 "mlflow.source.git.commit": environment.get("git_commit") or "",
                 "kdgat.git_dirty": str(environment.get("git_dirty"))})
    tags.update({f"kdgat.slurm.{k}": v for k, v in environment.get("slurm", {}).items()})
    if status.get("error"):
        tags["kdgat.error"] = str(status["error"])[:5000]
    sweep_dir = status.get("sweep_dir")
    if sweep_dir:
        tags["mlflow.parentRunId"] = _sweep_parent(client, uri, experiment_id, Path(sweep_dir))
    run_id = _existing_run(client, experiment_id, run_dir, previous, uri)
    if run_id is None:
        point = status.get("grid_point") or "_".join(str(v) for v in config["grid"].values())
        run_id = client.create_run(experiment_id, run_name=f"{point}/{run_dir.name}", tags=tags).info.run_id
        # Remembered at once: if logging fails further on, a retry completes this MLflow run
        # instead of leaving it RUNNING beside a duplicate.
        write_tracking(run_dir, status="pending", tracking_uri=uri, run_id=run_id, params_logged=False)
    else:
        if previous.get("run_id") != run_id or previous.get("tracking_uri") != uri:
            write_tracking(run_dir, status="pending", tracking_uri=uri, run_id=run_id, params_logged=False)
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
    if not read_tracking(run_dir).get("params_logged"):  # MLflow params are immutable: log once
        params = [Param(k, v) for k, v in _flatten(config).items()]
        for start in range(0, len(params), 100):
            client.log_batch(run_id, params=params[start:start + 100])
        write_tracking(run_dir, params_logged=True)
    values = _metrics(metrics)
    for start in range(0, len(values), 500):
        client.log_batch(run_id, metrics=values[start:start + 500])
    for name in ("config.yaml", "overrides.yaml", "metrics.json", "env.json", "status.json",
                 "predictions.csv.gz", "validation_predictions.csv.gz"):
        if (run_dir / name).is_file():
            client.log_artifact(run_id, str(run_dir / name))
    if not metrics and (run_dir / "logs" / "metrics.csv").is_file():  # the curves so far
        client.log_artifact(run_id, str(run_dir / "logs" / "metrics.csv"), artifact_path="logs")
    if (run_dir / "plots").is_dir():
        client.log_artifacts(run_id, str(run_dir / "plots"), artifact_path="plots")
    terminal = FINISHED.get(status.get("status"))
    if terminal:
        client.set_terminated(run_id, terminal)
    write_tracking(run_dir, status="logged", tracking_uri=uri, run_id=run_id, params_logged=True,
                   error=None)
    return run_id


def read_tracking(run_dir: Path) -> dict:
    path = Path(run_dir) / TRACKING_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def write_tracking(run_dir: Path, **fields) -> None:
    from kdgat.runs.rundir import now, write_json

    record = {**read_tracking(run_dir), **fields, "updated": now()}
    write_json(Path(run_dir) / TRACKING_FILE, {k: v for k, v in record.items() if v is not None})


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
