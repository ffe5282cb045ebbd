"""``kdgat mlflow-sync``: send finished runs that MLflow has not got yet.

A run is sent when its ``tracking.json`` says ``pending`` (logging failed when it finished), or
when it finished (``status.json`` completed or failed) with tracking enabled but has no
``tracking.json`` at all (it was killed between finishing and being logged).
"""

from __future__ import annotations

import json
from pathlib import Path

HELP = "log finished runs that have not reached MLflow (pending, or killed before logging)"


def register(parser) -> None:
    parser.add_argument("--runs-root", default=None, help="runs root (default KDGAT_RUNS_ROOT or experimentruns/)")
    parser.add_argument("--tracking-uri", default=None,
                        help="send to this tracking URI instead of the one each run tried")
    parser.add_argument("--all", action="store_true",
                        help="also (re-)log runs that were logged already, unfinished or untracked")
    parser.set_defaults(run=run)


def unsent(run_dir: Path) -> tuple[str | None, str]:
    """Why ``run_dir`` still has to reach MLflow (``None``: it does not) and the URI it aims at
    (``""``: the default store of the runs root)."""
    import yaml

    from kdgat.tracking import FINISHED, read_tracking

    state = read_tracking(run_dir)
    if state.get("status") == "logged":
        return None, state.get("tracking_uri", "")
    if state.get("status") == "pending":
        return "pending", state.get("tracking_uri", "")
    try:
        status = json.loads((run_dir / "status.json").read_text()).get("status")
    except (OSError, ValueError):
        return None, ""
    if status not in FINISHED:
        return None, ""  # still running (or preempted, to be resumed): it logs itself
    try:
        tracking = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("tracking") or {}
    except (OSError, yaml.YAMLError):
        tracking = {}
    if tracking.get("enabled") is False:
        return None, ""  # tracking was turned off for this run
    return f"{status}, never logged", tracking.get("tracking_uri") or ""


def run(args) -> int:
    from kdgat.data.datasets import runs_root
    from kdgat.tracking import default_uri, log_run_dir, read_tracking, write_tracking

    root = runs_root(args.runs_root).resolve()
    candidates = sorted({p.parent for p in root.glob("**/run_*/status.json")})
    sent = failed = 0
    for run_dir in candidates:
        reason, tried = unsent(run_dir)
        if reason is None and not args.all:
            continue
        uri = args.tracking_uri or tried or read_tracking(run_dir).get("tracking_uri") or default_uri(root)
        try:
            run_id = log_run_dir(run_dir, uri)
        except Exception as err:
            failed += 1
            write_tracking(run_dir, status="pending", tracking_uri=uri, error=f"{type(err).__name__}: {err}")
            print(f"  still pending  {run_dir}: {type(err).__name__}: {err}")
            continue
        sent += 1
        print(f"  logged         {run_dir} -> {uri} run {run_id}" + (f" ({reason})" if reason else ""))
    print(f"mlflow-sync: {sent} logged, {failed} still pending ({len(candidates)} runs under {root})")
    return 1 if failed else 0
