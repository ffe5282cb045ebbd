"""Dead runs: a run whose process or Slurm job ended without it saying so is recorded as such.

A run killed outright (out of memory, SIGKILL, node lost) or cancelled (``scancel``) never writes
its own end: ``status.json`` keeps saying ``running`` (or ``preempted``, when the kill was
announced by a SIGTERM) for ever. :func:`reconcile`, run by ``kdgat status``, asks who can know:

- a Slurm run (``env.json`` has a Slurm job id): the scheduler, in one ``squeue`` (and at most one
  ``sacct``) call for every such run together (:mod:`kdgat.launch.scheduler`). A job that still
  exists (running, pending, requeued) is alive. A job that has ended, on the cluster the run
  recorded and not before the run's last update (a reused job id would be), is its end:
  ``CANCELLED`` makes the run ``cancelled``, anything else ``failed`` (``killed by Slurm:
  OUT_OF_MEMORY``). When Slurm cannot be asked, or does not know the job, nothing is changed and
  the run says why.
- a local run: this host, when the run was started here and its pid is gone
  (:func:`kdgat.runs.inventory.local_process_gone`).

The end is written into ``status.json`` (atomically, every field kept): ``status: failed``, the
``error`` line, a ``killed`` section with what the scheduler said, and a history entry. Only a
file that has not changed since it was read is rewritten. The temporary files of writes the kill
cut short (``.NAME.XXXXXXXX`` beside ``NAME``) are removed.
"""

from __future__ import annotations

import json
import pwd
import signal
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from kdgat.launch.requeue import INDEX
from kdgat.runs.inventory import CANCELLED, Run, local_process_gone, read_json, section
from kdgat.runs.rundir import TEMPORARY_PREFIX, now, write_json

UNFINISHED = ("running", "preempted")
# Clocks of compute nodes and of the machine asking may differ by this much.
CLOCK_SLACK = timedelta(minutes=2)
KILLED_BY_SLURM = {"OUT_OF_MEMORY", "NODE_FAIL", "TIMEOUT", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
                   "REVOKED"}


@dataclass
class Reconciliation:
    """What :func:`reconcile` found and did."""

    ended: list[tuple[Run, str]] = field(default_factory=list)  # runs now recorded dead, and why
    slurm_problem: str | None = None  # Slurm could not be asked: its runs were not checked
    unchecked: int = 0  # Slurm runs left as they were because nothing could be known
    calls: list[str] = field(default_factory=list)  # scheduler commands run
    removed: list[Path] = field(default_factory=list)  # temporary files of killed writes


def reconcile(point_runs, query=None) -> Reconciliation:
    """Record the end of every unfinished run of POINT_RUNS whose process or Slurm job has ended.

    Runs are updated in place (``status``, ``document``, ``problem``), so a listing made from
    POINT_RUNS afterwards shows what was found.

    Args:
        point_runs (iterable of kdgat.runs.inventory.PointRuns): From :func:`~kdgat.runs.inventory.scan`.
        query (callable, optional): ``job ids -> SchedulerView``.
            (default: :func:`kdgat.launch.scheduler.query`)
    """
    outcome = Reconciliation()
    by_job: dict[str, list[Run]] = {}
    for found in point_runs:
        for run in found.runs:
            if run.status not in UNFINISHED:
                continue
            env, _ = read_json(run.run_dir / "env.json")
            job = _job_id(run, env)
            if job is not None:
                by_job.setdefault(job, []).append(run)
                continue
            if local_process_gone(env):
                _end(run, outcome, "failed", f"killed: its process {env['pid']} on {env['host']} is "
                                             "gone and the run never finished",
                     {"by": "local", "host": env["host"], "pid": env["pid"]})
    if not by_job:
        return outcome
    if query is None:
        from kdgat.launch.scheduler import query
    view = query(list(by_job))
    outcome.calls = list(view.calls)
    if not view.reachable:
        outcome.slurm_problem = view.problem
    for job_id, runs in by_job.items():
        for run in runs:
            _judge(run, job_id, view, outcome)
    return outcome


def _job_id(run: Run, env: dict | None) -> str | None:
    """The raw Slurm job id the run last ran in: its status history, else env.json."""
    history = (run.document or {}).get("history")
    for entry in reversed(history if isinstance(history, list) else []):
        if isinstance(entry, dict) and str(entry.get("job", "")).isdigit():
            return str(entry["job"])
    slurm = section(env, "slurm")
    job = str(slurm.get("SLURM_JOB_ID", ""))
    return job if job.isdigit() else None


