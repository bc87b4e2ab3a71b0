"""``dpqtb sweep``: P–T sweeps of MD points on Dask (docs/sweep.md)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="run a sweep of MD points (pressures, temperatures, baths, seeds, sizes) on Dask",
        description="Expand SWEEP.toml (a base dpqtb md config plus axes) to points and run each point "
                    "(equilibration, production, analysis) as one Dask task; finished points are skipped, "
                    "interrupted ones resume from their checkpoint. DIR/points.csv holds one row per point; "
                    "the figures go to DIR/figures/. See docs/sweep.md.")
    p.add_argument("sweep", nargs="?", metavar="SWEEP.toml", help="the sweep file")
    p.add_argument("--out", metavar="DIR", help="sweep directory (default: sweep.directory of the file, "
                                                  "else sweep_<file stem>)")
    p.add_argument("--workers", type=int, metavar="N", help="LocalCluster worker processes, one thread each "
                                                             "(default: one per core)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--scheduler", metavar="ADDRESS", help="run on an existing Dask scheduler (tcp://host:port)")
    g.add_argument("--scheduler-file", metavar="FILE", help="run on the Dask scheduler of this scheduler file")
    g.add_argument("--serial", action="store_true", help="run the points one after the other in this process")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the base config, e.g. --set system.supercell=[10,10,10] "
                        "--set system.device=cuda (VALUE in TOML; repeatable; axes still win)")
    p.add_argument("--plot", metavar="DIR", help="only (re)write the figures of sweep directory DIR")
    p.add_argument("--status", metavar="DIR", help="print where each point of sweep directory DIR stands (done, "
                                                     "running, stopped, failed, pending; step, steps/min, ETA) "
                                                     "from its files, and exit")
    p.add_argument("--reanalyze", metavar="DIR", help="re-analyse, from their run files and without MD, the "
                                                       "finished points of sweep directory DIR that an older "
                                                       "analysis version made (result.json analysis_version), "
                                                       "rewrite points.csv and the figures, and exit")
    p.add_argument("--list", action="store_true", help="print the expanded points and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from dpqtb import InputError

    if sum(bool(x) for x in (args.sweep, args.plot, args.status, args.reanalyze)) > 1:
        raise InputError("give one of SWEEP.toml, --plot DIR, --status DIR or --reanalyze DIR")
    if args.reanalyze:
        import sys

        from dpqtb.workflows.sweep_reanalyze import reanalyze_sweep

        res = reanalyze_sweep(args.reanalyze, log=sys.stderr)
        print(f"{res['n_points']} points: {len(res['reanalyzed'])} re-analysed, {len(res['current'])} already "
              f"current, {len(res['unfinished'])} not finished; {res['points_csv']}")
        return 0
    if args.status:
        from dpqtb.workflows.sweep_status import format_status, sweep_status

        print(format_status(sweep_status(args.status)))
        return 0
    if args.plot:
        from dpqtb.workflows.sweep_plots import plot_sweep

        for png in plot_sweep(args.plot):
            print(png)
        return 0
    if not args.sweep:
        raise InputError("dpqtb sweep needs SWEEP.toml (or --plot DIR, --status DIR, --reanalyze DIR)")
    if args.workers is not None and args.workers < 1:
        raise InputError("--workers must be >= 1")
    from dpqtb.workflows.sweep import run_sweep
    from dpqtb.workflows.sweep_spec import load_sweep, parse_override

    sweep = load_sweep(args.sweep, overrides=dict(parse_override(s) for s in args.set))
    if args.list:
        for pt in sweep.points:
            print(pt.hash, " ".join(f"{k}={v}" for k, v in pt.axes.items()))
        print(f"{len(sweep.points)} points")
        return 0
    out = Path(args.out) if args.out else (sweep.directory or Path(f"sweep_{Path(args.sweep).stem}"))
    res = run_sweep(sweep, out, workers=args.workers, scheduler=args.scheduler, scheduler_file=args.scheduler_file,
                    serial=args.serial, progress=not args.no_progress)
    print(f"{res['n_points']} points: {res['skipped']} finished before, {res['done']} run now, "
          f"{res['failed']} failed" + (f", {res['stopped']} stopped" if res.get("stopped") else "")
          + f" ({res['wall_s']:.1f} s); {res['points_csv']}")
    if res.get("stopped"):
        from dpqtb import CalculationError

        if not res["failed"]:
            raise CalculationError(f"{res['stopped']} point(s) stopped by a request from outside this command: "
                                   "the same command resumes them")
    if res["failed"]:
        from dpqtb import CalculationError

        raise CalculationError(f"{res['failed']} point(s) failed: see the error column of {res['points_csv']} "
                         "and their point.log")
    return 0
