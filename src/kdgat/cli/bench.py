"""``kdgat bench data`` / ``kdgat bench config``: speed (and memory) of the data layer and of the
config layer, each next to a baseline measured in the same run."""

from __future__ import annotations

HELP = "benchmarks that print figures (data layer, config layer)"


def register(parser) -> None:
    targets = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
    data = targets.add_parser("data", help="preprocessing, cached reload and batch assembly")
    data.add_argument("--data-root", default=None,
                      help="folder holding the dataset (default KDGAT_DATA_ROOT, else ../shared/data/can-train-and-test)")
    data.add_argument("--dataset", default="hcrl_sa")
    data.add_argument("--baseline-files", type=int, default=None,
                      help="run the per-window baseline on only the first N files (default: all)")
    data.add_argument("--batch-size", type=int, default=64)
    data.set_defaults(run=run_data)
    config = targets.add_parser("config", help="kdgat-train --help / --cfg job next to importing torch, "
                                               "and composing every grid point")
    config.add_argument("--repeats", type=int, default=3, help="fresh processes per command (median)")
    config.set_defaults(run=run_config)


def run_data(args) -> int:
    from kdgat.bench.data import main

    return main(args)


def run_config(args) -> int:
    from kdgat.bench.config import main

    return main(args)
