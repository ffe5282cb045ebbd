"""``kdgat data synth|check|prepare``."""

from __future__ import annotations

import json
import sys
import time

from kdgat.cli.overrides import parse_key_values

HELP = "synthesize, check and prepare CAN datasets"
PREPARE_KEYS = {"dataset": str, "data_root": str, "cache_dir": str, "window": int, "stride": int,
                "val_fraction": float, "validation": str, "holdout": str, "on_error": str,
                "synth_scale": str}


def register(parser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    synth = actions.add_parser("synth", help="write a synthetic dataset in the can-train-and-test layout")
    synth.add_argument("--out", required=True, help="dataset folder to create")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--scale", choices=("small", "medium"), default="small")
    synth.set_defaults(run=run_synth)
    check = actions.add_parser("check", help="validate recordings and report per file")
    check.add_argument("path", help="a dataset folder, any folder of recordings, or one file")
    check.add_argument("--json", action="store_true", help="print the reports as JSON")
    check.add_argument("--dataset", metavar="NAME",
                       help="the dataset whose grouping table applies (default: the folder's name)")
    check.set_defaults(run=run_check)
    prepare = actions.add_parser(
        "prepare", help="build the graph cache of a dataset",
        description="Build (or verify) the graph cache. Arguments: " + " ".join(
            f"{k}=..." for k in PREPARE_KEYS))
    prepare.add_argument("settings", nargs="*", metavar="key=value")
    prepare.add_argument("--rebuild", action="store_true", help="rebuild even if the cache exists")
    prepare.set_defaults(run=run_prepare)


def run_synth(args) -> int:
    from kdgat.data.quoting import printable
    from kdgat.data.synth import synthesize

    started = time.perf_counter()
    summary = synthesize(args.out, seed=args.seed, scale=args.scale)
    rows = sum(f[1] for f in summary.files)
    print(f"wrote {len(summary.files)} files, {rows} frames to {printable(summary.root)} "
          f"in {time.perf_counter() - started:.1f} s (seed {args.seed}, scale {args.scale})")
    return 0


def run_check(args) -> int:
    from dataclasses import asdict

    from kdgat.data.check import check, dataset_folders, format_grouping, format_report
    from kdgat.data.layout import discover

    reports = check(args.path)
    if args.json:
        json.dump([asdict(r) for r in reports], sys.stdout, indent=1)
        print()
    else:
        print(format_report(reports, args.path))
        for folder in dataset_folders(args.path):
            try:
                layout = discover(folder)
            except FileNotFoundError as err:  # not the whole layout: no grouping to show
                print(f"\nno grouping for {err}")
                continue
            print("\n" + format_grouping(layout, args.dataset or folder.name))
    return 0 if reports and all(r.ok for r in reports) else 1


def run_prepare(args) -> int:
    from kdgat.data.cache import load_or_build
    from kdgat.data.datasets import cache_root, check_dataset_name, dataset_folder
    from kdgat.data.layout import discover
    from kdgat.data.prepare import PrepareParams
    from kdgat.data.quoting import printable

    settings = parse_key_values(args.settings, PREPARE_KEYS)
    if "dataset" not in settings:
        raise ValueError("dataset=NAME is required (e.g. dataset=hcrl_sa data_root=DIR)")
    check_dataset_name(settings["dataset"])  # before any folder is looked at or made
    cache_dir = cache_root(settings.get("cache_dir"))
    folder = dataset_folder(settings["dataset"], settings.get("data_root"), cache_dir,
                            synth_scale=settings.get("synth_scale", "small"))
    params = PrepareParams(**{k: settings[k] for k in ("window", "stride", "val_fraction", "on_error",
                                                        "validation", "holdout") if k in settings})
    started = time.perf_counter()
    cache = load_or_build(discover(folder), params, cache_dir, settings["dataset"], rebuild=args.rebuild)
    meta = cache.meta
    print(f"{settings['dataset']}: {sum(meta['graphs_per_split'].values())} graphs, "
          f"{meta['num_nodes']} nodes, {meta['num_edges']} edges in {printable(cache.folder)} "
          f"({time.perf_counter() - started:.1f} s)")
    for split, count in meta["graphs_per_split"].items():
        print(f"  {printable(split):<45} {count:>8} windows  {meta['attacks_per_split'][split]:>7} attacks")
    plan = meta["validation"]
    if plan["validation"] != "block":
        print(f"  validation={plan['validation']} holdout={printable(plan['holdout'])}"
              f"{' (the default)' if plan['default_holdout'] else ''}: validation "
              f"{', '.join(map(printable, plan['val_files']))}; training "
              f"{', '.join(map(printable, plan['train_files']))}")
    skipped = sum(f["skipped_rows"] for f in meta["files"])
    if skipped:
        print(f"  {skipped} malformed rows were skipped (on_error=skip); see {printable(cache.folder / 'meta.json')}")
    return 0
