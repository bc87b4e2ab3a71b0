"""``dpqtb md CONFIG.toml``: run molecular dynamics from a config file.

Exit status: 0 done; 2 bad input (config, files, a resume that does not match); 3 the run went
unstable (:class:`dpqtb.SimulationUnstable`; the last good checkpoint is kept); 130 / 143 stopped by
SIGINT / SIGTERM after a checkpoint at the current step (continue with ``--resume``).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("md", help="run MD (NVE, Langevin, QTB, adQTB) from a TOML config",
                       description="Run molecular dynamics from a TOML config (see docs/config.md). Exit status: "
                       "0 done, 2 bad input, 3 unstable run (last good checkpoint kept), 130/143 after "
                       "SIGINT/SIGTERM (checkpoint at the current step written; continue with --resume).")
    p.add_argument("config", help="TOML configuration file")
    p.add_argument("--output", metavar="DIR",
                   help="output directory (overrides output.directory; relative to the working directory)")
    p.add_argument("--resume", action="store_true",
                   help="continue from DIR/checkpoint.pt exactly (the config may change md.steps only)")
    p.add_argument("--overwrite", action="store_true", help="discard existing outputs in DIR")
    p.add_argument("--steps", type=int, metavar="N",
                   help="total number of steps (overrides md.steps; with --resume, at least the checkpoint's step)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_md)


def run_md(args) -> int:
    from dpqtb import InputError
    from dpqtb.md.build import build_simulation
    from dpqtb.md.config import load, with_steps

    cfg = load(args.config)
    if args.steps is not None:
        if args.steps < 0:
            raise InputError("--steps must be >= 0")
        cfg = with_steps(cfg, args.steps)  # a new config (the ramp's length and run.json follow it)
    if args.resume and args.overwrite:
        raise InputError("--resume and --overwrite exclude each other")
    # --output is a path on the command line (relative to the working directory), not output.directory of
    # the file (relative to the file's folder): it does not enter the config, whose run.json record keeps the file's
    output = None if args.output is None else Path(args.output)
    sim = build_simulation(cfg, output_dir=output, progress=False if args.no_progress else None)
    from dpqtb.entry import threads_warning

    busy = threads_warning(getattr(args, "threads", None))
    # the step target: md.steps of the file (or --steps); on --resume the total count. The busy-machine
    # warning is printed by run() once its own checks (output folder, checkpoint) have passed.
    sim.run(cfg.md.steps, resume=args.resume, overwrite=args.overwrite, warnings=[busy] if busy else ())
    last = sim.thermo_row()
    print(f"done: {sim.state.step} steps, T = {last.temperature_K:.2f} K, E_pot = {last.potential_eV:.6f} eV, "
          f"outputs in {Path(sim.dir)}")
    for o in sim.observers:
        if hasattr(o, "summary_line"):
            print(o.summary_line())
    return 0
