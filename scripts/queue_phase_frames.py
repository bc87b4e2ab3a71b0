"""Queue DFT jobs from a symmetry-lowering relaxation (docs/phases.md) into a job store:

* every K-th structure of the relaxation path (OUT.traj, in the relaxation's cell: 11 atoms, or 44 for a
  ``--cell conventional`` relaxation) and its last one, kind ``relax-path``;
* thermal samples around the relaxed structure in the 44-atom cell (a primitive cell expanded to the cubic
  conventional one; a conventional relaxation's own cell), quantum harmonic widths at T uniform in the range
  (as ``dpqtb.structures.sampling``), kind ``phase-thermal``.

The labels are computed by the job-store runner with the production settings, like every other
frame (the relaxation's own energies are not imported: its k-mesh was fixed at the start cell), except that
``--path-kspacing-invA`` labels the path structures (and so the minimum) on a denser k-mesh: v3's data plan
(docs/training.md) takes 0.16 Å⁻¹ there, since the production rule's k error on the distortion enthalpy
(1-3 meV/atom, docs/dft_convergence.md) is as large as the distortion.

    .venv/bin/python scripts/queue_phase_frames.py data/phases/C2_100GPa_s1.extxyz \\
        --store data/labels/round0_phases --every 4 --n-thermal 10 --seed 1
    .venv/bin/python scripts/queue_phase_frames.py data/phases/C2_125GPa_s0_direct.extxyz \\
        --store data/labels/v3_phases --path-kspacing-invA 0.16 --seed 125      (v3)
    .venv/bin/python scripts/queue_phase_frames.py data/phases/C2_150GPa_s2_44.extxyz \\
        --store data/labels/v3_phases --path-kspacing-invA 0.16 --every 8 --seed 150044   (v3, 44 atoms)

A 44-atom path structure at 0.16 Å⁻¹ (8³ k-points) costs ~4× one at the production rule (5³), ~20-30 min on
one rank: every 8th of a ~40-step path (6 structures, the start and the minimum among them) rather than every
4th keeps a relaxation's path to ~3 h of labelling.

``--dense-store`` also registers the relaxed structure itself, unwrapped (the record's geometry to the last
digit), as a single point at ``--dense-kspacing-invA`` in that store, ``meta.source`` = ``NAME_<atoms>.extxyz``:
what ``dpqtb validate --phases-dense`` matches to the phase record NAME (the acceptance's converged-k ΔH):

    .venv/bin/python scripts/queue_phase_frames.py data/phases/C2_100GPa_s2_44.extxyz --store data/labels/v3_phases \
        --path-kspacing-invA 0.16 --every 8 --seed 100044 --dense-store data/labels/kdense_0.14
"""
import argparse
import json
from pathlib import Path

import numpy as np
from ase.io import read

from dpqtb.dft.settings import PRODUCTION
from dpqtb.dft.store import JobStore
from dpqtb.structures.lah10 import to_conventional
from dpqtb.structures.sampling import thermal_displace



def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("relaxed", help="OUT.extxyz of python -m dpqtb.dft.relax (OUT.json, OUT.traj beside it)")
    ap.add_argument("--store", required=True)
    ap.add_argument("--every", type=int, default=4, help="take every K-th path structure (and the last)")
    ap.add_argument("--n-thermal", type=int, default=10)
    ap.add_argument("--t-range-K", type=float, nargs=2, default=(0.0, 600.0))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--path-kspacing-invA", type=float, default=PRODUCTION.kspacing_invA,
                    help="k-point spacing (1/Å, with 2π) of the path structures' labels (default: production)")
    ap.add_argument("--dense-store", help="also register the minimum as a converged-k single point in this store")
    ap.add_argument("--dense-kspacing-invA", type=float, default=0.14,
                    help="k-point spacing (1/Å, with 2π) of that single point (default 0.14, docs/dft_convergence.md)")
    a = ap.parse_args()
    path_settings = PRODUCTION.replace(kspacing_invA=a.path_kspacing_invA)
    rec = json.load(open(a.relaxed + ".json"))
    cell = rec.get("cell", "primitive")  # records before the 44-atom relaxations have no "cell": 11 atoms
    if cell not in ("primitive", "conventional"):
        raise SystemExit(f"{a.relaxed}.json: unknown cell {cell!r}")
    final = read(a.relaxed)
    final.calc = None
    if len(final) != {"primitive": 11, "conventional": 44}[cell]:
        raise SystemExit(f"{a.relaxed}: {len(final)} atoms, not the {cell} LaH10 cell its record names")
    base = {"phase": f"{rec['phase_start']} (DFT-relaxed)", "target_pressure_GPa": rec["pressure_target_GPa"],
            "relaxation": a.relaxed, "space_group": rec["final"]["space_group"]["0.01"]}
    store = JobStore(a.store)
    order = len(store.job_ids())
    before = set(store.job_ids())
    path = read(a.relaxed + ".traj", ":")
    picks = sorted(set(range(0, len(path), a.every)) | {len(path) - 1})
    n = 0
    for k in picks:
        at = path[k].copy()
        at.calc = None
        at.wrap()
        store.add(at, path_settings, {**base, "kind": "relax-path", "relax_step": k, "temperature_K": 0.0,
                                   "cell": cell, "order": order + n, "round": 0})
        n += 1
    big = to_conventional(final) if cell == "primitive" else final
    rng = np.random.default_rng(a.seed)
    for t in range(a.n_thermal):
        T = float(round(rng.uniform(*a.t_range_K), 0))
        scale = float(rng.uniform(0.5, 1.0))
        at = thermal_displace(big, T, rng, scale=scale)
        at.wrap()
        store.add(at, PRODUCTION, {**base, "kind": "phase-thermal", "temperature_K": T,
                                   "width_scale": round(scale, 4), "cell": "conventional",
                                   "order": order + n, "round": 0, "seed": a.seed, "draw": t})
        n += 1
    new = len(set(store.job_ids()) - before)
    print(f"{n} jobs for {a.store} ({len(picks)} path structures, {a.n_thermal} thermal 44-atom cells), {new} new "
          "(the others were queued before)")
    if a.dense_store:
        name = Path(a.relaxed).name[:-len(".extxyz")] if a.relaxed.endswith(".extxyz") else Path(a.relaxed).stem
        jid = JobStore(a.dense_store).add(final, PRODUCTION.replace(kspacing_invA=a.dense_kspacing_invA),
                                          {"source": f"{name}_{len(final)}.extxyz"})
        print(f"the minimum as a single point at {a.dense_kspacing_invA} 1/A in {a.dense_store} (job {jid})")


if __name__ == "__main__":
    main()
