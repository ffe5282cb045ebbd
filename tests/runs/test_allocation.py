"""``run_NNN`` allocation: concurrent jobs of one grid point never share a run directory."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

from kdgat.runs.rundir import allocate, completed_runs, set_status

WORKERS = 16


def _allocate_at_once(barrier, point_dir: str, results) -> None:
    """One job: wait for all the others, then allocate and claim the directory with a file."""
    barrier.wait(timeout=60)
    run_dir = allocate(Path(point_dir))
    (run_dir / f"claimed-by-{os.getpid()}").touch()
    results.put(str(run_dir))


def test_processes_allocating_at_the_same_moment_get_distinct_run_dirs(tmp_path):
    # The grid folder does not exist yet: the jobs also race to create it.
    point_dir = tmp_path / "automotive/synthetic/classifier/gat/tiny/no/all_samples"
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(WORKERS), context.Queue()
    jobs = [context.Process(target=_allocate_at_once, args=(barrier, str(point_dir), results))
            for _ in range(WORKERS)]
    for job in jobs:
        job.start()
    allocated = [results.get(timeout=120) for _ in jobs]
    for job in jobs:
        job.join(timeout=60)
        assert job.exitcode == 0
    assert len(set(allocated)) == WORKERS
    assert sorted(Path(p).name for p in allocated) == [f"run_{n:03d}" for n in range(1, WORKERS + 1)]
    for run_dir in allocated:  # each one claimed by exactly one job
        assert len(list(Path(run_dir).iterdir())) == 1


def test_numbers_follow_the_highest_existing_one(tmp_path):
    """The next number is the highest existing one plus one: a deleted middle run leaves a gap that
    is never filled, but deleting the newest run makes its number free again (nothing records
    numbers that were handed out, only the directories that exist)."""
    first, second, third = (allocate(tmp_path) for _ in range(3))
    assert [p.name for p in (first, second, third)] == ["run_001", "run_002", "run_003"]
    second.rmdir()
    assert allocate(tmp_path).name == "run_004"
    (tmp_path / "run_004").rmdir()
    assert allocate(tmp_path).name == "run_004"
    # Names that are not run numbers are ignored; a file in the way is never reused as a run.
    (tmp_path / "run_latest").mkdir()
    (tmp_path / "run_005").write_text("not a run directory")
    assert allocate(tmp_path).name == "run_006"


def test_numbering_goes_past_three_digits_and_newest_stays_newest(tmp_path):
    (tmp_path / "run_999").mkdir()
    newest = allocate(tmp_path)
    assert newest.name == "run_1000"
    for run_dir in (tmp_path / "run_999", newest):
        set_status(run_dir, "completed")
    assert completed_runs(tmp_path) == [newest, tmp_path / "run_999"]
