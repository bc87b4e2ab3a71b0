"""``dpqtb label`` (DFT labelling with a job store) and ``dpqtb dataset`` (export, summary)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from dpqtb import DpqtbError, InputError
from dpqtb.dft.mpi import gpaw_env, mpi_prefix
from dpqtb.dft.lock import lock_holder


def _settings(args):
    from dpqtb.dft.settings import CHEAP, PRODUCTION

    base = CHEAP if args.cheap else PRODUCTION
    kw = {}
    if args.ecut_eV is not None:
        kw["ecut_eV"] = args.ecut_eV
    if args.kspacing_invA is not None:
        kw["kspacing_invA"] = args.kspacing_invA
    if args.smearing_eV is not None:
        kw["smearing_eV"] = args.smearing_eV
    return base.replace(**kw) if kw else base


def read_structures(path: str):
    """All structures in ``path`` (any ASE-readable format), validated for labelling."""
    from ase.io import read

    from dpqtb.dft.store import validate_atoms

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: no such file")
    if p.stat().st_size == 0 or not p.read_bytes().strip():
        raise InputError(f"{path}: empty file")
    try:
        images = read(str(p), index=":")
    except Exception as exc:  # noqa: BLE001 - ASE raises many kinds
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: cannot read structures ({msg})") from None
    if not images:
        raise InputError(f"{path}: no structures in file")
    for n, atoms in enumerate(images):
        validate_atoms(atoms, where=f"{path} structure {n}")
    return images


def runner_command(store: str, np_: int, nice: int, max_jobs: int | None,
                   smallest_first: bool = False, max_atoms: int | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "dpqtb.dft.runner", store]
    if max_atoms is not None:
        cmd += ["--max-atoms", str(max_atoms)]
    if max_jobs is not None:
        cmd += ["--max-jobs", str(max_jobs)]
    if smallest_first:
        cmd.append("--smallest-first")
    if np_ > 1:
        cmd = mpi_prefix(np_) + cmd
    if nice > 0:
        cmd = ["nice", "-n", str(nice)] + cmd
    return cmd


def cmd_label(args) -> int:
    from dpqtb.dft.store import JobStore

    if args.max_atoms is not None and args.max_atoms < 1:
        raise InputError(f"--max-atoms must be >= 1, got {args.max_atoms}")
    if args.stop:
        return _stop_runner(args)
    store = JobStore(args.store)
    settings = _settings(args)
    added = 0
    for path in args.inputs:
        for atoms in read_structures(path):
            store.add(atoms, settings, {"source": os.path.basename(path)})
            added += 1
    if args.retire_kind:
        retired = _retire_kind(store, args.retire_kind, args.reason)
        print(f"{retired} pending '{args.retire_kind}' job(s) of {args.store} retired")
    if args.plan:
        from dpqtb.structures.sampling import ROUND0_KINDS, build_sample, round0_plan

        calc, relax_meta = None, {}
        if args.plan == "pair-exchange":
            calc, relax_meta = _relax_calculator(args.relax_model)
        lo, hi = args.p_range_GPa
        if not 0 < lo < hi:
            raise InputError(f"bad pressure range {lo}–{hi} GPa")
        tlo, thi = args.t_range_K
        if not 0 <= tlo <= thi:
            raise InputError(f"bad temperature range {tlo}–{thi} K")
        kinds = {"round0": ROUND0_KINDS, "pair-exchange": ("pair-exchange",)}[args.plan]
        specs = round0_plan(n_small=args.n_small, n_large=args.n_large, p_range=(lo, hi),
                            t_range=(tlo, thi), seed=args.plan_seed, kinds=kinds)
        for order, spec in enumerate(specs):
            atoms, meta = build_sample(spec, calc=calc)
            meta.update(relax_meta)
            meta["order"] = order
            meta["round"] = 0
            store.add(atoms, settings, meta)
            added += 1
    done, total, failed = store.progress()
    if added:
        print(f"{added} configuration(s) registered in {args.store}")
    n_retired = len(store.retired_ids() - store.done_ids())
    from dpqtb.dft.runner import skipped_failures

    n_once = len(store.failed_ids() - skipped_failures(store) - store.done_ids() - store.retired_ids())
    print(f"{args.store}: {done}/{total} labelled, {failed} failed"
          + (f" ({n_once} only interrupted once: retried as usual)" if n_once else "")
          + (f", {n_retired} retired" if n_retired else ""))
    if args.status:
        print(_eta(store))
        pid = lock_holder(store.root)
        print(f"labelling process: {pid}" if pid else "no labelling process running")
    if args.status or args.no_run or args.retire_kind:  # retiring edits the plan, never labels
        return 0
    if total == 0:
        raise InputError(f"{args.store}: nothing to label (give input files or --plan round0)")
    if done == total:
        return 0
    running = lock_holder(store.root)
    if running:
        raise InputError(f"{args.store} is already being labelled by process {running} "
                         f"(see {Path(args.store) / 'runner.log'})")
    _check_can_run(args.np)
    cmd = runner_command(args.store, args.np, args.nice, args.max_jobs, args.smallest_first,
                         args.max_atoms)
    if args.background:
        log = Path(args.store) / "runner.log"
        with open(log, "a") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=gpaw_env(),
                                    start_new_session=True)
        print(f"labelling in the background (pid {proc.pid}); log: {log}; "
              f"progress: dpqtb label --store {shlex.quote(args.store)} --status")
        return 0
    return _run_with_progress(cmd, store, total - done if args.max_jobs is None
                              else min(args.max_jobs, total - done))


def _stop_runner(args) -> int:
    """``--stop``: ask the store's labelling process to end after the frame in flight (SIGUSR1)."""
    if args.inputs or args.plan or args.retire_kind or args.status:
        raise InputError("--stop takes no input files, --plan, --retire-kind or --status")
    if not (Path(args.store) / "jobs").is_dir():
        raise InputError(f"no job store at {args.store}")
    pid = lock_holder(args.store)
    if pid is None:
        print(f"{args.store}: no labelling process running")
        return 0
    if pid < 0:
        raise InputError(f"{args.store}: its labelling process is starting; try again in a second")
    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        print(f"{args.store}: no labelling process running")
        return 0
    print(f"{args.store}: process {pid} stops after its frame in flight is written "
          f"(dpqtb label --store {shlex.quote(args.store)} --status)")
    return 0


