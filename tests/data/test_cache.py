"""The prepared-graph cache: keyed by input hashes and parameters, atomic, shared by processes, mmapped."""

from __future__ import annotations

import json
import mmap
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import kdgat.data.cache as cache_module
from conftest import TEST_02, TRAIN_02
from kdgat.data.cache import META, GraphCache, cache_key, load_or_build
from kdgat.data.layout import discover
from kdgat.data.prepare import PrepareParams

PARAMS = PrepareParams(window=10, stride=10)


@pytest.fixture
def builds(monkeypatch):
    """Count the builds: every call of ``prepare`` made by the cache."""
    calls = []
    real = cache_module.prepare

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)
    monkeypatch.setattr(cache_module, "prepare", counting)
    return calls


def entries(cache_dir: Path) -> list[str]:
    """Everything in the dataset's cache folder except lock files."""
    folder = cache_dir / "tiny"
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) if folder.is_dir() else []


def test_second_load_reuses_the_entry(tiny_dataset, tmp_path, builds):
    first = load_or_build(discover(tiny_dataset), PARAMS, tmp_path / "cache", "tiny")
    second = load_or_build(discover(tiny_dataset), PARAMS, tmp_path / "cache", "tiny")
    assert len(builds) == 1
    assert first.folder == second.folder == tmp_path / "cache" / "tiny" / cache_key(discover(tiny_dataset), PARAMS)
    assert entries(tmp_path / "cache") == [first.folder.name]
    assert second.meta["key"] == first.folder.name and second.meta["dataset"] == "tiny"
    for name in first.meta["arrays"]:
        np.testing.assert_array_equal(first[name], second[name])


def test_changed_input_file_gives_a_new_key_and_a_rebuild(tiny_dataset, tmp_path, builds):
    before = load_or_build(discover(tiny_dataset), PARAMS, tmp_path / "cache", "tiny")
    # one more attack row in a test file: same names, same sizes, other content
    path = tiny_dataset / TEST_02 / "DoS-b.csv"
    path.write_bytes(path.read_bytes().replace(b",0\n", b",1\n", 1))
    after = load_or_build(discover(tiny_dataset), PARAMS, tmp_path / "cache", "tiny")
    assert len(builds) == 2 and after.folder != before.folder
    assert after.meta["attacks_per_split"][TEST_02] == before.meta["attacks_per_split"][TEST_02] + 1
    # an added file also changes the key
    (tiny_dataset / TRAIN_02 / "DoS-c.csv").write_bytes((tiny_dataset / TEST_02 / "DoS-b.csv").read_bytes())
    assert cache_key(discover(tiny_dataset), PARAMS) not in (before.folder.name, after.folder.name)


@pytest.mark.parametrize("change", [{"window": 12}, {"stride": 5}, {"val_fraction": 0.3},
                                    {"on_error": "skip"}])
def test_changed_parameter_gives_a_new_key_and_a_rebuild(shared_tiny_dataset, tmp_path, builds, change):
    layout = discover(shared_tiny_dataset)
    before = load_or_build(layout, PARAMS, tmp_path / "cache", "tiny")
    after = load_or_build(layout, replace(PARAMS, **change), tmp_path / "cache", "tiny")
    assert len(builds) == 2 and after.folder != before.folder
    assert after.meta["params"] == {**before.meta["params"], **change}


def test_key_depends_on_content_not_on_where_the_data_lives(shared_tiny_dataset, tmp_path):
    moved = tmp_path / "elsewhere" / "tiny"
    shutil.copytree(shared_tiny_dataset, moved)
    assert cache_key(discover(moved), PARAMS) == cache_key(discover(shared_tiny_dataset), PARAMS)


def test_rebuild_flag_and_damaged_entry_rebuild(shared_tiny_dataset, tmp_path, builds):
    layout = discover(shared_tiny_dataset)
    entry = load_or_build(layout, PARAMS, tmp_path / "cache", "tiny").folder
    load_or_build(layout, PARAMS, tmp_path / "cache", "tiny", rebuild=True)
    assert len(builds) == 2
    (entry / META).unlink()  # an entry without its meta.json is never trusted
    again = load_or_build(layout, PARAMS, tmp_path / "cache", "tiny")
    assert len(builds) == 3 and (again.folder / META).is_file()


