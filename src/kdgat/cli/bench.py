"""``kdgat bench data``: data-layer speed and memory, each next to a baseline measured in the same run."""

from __future__ import annotations

HELP = "benchmarks that print figures (data layer)"


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


def run_data(args) -> int:
    from kdgat.bench.data import main

    return main(args)