def _retire_kind(store, kind: str, reason: str | None) -> int:
    """Retire every pending job of ``store`` whose ``meta['kind']`` is ``kind``."""
    if not reason or not reason.strip():
        raise InputError("--retire-kind needs --reason TEXT (recorded with every retired job)")
    jobs = store.pending()
    kinds = {j: store.job_record(j).get("meta", {}).get("kind") for j in jobs}
    known = sorted({k for k in kinds.values() if k})
    sel = [j for j in jobs if kinds[j] == kind]
    if not sel:
        raise InputError(f"{store.root}: no pending job of kind {kind!r} "
                         f"(pending kinds: {', '.join(known) or 'none'})")
    for j in sel:
        store.retire(j, reason)
    return len(sel)


def _relax_calculator(spec: str):
    """ASE calculator of the Deep Potential ``spec`` (builtin:NAME or a path) and its provenance."""
    import hashlib

    from dpqtb.potential.builtin import resolve

    path = resolve(spec)
    if not path.is_file():
        raise InputError(f"--relax-model {spec}: no such model file")
    try:
        from deepmd.calculator import DP
    except ImportError as exc:  # pragma: no cover - deepmd-kit is a dependency
        raise InputError(f"--relax-model needs DeePMD-kit ({exc})") from None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return DP(str(path)), {"relax_model": str(spec), "relax_model_sha256": digest}


def _check_can_run(np_: int) -> None:
    import importlib.util
    import shutil

    if np_ < 1:
        raise InputError(f"--np must be at least 1, got {np_}")
    if importlib.util.find_spec("gpaw") is None:
        raise InputError("GPAW is not installed: run scripts/install_gpaw.sh")
    if np_ > 1 and shutil.which("mpiexec") is None:
        raise InputError("mpiexec not found: run scripts/install_gpaw.sh or use --np 1")


def _eta(store) -> str:
    """Mean wall time per cell size of the labelled frames and the time left at that pace."""
    import numpy as np

    walls: dict[int, list[float]] = {}
    for fr in store.frames():
        walls.setdefault(len(fr["symbols"]), []).append(fr["provenance"]["wall_s"])
    if not walls:
        return "no frames yet: no time estimate"
    left: dict[int, int] = {}
    for jid in store.pending():
        n = len(store.job_record(jid)["symbols"])
        left[n] = left.get(n, 0) + 1
    mean = {n: float(np.mean(w)) for n, w in walls.items()}
    fallback = max(mean.values())
    secs = sum(c * mean.get(n, fallback * (n / max(mean)) ** 2) for n, c in left.items())
    per = ", ".join(f"{n} atoms {m:.0f} s" for n, m in sorted(mean.items()))
    return f"mean wall time per frame: {per}; estimated time left: {secs / 3600:.1f} h"


