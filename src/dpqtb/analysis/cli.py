"""``dpqtb analyze`` sub-command."""

from __future__ import annotations

import json


def _run(args) -> int:
    from dpqtb.analysis.pipeline import analyze

    summary = analyze(
        args.run_dir, args.out, max_lag_fs=args.max_lag_fs, origin_every_fs=args.origin_every_fs,
        msd_prime_every=args.msd_prime_every, rdf_every=args.rdf_every, rdf_r_max_A=args.rdf_rmax_A,
        rdf_bin_A=args.rdf_bin_A, vdos_max_lag_fs=args.vdos_max_lag_fs, angle_every=args.angle_every,
        compare=args.compare, e_ref_eV=args.e_ref_eV, start=args.start, stop=args.stop,
        stride=args.stride, plots=not args.no_plots, reference=args.reference_structure,
        frame_dt_fs=args.frame_dt_fs)
    print(json.dumps({k: summary[k] for k in ("n_frames", "diffusion") if k in summary}, indent=1, default=float))
    return 0


def _e_ref(text: str):
    import argparse
    import math

    if text == "first":
        return text
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number (eV) or 'first'") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError("must be a finite number (eV) or 'first'")
    return v


def _positive_float(text: str) -> float:
    """A finite number > 0 (lags, spacings, bin widths; nan, inf, 0 and negatives are refused)."""
    import argparse
    import math

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return v


def _positive_int(text: str) -> int:
    import argparse

    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return v


def _nonneg_int(text: str) -> int:
    import argparse

    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return v


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "analyze", help="trajectory analysis: MSD/MSD′, diffusion, pRDF, VDOS/T_zero, cage angle, exchanges",
        description="Analyse a `dpqtb md` run directory, a LAMMPS run of `dpqtb lammps` (dump + log), or any "
        "ASE-readable trajectory file or LAMMPS text dump, and "
        "write summary.json, CSV tables and PNG plots (default: RUN_DIR/analysis).")
    p.add_argument("run_dir", help="run directory (trajectory.extxyz, or a LAMMPS dump with its sidecar) or "
                   "trajectory file")
    p.add_argument("--out", default=None, help="output directory")
    p.add_argument("--start", type=_nonneg_int, default=0, help="first frame index")
    p.add_argument("--stop", type=int, default=None, help="stop before this frame index")
    p.add_argument("--stride", type=_positive_int, default=1, help="use every n-th frame")
    p.add_argument("--max-lag-fs", type=_positive_float, default=None, help="longest MSD lag (fs); default half the run")
    p.add_argument("--origin-every-fs", type=_positive_float, default=None, help="MSD time-origin spacing (fs)")
    p.add_argument("--msd-prime-every", type=_positive_int, default=1, help="MSD′ every n frames")
    p.add_argument("--rdf-every", type=_positive_int, default=1, help="RDF every n frames")
    p.add_argument("--rdf-rmax-A", type=_positive_float, default=6.0, help="RDF range (Å)")
    p.add_argument("--rdf-bin-A", type=_positive_float, default=0.02, help="RDF bin width (Å)")
    p.add_argument("--vdos-max-lag-fs", type=_positive_float, default=None, help="VACF window (fs)")
    p.add_argument("--angle-every", type=_positive_int, default=1, help="cage angle every n frames")
    p.add_argument("--compare", default=None, help="second run directory to overlay in rdf.png")
    p.add_argument("--e-ref-eV", type=_e_ref, default=0.0,
                   help="energy zero for E/(3N k_B) (eV), or 'first': the potential energy of the run's "
                   "starting structure (the static-lattice energy when it starts from the ideal crystal, "
                   "as builtin structures do)")
    p.add_argument("--reference-structure", default=None,
                   help="ideal structure (ASE-readable, same atom order) defining the proton sites; "
                   "default: the first frame")
    p.add_argument("--frame-dt-fs", type=_positive_float, default=None,
                   help="time between stored frames (fs) for files without time_fs")
    p.add_argument("--no-plots", action="store_true", help="skip PNG output")
    p.set_defaults(func=_run)
