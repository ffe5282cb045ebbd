"""``kdgat mlflow-sync``: send runs whose MLflow logging failed (``tracking.json`` pending)."""

from __future__ import annotations

from pathlib import Path

HELP = "log runs that could not reach MLflow when they finished"


def register(parser) -> None:
    parser.add_argument("--runs-root", default=None, help="runs root (default KDGAT_RUNS_ROOT or experimentruns/)")
    parser.add_argument("--tracking-uri", default=None,
                        help="send to this tracking URI instead of the one each run tried")
    parser.add_argument("--all", action="store_true",
                        help="also (re-)log runs that have no tracking.json or were logged already")
    parser.set_defaults(run=run)


def run(args) -> int:
    from kdgat.data.datasets import runs_root
    from kdgat.tracking import default_uri, log_run_dir, read_tracking, write_tracking

    root = runs_root(args.runs_root).resolve()
    candidates = sorted({p.parent for p in root.glob("**/run_*/status.json")})
    sent = failed = 0
    for run_dir in candidates:
        state = read_tracking(run_dir)
        if not args.all and state.get("status") != "pending":
            continue
        uri = args.tracking_uri or state.get("tracking_uri") or default_uri(root)
        try:
            run_id = log_run_dir(run_dir, uri)
        except Exception as err:
            failed += 1
            write_tracking(run_dir, status="pending", tracking_uri=uri, error=f"{type(err).__name__}: {err}")
            print(f"  still pending  {run_dir}: {type(err).__name__}: {err}")
            continue
        sent += 1
        print(f"  logged         {run_dir} -> {uri} run {run_id}")
    print(f"mlflow-sync: {sent} logged, {failed} still pending ({len(candidates)} runs under {root})")
    return 1 if failed else 0
