"""``dpqtb label``: DFT labelling with a job store.

The labelling itself runs in a child process (:mod:`dpqtb.dft.runner`, under MPI) that this
command starts and watches through :mod:`dpqtb.dft.supervise`.  ``dpqtb dataset`` (export,
summary) is in :mod:`dpqtb.data.cli`, ``dpqtb structure`` in :mod:`dpqtb.structures.cli`.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
from pathlib import Path

from dpqtb import InputError
from dpqtb.dft import supervise
from dpqtb.dft.lock import lock_holder
from dpqtb.entry import entry_point


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


def frame_index(text: str):
    """An ASE index (``":"``, ``"-1"``, ``"200::25"``) checked here, so that a typo is a one-line error."""
    from ase.io.formats import string2index

    t = text.strip()
    parts = t.split(":")
    try:
        if len(parts) > 3 or not all(x.strip().lstrip("-").isdigit() for x in parts if x.strip()) \
                or (len(parts) == 3 and parts[2].strip() and int(parts[2]) == 0) or not t:
            raise ValueError
        return string2index(t)
    except ValueError:
        raise InputError(f"--index {text!r} is not an ASE frame index (N, START:STOP:STEP, e.g. '200::25')") from None


def frame_meta(atoms, path: str, index: int) -> dict:
    """Provenance of a frame read from a file: the file's name, its position there, and the scalar values of
    its comment line (step, time_fs, bead, … of a dpqtb trajectory) under ``frame_info``."""
    info = {k: (v.item() if getattr(v, "ndim", None) == 0 else v) for k, v in atoms.info.items()}
    info = {k: v for k, v in info.items()
            if isinstance(v, (bool, int, str)) or (isinstance(v, float) and math.isfinite(v))}
    meta = {"source": os.path.basename(path), "index_in_source": index}
    if info:
        meta["frame_info"] = info
    return meta


def read_structures(path: str, index: str = ":") -> list[tuple[int, object]]:
    """(position in the file, Atoms) of the structures ``index`` (ASE's index syntax, as Python slicing)
    of ``path`` (any ASE-readable format), validated for labelling."""
    from ase.io import read

    from dpqtb.dft.store import validate_atoms

    sel = frame_index(index)
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
    positions = list(range(len(images)))
    if isinstance(sel, int):
        if not -len(images) <= sel < len(images):
            raise InputError(f"{path}: --index {index} is outside its {len(images)} structures")
        positions = [positions[sel]]
    else:
        positions = positions[sel]
    if not positions:
        raise InputError(f"{path}: --index {index} selects none of its {len(images)} structures")
    for n in positions:
        validate_atoms(images[n], where=f"{path} structure {n}")
    return [(n, images[n]) for n in positions]


def cmd_label(args) -> int:
    from dpqtb.dft.store import JobStore

    if args.max_atoms is not None and args.max_atoms < 1:
        raise InputError(f"--max-atoms must be >= 1, got {args.max_atoms}")
    if args.stop:
        return _stop_runner(args)
    store = JobStore(args.store)
    settings = _settings(args)
    added, before, extra, jids = 0, len(store.job_ids()), _meta_pairs(args.meta), []
    for path in args.inputs:
        for n, atoms in read_structures(path, args.index):
            meta = frame_meta(atoms, path, n)
            if args.kind:
                meta["kind"] = args.kind
            jids.append(store.add(atoms, settings, {**meta, **extra}))
            added += 1
    if extra:  # frames registered before: the keys they lack (never overwritten; every one checked first)
        for jid in jids:
            store.add_meta(jid, extra, check_only=True)
        for jid in jids:
            store.add_meta(jid, extra)
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
        new = len(store.job_ids()) - before
        print(f"{added} configuration(s) registered in {args.store}"
              + (f" ({new} new, {added - new} already there)" if new != added else ""))
    n_retired = len(store.retired_ids() - store.done_ids())
    from dpqtb.dft.runner import skipped_failures

    n_once = len(store.failed_ids() - skipped_failures(store) - store.done_ids() - store.retired_ids())
    print(f"{args.store}: {done}/{total} labelled, {failed} failed"
          + (f" ({n_once} only interrupted once: retried as usual)" if n_once else "")
          + (f", {n_retired} retired" if n_retired else ""))
    if args.status:
        print(supervise.eta(store))
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
    supervise.check_can_run(args.np)
    cmd = supervise.runner_command(args.store, args.np, args.nice, args.max_jobs,
                                   args.smallest_first, args.max_atoms)
    if args.background:
        pid, log = supervise.start_background(cmd, args.store)
        print(f"labelling in the background (pid {pid}); log: {log}; "
              f"progress: dpqtb label --store {shlex.quote(args.store)} --status")
        return 0
    n_todo = total - done if args.max_jobs is None else min(args.max_jobs, total - done)
    return supervise.run_with_progress(cmd, store, n_todo)


def _stop_runner(args) -> int:
    """``--stop``: ask the store's labelling process to end after the frame in flight (SIGUSR1)."""
    if args.inputs or args.plan or args.retire_kind or args.status:
        raise InputError("--stop takes no input files, --plan, --retire-kind or --status")
    print(supervise.stop_runner(args.store))
    return 0


def _meta_pairs(items) -> dict:
    """``--meta KEY=VALUE`` pairs: a number where VALUE reads as one, else the string."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--meta takes KEY=VALUE, got {item!r}")
        if key.strip() in ("kind", "source", "index_in_source", "frame_info"):
            raise InputError(f"--meta {key.strip()}: set by dpqtb label itself (the kind with --kind)")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            out[key.strip()] = value
    return out


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
    """ASE calculator of the Deep Potential ``spec`` (builtin:NAME or a path) and its provenance: the same
    evaluation path MD uses (:func:`dpqtb.potential.calculator.calculator_from_spec`)."""
    from dpqtb.potential.calculator import calculator_from_spec

    return calculator_from_spec(spec)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "label", help="label configurations with GPAW (resumable job store)",
        description="Register configurations (files and/or the round-0 sampling plan) in a job "
        "store and label the pending ones with GPAW under MPI, with a progress bar. Re-running "
        "resumes; every configuration is labelled once. Units: eV, Å, GPa.")
    p.add_argument("inputs", nargs="*", help="structure files (any ASE format) to add")
    p.add_argument("--store", required=True, help="job store directory (e.g. data/labels/round0)")
    p.add_argument("--index", default=":", metavar="SLICE",
                   help="which frames of each input file (ASE's index: ':' all, '-1' the last, '200::25' every 25th "
                        "from the 200th); default ':'")
    p.add_argument("--kind", default=None, metavar="KIND",
                   help="meta 'kind' of the added frames (e.g. qtb-md, pimd-bead): `dpqtb validate` reports its "
                        "errors per kind; the file name, the frame's position and its comment-line values are kept too")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help="add KEY (a number where VALUE is one) to the meta of the given frames, e.g. temperature_K=200 "
                        "(repeatable; frames registered before get the keys they lack, nothing is overwritten)")
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


@entry_point
def main(argv=None) -> int:
    """``python -m dpqtb.dft.cli label ...`` (same as ``dpqtb label``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dpqtb.dft.cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
