"""``dpqtb lammps`` sub-command: the LAMMPS deck of a ``dpqtb md`` config (and optionally its run)."""

from __future__ import annotations

import sys


def _run(args) -> int:
    from pathlib import Path

    from dpqtb.config_schema import load_toml
    from dpqtb.lammps.deck import write_deck
    from dpqtb.md.config import validate

    raw = load_toml(args.config)
    cfg = validate(raw, base_dir=Path(args.config).resolve().parent)
    deck = write_deck(cfg, args.out, raw=raw, copy_model=not args.model_path)
    for note in deck.warnings:
        print(f"dpqtb lammps: warning: {note}", file=sys.stderr)
    print(f"wrote {deck.files['input']} ({deck.meta['n_atoms']} atoms, {cfg.thermostat.kind}, "
          f"{cfg.md.steps} steps)")
    if args.run:
        from dpqtb.lammps.runner import run_deck

        log = run_deck(args.out, args.lmp, threads=args.run_threads)
        print(f"LAMMPS finished: {log}")
    return 0


def register(subparsers) -> None:
    from dpqtb.rundir import LAMMPS_INPUT, LAMMPS_META

    p = subparsers.add_parser(
        "lammps", help="write the LAMMPS deck (fix qtb, pair_style deepmd) of an md config",
        description=f"Write DIR/{LAMMPS_INPUT}, the data file, the model and {LAMMPS_META} for the run of an "
        "md config in LAMMPS (fix qtb + fix nve/nph, fix langevin, or fix nve; pair_style deepmd). What "
        "LAMMPS cannot do (adQTB, PIMD, a QTB temperature ramp, ...) is an error; the differences it keeps "
        "are printed as warnings and written in the deck. `dpqtb analyze DIR` reads the finished run. "
        "See docs/lammps.md.")
    p.add_argument("config", help="md config (TOML)")
    p.add_argument("--out", required=True, help="deck directory (created)")
    p.add_argument("--model-path", action="store_true",
                   help="name the model by its absolute path instead of copying it into DIR")
    p.add_argument("--run", action="store_true", help="run the deck with LAMMPS afterwards (serial)")
    p.add_argument("--lmp", default=None, help="LAMMPS executable for --run (default: see docs/lammps.md)")
    p.add_argument("--run-threads", type=int, default=1, help="OpenMP/torch threads of the LAMMPS run")
    p.set_defaults(func=_run)
