"""Exploration step of concurrent learning (DP-GEN style): MD with the current ensemble, model
deviation on every sampled frame, candidates in the trust window queued for DFT labelling.

One iteration, from a TOML config (``examples/explore_lah10.toml`` lists every key):

1. For every point of the exploration grid (starting phase × pressure × temperature × thermostat)
   run MD on the built-in LaH10 cell with one ensemble member (``ensemble.explore_member``):
   classical Langevin or QTB (nuclear quantum effects: the zero-point motion visits configurations
   classical MD at the same T never reaches). Each run lives in ``OUT/runs/<name>/`` and is
   resumable (``dpqtb md`` checkpoints); a finished run is never repeated.
2. Every sampled frame (after step 0) is evaluated by all members; its max force deviation
   ε = max_i sqrt(⟨|F_i − ⟨F_i⟩|²⟩) (eV/Å) sorts it into accurate (ε < lo), candidate
   (lo ≤ ε < hi) or failed (ε ≥ hi); see :mod:`dpqtb.train.deviation`.
3. At most ``selection.max_select`` candidates (at most ``max_per_run`` from one run, drawn at random
   with a fixed seed) are queued in the job store ``selection.store`` for ``dpqtb label``.

Outputs: ``OUT/runs/<name>/model_devi.csv`` per run, ``OUT/explore.json`` (per-run and total
statistics, selected frames, job ids) and ``OUT/explore.md`` (a table for the concurrent-learning
record). A run whose MD goes unstable (:class:`dpqtb.SimulationUnstable`: non-finite numbers or a
runaway temperature, see docs/config.md) keeps the frames written before and is
reported as unstable — a sign of a model hole, its frames mostly land in "failed".
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from dpqtb import InputError, SimulationUnstable
from dpqtb.config_schema import REQUIRED, load_toml, positive, nonneg, validate_schema
from dpqtb.rundir import (CHECKPOINT, DONE, EXPLORE_MARKDOWN, EXPLORE_REPORT, MODEL_DEVI, MODEL_DEVI_CSV,
                          START_STRUCTURE, TRAJECTORY, atomic_open, atomic_write_json, atomic_write_text)
from dpqtb.train.deviation import deviation, ensemble_predictions, select

PHASES = ("Fm-3m", "C2", "P-1", "R-3m")
THERMOSTATS = ("langevin", "qtb")


def _num_list(v):
    return isinstance(v, list) and len(v) >= 1 and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)


def _int3(v):
    return isinstance(v, list) and len(v) == 3 and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1
                                                        for x in v)


SCHEMA: dict[str, dict[str, tuple]] = {
    "ensemble": {
        "models": (list, REQUIRED, lambda v: len(v) >= 1 and all(isinstance(x, str) and x for x in v),
                   "must be a `dpqtb train` output directory (ensemble.json) or a list of >= 2 *.pth files"),
        "explore_member": (int, 0, nonneg, "must be an integer >= 0 (the member that drives the MD)"),
        "chunk_atoms": (int, None, positive, "must be an integer >= 1"),
    },
    "grid": {
        "phases": (list, ["Fm-3m"], lambda v: len(v) >= 1 and all(x in PHASES for x in v),
                   f"must be a list of starting phases from {', '.join(PHASES)}"),
        "pressures_GPa": (list, REQUIRED, lambda v: _num_list(v) and all(x > 0 for x in v),
                          "must be a list of pressures > 0 (GPa; lattice from the stored DFT EOS)"),
        "temperatures_K": (list, REQUIRED, lambda v: _num_list(v) and all(x > 0 for x in v),
                           "must be a list of temperatures > 0 (K)"),
        "thermostats": (list, ["langevin", "qtb"], lambda v: len(v) >= 1 and all(x in THERMOSTATS for x in v),
                        f"must be a list from {', '.join(THERMOSTATS)}"),
        "supercell": (list, [1, 1, 1], _int3, "must be three integers >= 1 (of the 44-atom conventional cell)"),
        "distortion_A": (float, 0.05, nonneg,
                         "must be >= 0 (RMS H displacement of the symmetry-lowered starting cells, Å)"),
    },
    "md": {
        "timestep_fs": (float, 0.5, positive, "must be > 0"),
        "steps": (int, 2000, positive, "must be an integer >= 1"),
        "damp_fs": (float, 100.0, positive, "must be > 0 (Langevin / QTB friction time)"),
        "sample_every": (int, 20, positive, "must be an integer >= 1 (steps between evaluated frames)"),
        "seed": (int, 1, nonneg, "must be >= 0"),
    },
    "selection": {
        "trust_lo_eV_per_A": (float, REQUIRED, nonneg, "must be >= 0"),
        "trust_hi_eV_per_A": (float, REQUIRED, positive, "must be > 0"),
        "max_select": (int, 32, positive, "must be an integer >= 1"),
        "max_per_run": (int, 4, positive, "must be an integer >= 1"),
        "store": (str, REQUIRED, lambda v: bool(v), "must name a DFT job store directory"),
        "seed": (int, 0, nonneg, "must be >= 0"),
    },
}


def load_config(path: str | os.PathLike) -> dict:
    """Validated exploration config; relative paths are resolved against the config's folder."""
    path = Path(path)
    raw = load_toml(path)
    grids = raw.get("grid")
    if isinstance(grids, list):  # [[grid]] tables: the union of several products
        if not grids or not all(isinstance(g, dict) for g in grids):
            raise InputError("config [[grid]] must be one or more tables")
        raw = {**raw, "grid": grids[0]}
        cfg = validate_schema(raw, SCHEMA)
        cfg["grid"] = [validate_schema({"grid": g}, {"grid": SCHEMA["grid"]})["grid"] for g in grids]
    else:
        cfg = validate_schema(raw, SCHEMA)
        cfg["grid"] = [cfg["grid"]]
    sel = cfg["selection"]
    if sel["trust_lo_eV_per_A"] >= sel["trust_hi_eV_per_A"]:
        raise InputError(f"config keys 'selection.trust_lo_eV_per_A' = {sel['trust_lo_eV_per_A']} must be below "
                         f"'selection.trust_hi_eV_per_A' = {sel['trust_hi_eV_per_A']}")
    base = path.resolve().parent
    cfg["ensemble"]["models"] = [_path(base, p) for p in cfg["ensemble"]["models"]]
    sel["store"] = _path(base, sel["store"])
    return cfg


