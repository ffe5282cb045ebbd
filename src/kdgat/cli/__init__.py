"""``kdgat``: every command that is not one training run.

Subcommands import their heavy dependencies only when they run, so ``kdgat --help`` is instant.
"""

from __future__ import annotations

import argparse
import sys

from kdgat.cli import bench, data, demo, grid, mlflow_sync, pipeline, report, reproduce, status

COMMANDS = {"data": data, "grid": grid, "status": status, "pipeline": pipeline,
            "reproduce": reproduce, "report": report, "mlflow-sync": mlflow_sync,
            "bench": bench, "demo": demo}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kdgat", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        module.register(commands.add_parser(name, help=module.HELP, description=module.HELP))
    # Commands that take key=value overrides accept them before and after their flags.
    args, extra = parser.parse_known_args(argv)
    if extra:
        overrides = getattr(args, "settings", getattr(args, "overrides", None))
        if overrides is None or any(item.startswith("-") for item in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        overrides.extend(extra)
    try:
        return int(args.run(args) or 0)
    except (FileNotFoundError, ValueError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"kdgat {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
