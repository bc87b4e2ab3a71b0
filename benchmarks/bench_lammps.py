"""dpqtb QTB vs LAMMPS fix qtb on the same model and cell (issue 26): statistics and speed.

    python benchmarks/bench_lammps.py compare --cells 1 --steps 2000 --out work/lammps_cmp/n44
    python benchmarks/bench_lammps.py seeds --steps 4000 --seeds 1 2 3 4 5 6 --out work/lammps_cmp/n44_seeds \
        --json benchmarks/results/lammps_compare/n44_seeds.json
    python benchmarks/bench_lammps.py speed --sizes 352 5500 --steps 10 --repeat 5 --redo [--out FILE]

``compare`` writes the ``dpqtb md`` config of Fm-3m LaH10 at 200 GPa, 5 K (QTB, damp 100 fs, f_max 200 THz,
n_f 100, 0.5 fs), runs it with dpqtb (``OUT/dpqtb``) and, through ``dpqtb lammps``, with LAMMPS (``OUT/lammps``)
side by side (one thread each), analyses both with ``dpqtb analyze`` and writes ``OUT/compare.json``:
⟨E_pot⟩/atom, the raw kinetic temperature and per-species temperatures (averages over the run after
``--skip-fs``, error = standard error of 5 block means), the pressure, and the H MSD at the longest lag.
Each side is skipped when its output is already complete (rerun to resume).

``seeds`` repeats the 44-atom comparison over independent seeds, one run at a time, in three arms: dpqtb,
dpqtb with LAMMPS's unweighted mean random force (patched into that process only), LAMMPS; errors from the
seed-to-seed scatter; dpqtb's raw (uncorrected) kinetic columns against LAMMPS's.

``speed`` times the MD step of the same QTB run at each size (1 thread each, the same machine, one after the
other, or one code per call with ``--only``): dpqtb by its integrator (setup and one warm-up step, then
``--steps`` timed), LAMMPS by its ``Loop time`` of a ``run`` after a ``run 1`` warm-up; rows {n_atoms, dpqtb_atom_steps_per_s, lammps_atom_steps_per_s} go to
benchmarks/results/lammps_cpu.json after each size (a finished size is kept on a rerun).
``--lammps-ranks R`` runs LAMMPS as ``mpirun -np R`` (a LAMMPS built with ``MPI=1 scripts/install_lammps.sh``;
the ranks split the cell by domain decomposition, so each hands the model nloc/R atoms: how LAMMPS runs cells
whose nloc x nall type table does not fit one process); ``--cpus 1`` pins both codes to the same cores (the
R ranks share them, one thread each), so the row compares the same CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BASE = {"system": {"structure": "builtin:lah10", "pressure_GPa": 200, "supercell": [1, 1, 1]},
        "potential": {"kind": "deepmd", "model": "builtin:lah10"},
        "md": {"timestep_fs": 0.5, "steps": 2000, "seed": 2026},
        "thermostat": {"kind": "qtb", "temperature_K": 5.0, "damp_fs": 100.0, "f_max_THz": 200.0, "n_f": 100},
        "output": {"thermo_every": 10, "trajectory_every": 10, "checkpoint_every": 0, "progress": False}}


def _toml(raw: dict) -> str:
    def val(v):
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return repr(v)
    return "".join(f"[{s}]\n" + "".join(f"{k} = {val(v)}\n" for k, v in t.items()) + "\n" for s, t in raw.items())


def _config(cells: int, steps: int, directory: str) -> dict:
    raw = json.loads(json.dumps(BASE))
    raw["system"]["supercell"] = [cells] * 3
    raw["md"]["steps"] = steps
    raw["output"]["directory"] = directory
    return raw


def _blocks(x: np.ndarray, n: int = 5) -> tuple[float, float]:
    """Mean and standard error from n block means."""
    b = np.array([blk.mean() for blk in np.array_split(x, n)])
    return float(x.mean()), float(b.std(ddof=1) / np.sqrt(n))


def _raw(th: dict, col: str) -> str:
    """dpqtb's uncorrected twin of a kinetic column (``temperature_H_K`` -> ``temperature_raw_H_K``) where the run
    wrote one, else the column itself: LAMMPS fix qtb has no kinetic correction."""
    twin = col.replace("temperature_", "temperature_raw_").replace("pressure_", "pressure_raw_")
    return twin if twin in th else col


def _stats(th: dict, n_atoms: int, skip_fs: float) -> dict:
    keep = th["time_fs"] >= skip_fs
    out = {"rows": int(keep.sum()), "from_fs": skip_fs}
    for name, col, scale in (("E_pot_eV_per_atom", "potential_eV", 1.0 / n_atoms),
                             ("T_raw_K", _raw(th, "temperature_K"), 1.0), ("T_La_K", _raw(th, "temperature_La_K"), 1.0),
                             ("T_H_K", _raw(th, "temperature_H_K"), 1.0), ("P_GPa", _raw(th, "pressure_GPa"), 1.0)):
        if col in th:
            m, e = _blocks(th[col][keep] * scale)
            out[name] = {"mean": m, "err": e}
    return out


def _msd_h_at_max_lag(run_dir: Path) -> tuple[float, float]:
    """(lag in fs, MSD of H in Å²) at the longest lag of ``RUN/analysis/msd.csv`` (written by dpqtb analyze)."""
    path = run_dir / "analysis" / "msd.csv"
    head = path.read_text().splitlines()[0].split(",")
    msd = np.loadtxt(path, delimiter=",", skiprows=1)
    col = next(i for i, h in enumerate(head) if h.startswith("msd_H"))
    return float(msd[-1, 0]), float(msd[-1, col])


def compare(args) -> None:
    from dpqtb.analysis.pipeline import analyze
    from dpqtb.config_schema import load_toml
    from dpqtb.lammps.deck import write_deck
    from dpqtb.lammps.dump import read_log_thermo
    from dpqtb.lammps.runner import find_lammps
    from dpqtb.md.config import validate
    from dpqtb.rundir import read_thermo

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.toml"
    cfg_path.write_text(_toml(_config(args.cells, args.steps, "dpqtb")))
    raw = load_toml(cfg_path)
    cfg = validate(raw, base_dir=out)
    deck = write_deck(cfg, out / "lammps", raw=raw)
    lmp = None
    if args.only != "dpqtb":
        lmp, why = find_lammps()
        if lmp is None:
            sys.exit(why)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    procs = {}
    t0 = time.perf_counter()
    dp_dir, lmp_dir = out / "dpqtb", out / "lammps"
    if args.only != "lammps" and (not (dp_dir / "thermo.csv").exists()
                                  or read_thermo(dp_dir)["step"][-1] < args.steps):
        more = (["--resume", "--steps", str(args.steps)] if (dp_dir / "checkpoint.pt").exists() else ["--overwrite"])
        procs["dpqtb"] = subprocess.Popen([sys.executable, "-m", "dpqtb.cli", "--threads", "1", "md", str(cfg_path),
                                           *more], env=env, cwd=out,
                                          stdout=open(out / "dpqtb.out", "w"), stderr=subprocess.STDOUT)
    if lmp is not None and (not (lmp_dir / "log.lammps").exists()
                            or "Total wall time" not in (lmp_dir / "log.lammps").read_text()):
        env_l = dict(env, DP_INTRA_OP_PARALLELISM_THREADS="1", DP_INTER_OP_PARALLELISM_THREADS="1")
        procs["lammps"] = subprocess.Popen([str(lmp), "-in", "in.lammps", "-log", "log.lammps", "-screen", "none"],
                                           env=env_l, cwd=lmp_dir)
    walls = {}
    for name, p in procs.items():
        rc = p.wait()
        walls[name] = time.perf_counter() - t0
        if rc:
            sys.exit(f"{name} failed (exit {rc}); see {out}")
    if args.only:
        return
    n = deck.meta["n_atoms"]
    th_d, th_l = read_thermo(dp_dir), read_log_thermo(lmp_dir)
    res = {"n_atoms": n, "steps": args.steps, "timestep_fs": cfg.md.timestep_fs, "lammps": str(lmp),
           "config": cfg.to_dict(), "deck_differences": deck.warnings, "wall_s": walls,
           "dpqtb": _stats(th_d, n, args.skip_fs), "lammps_fix_qtb": _stats(th_l, n, args.skip_fs)}
    for name, d in (("dpqtb", dp_dir), ("lammps_fix_qtb", lmp_dir)):
        s = analyze(d, d / "analysis", plots=False, max_lag_fs=args.msd_lag_fs)
        lag, value = _msd_h_at_max_lag(d)
        res[name]["msd_H_A2_at_max_lag"] = {"lag_fs": lag, "msd_A2": value}
        res[name]["diffusion_H"] = s.get("diffusion", {}).get("H")
    diff = {}
    for key in ("E_pot_eV_per_atom", "T_raw_K", "T_La_K", "T_H_K", "P_GPa"):
        a, b = res["dpqtb"].get(key), res["lammps_fix_qtb"].get(key)
        if a and b:
            d = b["mean"] - a["mean"]
            e = float(np.hypot(a["err"], b["err"]))
            diff[key] = {"lammps_minus_dpqtb": d, "err": e, "sigmas": d / e if e > 0 else float("inf")}
    res["difference"] = diff
    (out / "compare.json").write_text(json.dumps(res, indent=2, default=float) + "\n")
    print(json.dumps(diff, indent=1))


UNWEIGHTED = ("import dpqtb.md.baths as b; b.remove_net_impulse = lambda r, m: r - r.mean(0); "
              "from dpqtb.cli import main; main()")
ARMS = ("dpqtb", "dpqtb_unweighted", "lammps")


def _run_arm(arm: str, cfg_path: Path, run_dir: Path, steps: int, lmp) -> None:
    """One run of one arm, skipped when complete. ``dpqtb_unweighted`` is dpqtb with LAMMPS's net-force rule
    (R_i - mean_j R_j, patched into this process only: not a user option) to account for that difference."""
    from dpqtb.rundir import read_thermo

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    if arm == "lammps":
        log = run_dir / "log.lammps"
        if log.exists() and "Total wall time" in log.read_text():
            return
        env.update(DP_INTRA_OP_PARALLELISM_THREADS="1", DP_INTER_OP_PARALLELISM_THREADS="1")
        cmd = [str(lmp), "-in", "in.lammps", "-log", "log.lammps", "-screen", "none"]
        cwd = run_dir
    else:
        if (run_dir / "thermo.csv").exists() and read_thermo(run_dir)["step"][-1] >= steps:
            return
        more = (["--resume", "--steps", str(steps)] if (run_dir / "checkpoint.pt").exists() else ["--overwrite"])
        head = [sys.executable, "-c", UNWEIGHTED] if arm == "dpqtb_unweighted" else [sys.executable, "-m", "dpqtb.cli"]
        cmd = [*head, "--threads", "1", "md", str(cfg_path), "--output", str(run_dir), *more]
        cwd = cfg_path.parent
    with open(run_dir.parent / f"{arm}.out", "w") as fh:
        rc = subprocess.run(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc:
        sys.exit(f"{arm} failed (exit {rc}); see {run_dir.parent / (arm + '.out')}")


def seeds(args) -> None:
    """The 44-atom side-by-side repeated over independent seeds, three arms, one run at a time: dpqtb (its
    mass-weighted net-force removal), dpqtb with LAMMPS's unweighted mean, LAMMPS fix qtb. Per arm: the mean
    over seeds of each run's average and its standard error from the seed-to-seed scatter (independent runs,
    so no block-correlation assumption); then each pair's difference in sigmas."""
    from dpqtb.analysis.pipeline import analyze
    from dpqtb.config_schema import load_toml
    from dpqtb.lammps.deck import write_deck
    from dpqtb.lammps.dump import read_log_thermo
    from dpqtb.lammps.runner import find_lammps
    from dpqtb.md.config import validate
    from dpqtb.rundir import read_thermo

    lmp, why = find_lammps()
    if lmp is None and "lammps" in args.arms:
        sys.exit(why)
    out = Path(args.out).resolve()
    per_seed = {arm: [] for arm in args.arms}
    n = None
    for seed in args.seeds:
        d = out / f"seed{seed}"
        d.mkdir(parents=True, exist_ok=True)
        raw = _config(args.cells, args.steps, "dpqtb")
        raw["md"]["seed"] = seed
        cfg_path = d / "config.toml"
        cfg_path.write_text(_toml(raw))
        raw = load_toml(cfg_path)
        cfg = validate(raw, base_dir=d)
        deck = write_deck(cfg, d / "lammps", raw=raw)
        n = deck.meta["n_atoms"]
        for arm in args.arms:
            run_dir = d / arm
            run_dir.mkdir(exist_ok=True)
            t0 = time.perf_counter()
            _run_arm(arm, cfg_path, run_dir, args.steps, lmp)
            th = read_log_thermo(run_dir) if arm == "lammps" else read_thermo(run_dir)
            st = _stats(th, n, args.skip_fs)
            st["seed"], st["wall_s"] = seed, time.perf_counter() - t0
            if not (run_dir / "analysis" / "msd.csv").exists():
                analyze(run_dir, run_dir / "analysis", plots=False, max_lag_fs=args.msd_lag_fs)
            lag, value = _msd_h_at_max_lag(run_dir)
            st["msd_H_A2"] = {"mean": value, "err": 0.0, "lag_fs": lag}
            per_seed[arm].append(st)
            print(f"seed {seed} {arm}: T_H {st['T_H_K']['mean']:.0f} K, T_La {st['T_La_K']['mean']:.0f} K, "
                  f"E_pot {st['E_pot_eV_per_atom']['mean']:.4f} eV/atom", flush=True)
    keys = ("E_pot_eV_per_atom", "T_raw_K", "T_La_K", "T_H_K", "P_GPa", "msd_H_A2")
    summary = {}
    for arm, rows in per_seed.items():
        summary[arm] = {}
        for k in keys:
            v = np.array([r[k]["mean"] for r in rows])
            summary[arm][k] = {"mean": float(v.mean()), "err": float(v.std(ddof=1) / np.sqrt(len(v))),
                               "per_seed": v.tolist()}
    pairs = {}
    for a, b in (("lammps", "dpqtb"), ("lammps", "dpqtb_unweighted"), ("dpqtb_unweighted", "dpqtb")):
        if a in summary and b in summary:
            pairs[f"{a}_minus_{b}"] = {}
            for k in keys:
                dlt = summary[a][k]["mean"] - summary[b][k]["mean"]
                e = float(np.hypot(summary[a][k]["err"], summary[b][k]["err"]))
                pairs[f"{a}_minus_{b}"][k] = {"difference": dlt, "err": e, "sigmas": dlt / e if e > 0 else None,
                                              "relative": dlt / summary[b][k]["mean"]}
    res = {"benchmark": "lammps_fix_qtb_vs_dpqtb_qtb_seeds", "n_atoms": n, "steps": args.steps,
           "timestep_fs": 0.5, "skip_fs": args.skip_fs, "seeds": list(args.seeds), "lammps": str(lmp),
           "arms": {"dpqtb": "dpqtb md, mass-weighted net-force removal (default)",
                    "dpqtb_unweighted": "dpqtb md with R_i - mean_j R_j (LAMMPS fix qtb's rule), patched in the "
                                        "benchmark process",
                    "lammps": "LAMMPS fix qtb + fix nve from dpqtb lammps"},
           "config": BASE, "per_seed": per_seed, "summary": summary, "differences": pairs,
           "error_model": "standard error over independent seeds of each run's average after skip_fs"}
    dest = Path(args.json) if args.json else out / "seeds.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(res, indent=2, default=float) + "\n")
    print(json.dumps(pairs, indent=1))


