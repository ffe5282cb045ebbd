"""What Slurm says about many jobs at once: one ``squeue`` call, then at most one ``sacct`` call.

``kdgat status`` asks this about every run that still says ``running`` or ``preempted``, so the
cost must not grow with the number of runs: all job ids go into one ``squeue -j`` (the controller:
jobs queued, running, or finished within ``MinJobAge``), and the ids it does not show as active
into one ``sacct -j`` (accounting: how a job ended, with its steps, so a step killed by a signal
can be named). Both are bounded by a timeout.

Nothing here guesses. :attr:`SchedulerView.problem` says why Slurm could not be asked (no client,
no answer, an error); a job neither command knows is simply absent from :attr:`SchedulerView.jobs`.
Jobs are keyed by their raw id (``SLURM_JOB_ID``, unique per array task).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import datetime

TIMEOUT_S = 15
# A job in one of these states has ended: none of its processes runs any more. Every other state
# (PENDING, RUNNING, REQUEUED, COMPLETING, SUSPENDED, ...) of a job the controller knows is alive.
ENDED = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
                   "PREEMPTED", "BOOT_FAIL", "DEADLINE", "REVOKED"})
_SQUEUE_FIELDS = ("JobID", "JobArrayID", "State", "Reason", "EndTime", "Cluster")
_SACCT_FIELDS = ("JobIDRaw", "JobID", "State", "ExitCode", "Reason", "End", "Cluster")


@dataclass(frozen=True)
class JobState:
    """One Slurm job as ``squeue`` or ``sacct`` reports it.

    Args:
        job_id (str): The raw id (``SLURM_JOB_ID``).
        name (str): The id Slurm shows (``ARRAY_TASK`` for an array task).
        state (str): The state's first word (``CANCELLED`` of ``CANCELLED by 1000``).
        detail (str): The rest of the state (``by 1000``).
        reason (str): Why it is pending, or ``None``.
        exit_code (str): ``EXIT:SIGNAL`` of the batch script (sacct only).
        end (datetime, optional): When it ended (aware, local time).
        cluster (str, optional): The cluster that ran it.
        source (str): ``squeue`` or ``sacct``.
        step_signals (tuple[int]): Signals that ended its steps (sacct only), e.g. ``(9,)``.
        queued (bool): The controller (``squeue``) knows the job. One it does not know has ended,
            whatever accounting says: a job cancelled while it waited after a requeue keeps
            ``REQUEUED`` in ``sacct`` for ever.
    """

    job_id: str
    name: str
    state: str
    detail: str = ""
    reason: str = ""
    exit_code: str = ""
    end: datetime | None = None
    cluster: str | None = None
    source: str = "squeue"
    step_signals: tuple[int, ...] = ()
    queued: bool = True

    @property
    def alive(self) -> bool:
        """Known to the controller in a state that is not an end (or one kdgat does not know)."""
        return self.queued and self.state not in ENDED

    @property
    def ended(self) -> bool:
        return self.state in ENDED


@dataclass
class SchedulerView:
    """The answer to :func:`query`: known jobs, and why anything could not be known."""

    jobs: dict[str, JobState] = field(default_factory=dict)
    problem: str | None = None  # Slurm could not be asked at all (then ``jobs`` is empty)
    accounting_problem: str | None = None  # sacct could not be asked: ended jobs may be unknown
    calls: list[str] = field(default_factory=list)  # the commands run, for the curious and the tests

    @property
    def reachable(self) -> bool:
        return self.problem is None


def parse_time(text: str) -> datetime | None:
    """Slurm's ``2024-05-01T12:00:00`` (the client's local time) as an aware datetime, else None."""
    try:
        return datetime.fromisoformat(text.strip()).astimezone()
    except ValueError:  # Unknown, None, N/A
        return None


def _signal(exit_code: str) -> int:
    """The signal of an ``EXIT:SIGNAL`` exit code, 0 for none (Slurm's ``0:125`` of an
    out-of-memory step is a marker, not a signal)."""
    _, _, signal = exit_code.partition(":")
    number = int(signal) if signal.isdigit() else 0
    return number if 0 < number <= 64 else 0


def _run(command: list[str], timeout: float) -> tuple[subprocess.CompletedProcess | None, str | None]:
    """``(result, None)``, or ``(None, why)`` when the command is missing or does not answer."""
    if shutil.which(command[0]) is None:
        return None, f"{command[0]} not found on PATH (no Slurm client on this machine)"
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout), None
    except subprocess.TimeoutExpired:
        return None, f"`{command[0]}` did not answer in {timeout:g} s"
    except OSError as err:
        return None, f"{command[0]}: {err}"


def _said(result: subprocess.CompletedProcess) -> str:
    lines = (result.stderr + result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}"


def _squeue(ids: list[str], view: SchedulerView, timeout: float) -> None:
    fields = ",".join(f"{name}:|" for name in _SQUEUE_FIELDS)
    command = ["squeue", "--noheader", "--array", "--states=all", f"--jobs={','.join(ids)}",
               f"--Format={fields}"]
    view.calls.append(" ".join(command))
    wanted = set(ids)
    result, problem = _run(command, timeout)
    if result is not None and result.returncode != 0:
        # One id the controller no longer knows fails the whole call ("Invalid job id
        # specified"); several do not. Either way: those jobs are not in the queue.
        if "Invalid job id" not in result.stderr:
            problem = f"`squeue` failed: {_said(result)}"
    if problem:
        view.problem = problem
        return
    for line in result.stdout.splitlines():
        parts = [part.strip() for part in line.split("|")]
        if len(parts) < len(_SQUEUE_FIELDS):
            continue
        job_id, name, state, reason, end, cluster = parts[:len(_SQUEUE_FIELDS)]
        if job_id in wanted:  # `-j ID` of an array's first task also lists the whole array
            view.jobs[job_id] = JobState(job_id, name, state.split()[0] if state else "UNKNOWN",
                                         reason=reason, end=parse_time(end),
                                         cluster=cluster or None, source="squeue")


def _sacct(ids: list[str], view: SchedulerView, timeout: float) -> None:
    command = ["sacct", "--noheader", "--parsable2", "--allusers", f"--jobs={','.join(ids)}",
               f"--format={','.join(_SACCT_FIELDS)}"]
    view.calls.append(" ".join(command))
    wanted = set(ids)
    result, problem = _run(command, timeout)
    if result is not None and result.returncode != 0:
        problem = f"`sacct` failed: {_said(result)}"
    if problem:
        view.accounting_problem = problem
        return
    records: dict[str, dict] = {}
    signals: dict[str, list[int]] = {}
    for line in result.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) < len(_SACCT_FIELDS):
            continue
        raw, name, state, exit_code, reason, end, cluster = parts[:len(_SACCT_FIELDS)]
        job_id, _, step = raw.partition(".")
        if job_id not in wanted:
            continue
        if step:
            if step != "extern" and _signal(exit_code):
                signals.setdefault(job_id, []).append(_signal(exit_code))
            continue
        word, _, detail = state.partition(" ")
        records[job_id] = dict(name=name, state=word or "UNKNOWN", detail=detail.strip(),
                               reason=reason, exit_code=exit_code, end=parse_time(end),
                               cluster=cluster or None)
    for job_id, record in records.items():
        view.jobs[job_id] = JobState(job_id, source="sacct", queued=job_id in view.jobs,
                                     step_signals=tuple(dict.fromkeys(signals.get(job_id, []))),
                                     **record)


def query(job_ids, timeout: float = TIMEOUT_S) -> SchedulerView:
    """What Slurm knows about JOB_IDS (raw ids): ``squeue`` first, ``sacct`` for the rest.

    The controller's word wins: a job ``squeue`` shows as queued or running is alive whatever
    accounting says, and one it does not show is not (:attr:`JobState.queued`). ``sacct`` is
    asked only about the jobs ``squeue`` does not show alive, and its record (exit code, steps'
    signals) replaces squeue's for a job that has ended.

    Args:
        job_ids (iterable of str): Raw Slurm job ids.
        timeout (float, optional): Seconds each command may take. (default: ``15``)
    """
    ids = sorted({str(j) for j in job_ids if str(j).isdigit()}, key=int)
    view = SchedulerView()
    if not ids:
        return view
    _squeue(ids, view, timeout)
    if not view.reachable:
        return view
    rest = [j for j in ids if j not in view.jobs or view.jobs[j].ended]
    if rest:
        before = {j: view.jobs[j] for j in rest if j in view.jobs}
        _sacct(rest, view, timeout)
        for job_id, queued in before.items():  # accounting may lag behind the controller
            if not view.jobs[job_id].ended:
                view.jobs[job_id] = queued
    return view
