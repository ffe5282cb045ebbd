"""``kdgat demo``: the main job on the built-in synthetic data, from nothing to a results table."""

from __future__ import annotations

HELP = "run the KD-GAT main job on the built-in synthetic dataset"


def register(parser) -> None:
    parser.add_argument("--runs-root", default=None, help="runs root (default experimentruns/)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from kdgat.cli import data

    class Prepare:
        settings = ["dataset=synthetic"] + ([f"cache_dir={args.runs_root}/.cache"] if args.runs_root else [])
        rebuild = False

    return data.run_prepare(Prepare)