def _lammps_loop_time(log: Path) -> tuple[float, int]:
    """(seconds, steps) of the last ``Loop time`` line of a LAMMPS log."""
    m = re.findall(r"Loop time of ([0-9.eE+-]+) on \d+ procs for (\d+) steps", log.read_text())
    if not m:
        raise RuntimeError(f"no Loop time in {log}")
    return float(m[-1][0]), int(m[-1][1])


def speed(args) -> None:
    import torch

    from dpqtb.config_schema import load_toml
    from dpqtb.lammps.deck import write_deck
    from dpqtb.lammps.runner import find_lammps
    from dpqtb.md.build import build_simulation
    from dpqtb.md.config import validate

    torch.set_num_threads(1)
    lmp = None
    if args.only != "dpqtb":
        lmp, why = find_lammps()
        if lmp is None:
            sys.exit(why)
    out_json = Path(args.out)
    doc = json.loads(out_json.read_text()) if out_json.exists() else {}
    doc.update({"benchmark": "md_step_qtb_dpqtb_vs_lammps", "device": "cpu", "threads": 1,
                "machine": platform.machine(), "torch": torch.__version__,
                "model": "builtin:lah10", "system": "Fm-3m LaH10 at 200 GPa, QTB 5 K, 0.5 fs",
                "load_note": ("2-core machine; other jobs may run beside (each row: load_average_1min_after); 1 thread "
                              "each; with --repeat the two codes alternate and the medians are reported")})
    rows = {r["n_atoms"]: r for r in doc.get("results", [])}
    work = Path(args.work)
    for n_atoms in args.sizes:
        if args.redo:
            rows.pop(n_atoms, None)
        if n_atoms in rows and rows[n_atoms].get("complete"):
            continue
        cells = round((n_atoms / 44) ** (1 / 3))
        assert 44 * cells ** 3 == n_atoms, n_atoms
        d = work / f"n{n_atoms}"
        d.mkdir(parents=True, exist_ok=True)
        raw = _config(cells, args.steps, str(d / "dpqtb"))
        raw["output"].update(trajectory_every=0, thermo_every=max(1, args.steps))
        # dpqtb's model calls in chunks of 512 local atoms (as bench_deepmd.py): one call on 44,000 atoms
        # allocates nloc x nall type tables (29 GB); LAMMPS has no such knob (see docs/lammps.md)
        raw["potential"]["chunk_atoms"] = 512
        (d / "config.toml").write_text(_toml(raw))
        raw = load_toml(d / "config.toml")
        cfg = validate(raw, base_dir=d)
        row = rows.get(n_atoms, {"n_atoms": n_atoms})
        row["steps_timed"] = args.steps
        env = dict(os.environ, OMP_NUM_THREADS="1", DP_INTRA_OP_PARALLELISM_THREADS="1",
                   DP_INTER_OP_PARALLELISM_THREADS="1")
        if args.cpus:
            os.sched_setaffinity(0, args.cpus)  # dpqtb here, LAMMPS (a child) inherits it
        if args.lammps_ranks > 1:
            env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
            # more ranks than cores: OpenMPI must yield while it waits, not spin
            lmp_cmd = ["mpirun", "-np", str(args.lammps_ranks), "--oversubscribe", "--bind-to", "none",
                       "--mca", "mpi_yield_when_idle", "1", str(lmp)]
        else:
            lmp_cmd = [str(lmp)]
        if args.only != "dpqtb" and "lammps_atom_steps_per_s" not in row:
            # LAMMPS: run 1 (warm-up: model load, first neighbour list), then the timed run
            write_deck(cfg, d / "lammps", raw=raw)
            deck = (d / "lammps" / "in.lammps").read_text().replace(f"\nrun {args.steps}\n",
                                                                     f"\nrun 1\nrun {args.steps}\n")
            (d / "lammps" / "in.lammps").write_text(deck)
        sim = None
        lmp_s, dp_s = [], []
        t_l = t_d = 0.0
        # --repeat R: the two codes alternate R times (same load for both), medians reported
        for _ in range(args.repeat):
            if args.only != "dpqtb" and "lammps_atom_steps_per_s" not in row:
                t0 = time.perf_counter()
                subprocess.run(lmp_cmd + ["-in", "in.lammps", "-log", "log.lammps", "-screen", "none"],
                               cwd=d / "lammps", env=env, check=True)
                sec, steps = _lammps_loop_time(d / "lammps" / "log.lammps")
                lmp_s.append(sec / steps)
                t_l += time.perf_counter() - t0
            if args.only != "lammps" and "dpqtb_atom_steps_per_s" not in row:
                # dpqtb: the same config's integrator and state; setup and one warm-up step, then the timed steps
                t0 = time.perf_counter()
                if sim is None:
                    sim = build_simulation(cfg, d / "dpqtb", progress=False)
                    sim.integrator.setup(sim.state)
                    sim.integrator.step(sim.state)
                t1 = time.perf_counter()
                for _ in range(args.steps):
                    sim.integrator.step(sim.state)
                dp_s.append((time.perf_counter() - t1) / args.steps)
                t_d += time.perf_counter() - t0
        now = time.strftime("%FT%TZ", time.gmtime())
        if lmp_s:
            sec = float(np.median(lmp_s))
            row.update(lammps_mpi_ranks=args.lammps_ranks, cpus=sorted(args.cpus) if args.cpus else "all")
            row.pop("lammps_error", None)
            row.pop("lammps_note", None)
            row.update(lammps_s_per_step=sec, lammps_atom_steps_per_s=n_atoms / sec, lammps_wall_s=t_l,
                       lammps_s_per_step_each=lmp_s, lammps_measured=now)
        if dp_s:
            sec = float(np.median(dp_s))
            row.update(dpqtb_s_per_step=sec, dpqtb_atom_steps_per_s=n_atoms / sec, dpqtb_wall_s=t_d,
                       dpqtb_s_per_step_each=dp_s, dpqtb_measured=now)
        if lmp_s or dp_s:
            row["repeats"] = args.repeat
            row["load_average_1min_after"] = os.getloadavg()[0]
        if row.get("dpqtb_atom_steps_per_s") and row.get("lammps_atom_steps_per_s"):
            row["dpqtb_over_lammps"] = row["dpqtb_atom_steps_per_s"] / row["lammps_atom_steps_per_s"]
        row["complete"] = "dpqtb_atom_steps_per_s" in row and "lammps_atom_steps_per_s" in row
        rows[n_atoms] = row
        doc["results"] = [rows[k] for k in sorted(rows)]
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(doc, indent=2, default=float) + "\n")
        print(json.dumps(row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--cells", type=int, default=1)
    c.add_argument("--steps", type=int, default=2000)
    c.add_argument("--skip-fs", type=float, default=250.0, help="equilibration left out of the averages (fs)")
    c.add_argument("--msd-lag-fs", type=float, default=None)
    c.add_argument("--out", required=True)
    c.add_argument("--only", choices=("dpqtb", "lammps"), default=None, help="run one side only (no comparison)")
    r = sub.add_parser("seeds", help="the 44-atom comparison over independent seeds, three arms")
    r.add_argument("--cells", type=int, default=1)
    r.add_argument("--steps", type=int, default=4000)
    r.add_argument("--skip-fs", type=float, default=250.0)
    r.add_argument("--msd-lag-fs", type=float, default=500.0)
    r.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    r.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    r.add_argument("--out", required=True)
    r.add_argument("--json", default=None, help="where the summary goes (default OUT/seeds.json)")
    s = sub.add_parser("speed")
    s.add_argument("--sizes", type=int, nargs="+", default=[352, 5500, 44000])
    s.add_argument("--steps", type=int, default=3)
    s.add_argument("--repeat", type=int, default=1, help="alternate the two codes this many times; medians")
    s.add_argument("--redo", action="store_true", help="time again the sizes already in the JSON")
    s.add_argument("--work", default=str(REPO / "work" / "lammps_speed"))
    s.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "lammps_cpu.json"))
    s.add_argument("--only", choices=("dpqtb", "lammps"), default=None, help="time one code only (rows keep the other)")
    s.add_argument("--lammps-ranks", type=int, default=1, help="mpirun -np R (an MPI build of LAMMPS)")
    s.add_argument("--cpus", type=int, nargs="+", default=None, help="pin both codes to these cores")
    args = ap.parse_args()
    {"compare": compare, "seeds": seeds, "speed": speed}[args.cmd](args)


if __name__ == "__main__":
    main()