def test_failed_build_leaves_no_entry(shared_tiny_dataset, tmp_path, monkeypatch):
    layout = discover(shared_tiny_dataset)

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(cache_module, "prepare", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        load_or_build(layout, PARAMS, tmp_path / "cache", "tiny")
    assert entries(tmp_path / "cache") == []
    monkeypatch.undo()
    assert load_or_build(layout, PARAMS, tmp_path / "cache", "tiny")["y"].shape == (34,)


def test_failure_while_writing_leaves_no_partial_folder(shared_tiny_dataset, tmp_path, monkeypatch):
    layout = discover(shared_tiny_dataset)
    real_save, saved = np.save, []

    def failing_save(path, array):
        if len(saved) == 3:
            raise OSError("no space left on device")
        saved.append(path)
        real_save(path, array)
    monkeypatch.setattr(cache_module.np, "save", failing_save)
    with pytest.raises(OSError, match="no space left"):
        load_or_build(layout, PARAMS, tmp_path / "cache", "tiny")
    assert len(saved) == 3 and entries(tmp_path / "cache") == []  # temporary folder removed too


def test_killed_builder_leaves_no_entry(shared_tiny_dataset, tmp_path):
    # a process killed (SIGKILL) half-way through writing: no cleanup code runs at all
    script = textwrap.dedent("""
        import os, signal, sys
        import numpy as np
        import kdgat.data.cache as cache
        from kdgat.data.layout import discover
        from kdgat.data.prepare import PrepareParams
        written = []
        def save(path, array):
            if len(written) == 4:
                os.kill(os.getpid(), signal.SIGKILL)
            written.append(path)
            np.lib.format.write_array(open(path, "wb"), array)
        cache.np.save = save
        cache.load_or_build(discover(sys.argv[1]), PrepareParams(window=10, stride=10), sys.argv[2], "tiny")
    """)
    killed = subprocess.run([sys.executable, "-c", script, str(shared_tiny_dataset), str(tmp_path / "cache")],
                            capture_output=True, text=True, timeout=60)
    assert killed.returncode == -9, killed.stderr
    key = cache_key(discover(shared_tiny_dataset), PARAMS)
    assert not (tmp_path / "cache" / "tiny" / key).exists()
    # only a hidden temporary folder is left; the next build ignores it and completes
    assert all(name.startswith(f".{key}.tmp-") for name in entries(tmp_path / "cache"))
    assert load_or_build(discover(shared_tiny_dataset), PARAMS, tmp_path / "cache", "tiny")["y"].shape == (34,)


CONCURRENT_BUILDER = textwrap.dedent("""
    import hashlib, json, os, sys, time
    import numpy as np
    import kdgat.data.cache as cache
    from kdgat.data.layout import discover
    from kdgat.data.prepare import PrepareParams
    root, cache_dir, builds, barrier, count = sys.argv[1:]
    real_prepare = cache.prepare
    def counting_prepare(*args, **kwargs):
        with open(builds, "a") as log:
            log.write(f"{os.getpid()}\\n")
        time.sleep(0.5)  # a slow build: the others must wait, not build too
        return real_prepare(*args, **kwargs)
    cache.prepare = counting_prepare
    layout = discover(root)
    open(os.path.join(barrier, str(os.getpid())), "w").close()
    deadline = time.time() + 30
    while len(os.listdir(barrier)) < int(count) and time.time() < deadline:
        time.sleep(0.005)
    entry = cache.load_or_build(layout, PrepareParams(window=10, stride=10), cache_dir, "tiny")
    digest = hashlib.sha256()
    for name in sorted(entry.arrays):
        digest.update(name.encode() + np.ascontiguousarray(entry[name]).tobytes())
    print(json.dumps({"folder": str(entry.folder), "digest": digest.hexdigest()}))
""")


def test_concurrent_processes_build_once_and_agree(shared_tiny_dataset, tmp_path):
    count, barrier, builds = 4, tmp_path / "barrier", tmp_path / "builds.log"
    barrier.mkdir()
    processes = [subprocess.Popen([sys.executable, "-c", CONCURRENT_BUILDER, str(shared_tiny_dataset),
                                   str(tmp_path / "cache"), str(builds), str(barrier), str(count)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(count)]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert len(builds.read_text().split()) == 1  # built by exactly one of them
    assert len({r["folder"] for r in results}) == 1
    assert len({r["digest"] for r in results}) == 1
    assert entries(tmp_path / "cache") == [Path(results[0]["folder"]).name]  # no temporary left


def test_loads_are_memory_mapped_and_read_only(shared_tiny_dataset, tmp_path):
    entry = load_or_build(discover(shared_tiny_dataset), PARAMS, tmp_path / "cache", "tiny")
    loaded = GraphCache(entry.folder)
    assert set(loaded.arrays) == set(loaded.meta["arrays"]) >= {
        "node_ptr", "edge_ptr", "x", "node_can_id", "edge_index", "edge_attr", "y", "split",
        "file_index", "window_index", "start_frame", "attack_frames"}
    for name, array in loaded.arrays.items():
        base = array
        while base is not None and not isinstance(base, mmap.mmap):
            base = base.base
        assert isinstance(base, mmap.mmap), f"{name} is not backed by a memory map"
        assert not array.flags.writeable
    with pytest.raises(ValueError):
        loaded["x"][0, 0] = 1.0
    assert loaded["edge_index"].shape[0] == 2 and loaded["x"].dtype == np.float32


def test_files_on_disk_are_plain_npy(shared_tiny_dataset, tmp_path):
    entry = load_or_build(discover(shared_tiny_dataset), PARAMS, tmp_path / "cache", "tiny").folder
    meta = json.loads((entry / META).read_text())
    assert sorted(p.name for p in entry.iterdir()) == sorted([META] + [f"{n}.npy" for n in meta["arrays"]])
    assert np.load(entry / "y.npy").shape == (sum(meta["graphs_per_split"].values()),)


def test_unchanged_rows_in_another_file_name_are_a_new_key(shared_tiny_dataset, tmp_path):
    copy = tmp_path / "tiny"
    shutil.copytree(shared_tiny_dataset, copy)
    (copy / TEST_02 / "DoS-b.csv").rename(copy / TEST_02 / "DoS-z.csv")
    assert cache_key(discover(copy), PARAMS) != cache_key(discover(shared_tiny_dataset), PARAMS)
