"""Cluster profiles: ``conf/cluster/*.yaml``, one file per cluster, registered as the ``cluster`` group.

A profile is a Hydra config (package ``_global_``) that selects a launcher and sets its resources::

    defaults:
      - override /hydra/launcher: kdgat_slurm
    hydra:
      launcher:
        partition: gpu
        gpus_per_node: 1
        ...

Where profiles are looked for, first match of a name wins:

1. every folder in ``KDGAT_CONF_DIR`` (``os.pathsep``-separated), its ``cluster/`` subfolder;
2. ``conf/cluster/`` of the repository this package was installed from (editable installs and a
   checkout on ``PYTHONPATH``), found by walking up from this file to a folder holding
   ``conf/cluster``.

A user adds a cluster by copying one file into either place. ``local`` always exists (it is also
registered in code, so a wheel without the repository still composes). Nothing here imports
submitit, torch or Lightning: loading the profiles costs a few milliseconds of YAML parsing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf

CONF_ENV = "KDGAT_CONF_DIR"
ACCOUNT_ENV = "KDGAT_SLURM_ACCOUNT"
EMAIL_ENV = "KDGAT_SLURM_EMAIL"
GROUP = "cluster"
LAUNCHER_NAME = "kdgat_slurm"
LAUNCHER_TARGET = "hydra_plugins.kdgat_slurm_launcher.KdgatSlurmLauncher"


class ProfileError(ValueError):
    """A cluster profile or a resource request that cannot work; the message says how to fix it."""


def repository_conf() -> Path | None:
    """``conf/`` of the checkout this module lives in (``None`` for an installed wheel)."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "conf" / GROUP).is_dir():
            return parent / "conf"
    return None


def conf_dirs() -> list[Path]:
    """The folders searched for ``cluster/NAME.yaml``, in precedence order."""
    dirs = [Path(p).expanduser() for p in os.environ.get(CONF_ENV, "").split(os.pathsep) if p]
    repo = repository_conf()
    if repo is not None:
        dirs.append(repo)
    return dirs


def profile_files() -> dict[str, Path]:
    """``name -> file`` of every profile found (first folder wins)."""
    found: dict[str, Path] = {}
    for folder in conf_dirs():
        for path in sorted((folder / GROUP).glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def profile_names() -> list[str]:
    return sorted(set(profile_files()) | {"local"})


def check_profile_name(name: str) -> None:
    """Refuse an unknown cluster name, listing the valid ones and where they are looked for."""
    if name in profile_names():
        return
    import difflib

    close = difflib.get_close_matches(name, profile_names(), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    where = ", ".join(str(d / GROUP) for d in conf_dirs()) or f"none found; set {CONF_ENV}"
    raise ProfileError(f"unknown cluster {name!r}{hint}; valid clusters: {', '.join(profile_names())}. "
                       f"Profiles are the files cluster/NAME.yaml in: {where}. Add one by copying a "
                       f"file there (or into a folder named by {CONF_ENV}).")


# --------------------------------------------------------------------------- the launcher config
@dataclass
class KdgatSlurmQueueConf(SlurmQueueConf):
    """``hydra/launcher=kdgat_slurm``: hydra-submitit-launcher's ``submitit_slurm`` plus kdgat's fields."""

    _target_: str = LAUNCHER_TARGET
    # %A: one folder per array (or job); submitit names its files JOBID_TASK_*.
    submitit_folder: str = "${hydra.sweep.dir}/.submitit/%A"
    # Name of the profile (shown in manifests and messages).
    cluster: str = "slurm"
    # GPU model, e.g. v100: requested as --gpus-per-node=TYPE:N.
    gpu_type: Optional[str] = None
    # Refuse to submit without an account (KDGAT_SLURM_ACCOUNT or hydra.launcher.account=...).
    require_account: bool = False
    mail_user: Optional[str] = None
    mail_type: Optional[str] = None
    # Preemptions and timeouts a job may be requeued after (then it fails).
    max_requeues: int = 3
    # Block until every job has finished (hydra-submitit-launcher's behaviour); default: return
    # once submitted, with the manifest.
    wait: bool = False
    # Print the sbatch script(s) and the frozen configs, submit nothing (`--dry-run`).
    dry_run: bool = False
    # What the profile's partition can give; requests beyond these are refused before submission.
    # Keys: max_gpus_per_node, max_cpus_per_task, max_mem_gb, max_timeout_min, gpu_types.
    limits: Dict[str, Any] = field(default_factory=dict)
    # Cancel a job whose dependency failed (sbatch --kill-on-invalid-dep=yes) instead of leaving
    # it PENDING (DependencyNeverSatisfied) for ever.
    kill_on_invalid_dep: bool = True
    teardown: Optional[List[str]] = None


def register(store) -> None:
    """Register the launcher config and every profile (``cluster`` group, package ``_global_``)."""
    from omegaconf import OmegaConf

    store(KdgatSlurmQueueConf, group="hydra/launcher", name=LAUNCHER_NAME, provider="kdgat")
    files = profile_files()
    if "local" not in files:
        store({}, group=GROUP, name="local", package="_global_")
    for name, path in files.items():
        node = OmegaConf.load(path)
        store(node, group=GROUP, name=name, package="_global_", provider=f"kdgat:{path}")


def load_profile(name: str):
    """The raw YAML of profile NAME (a DictConfig), or raise :class:`ProfileError`."""
    from omegaconf import OmegaConf

    check_profile_name(name)
    files = profile_files()
    return OmegaConf.load(files[name]) if name in files else OmegaConf.create({})


# --------------------------------------------------------------------------- checks
def check_request(launcher) -> None:
    """Refuse, before anything is submitted, what the profile cannot give.

    ``launcher`` is the composed ``hydra.launcher`` node (or a dict with its keys).
    """
    get = launcher.get
    name = get("cluster", "slurm")
    if get("require_account") and not get("account"):
        raise ProfileError(
            f"cluster {name!r} needs a Slurm account: set {ACCOUNT_ENV}=PROJECT (e.g. "
            f"`export {ACCOUNT_ENV}=PAS1234`) or add hydra.launcher.account=PROJECT")
    limits = get("limits") or {}
    problems = []

    def over(value, key, what, unit=""):
        limit = limits.get(key)
        if value is not None and limit is not None and value > limit:
            problems.append(f"{what}={value}{unit} exceeds the partition's {limit}{unit}")

    gpus = get("gpus_per_node")
    over(gpus, "max_gpus_per_node", "hydra.launcher.gpus_per_node")
    over(get("cpus_per_task"), "max_cpus_per_task", "hydra.launcher.cpus_per_task")
    over(get("mem_gb"), "max_mem_gb", "hydra.launcher.mem_gb", " GB")
    over(get("timeout_min"), "max_timeout_min", "hydra.launcher.timeout_min", " min")
    types = limits.get("gpu_types")
    gpu_type = get("gpu_type")
    if gpu_type and types and gpu_type not in types:
        problems.append(f"hydra.launcher.gpu_type={gpu_type} is not available; the partition has "
                        f"{', '.join(types)}")
    if gpus and limits.get("max_gpus_per_node") == 0:
        problems.append("the partition has no GPUs; use gpus_per_node=null")
    timeout, delay = get("timeout_min"), get("signal_delay_s")
    if timeout is not None and delay is not None and delay >= timeout * 60:
        problems.append(f"hydra.launcher.signal_delay_s={delay} is not below the time limit "
                        f"({timeout} min): the job would be signalled at once")
    if problems:
        raise ProfileError(f"cluster {name!r}, partition {get('partition')!r}: "
                           + "; ".join(problems))
