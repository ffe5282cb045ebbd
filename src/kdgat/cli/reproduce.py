"""``kdgat reproduce RUN_DIR [key=value ...]``: run again from a saved config and compare."""

from __future__ import annotations

import math
import sys
from pathlib import Path

HELP = "re-run a run from its saved config.yaml into a new run directory and compare metrics"
REQUIRED_KEYS = ("grid", "seed", "runs_root", "datamodule", "network", "module", "trainer")
INSTANTIATED_KEYS = ("datamodule", "network", "module", "trainer")


def register(parser) -> None:
    parser.add_argument("run_dir", help="a kdgat run directory (with config.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="changes to the saved config (existing keys only)")
    parser.add_argument("--tolerance", type=float, default=1e-6,
                        help="largest metric difference counted as reproduced (default 1e-6)")
    parser.add_argument("--runs-root", metavar="DIR", default=None,
                        help="where the new run goes (default: the runs root RUN_DIR lives in now)")
    parser.add_argument("--allow-target", metavar="MODULE.NAME", action="append", default=[],
                        help="instantiate this callable although kdgat's configs never name it "
                             "(repeatable; the saved config's own allow_targets are ignored)")
    parser.set_defaults(run=run)


def load_run_config(run_dir: Path, overrides: list[str], allow_targets: list[str] = (),
                    runs_root: Path | None = None):
    """The saved config of ``run_dir`` with ``overrides`` applied, after the allow-list check.

    Args:
        run_dir: the run to reproduce.
        overrides: ``key=value`` changes (existing keys only).
        allow_targets: outside ``_target_``s the user allows now (the saved list is never trusted).
        runs_root: where the new run goes; default the root ``run_dir`` lives under now, which
            differs from the saved ``runs_root`` when the runs were moved or copied.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from kdgat.runs.allowlist import check_targets

    path = run_dir / "config.yaml"
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a kdgat run directory: it has no config.yaml")
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # yaml.YAMLError and friends: the file was damaged or hand-edited
        raise ValueError(f"{path} is not valid YAML ({err}); restore it from the run's MLflow "
                         "artifacts or version control") from err
    missing = [key for key in REQUIRED_KEYS if key not in cfg]
    if missing:
        raise ValueError(f"{path} is not a kdgat run config: missing {missing}")
    check_shape(cfg, path)
    rebase(cfg, run_dir, runs_root)
    # A saved config cannot widen the allow-list: only what the user names now counts.
    cfg.allow_targets = list(allow_targets)
    saved = cfg
    OmegaConf.set_struct(cfg, True)
    try:  # merging runs nothing, so a bad override is reported before the slower target check
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    except OmegaConfBaseException as err:
        raise ValueError(f"override not applicable to {path}: {err}") from err
    check_targets(saved, where=str(path), allow=allow_targets)
    check_targets(cfg, where="the overrides", allow=allow_targets)
    OmegaConf.set_struct(cfg, False)
    cfg.run_dir = None
    return cfg


def rebase(cfg, run_dir: Path, runs_root: Path | None) -> None:
    """Point the saved config at the runs root ``run_dir`` lives in now (or ``runs_root``).

    The saved ``runs_root`` is absolute; after the runs were moved or copied it names the original
    place, and reproducing would write there (and into its MLflow store). The cache and pinned
    dependencies that lived under the old root move with it when they exist under the new one.
    """
    from pathlib import PurePath

    from kdgat.grid import GridPoint
    from kdgat.runs.dependencies import PIN_KEYS
    from omegaconf import OmegaConf

    point = GridPoint(**{k: str(v) for k, v in cfg.grid.items()})
    depth = len(PurePath(point.path).parts) + 1
    here = run_dir.resolve().parents[depth - 1] if len(run_dir.resolve().parents) >= depth else None
    if here is not None and (here / point.path / run_dir.name) != run_dir.resolve():
        here = None
    if here is None and runs_root is None:
        raise ValueError(f"{run_dir} is not at {{runs root}}/{point.path}/run_NNN, where its config "
                         "says it belongs, so where to reproduce it is unclear; pass --runs-root DIR")
    old = Path(str(cfg.runs_root))
    new = Path(runs_root).resolve() if runs_root is not None else here
    cfg.runs_root = str(new)

    def relocate(value, root: Path):
        try:
            return root / Path(str(value)).relative_to(old)
        except (TypeError, ValueError):
            return None  # unset, or outside the old root (a data folder, a shared cache)

    cache = relocate(cfg.get("cache_dir"), new)
    if cache is not None:
        cfg.cache_dir = str(cache)
    for key in PIN_KEYS.values() if here is not None else ():
        pinned = relocate(OmegaConf.select(cfg, key), here)
        if pinned is not None and pinned.is_dir():  # else the original still stands where it was
            OmegaConf.update(cfg, key, str(pinned))


def check_shape(cfg, path: Path) -> None:
    """Refuse a hand-edited config whose grid or instantiated sections are damaged, before any run
    directory exists (else it fails later with a traceback, or silently runs something else)."""
    from dataclasses import fields

    from omegaconf import DictConfig

    from kdgat.grid import GridPoint, InvalidGridPoint

    for key in INSTANTIATED_KEYS:
        if not isinstance(cfg[key], DictConfig) or "_target_" not in cfg[key]:
            raise ValueError(f"{path}: {key} must be a mapping with a _target_; the file was damaged "
                             "or hand-edited")
    dimensions = [f.name for f in fields(GridPoint)]
    grid = cfg.grid
    if not isinstance(grid, DictConfig):
        raise ValueError(f"{path}: grid must be a mapping of {dimensions}")
    missing = [d for d in dimensions if d not in grid]
    unknown = sorted(set(grid) - set(dimensions))
    if missing or unknown:
        raise ValueError(f"{path}: grid must hold exactly {dimensions}"
                         + (f"; missing {missing}" if missing else "")
                         + (f"; unknown {unknown}" if unknown else ""))
    try:
        GridPoint(**{d: str(grid[d]) for d in dimensions}).validate()
    except InvalidGridPoint as err:
        raise ValueError(f"{path}: {err}") from err


def _numbers(document: dict, prefix: str = "") -> dict[str, float]:
    """Every numeric metric of the validation and test sections, flattened."""
    flat = {}
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_numbers(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def compare(original: dict, new: dict) -> tuple[float, list[str]]:
    """Largest absolute difference over the validation/test metrics, and the keys that differ
    in presence (a metric null in one run and a number in the other)."""
    sections = ("validation", "test", "threshold")
    before = _numbers({k: original[k] for k in sections if k in original})
    after = _numbers({k: new[k] for k in sections if k in new})
    mismatched = sorted(set(before) ^ set(after))
    worst = max((abs(before[k] - after[k]) for k in set(before) & set(after)), default=0.0)
    return worst, mismatched


def run(args) -> int:
    import json

    from kdgat.train import execute, seed_everything

    run_dir = Path(args.run_dir).resolve()
    cfg = load_run_config(run_dir, args.overrides, allow_targets=args.allow_target,
                          runs_root=Path(args.runs_root) if args.runs_root else None)
    seed_everything(cfg)
    document = execute(cfg, overrides=[f"# reproduce of {run_dir}", *args.overrides])
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        print(f"reproduced into {document['run_dir']}; {run_dir} has no metrics.json to compare with")
        return 0
    worst, mismatched = compare(json.loads(metrics_path.read_text()), document)
    same = worst <= args.tolerance and not mismatched and not math.isnan(worst)
    print(f"reproduced {run_dir.name} into {document['run_dir']}: largest metric difference "
          f"{worst:.3g} (tolerance {args.tolerance:g}){'; differing keys: ' + ', '.join(mismatched) if mismatched else ''}"
          f" — {'REPRODUCED' if same else 'DIFFERENT'}")
    if args.overrides and not same:
        print("  (overrides were given, so differences may be expected)", file=sys.stderr)
    return 0 if same else 1
