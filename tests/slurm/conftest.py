"""A real, private single-node Slurm (with accounting) for the tests in this folder.

The session-scoped fixture ``slurm_cluster`` starts ``launch/slurm-dev-cluster.sh`` in a short
temporary folder (/tmp/kdgat-slurm-XXXXXX: the munge socket path must stay under ~100 chars),
yields a :class:`SlurmCluster` and stops the cluster at the end of the session. Every test in this
folder is marked ``slurm``. Where the binaries are missing the tests are skipped, naming the apt
packages to install.

Set ``KDGAT_SLURM_CONF=/path/to/slurm.conf`` to run against a cluster that is already up (it is
then neither started nor stopped); set ``KDGAT_SLURM_KEEP=1`` to keep the temporary folder (logs,
state) after the session. The folder is also kept when a test failed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCRIPT = REPO / "launch" / "slurm-dev-cluster.sh"

# binary -> Debian package that provides it
REQUIRED_BINARIES = {
    "munged": "munge",
    "slurmctld": "slurm-wlm",
    "slurmd": "slurm-wlm",
    "sbatch": "slurm-wlm",
    "scontrol": "slurm-wlm",
    "sacct": "slurm-wlm",
    "sacctmgr": "slurm-wlm",
    "slurmdbd": "slurmdbd",
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
}
INSTALL_HINT = "apt-get install -y slurm-wlm munge slurmdbd mariadb-server"
START_TIMEOUT_S = 180
FINAL_STATES = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
    "PREEMPTED", "BOOT_FAIL", "DEADLINE",
}


def pytest_collection_modifyitems(config, items):
    """Mark every test collected from this folder ``slurm``."""
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.slurm)


def _search_path() -> str:
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin"])


def missing_binaries() -> dict[str, str]:
    path = _search_path()
    return {b: pkg for b, pkg in REQUIRED_BINARIES.items() if shutil.which(b, path=path) is None}


def _clean_env(conf: Path) -> dict[str, str]:
    """The caller's environment without Slurm job variables (sbatch inside a job would inherit
    them), with SLURM_CONF pointing at the private cluster and /usr/sbin on PATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SACCT_"))
    }
    env["SLURM_CONF"] = str(conf)
    env["PATH"] = _search_path()
    return env


class SlurmTimeout(AssertionError):
    pass