def _run_with_progress(cmd, store, n_todo: int) -> int:
    from tqdm import tqdm

    start = len(store.done_ids())
    log = store.root / "runner.log"
    with open(log, "a") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=gpaw_env())
        bar = tqdm(total=n_todo, unit="config", desc="labelling", file=sys.stderr)
        try:
            while True:
                rc = proc.poll()
                n = len(store.done_ids()) - start
                bar.update(n - bar.n)
                if rc is not None:
                    break
                time.sleep(1.0)
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            raise
        finally:
            bar.close()
    done, total, failed = store.progress()
    print(f"{store.root}: {done}/{total} labelled, {failed} failed (log: {log})")
    if rc != 0:
        tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
        raise InputError(f"labelling stopped with status {rc}: {' '.join(tail)}")
    return 0


def cmd_dataset(args) -> int:
    from dpqtb.data.export import (export_deepmd_npy, export_extxyz, load_frames,
                                   summary_table)

    for opt, path, is_dir in (("--out", args.out, False), ("--extxyz", args.extxyz, False),
                              ("--deepmd-npy", args.deepmd_npy, True)):
        if path is None:
            continue
        p = Path(path)
        if is_dir and p.exists() and not p.is_dir():
            raise InputError(f"{opt} {path} is a file, not a directory")
        if not is_dir and p.is_dir():
            raise InputError(f"{opt} {path} is a directory, not a file")
        if not p.parent.is_dir():
            raise InputError(f"{opt} {path}: directory {p.parent} does not exist")
    frames = load_frames(args.store)
    if args.action == "summary":
        text = summary_table(frames)
        if args.out:
            out = Path(args.out)
            start, end = "<!-- summary:start -->", "<!-- summary:end -->"
            old = out.read_text() if out.exists() else ""
            if start in old and end in old:  # replace the generated block, keep the prose
                text = (old[:old.index(start) + len(start)] + "\n" + text
                        + old[old.index(end):])
            out.write_text(text)
            print(f"summary of {len(frames)} frames written to {args.out}")
        else:
            print(text, end="")
        return 0
    if not (args.deepmd_npy or args.extxyz):
        raise InputError("dataset export needs --deepmd-npy DIR and/or --extxyz FILE")
    if args.deepmd_npy:
        n = export_deepmd_npy(frames, args.deepmd_npy)
        print(f"{n} frames written to {args.deepmd_npy} (deepmd/npy, type map [La, H])")
    if args.extxyz:
        n = export_extxyz(frames, args.extxyz)
        print(f"{n} frames written to {args.extxyz}")
    return 0


def cmd_structure(args) -> int:
    from ase.io import write

    from dpqtb.structures.eos import load_eos
    from dpqtb.structures.lah10 import X32F_DEFAULT, fm3m, lowered, supercell

    if (args.pressure_GPa is None) == (args.a_A is None):
        raise InputError("give exactly one of --pressure-GPa and --a-A")
    if args.a_A is not None:
        a, x = args.a_A, X32F_DEFAULT
    else:
        eos = load_eos()
        a = eos.lattice_constant(args.pressure_GPa)
        x = eos.x32f(a)
    atoms = fm3m(a, args.cell, x=x)
    if args.phase != "Fm-3m":
        atoms = lowered(atoms, args.phase, amplitude=args.amplitude_A, rng=args.seed)
    atoms = supercell(atoms, args.supercell)
    try:
        write(args.out, atoms)
    except Exception as exc:  # noqa: BLE001 - ASE raises many kinds for unknown formats
        raise InputError(f"cannot write {args.out}: {exc}") from None
    print(f"{args.phase} LaH10, a = {a:.4f} Å, x(32f) = {x:.5f}, {len(atoms)} atoms -> {args.out}")
    return 0