def _path(base: Path, p: str) -> str:
    """``p`` relative to the config's folder, written relative to the working directory if below it."""
    full = os.path.normpath(base / p)
    rel = os.path.relpath(full)
    return full if rel.startswith("..") else rel


def ensemble_models(entries: list[str]) -> list[Path]:
    """Model files of an ensemble: one `dpqtb train` output dir (its ensemble.json) or explicit *.pth."""
    if len(entries) == 1 and Path(entries[0]).is_dir():
        d = Path(entries[0])
        ens = d / "ensemble.json"
        if not ens.is_file():
            raise InputError(f"{d}: no ensemble.json (not a `dpqtb train` output directory)")
        members = json.loads(ens.read_text())["members"]
        paths = [d / members[k]["model"] for k in sorted(members, key=int)]
    else:
        paths = [Path(p) for p in entries]
    for p in paths:
        if not p.is_file():
            raise InputError(f"ensemble model not found: {p}")
    if len(paths) < 2:
        raise InputError(f"model deviation needs an ensemble of at least 2 models, got {len(paths)}")
    return paths


def run_name(phase: str, p: float, t: float, thermostat: str) -> str:
    return f"{phase.replace('-', '')}_{p:g}GPa_{t:g}K_{thermostat}"


def grid(cfg: dict) -> list[dict]:
    """The MD runs: the union over the [[grid]] tables of phase × pressure × temperature × thermostat."""
    out = []
    for gi, g in enumerate(cfg["grid"]):
        for phase, p, t, th in itertools.product(g["phases"], g["pressures_GPa"], g["temperatures_K"],
                                                 g["thermostats"]):
            out.append({"name": run_name(phase, p, t, th), "phase": phase, "pressure_GPa": float(p),
                        "temperature_K": float(t), "thermostat": th, "grid": gi,
                        "seed": cfg["md"]["seed"] + 1000 * len(out)})
    names = [r["name"] for r in out]
    if len(set(names)) != len(names):
        raise InputError("the exploration grid repeats a point (duplicate pressures, temperatures or phases)")
    return out


def starting_structure(run: dict, g: dict):
    """Fm-3m LaH10 at the run's pressure (stored DFT EOS), repeated, optionally symmetry-lowered.

    ``g`` is the run's grid table (``supercell``, ``distortion_A``)."""
    from dpqtb.structures.eos import fm3m_at_pressure
    from dpqtb.structures.lah10 import lowered

    atoms = fm3m_at_pressure(run["pressure_GPa"], cell="conventional").repeat(tuple(g["supercell"]))
    if run["phase"] != "Fm-3m":
        atoms = lowered(atoms, run["phase"], amplitude=g["distortion_A"], strain=0.01, rng=run["seed"])
    return atoms