@dataclass
class SlurmCluster:
    """Handle on the running private cluster."""

    dir: Path
    conf: Path
    env: dict[str, str] = field(repr=False)

    # ------------------------------------------------------------------ commands
    def run(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a Slurm client command against this cluster; returns the CompletedProcess (text)."""
        proc = subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def sbatch(self, *args: str) -> str:
        """``sbatch --parsable ARGS``; returns the job id (for arrays: the array job id)."""
        out = self.run("sbatch", "--parsable", *args).stdout.strip()
        return out.split(";")[0]

    def scontrol_job(self, jobid: str) -> dict[str, str]:
        """``scontrol show job -o JOBID`` as a dict (first record); {} once the job is gone."""
        proc = self.run("scontrol", "show", "job", "-o", jobid, check=False)
        if proc.returncode != 0 or not proc.stdout.strip():
            return {}
        fields: dict[str, str] = {}
        for token in proc.stdout.splitlines()[0].split():
            key, sep, value = token.partition("=")
            if sep:
                fields[key] = value
        return fields

    def sacct(self, jobid: str, *, duplicates: bool = False) -> list[dict[str, str]]:
        """Allocation records (``sacct -X``) of JOBID (array tasks included) from accounting."""
        cols = ["JobID", "JobName", "State", "ExitCode", "Start", "End"]
        args = ["sacct", "-n", "-P", "-X", "-j", jobid, "-o", ",".join(cols)]
        if duplicates:
            args.insert(1, "-D")
        rows = []
        for line in self.run(*args).stdout.splitlines():
            if line.strip():
                rows.append(dict(zip(cols, line.split("|"))))
        return rows

    # ------------------------------------------------------------------ waits (always bounded)
    def wait_until(self, predicate, *, timeout: float, what: str, interval: float = 0.25):
        """Poll PREDICATE until it returns something truthy (returned) or TIMEOUT seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise SlurmTimeout(f"timed out after {timeout}s waiting for {what}\n{self.diagnostics()}")
            time.sleep(interval)

    def wait_state(self, jobid: str, states: set[str] | str, *, timeout: float = 30) -> dict[str, str]:
        """Wait until ``scontrol show job`` reports one of STATES; returns the job's fields."""
        wanted = {states} if isinstance(states, str) else set(states)

        def check():
            job = self.scontrol_job(jobid)
            return job if job.get("JobState") in wanted else None

        return self.wait_until(check, timeout=timeout, what=f"job {jobid} in {sorted(wanted)}")

    def wait_sacct(self, jobid: str, *, count: int = 1, timeout: float = 30,
                   states: set[str] | None = None) -> list[dict[str, str]]:
        """Wait until accounting holds COUNT records of JOBID, all in a final state (or STATES)."""
        wanted = states or FINAL_STATES

        def check():
            rows = self.sacct(jobid)
            done = [r for r in rows if r["State"].split()[0] in wanted]
            return rows if len(rows) >= count and len(done) == len(rows) else None

        return self.wait_until(check, timeout=timeout, what=f"sacct records of job {jobid}")

    def job_ids(self) -> set[str]:
        """Ids of the jobs in the queue (array jobs by their array job id)."""
        return set(self.run("squeue", "-h", "-o", "%F", check=False).stdout.split())

    def cancel(self, jobids, *, timeout: float = 30) -> None:
        """scancel JOBIDS and wait (bounded) until they have left the queue."""
        jobids = set(jobids)
        if not jobids:
            return
        self.run("scancel", *sorted(jobids), check=False)
        self.wait_until(lambda: not (self.job_ids() & jobids), timeout=timeout,
                        what=f"cancelled jobs {sorted(jobids)} to leave the queue")

    def diagnostics(self) -> str:
        parts = []
        for args in (("squeue", "-a"), ("sinfo", "-N", "-l")):
            try:
                proc = self.run(*args, check=False, timeout=10)
                parts.append(f"$ {' '.join(args)}\n{proc.stdout}{proc.stderr}")
            except Exception as exc:  # pragma: no cover - diagnostics only
                parts.append(f"$ {' '.join(args)} failed: {exc}")
        log = self.dir / "log" / "slurmctld.log"
        if log.exists():
            tail = log.read_text(errors="replace").splitlines()[-20:]
            parts.append(f"--- tail of {log}\n" + "\n".join(tail))
        return "\n".join(parts)


@pytest.fixture(autouse=True)
def _cancel_jobs_left_by_test(request):
    """After each test here that used the cluster, cancel the jobs it left in the queue, so a
    failed test cannot block the next one. Jobs that were queued before the test are kept."""
    if "slurm_cluster" not in request.fixturenames:
        yield
        return
    cluster = request.getfixturevalue("slurm_cluster")
    before = cluster.job_ids()
    yield
    cluster.cancel(cluster.job_ids() - before)


@pytest.fixture(scope="session")
def slurm_cluster(request):
    """A private Slurm cluster with accounting for the whole session (see module docstring)."""
    existing = os.environ.get("KDGAT_SLURM_CONF")
    if existing:
        conf = Path(existing).resolve()
        if not conf.is_file():
            pytest.fail(f"KDGAT_SLURM_CONF={existing} is not a file")
        yield SlurmCluster(dir=conf.parent, conf=conf, env=_clean_env(conf))
        return

    missing = missing_binaries()
    if missing:
        pkgs = " ".join(sorted(set(missing.values())))
        pytest.skip(
            f"real Slurm not installed (missing {', '.join(sorted(missing))}); "
            f"install with: apt-get install -y {pkgs}  (all: {INSTALL_HINT})"
        )
    if os.geteuid() != 0:
        pytest.skip("the private Slurm dev cluster runs its daemons as root (SlurmUser=root)")

    base = Path(tempfile.mkdtemp(prefix="kdgat-slurm-", dir="/tmp"))
    conf = base / "slurm.conf"
    env = _clean_env(conf)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            ["bash", str(SCRIPT), "start", str(base)],
            env=env, capture_output=True, text=True, timeout=START_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        subprocess.run(["bash", str(SCRIPT), "stop", str(base)], env=env, timeout=120)
        pytest.fail(f"slurm-dev-cluster.sh start did not finish in {START_TIMEOUT_S}s: {exc}")
    if proc.returncode != 0:
        subprocess.run(["bash", str(SCRIPT), "stop", str(base)], env=env, timeout=120)
        pytest.fail(
            f"slurm-dev-cluster.sh start {base} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    cluster = SlurmCluster(dir=base, conf=conf, env=env)
    cluster.start_seconds = time.monotonic() - t0  # type: ignore[attr-defined]
    try:
        yield cluster
    finally:
        stop = subprocess.run(
            ["bash", str(SCRIPT), "stop", str(base)],
            env=env, capture_output=True, text=True, timeout=120,
        )
        failed = request.session.testsfailed or stop.returncode != 0
        if os.environ.get("KDGAT_SLURM_KEEP") == "1" or failed:
            print(f"\nslurm dev cluster kept under {base} (logs in {base}/log)")
        else:
            shutil.rmtree(base, ignore_errors=True)
