"""Benchmark of the trajectory analysis on the 44,000-atom LaH10 cell (10×10×10 conventional).

Writes benchmarks/results/analysis_cpu.json.  Main number: the exact reordered MSD′ per frame at
40,000 protons (sparse certified matching) against the dense Hungarian baseline
(scipy.optimize.linear_sum_assignment on the full minimum-image cost matrix), both timed in this
run at the sizes where dense is feasible; the dense time at 40,000 is a power-law extrapolation
(marked as such).  Other per-frame costs at 44,000 atoms: extxyz reading (fast path vs ASE),
MSD update, RDF, cage angle (the angles alone, and the analysis's CageAngle observable: the angles plus the
site matching of the time-averaged structure), site tracking.  Usage:  python benchmarks/bench_analysis.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from dpqtb.analysis.cage import quadrilateral_angles
from dpqtb.analysis.exchange import SiteTracker
from dpqtb.analysis.msd import MSDAccumulator, ReorderedMSD, msd_prime_dense
from dpqtb.analysis.observables import CageAngle
from dpqtb.analysis.rdf import RDFAccumulator
from dpqtb.analysis.trajectory import Frame, Trajectory, write_extxyz_frames
from dpqtb.structures.lah10 import fm3m, supercell

A = 5.1
H_SIGMA = 0.15  # Å, thermal-like proton noise
LA_SIGMA = 0.05


def _median_time(fn, repeats):
    ts = []
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)), out


def _frame(atoms, rng, hop_fraction=0.01, h_sigma=H_SIGMA):
    pos = atoms.positions + np.where(atoms.numbers[:, None] == 1, h_sigma, LA_SIGMA) * rng.normal(size=atoms.positions.shape)
    h = np.flatnonzero(atoms.numbers == 1)
    # relabel a fraction of protons (exchanges): MSD′ must undo them
    k = int(hop_fraction * len(h)) // 2 * 2
    sel = rng.choice(h, k, replace=False)
    pos[sel] = pos[sel[::-1]]
    return pos


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats/sizes")
    args = ap.parse_args()
    reps = 2 if args.quick else 3
    rng = np.random.default_rng(0)
    res: dict = {"machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                 "python": platform.python_version(), "units": "seconds per frame (median)",
                 "proton_noise_A": H_SIGMA, "relabelled_fraction": 0.01}

    # --- MSD′: sparse vs dense at the sizes where dense fits ------------------------------------
    rows = []
    sizes = (3, 4) if args.quick else (3, 4, 5)
    for n in sizes:
        at = supercell(fm3m(A, "conventional"), n)
        h = at.numbers == 1
        pos = _frame(at, rng)
        ref = at.positions[h]
        m = ReorderedMSD(ref)
        m(pos[h], at.cell.array)  # warm-up (vesin, first cutoff growth)
        ts, a = _median_time(lambda: m(pos[h], at.cell.array), reps)
        td, b = _median_time(lambda: msd_prime_dense(ref, pos[h], at.cell.array), 1)
        rows.append({"n_protons": int(h.sum()), "sparse_s": ts, "dense_hungarian_s": td,
                     "speedup": td / ts, "msd_prime_sparse_A2": a.msd_A2, "msd_prime_dense_A2": b.msd_A2,
                     "abs_diff_A2": abs(a.msd_A2 - b.msd_A2)})
        print(rows[-1], flush=True)
    res["msd_prime_vs_dense"] = rows
    nd = np.array([r["n_protons"] for r in rows], float)
    td = np.array([r["dense_hungarian_s"] for r in rows])
    alpha, logc = np.polyfit(np.log(nd), np.log(td), 1)

    big = supercell(fm3m(A, "conventional"), 10)  # 44,000 atoms
    hmask = big.numbers == 1
    frames = [_frame(big, rng) for _ in range(reps)]
    m = ReorderedMSD(big.positions[hmask])
    m(frames[0][hmask], big.cell.array)
    ts = []
    for f in frames:
        t = time.perf_counter()
        r = m(f[hmask], big.cell.array)
        ts.append(time.perf_counter() - t)
    t40 = float(np.median(ts))
    dense40 = float(np.exp(logc) * 40000**alpha)
    res["msd_prime_40000"] = {"n_protons": int(hmask.sum()), "sparse_s_per_frame": t40,
                              "cutoff_A": r.cutoff_A, "candidate_edges": r.n_edges,
                              "msd_prime_A2": r.msd_A2, "target_s": 1.0, "meets_target": t40 < 1.0,
                              "dense_extrapolated_s": dense40, "dense_fit_exponent": float(alpha),
                              "speedup_vs_extrapolated_dense": dense40 / t40,
                              "dense_memory_GB_at_40000": 40000**2 * 8 / 1e9}
    print(res["msd_prime_40000"], flush=True)
    # harder: strongly delocalised protons (0.3 Å per component), the cutoff has to grow
    hard = [_frame(big, rng, h_sigma=0.3) for _ in range(reps)]
    m = ReorderedMSD(big.positions[hmask])
    ts = []
    for f in hard:
        t = time.perf_counter()
        r = m(f[hmask], big.cell.array)
        ts.append(time.perf_counter() - t)
    res["msd_prime_40000_sigma0.3A"] = {"sparse_s_per_frame_median": float(np.median(ts)),
                                        "first_frame_s_incl_cutoff_growth": ts[0],
                                        "cutoff_A": r.cutoff_A, "candidate_edges": r.n_edges,
                                        "msd_prime_A2": r.msd_A2}
    print(res["msd_prime_40000_sigma0.3A"], flush=True)

    # --- other per-frame costs at 44,000 atoms --------------------------------------------------
    sym = big.get_chemical_symbols()
    cell = big.cell.array
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trajectory.extxyz"
        write_extxyz_frames(path, frames, sym, cell, 10.0, velocities=[f * 0.01 for f in frames])
        t = time.perf_counter()
        n = sum(1 for _ in Trajectory(path))
        fast = (time.perf_counter() - t) / n
        from ase.io import iread

        t = time.perf_counter()
        n = sum(1 for _ in iread(str(path), ":"))
        slow = (time.perf_counter() - t) / n
    res["read_extxyz_44000"] = {"fast_s": fast, "ase_iread_s": slow, "speedup": slow / fast}
    acc = MSDAccumulator(sym, max_lag=1000, origin_every=50)  # 21 active origins at steady state
    for f in frames:
        acc.update(f)
    acc.active = acc.active * 21
    res["msd_update_44000_21_origins_s"], _ = _median_time(lambda: acc.update(frames[0]), reps)
    rdf = RDFAccumulator(sym, 6.0, 0.02)
    res["rdf_6A_44000_s"], _ = _median_time(lambda: rdf.update(frames[0], cell), reps)
    res["cage_angle_44000_s"], _ = _median_time(lambda: quadrilateral_angles(frames[0], cell, sym), reps)
    # the analysis's CageAngle observable: θ of the frame plus the site matching of its time-averaged structure
    # (each species onto the running site average, drift taken out on La)
    cage = CageAngle(np.array(sym))
    cage.update(Frame(0, np.array(sym), big.positions.copy(), cell, 0.0))  # the first frame gives the sites
    fed = iter(range(1, 10**6))

    def _cage_update():
        i = next(fed)
        cage.update(Frame(i, np.array(sym), frames[i % len(frames)], cell, 10.0 * i))

    res["cage_angle_observable_44000_s"], _ = _median_time(_cage_update, reps)
    tr = SiteTracker(big.positions, sym, cell)
    res["site_tracking_44000_s"], _ = _median_time(lambda: tr.update(frames[0], cell, 0.0), reps)
    for k in ("read_extxyz_44000", "msd_update_44000_21_origins_s", "rdf_6A_44000_s",
              "cage_angle_44000_s", "cage_angle_observable_44000_s", "site_tracking_44000_s"):
        print(k, res[k], flush=True)
    out = Path(__file__).parent / "results" / "analysis_cpu.json"
    out.write_text(json.dumps(res, indent=2) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
