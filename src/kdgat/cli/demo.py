"""``kdgat demo``: the whole KD-GAT pipeline on the built-in synthetic data, then the results table.

The synthetic dataset is generated on first use; teacher VGAE and GAT, their distilled students
and the same students without distillation, teacher and student fusion (DQN and MLP) train for a
few epochs each, and every run lands in the
runs root like any other. Minutes on a 2-core CPU.
"""

from __future__ import annotations

HELP = "run the KD-GAT pipeline on the built-in synthetic dataset and print the results table"
# Few epochs keep the demo to minutes on a laptop CPU; early stopping still watches validation.
DEMO_OVERRIDES = ("trainer.max_epochs=6",)


def register(parser) -> None:
    parser.add_argument("--runs-root", default=None, help="runs root (default KDGAT_RUNS_ROOT or experimentruns/)")
    parser.add_argument("--force", action="store_true", help="train again even if the demo's runs exist")
    parser.set_defaults(run=run)


def run(args) -> int:
    from kdgat.cli import main

    argv = ["pipeline", "dataset=synthetic", *DEMO_OVERRIDES]
    if args.runs_root:
        argv.append(f"runs_root={args.runs_root}")
    if args.force:
        argv.append("--force")
    return main(argv)