def md_config(run: dict, cfg: dict, model: Path, structure: Path, device: str = "cpu"):
    from dpqtb.md.config import validate

    md = cfg["md"]
    raw = {
        "system": {"structure": str(structure), "format": "extxyz", "device": device},
        "potential": {"kind": "deepmd", "model": str(model)},
        "md": {"timestep_fs": md["timestep_fs"], "steps": md["steps"], "seed": run["seed"]},
        "thermostat": {"kind": run["thermostat"], "temperature_K": run["temperature_K"], "damp_fs": md["damp_fs"]},
        "output": {"thermo_every": md["sample_every"], "trajectory_every": md["sample_every"],
                   "checkpoint_every": max(md["sample_every"], 10 * md["sample_every"]), "progress": False},
    }
    if cfg["ensemble"]["chunk_atoms"]:
        raw["potential"]["chunk_atoms"] = cfg["ensemble"]["chunk_atoms"]
    return validate(raw, base_dir=".")  # the paths above are relative to the working directory


def run_md(run: dict, cfg: dict, model: Path, rdir: Path, device: str = "cpu", log=print) -> dict:
    """Run (or resume, or skip if finished) one exploration MD; returns its record."""
    from ase.io import write

    from dpqtb.md.build import build_simulation

    done = rdir / DONE
    if done.is_file():
        return json.loads(done.read_text())
    rdir.mkdir(parents=True, exist_ok=True)
    structure = rdir / START_STRUCTURE
    if not structure.is_file():
        with atomic_open(structure) as fh:
            write(fh, starting_structure(run, cfg["grid"][run["grid"]]), format="extxyz")
    mcfg = md_config(run, cfg, model, structure, device)
    sim = build_simulation(mcfg, output_dir=rdir, progress=False)
    resume = (rdir / CHECKPOINT).is_file()
    t0 = time.perf_counter()
    status, message = "complete", ""
    try:
        sim.run(None if resume else mcfg.md.steps, resume=resume, overwrite=not resume)
    except SimulationUnstable as exc:  # a model hole: keep the frames written before it
        status, message = "unstable", str(exc)
    rec = {**run, "status": status, "message": message, "steps_done": int(sim.state.step),
           "wall_s": round(time.perf_counter() - t0, 1), "n_atoms": sim.state.n_atoms}
    atomic_write_json(done, rec, indent=1)
    log(f"  {run['name']}: {status}, {rec['steps_done']} steps, {rec['wall_s']:.0f} s")
    return rec


def run_deviations(rdir: Path, potentials) -> list[dict]:
    """Deviation of every sampled frame after step 0 (cached in model_devi.csv)."""
    from ase.io import iread

    cache = rdir / MODEL_DEVI
    if cache.is_file():
        return json.loads(cache.read_text())
    traj = rdir / TRAJECTORY
    out = []
    if traj.is_file():
        for k, atoms in enumerate(iread(str(traj))):
            step = int(atoms.info.get("step", k))
            if step == 0:
                continue
            e, f = ensemble_predictions(potentials, atoms)
            d = deviation(e, f)
            d["step"] = step
            d["frame"] = k
            out.append(d)
    atomic_write_json(cache, out)
    cols = ["step", "max_devi_f_eV_per_A", "min_devi_f_eV_per_A", "avg_devi_f_eV_per_A", "devi_e_eV_per_atom"]
    with atomic_open(rdir / MODEL_DEVI_CSV) as fh:
        fh.write(",".join(cols) + "\n")
        for d in out:
            fh.write(",".join(str(d[c]) for c in cols) + "\n")
    return out


def choose(per_run: dict[str, list[dict]], lo: float, hi: float, max_select: int, max_per_run: int,
           seed: int) -> list[tuple[str, int]]:
    """(run, frame) pairs to label: at most max_per_run candidates per run, max_select in all, at random."""
    rng = np.random.default_rng(seed)
    pool = []
    for name in sorted(per_run):
        idx, _ = select(per_run[name], lo, hi, None) if per_run[name] else ([], None)
        if len(idx) > max_per_run:
            idx = sorted(rng.choice(idx, max_per_run, replace=False).tolist())
        pool += [(name, int(i)) for i in idx]
    if len(pool) > max_select:
        keep = sorted(rng.choice(len(pool), max_select, replace=False).tolist())
        pool = [pool[k] for k in keep]
    return pool


