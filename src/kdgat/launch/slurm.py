"""Talking to Slurm: sbatch parameters from a profile, script rendering, reachability, job states.

Submission goes through submitit's ``SlurmExecutor`` (it writes the sbatch script, pickles the
job and reads the job id sbatch prints); job ids are only ever taken from what submitit returns,
never parsed out of ``squeue``. States are read with ``squeue`` (live: pending reason) and
``sacct`` (finished jobs; needs accounting), both bounded by timeouts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

from kdgat.launch.profiles import ProfileError

# hydra.launcher key -> submitit SlurmExecutor parameter (same name when absent)
_RENAMED = {"timeout_min": "time", "tasks_per_node": "ntasks_per_node", "name": "job_name"}
_PASSED = ("partition", "nodes", "cpus_per_task", "qos", "comment", "constraint", "exclude", "gres",
           "cpus_per_gpu", "gpus_per_task", "mem_per_gpu", "mem_per_cpu", "account",
           "signal_delay_s", "array_parallelism", "setup", "teardown", "stderr_to_stdout",
           "mail_user", "mail_type", *_RENAMED)
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
         "BOOT_FAIL", "DEADLINE", "REVOKED"}
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "CONFIGURING", "COMPLETING",
          "REQUEUE_HOLD", "REQUEUE_FED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"}


def sbatch_parameters(launcher: Mapping[str, Any]) -> dict:
    """submitit ``SlurmExecutor`` parameters of a resolved ``hydra.launcher`` mapping."""
    params: dict[str, Any] = {}
    for key in _PASSED:
        value = launcher.get(key)
        if value is not None:
            params[_RENAMED.get(key, key)] = value
    if launcher.get("mem_gb") is not None:
        params["mem"] = f"{launcher['mem_gb']}GB"
    gpus = launcher.get("gpus_per_node")
    if gpus:
        params["gpus_per_node"] = f"{launcher['gpu_type']}:{gpus}" if launcher.get("gpu_type") else gpus
    extra = dict(launcher.get("additional_parameters") or {})
    if launcher.get("kill_on_invalid_dep", True):
        extra.setdefault("kill_on_invalid_dep", "yes")
    if extra:
        params["additional_parameters"] = extra
    for key in ("setup", "teardown"):
        if key in params:
            params[key] = list(params[key])
    return params


def executor(folder: str | Path, launcher: Mapping[str, Any], **overrides):
    """A submitit ``SlurmExecutor`` with the profile's parameters (plus OVERRIDES)."""
    from submitit.slurm.slurm import SlurmExecutor

    ex = SlurmExecutor(folder=folder, max_num_timeout=int(launcher.get("max_requeues", 3)))
    ex.update_parameters(**{**sbatch_parameters(launcher), **overrides})
    return ex


def render(folder: str | Path, launcher: Mapping[str, Any], *, array: int | None = None,
           **overrides) -> str:
    """The sbatch script submitit would submit (``array``: number of array tasks)."""
    from submitit.slurm.slurm import _make_sbatch_string

    command = " ".join([sys.executable, "-u -m submitit.core._submit", str(folder)])
    params = {**sbatch_parameters(launcher), **overrides}
    return _make_sbatch_string(command=command, folder=folder, map_count=array, **params)


def _run(args: list[str], timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def check_reachable(partition: str | None = None) -> str:
    """Refuse to submit when Slurm cannot be reached or the partition does not exist; returns the
    cluster's name (``ClusterName``, what jobs see as ``SLURM_CLUSTER_NAME``)."""
    missing = [b for b in ("sbatch", "scontrol", "squeue") if shutil.which(b) is None]
    if missing:
        raise ProfileError(f"Slurm is not reachable from this machine: {', '.join(missing)} not found "
                           "on PATH. Submit from a login node of the cluster (or install the Slurm "
                           "client and set SLURM_CONF)")
    try:
        ping = _run(["scontrol", "ping"])
    except subprocess.TimeoutExpired:
        raise ProfileError("Slurm is not reachable: `scontrol ping` did not answer in 20 s") from None
    if ping.returncode != 0 or "is UP" not in ping.stdout:
        conf = os.environ.get("SLURM_CONF", "the default slurm.conf")
        said = (ping.stdout + ping.stderr).strip().splitlines()
        raise ProfileError(f"Slurm is not reachable (using {conf}): `scontrol ping` said: "
                           f"{' '.join(said[-3:]) or 'nothing'}")
    if partition:
        info = _run(["sinfo", "-h", "-o", "%R"])
        partitions = sorted(set(info.stdout.split()))
        if info.returncode == 0 and partitions and partition not in partitions:
            raise ProfileError(f"partition {partition!r} does not exist on this cluster; it has: "
                               f"{', '.join(partitions)} (set hydra.launcher.partition=NAME or fix "
                               "the cluster profile)")
    config = _run(["scontrol", "show", "config"])
    for line in config.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ClusterName":
            return value.strip()
    return "slurm"


def job_states(job_ids: list[str]) -> dict[str, dict[str, str]]:
    """``job id -> {"state", "reason", "exit_code", "restarts"}`` from squeue, then sacct.

    Array tasks are keyed ``ARRAY_TASK`` as submitit names them. Jobs neither command knows are
    left out (e.g. no accounting and already gone from the queue).
    """
    states: dict[str, dict[str, str]] = {}
    ids = sorted({j.split("_")[0] for j in job_ids})
    if not ids:
        return states
    try:
        queue = _run(["squeue", "-h", "-r", "-j", ",".join(ids), "-o", "%i|%T|%r"])
        for line in queue.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 3:
                states[parts[0]] = {"state": parts[1], "reason": parts[2], "exit_code": "", "source": "squeue"}
    except (OSError, subprocess.TimeoutExpired):
        pass
    if shutil.which("sacct"):
        try:
            acct = _run(["sacct", "-n", "-P", "-X", "-j", ",".join(ids), "-o", "JobID,State,ExitCode,Reason"])
            for line in acct.stdout.splitlines():
                parts = line.strip().split("|")
                if len(parts) >= 3 and parts[0] not in states:
                    reason = parts[3] if len(parts) > 3 else ""
                    states[parts[0]] = {"state": parts[1].split()[0], "reason": reason,
                                        "exit_code": parts[2], "source": "sacct"}
        except (OSError, subprocess.TimeoutExpired):
            pass
    return states


def cancel(job_ids: list[str]) -> None:
    if job_ids:
        _run(["scancel", *job_ids])
