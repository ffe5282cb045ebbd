"""Config-layer benchmark: how fast ``kdgat-train`` answers before any training, next to the cost of
importing torch, measured in the same run.

1. ``kdgat-train --help`` and ``kdgat-train --cfg job``, each in a fresh process (median of N).
2. ``python -c "import torch"`` in a fresh process, the same way: what every one of them would
   cost on top if the config layer imported torch.
3. Composing every grid point (``experiment=NAME``) with Hydra's compose API and validating it
   (grid rules and every settings dataclass, as ``kdgat-train`` does before a run directory exists).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _train_command() -> list[str]:
    script = Path(sys.executable).parent / "kdgat-train"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "kdgat.train"]


def wall_times(command: list[str], repeats: int, cwd: str) -> list[float]:
    """Wall-clock seconds of ``repeats`` fresh runs of ``command`` (each must succeed)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        out = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
        times.append(time.perf_counter() - started)
        if out.returncode:
            raise RuntimeError(f"{' '.join(command)} failed (exit {out.returncode}):\n{out.stderr[-2000:]}")
    return times


def compose_every_point() -> dict:
    """Compose and validate ``experiment=NAME`` for every valid grid point, in this process."""
    started = time.perf_counter()
    from hydra import compose, initialize

    from kdgat.config.store import store
    from kdgat.grid import all_points
    from kdgat.train import grid_point, validate_settings

    store.add_to_hydra_store(overwrite_ok=True)
    points = all_points()
    seconds, composing = [], []
    with initialize(version_base="1.3", config_path=None):
        setup = time.perf_counter() - started
        for point in points:
            begun = time.perf_counter()
            cfg = compose("train", overrides=[f"experiment={point.name}"])
            composing.append(time.perf_counter() - begun)
            if grid_point(cfg) != point:
                raise RuntimeError(f"experiment={point.name} composed to {grid_point(cfg).name}")
            validate_settings(cfg)
            seconds.append(time.perf_counter() - begun)
    heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "lightning", "torch_geometric", "mlflow"})
    return {"points": len(points), "setup": setup, "total": sum(seconds),
            "mean": statistics.mean(seconds), "max": max(seconds),
            "compose_mean": statistics.mean(composing), "heavy_imports": heavy}


def main(args) -> int:
    repeats = args.repeats
    train = _train_command()
    with tempfile.TemporaryDirectory(prefix="kdgat-bench-config-") as scratch:
        runs = f"runs_root={Path(scratch) / 'runs'}"
        measured = {
            "kdgat-train --help": wall_times([*train, "--help", runs], repeats, scratch),
            "kdgat-train --cfg job": wall_times([*train, "--cfg", "job", runs], repeats, scratch),
            'python -c "import torch"': wall_times([sys.executable, "-c", "import torch"], repeats, scratch),
            'python -c "pass"': wall_times([sys.executable, "-c", "pass"], repeats, scratch),
        }
        if list((Path(scratch) / "runs").rglob("run_*")):
            raise RuntimeError("--help / --cfg job created a run directory")
    composed = compose_every_point()

    print(f"kdgat bench config — fresh processes, median of {repeats} (cpus={os.cpu_count()}, "
          f"python {sys.version.split()[0]})")
    for name, times in measured.items():
        print(f"  {name:<26} {statistics.median(times):6.2f} s   (runs: "
              f"{', '.join(f'{t:.2f}' for t in times)})")
    torch_s = statistics.median(measured['python -c "import torch"'])
    for name in ("kdgat-train --help", "kdgat-train --cfg job"):
        print(f"  {name} takes {statistics.median(measured[name]) / torch_s:.2f}x the time of importing torch")
    print(f"compose + validate every grid point ({composed['points']} points, Hydra compose API, one process):")
    print(f"  setup (imports, store, initialize) {composed['setup']:6.2f} s")
    print(f"  total {composed['total']:6.2f} s   per point: mean {composed['mean'] * 1000:6.1f} ms, "
          f"max {composed['max'] * 1000:6.1f} ms (of which composing {composed['compose_mean'] * 1000:.1f} ms)")
    print(f"  heavy packages imported while composing: {', '.join(composed['heavy_imports']) or 'none'}")
    return 0