def explore(config_path: str | os.PathLike, out_dir: str | os.PathLike, *, device: str = "cpu",
            progress: bool = True, log=print) -> dict:
    from ase.io import read
    from tqdm.auto import tqdm

    from dpqtb.dft.settings import PRODUCTION
    from dpqtb.dft.store import JobStore
    from dpqtb.potential.deepmd import DeepPotential
    from dpqtb.train.dataset import file_sha256

    cfg = load_config(config_path)
    models = ensemble_models(cfg["ensemble"]["models"])
    member = cfg["ensemble"]["explore_member"]
    if member >= len(models):
        raise InputError(f"config key 'ensemble.explore_member' = {member}: the ensemble has {len(models)} members")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(Path(config_path).read_text())
    runs = grid(cfg)
    log(f"exploration: {len(runs)} MD runs with {models[member]}, {len(models)} members for the deviation")

    records = []
    for run in tqdm(runs, desc="explore MD", unit="run", disable=not progress):
        records.append(run_md(run, cfg, models[member], out / "runs" / run["name"], device=device, log=log))

    potentials = [DeepPotential(p, device=device, chunk_atoms=cfg["ensemble"]["chunk_atoms"]) for p in models]
    per_run = {}
    for run in tqdm(runs, desc="model deviation", unit="run", disable=not progress):
        per_run[run["name"]] = run_deviations(out / "runs" / run["name"], potentials)

    sel = cfg["selection"]
    lo, hi = sel["trust_lo_eV_per_A"], sel["trust_hi_eV_per_A"]
    picked = choose(per_run, lo, hi, sel["max_select"], sel["max_per_run"], sel["seed"])
    store = JobStore(sel["store"])
    queued = []
    for order, (name, i) in enumerate(picked):
        d = per_run[name][i]
        atoms = read(out / "runs" / name / TRAJECTORY, index=d["frame"])
        atoms.calc = None
        atoms.info = {}
        if atoms.has("momenta"):
            del atoms.arrays["momenta"]
        run = next(r for r in runs if r["name"] == name)
        jid = store.add(atoms, PRODUCTION, meta={
            "kind": "model_deviation", "order": order, "explore_run": name, "step": d["step"],
            "phase_start": run["phase"], "target_pressure_GPa": run["pressure_GPa"],
            "temperature_K": run["temperature_K"], "thermostat": run["thermostat"],
            "max_devi_f_eV_per_A": d["max_devi_f_eV_per_A"], "explore_dir": str(out)})
        queued.append({"run": name, "step": d["step"], "job_id": jid,
                       "max_devi_f_eV_per_A": d["max_devi_f_eV_per_A"]})

    all_devi = [d for v in per_run.values() for d in v]
    _, total = select(all_devi, lo, hi, None) if all_devi else (None, {"frames": 0})
    table = []
    for rec in records:
        v = per_run[rec["name"]]
        _, s = select(v, lo, hi, None) if v else (None, {"frames": 0})
        table.append({**rec, **{k: s.get(k) for k in ("frames", "accurate_fraction", "candidate_fraction",
                                                    "failed_fraction", "max_devi_f_quantiles_eV_per_A")}})
    report = {"generated": time.strftime("%Y-%m-%dT%H:%M:%S"), "config": str(config_path),
              "models": [{"path": str(p), "sha256": file_sha256(p)} for p in models],
              "explore_member": member, "trust_lo_eV_per_A": lo, "trust_hi_eV_per_A": hi,
              "total": total, "runs": table, "selected": len(queued), "queued": queued,
              "store": sel["store"]}
    atomic_write_json(out / EXPLORE_REPORT, report, indent=1)
    atomic_write_text(out / EXPLORE_MARKDOWN, markdown(report))
    log(f"{total.get('frames', 0)} frames: accurate {total.get('accurate', 0)}, candidates "
        f"{total.get('candidate', 0)}, failed {total.get('failed', 0)}; queued {len(queued)} in {sel['store']}")
    return report


def markdown(rep: dict) -> str:
    t = rep["total"]
    lines = [f"# Exploration: model deviation of the ensemble ({rep['generated']})", "",
             f"Trust window [{rep['trust_lo_eV_per_A']}, {rep['trust_hi_eV_per_A']}) eV/Å on the max force "
             f"deviation; MD driven by member {rep['explore_member']}.", ""]
    if t.get("frames"):
        q = t["max_devi_f_quantiles_eV_per_A"]
        lines += [f"All runs: {t['frames']} frames — accurate {t['accurate_fraction']:.1%}, candidate "
                  f"{t['candidate_fraction']:.1%}, failed {t['failed_fraction']:.1%}; max deviation quantiles "
                  f"(eV/Å) 10 % {q['0.1']:.3f}, 50 % {q['0.5']:.3f}, 90 % {q['0.9']:.3f}, 99 % {q['0.99']:.3f}. "
                  f"Queued for DFT: {rep['selected']} in `{rep['store']}`.", ""]
    lines += ["| run | status | steps | frames | accurate | candidate | failed | median ε (eV/Å) | 90 % ε (eV/Å) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rep["runs"]:
        if r.get("frames"):
            q = r["max_devi_f_quantiles_eV_per_A"]
            lines.append(f"| {r['name']} | {r['status']} | {r['steps_done']} | {r['frames']} | "
                         f"{r['accurate_fraction']:.0%} | {r['candidate_fraction']:.0%} | {r['failed_fraction']:.0%} | "
                         f"{q['0.5']:.3f} | {q['0.9']:.3f} |")
        else:
            lines.append(f"| {r['name']} | {r['status']} | {r['steps_done']} | 0 | – | – | – | – | – |")
    return "\n".join(lines) + "\n"
