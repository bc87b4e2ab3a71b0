"""``dpqtb train`` (DeePMD-kit ensemble training), ``dpqtb validate`` (validation report),
``dpqtb deviation`` and ``dpqtb explore`` (concurrent learning).  ``dpqtb models`` is in
:mod:`dpqtb.potential.cli`."""

from __future__ import annotations

import sys

from dpqtb import InputError
from dpqtb.train.dataset import TEST_MODULUS_DEFAULT


def _members(text: str) -> list[int]:
    import argparse

    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("must be comma-separated member indices, e.g. 0,2") from None
    if not vals:
        raise argparse.ArgumentTypeError("no member index given")
    return vals


def cmd_train(args) -> int:
    from dpqtb.train.runner import train

    try:
        summary = train(args.config, args.out, members=args.members, reuse_data=args.reuse_data,
                        threads=args.threads, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"dpqtb train: interrupted; run the same command again to resume from the last "
              f"checkpoint in {args.out}", file=sys.stderr)
        raise
    print(f"ensemble in {args.out}: " + ", ".join(
        f"model_{k}: {m['model']}" for k, m in summary["members"].items()))
    return 0


def cmd_validate(args) -> int:
    from dpqtb.train.validate import validate

    validate(_model_arg(args.model), args.data, args.out, structure=not args.frames_only, plots=not args.no_plots,
             compare=[_model_arg(m) for m in args.compare],
             test_modulus=None if args.all_frames else args.test_modulus, phases=args.phases,
             quantum_data=args.quantum_data, phases_dense=args.phases_dense)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a DeePMD-kit ensemble on the labelled data (resumable)",
        description="Split the labelled frames (held-out test: int(id,16) % test_modulus == 0), "
        "export deepmd/npy, choose sel from neighbour statistics, write each ensemble member's "
        "DeePMD-kit input and run `dp --pt train`, `freeze` and `compress` (members in sequence). "
        "Re-running resumes an interrupted member from its latest checkpoint. See docs/training.md.")
    p.add_argument("config", help="training config (TOML), e.g. examples/train_lah10.toml")
    p.add_argument("--out", required=True, help="output directory (data, model_K/, ensemble.json)")
    p.add_argument("--members", type=_members, default=None,
                   help="train only these members (comma-separated, 0-based); default all")
    p.add_argument("--reuse-data", action="store_true",
                   help="finish with the data already exported to OUT even if the stores changed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    v = subparsers.add_parser(
        "validate", help="validation report of a Deep Potential: held-out RMSE, EOS, Table I",
        description="Energy (meV/atom), force (eV/Å) and virial (meV/atom) RMSE on the held-out test "
        "split with parity plots; P(V) of Fm-3m LaH10 DP vs DFT over 100–350 GPa; the paper's Table I "
        "distances at 300 and 200 GPa. Writes report.md, report.json and PNGs.")
    v.add_argument("--model", required=True,
                   help="frozen or compressed DeePMD-kit model (*.pth) or builtin:NAME (a shipped model)")
    v.add_argument("--data", required=True, nargs="+",
                   help="`dpqtb train` output dir, a dataset dir with manifest.json (uses its test/ "
                   "split), any folder of deepmd/npy systems, or one or more DFT job stores (their "
                   "held-out split: int(id,16) %% TEST_MODULUS == 0)")
    split = v.add_mutually_exclusive_group()
    split.add_argument("--test-modulus", type=int, default=TEST_MODULUS_DEFAULT,
                       help="split rule for job stores: held out if int(frame_id, 16) %% N == 0 (default 10, "
                       "as dpqtb train)")
    split.add_argument("--all-frames", action="store_true",
                       help="job stores: every labelled frame is a test frame (stores the model never "
                       "trained on; refused when its recorded training frames are among them)")
    v.add_argument("--out", required=True, help="report directory")
    v.add_argument("--compare", nargs="+", default=[], metavar="MODEL",
                   help="other models (*.pth or builtin:NAME) to compare with --model on the same held-out "
                   "frames: RMSE ratios with paired bootstrap 95 %% intervals")
    v.add_argument("--frames-only", action="store_true", help="skip the EOS and Table I (non-LaH10 data)")
    v.add_argument("--phases", default=None, metavar="DIR",
                   help="folder of DFT phase relaxations (python -m dpqtb.dft.relax records, e.g. "
                   "data/phases): add ΔH of the distorted phases vs Fm-3m, DP vs DFT at the DFT minima (meV/atom)")
    v.add_argument("--phases-dense", default=None, metavar="STORE",
                   help="job store of converged-k single points of the --phases structures (e.g. "
                   "data/labels/kdense_0.14): their ΔH beside the label-rule ones, the acceptance's targets")
    v.add_argument("--quantum-data", nargs="+", default=None, metavar="STORE",
                   help="DFT job stores of QTB-MD / path-integral bead frames the model never trained on (e.g. "
                   "data/labels/heldout_quantum): every labelled frame is tested, errors per sample kind")
    v.add_argument("--no-plots", action="store_true", help="skip PNG output")
    v.set_defaults(func=cmd_validate)
    register_deviation(subparsers)
    register_explore(subparsers)


