"""``dpqtb paper``: run (resumably) or collect every stage and write DIR/report.html (docs/paper.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

#: the stages of each scale: (name, sweep file under examples/, --set overrides)
STAGES = {
    "small": (("verdict", "verdict_lah10_small.toml", {}), ("pt", "pt_lah10_small.toml", {})),
    "full": (("verdict", "verdict_lah10_full.toml", {"system.device": "cuda"}),
             ("pt", "sweep_lah10.toml", {"system.supercell": [10, 10, 10], "system.device": "cuda"})),
}
SWEEPS_DIR = "sweeps"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "paper", help="run or collect the paper's stages and the verdict; write DIR/report.html",
        description="Run the verdict sweep and the P-T sweep of a scale through the sweep engine "
                    "(resumable: finished points are skipped) into DIR/sweeps/, then collect them with the "
                    "committed validation data into DIR/verdict.json and DIR/report.html (one self-contained "
                    "file). --from DIR only collects. See docs/paper.md.")
    p.add_argument("--scale", choices=tuple(STAGES), default="small",
                   help="small (default): 44-atom cells a 2-core machine finishes in hours; full: the paper's "
                        "44,000 atoms, needs a GPU")
    p.add_argument("--out", metavar="DIR", help="output folder (default: paper_<scale>, or the --from folder)")
    p.add_argument("--from", dest="from_dir", metavar="DIR",
                   help="collect only: a sweep directory or a folder of them (no MD is run)")
    p.add_argument("--stage", action="append", choices=("verdict", "pt"), help="run only these stages (repeatable)")
    p.add_argument("--workers", type=int, metavar="N", help="LocalCluster workers (default: one per core)")
    p.add_argument("--serial", action="store_true", help="run the points one after the other in this process")
    p.add_argument("--scheduler-file", metavar="FILE", help="run on the Dask cluster of this scheduler file")
    p.add_argument("--validation", metavar="FILE", help="model validation report (default: "
                                                        "docs/validation_builtin/report.json of the checkout)")
    p.add_argument("--zero-point", metavar="FILE", help="zero-point expansion file (default: "
                                                        "data/npt/zero_point_expansion.json of the checkout)")
    p.add_argument("--list", action="store_true", help="print the stages and their number of points and exit")
    p.set_defaults(func=run)


def _sweep_file(name: str) -> Path:
    from dpqtb import InputError
    from dpqtb.workflows.paper.collect import REPO

    path = Path(name) if Path(name).is_absolute() else REPO / "examples" / name
    if not path.is_file():
        raise InputError(f"sweep file examples/{name} not found: dpqtb paper runs from a source checkout "
                         "(or collect existing runs with --from DIR)")
    return path


def run(args) -> int:
    from dpqtb import CalculationError, InputError
    from dpqtb.workflows.paper import collect as C

    if args.workers is not None and args.workers < 1:
        raise InputError("--workers must be >= 1")
    validation = Path(args.validation) if args.validation else C.DEFAULT_VALIDATION
    zero_point = Path(args.zero_point) if args.zero_point else C.DEFAULT_ZERO_POINT
    for opt, path in (("--validation", args.validation), ("--zero-point", args.zero_point)):
        if path and not Path(path).is_file():
            raise InputError(f"{opt} {path}: no such file")
    if args.from_dir:
        if args.stage or args.list:
            raise InputError("--from only collects: --stage and --list need a run (leave out --from)")
        out = Path(args.out) if args.out else Path(args.from_dir)
        verdict = C.collect(args.from_dir, out, validation=validation, zero_point=zero_point)
        print(f"{len(verdict['runs'])} runs collected; {out / C.REPORT_HTML}, {out / C.VERDICT_JSON}")
        print(verdict["verdict"])
        return 0
    from dpqtb.workflows.sweep import run_sweep
    from dpqtb.workflows.sweep_spec import load_sweep

    if args.scale == "full" and not args.list:
        import torch

        if not torch.cuda.is_available():
            raise InputError("--scale full runs 44,000-atom cells on a GPU and none is visible here "
                             "(torch.cuda.is_available() is False); run it on a GPU machine, or collect its "
                             "runs with --from DIR")
    stages = [s for s in STAGES[args.scale] if not args.stage or s[0] in args.stage]
    sweeps = [(name, load_sweep(_sweep_file(f), overrides=dict(sets))) for name, f, sets in stages]
    if args.list:
        for (name, f, _), (_, sw) in zip(stages, sweeps):
            print(f"{name}: examples/{f}, {len(sw.points)} points")
        return 0
    out = Path(args.out) if args.out else Path(f"paper_{args.scale}")
    failed = 0
    for name, sw in sweeps:
        res = run_sweep(sw, out / SWEEPS_DIR / name, workers=args.workers, scheduler_file=args.scheduler_file,
                        serial=args.serial)
        print(f"stage {name}: {res['n_points']} points, {res['skipped']} finished before, {res['done']} run now, "
              f"{res['failed']} failed")
        failed += res["failed"]
    verdict = C.collect(out / SWEEPS_DIR, out, validation=validation, zero_point=zero_point)
    print(f"{out / C.REPORT_HTML}\n{verdict['verdict']}")
    if failed:
        raise CalculationError(f"{failed} point(s) failed (see points.csv of each stage); the report covers the others")
    return 0
