"""``dpqtb demo``: the built-in demonstration run."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="QTB vs classical MD on a model crystal, against the exact quantum curve",
                       description="Run QTB and classical Langevin MD on a model crystal of independent H "
                                   "oscillators and compare the energy per mode with the exact quantum answer.")
    p.add_argument("--output", metavar="DIR", default="demo_out", help="output directory (default: demo_out)")
    p.add_argument("--temperature-K", type=float, default=100.0, dest="temperature_K", help="temperature in K")
    p.add_argument("--time-ps", type=float, default=10.0, dest="time_ps", help="production time per run in ps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from dpqtb import InputError
    from dpqtb.workflows.demo import format_table, run_demo

    if not args.temperature_K > 0:
        raise InputError("--temperature-K must be > 0")
    if not args.time_ps > 0:
        raise InputError("--time-ps must be > 0")
    out = Path(args.output)
    if out.exists() and not out.is_dir():  # before the busy-machine warning: a bad input gets one line
        raise InputError(f"--output {out}: exists and is not a folder")
    from dpqtb.entry import warn_if_threads_exceed_free_cores

    warn_if_threads_exceed_free_cores(getattr(args, "threads", None))
    summary = run_demo(args.output, temperature_K=args.temperature_K, time_ps=args.time_ps,
                       progress=not args.no_progress)
    print(format_table(summary))
    print(f"plot: {args.output}/demo_energy_per_mode.png   data: {args.output}/demo_modes.csv, demo_summary.json")
    return 0