def _model_arg(spec: str) -> str:
    """A --model(s) argument: 'builtin:NAME' becomes the shipped file's path, relative to the working
    directory when it lies below it (for the written reports); any other value is kept as given."""
    import os

    from dpqtb.potential.builtin import PREFIX, resolve

    if not str(spec).startswith(PREFIX):
        return spec
    path = str(resolve(spec))
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def cmd_deviation(args) -> int:
    from dpqtb.train.deviation import check_against_labels, run_deviation

    args.models = [_model_arg(m) for m in args.models]
    if (args.trajectory is None) == (args.labelled_store is None):
        raise InputError("give exactly one of --trajectory (select candidates) and --labelled-store "
                         "(check ε against DFT)")
    if args.labelled_store is not None:
        s = check_against_labels(args.models, args.labelled_store, args.out, device=args.device)
        rho = s.get("spearman_predicted_devi_vs_max_err")
        rho = float("nan") if rho is None else rho
        print(f"{s['frames']} labelled frames: RMS force error {s['rms_err_f_eV_per_A']:.3f} eV/Å, median "
              f"max error {s['max_err_f_quantiles_eV_per_A']['0.5']:.3f} eV/Å; Spearman(ε, max error) "
              f"{rho:.2f}; details in {args.out}")
        return 0
    if len(args.models) < 2:
        raise InputError("model deviation needs an ensemble of at least 2 models (--models)")
    s = run_deviation(args.models, args.trajectory, args.out, args.trust_lo_eV_per_A, args.trust_hi_eV_per_A,
                      max_select=args.max_select, every=args.every, store=args.store, device=args.device,
                      seed=args.seed)
    print(f"{s['frames']} frames: accurate {s['accurate']}, candidates {s['candidate']}, failed {s['failed']}; "
          f"selected {s['selected']}" + (f", queued in {args.store}" if args.store else "")
          + f"; details in {args.out}")
    return 0


def register_deviation(subparsers) -> None:
    d = subparsers.add_parser(
        "deviation", help="model deviation of an ensemble along a trajectory; select frames to label",
        description="Max force deviation (eV/Å) of a Deep Potential ensemble on every frame of an "
        "exploration trajectory (DP-GEN definition); frames inside the trust window are candidates, "
        "optionally queued in a DFT job store for `dpqtb label`.")
    d.add_argument("--models", nargs="+", required=True,
                   help="frozen ensemble members (*.pth or builtin:NAME), at least 2 with --trajectory")
    d.add_argument("--trajectory", default=None, help="extxyz (or any ASE-readable) trajectory")
    d.add_argument("--labelled-store", default=None,
                   help="instead of a trajectory: a DFT job store of labelled candidates; compare the "
                   "ε their exploration predicted with the models' true force error against DFT")
    d.add_argument("--out", required=True, help="output directory (model_devi.csv, deviation.json; or "
                   "deviation_check.{csv,json,png})")
    d.add_argument("--trust-lo-eV-per-A", type=float, default=0.05)
    d.add_argument("--trust-hi-eV-per-A", type=float, default=0.25)
    d.add_argument("--max-select", type=int, default=None, help="at most this many candidates (random)")
    d.add_argument("--every", type=int, default=1, help="use every N-th frame")
    d.add_argument("--store", default=None, help="queue the selected frames in this DFT job store")
    d.add_argument("--device", default="cpu")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_deviation)


def cmd_explore(args) -> int:
    from dpqtb.train.explore import explore

    explore(args.config, args.out, device=args.device, progress=not args.no_progress)
    print(f"details in {args.out}/explore.md and {args.out}/explore.json")
    return 0


def register_explore(subparsers) -> None:
    e = subparsers.add_parser(
        "explore", help="concurrent-learning exploration: ensemble MD over a P–T grid, model deviation, "
        "queue candidates for DFT",
        description="Run Langevin/QTB MD of LaH10 with one member of a Deep Potential ensemble at every "
        "grid point (phase × pressure × temperature × thermostat; resumable, finished runs are kept), "
        "evaluate the ensemble's max force deviation (eV/Å) on every sampled frame, and queue the "
        "candidates inside the trust window in a DFT job store for `dpqtb label`. "
        "See examples/explore_lah10.toml and docs/concurrent_learning.md.")
    e.add_argument("config", help="exploration config (TOML), e.g. examples/explore_lah10.toml")
    e.add_argument("--out", required=True, help="output directory (runs/, explore.json, explore.md)")
    e.add_argument("--device", default="cpu", help="torch device of the deviation evaluation (cpu, cuda)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_explore)