def _judge(run: Run, job_id: str, view, outcome: Reconciliation) -> None:
    if not view.reachable:
        run.problem = f"Slurm job {job_id} not checked: {view.problem}"
        outcome.unchecked += 1
        return
    job = view.jobs.get(job_id)
    if job is None:
        why = f"; {view.accounting_problem}" if view.accounting_problem else ""
        run.problem = f"Slurm job {job_id} is not known to squeue or sacct here: not checked{why}"
        outcome.unchecked += 1
        return
    if job.alive:
        if job.state != "RUNNING" or run.status == "preempted":
            reason = f" ({job.reason})" if job.reason and job.reason != "None" else ""
            run.problem = f"Slurm job {job.name} {job.state.lower()}{reason}"
        return
    recorded = _cluster_of(run, job_id)
    if recorded and job.cluster and recorded != job.cluster:
        run.problem = (f"Slurm job {job_id} of cluster {recorded} not checked: this is cluster "
                       f"{job.cluster}")
        outcome.unchecked += 1
        return
    updated = _time((run.document or {}).get("updated"))
    if job.end is not None and updated is not None and job.end < updated - CLOCK_SLACK:
        run.problem = (f"Slurm job {job_id} not checked: the job this cluster knows by that id "
                       f"ended {job.end:%Y-%m-%d %H:%M}, before the run's last update")
        outcome.unchecked += 1
        return
    killed = {"by": "slurm", "job": job_id, "name": job.name, "state": job.state,
              "exit_code": job.exit_code, "cluster": job.cluster, "source": job.source,
              "end": job.end.isoformat() if job.end else None}
    if job.step_signals:
        killed["step_signals"] = list(job.step_signals)
    if job.state == "CANCELLED":
        by = f" by {_user(job.detail)}" if job.detail.startswith("by ") else ""
        _end(run, outcome, "failed", f"Slurm job {job.name} was cancelled{by}", killed)
    elif not job.ended:  # accounting says it waits or runs, the controller no longer knows it
        if not (recorded and recorded == job.cluster):  # only the run's own cluster can say so
            run.problem = (f"Slurm job {job_id} not checked: no longer queued, accounting says "
                           f"{job.state}, and the run does not record its cluster")
            outcome.unchecked += 1
            return
        _end(run, outcome, "failed", f"Slurm job {job.name} is gone: no longer queued, and accounting "
                                     f"last recorded it {job.state}", {**killed, "queued": False})
    elif job.state in KILLED_BY_SLURM:
        _end(run, outcome, "failed", f"killed by Slurm: {job.state}; job {job.name}, exit code "
                                     f"{job.exit_code or '?'}", killed)
    else:  # FAILED or COMPLETED: the job ended, the run did not finish
        signals = ", ".join(_signal_name(number) for number in job.step_signals)
        ended = f"Slurm job {job.name} ended {job.state} (exit code {job.exit_code or '?'})"
        _end(run, outcome, "failed", f"killed by {signals}: {ended}" if signals
             else f"{ended} before the run finished", killed)


def _end(run: Run, outcome: Reconciliation, status: str, error: str, killed: dict) -> None:
    """Write the end into status.json if it is unchanged since it was read; update RUN."""
    path = run.run_dir / "status.json"
    current, _ = read_json(path)
    seen = run.document or {}
    if current is None or any(current.get(key) != seen.get(key) for key in ("status", "updated")):
        return  # the run wrote something meanwhile: it is not dead, or it said so itself
    stamp = now()
    killed = {**killed, "recorded_by": f"kdgat status on {socket.gethostname()}", "time": stamp}
    history = current.get("history") if isinstance(current.get("history"), list) else []
    entry = {"status": status, "time": stamp, "killed": killed.get("state") or killed["by"]}
    if killed.get("job"):
        entry["job"] = killed["job"]
    current.update(status=status, updated=stamp, finished=stamp, error=error, killed=killed,
                   history=[*history, entry])
    run.status = CANCELLED if killed.get("state") == "CANCELLED" else status
    try:
        write_json(path, current)
    except OSError as err:  # e.g. a colleague's run in a shared runs root: show it, say so
        run.problem = f"{error} (not recorded in {path}: {err.strerror or err})"
        outcome.ended.append((run, f"{error}; not recorded: {err.strerror or err}"))
        return
    run.document = current
    run.problem = None
    outcome.ended.append((run, error))
    outcome.removed += remove_temporary_files(run.run_dir)


def remove_temporary_files(run_dir: Path) -> list[Path]:
    """Delete what writes cut short by a kill left in RUN_DIR and its folders; returns them.

    Every file kdgat writes goes through a temporary ``.NAME.XXXXXXXX`` (or ``...tmp``) beside
    ``NAME`` and is renamed when complete (:func:`kdgat.runs.rundir.write_atomic`, checkpoints,
    plots, predictions), so in a run whose process is gone every such file is an orphan.
    """
    removed = []
    for path in sorted(Path(run_dir).rglob(f"{TEMPORARY_PREFIX}*")):
        name = path.name[len(TEMPORARY_PREFIX):]
        if "." in name and path.is_file() and not path.is_symlink():
            try:
                path.unlink()
            except OSError:
                continue
            removed.append(path)
    return removed


def _cluster_of(run: Run, job_id: str) -> str | None:
    """The cluster the run's job ran on, from the grid point's ``.slurm`` index (kdgat.launch.requeue)."""
    for entry_path in (run.run_dir.parent / INDEX).glob("*.json"):
        try:
            entry = json.loads(entry_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(entry, dict) or entry.get("run_dir") != run.name:
            continue
        if str(entry.get("slurm_job_id")) == job_id:
            cluster = str(entry.get("job", "")).rpartition("-")[0]
            return cluster if cluster and cluster != "slurm" else None  # "slurm": name unknown
    return None


def _time(stamp) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(stamp))
    except ValueError:
        return None
    return moment.astimezone() if moment.tzinfo else None


def _user(detail: str) -> str:
    uid = detail.removeprefix("by ").strip()
    try:
        return pwd.getpwuid(int(uid)).pw_name
    except (ValueError, KeyError):
        return f"uid {uid}"


def _signal_name(number: int) -> str:
    try:
        return f"{signal.Signals(number).name}"
    except ValueError:
        return f"signal {number}"