def register(subparsers) -> None:
    s = subparsers.add_parser(
        "structure", help="build LaH10 cells (Fm-3m, C2, P-1, R-3m; supercells)",
        description="Build Fm-3m LaH10 at a pressure (stored DFT EOS) or lattice constant, "
        "optionally symmetry-lowered to C2, P-1 or R-3m, and repeated into a supercell "
        "(10 = 44,000 atoms for the conventional cell). Any ASE output format.")
    s.add_argument("--phase", default="Fm-3m", choices=["Fm-3m", "C2", "P-1", "R-3m"])
    s.add_argument("--pressure-GPa", type=float, default=None)
    s.add_argument("--a-A", type=float, default=None, help="cubic lattice constant (Å)")
    s.add_argument("--cell", default="conventional", choices=["primitive", "conventional"])
    s.add_argument("--supercell", type=int, default=1, help="n×n×n repetition")
    s.add_argument("--amplitude-A", type=float, default=0.08,
                   help="RMS H displacement of the symmetry lowering (Å)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="output file (format from the extension)")
    s.set_defaults(func=cmd_structure)

    p = subparsers.add_parser(
        "label", help="label configurations with GPAW (resumable job store)",
        description="Register configurations (files and/or the round-0 sampling plan) in a job "
        "store and label the pending ones with GPAW under MPI, with a progress bar. Re-running "
        "resumes; every configuration is labelled once. Units: eV, Å, GPa.")
    p.add_argument("inputs", nargs="*", help="structure files (any ASE format) to add")
    p.add_argument("--store", required=True, help="job store directory (e.g. data/labels/round0)")
    p.add_argument("--plan", choices=["round0", "pair-exchange"],
                   help="add a sampling plan: round0 (thermal, strained, rigid pair rotations) or "
                        "pair-exchange (pair rotations with the cage relaxed by --relax-model)")
    p.add_argument("--relax-model", default="builtin:lah10",
                   help="Deep Potential that relaxes the cage in --plan pair-exchange "
                        "(default builtin:lah10; the labels are DFT regardless)")
    p.add_argument("--retire-kind", default=None, metavar="KIND",
                   help="take every pending job of this kind (meta 'kind') off the plan; "
                        "labelled frames are kept; does not start labelling")
    p.add_argument("--reason", default=None, help="why jobs are retired (stored with each)")
    p.add_argument("--n-small", type=int, default=260, help="11-atom cells in the plan")
    p.add_argument("--n-large", type=int, default=180, help="44-atom cells in the plan")
    p.add_argument("--p-range-GPa", type=float, nargs=2, default=(100.0, 350.0),
                   metavar=("MIN", "MAX"), help="target pressures of the plan (default 100 350)")
    p.add_argument("--t-range-K", type=float, nargs=2, default=(0.0, 600.0),
                   metavar=("MIN", "MAX"), help="temperatures of the plan (default 0 600)")
    p.add_argument("--plan-seed", type=int, default=2026, help="seed of the plan (default 2026)")
    p.add_argument("--cheap", action="store_true", help="cheap unconverged settings (tests)")
    p.add_argument("--ecut-eV", type=float, default=None)
    p.add_argument("--kspacing-invA", type=float, default=None)
    p.add_argument("--smearing-eV", type=float, default=None)
    p.add_argument("--np", type=int, default=2, help="MPI ranks (default 2)")
    p.add_argument("--nice", type=int, default=19, help="nice level of the DFT run (default 19)")
    p.add_argument("--max-jobs", type=int, default=None, help="stop after this many frames")
    p.add_argument("--smallest-first", action="store_true",
                   help="label the cells with the fewest atoms first (most frames per hour)")
    p.add_argument("--max-atoms", type=int, default=None,
                   help="label only the cells with at most this many atoms (the rest stay pending)")
    p.add_argument("--no-run", action="store_true", help="only register configurations")
    p.add_argument("--status", action="store_true", help="print progress and exit")
    p.add_argument("--stop", action="store_true",
                   help="ask the store's labelling process to end once its frame in flight is "
                        "written (nothing is lost) and exit")
    p.add_argument("--background", action="store_true",
                   help="run detached (log STORE/runner.log) and return")
    p.set_defaults(func=cmd_label)

    d = subparsers.add_parser("dataset", help="export or summarise labelled frames",
                              description="Export labelled frames to deepmd/npy (dpdata) and "
                              "extxyz, or print the summary table.")
    d.add_argument("action", choices=["export", "summary"])
    d.add_argument("--store", nargs="+", required=True, help="job store directories")
    d.add_argument("--deepmd-npy", default=None, help="output directory (deepmd/npy)")
    d.add_argument("--extxyz", default=None, help="output extxyz file")
    d.add_argument("--out", default=None, help="write the summary (markdown) here")
    d.set_defaults(func=cmd_dataset)


def main(argv=None) -> int:
    """``python -m dpqtb.dft.cli label|dataset ...`` (same as the ``dpqtb`` sub-commands)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dpqtb.dft.cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DpqtbError as exc:
        print(f"dpqtb: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
