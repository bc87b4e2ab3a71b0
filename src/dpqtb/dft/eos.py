"""DFT equation of state of Fm-3m LaH10 (run under mpiexec; resumable through a job store).

    OMP_NUM_THREADS=1 GPAW_MPI_BACKEND=cgpaw mpiexec --allow-run-as-root -n 2 \\
        python -m dpqtb.dft.eos data/eos [--write src/dpqtb/data/lah10_eos.json]

For each lattice constant the H 32f parameter x is relaxed by secant steps on the generalised
force g(x) = -dE/dx = Σ_i F_i · ∂r_i/∂x (cubic symmetry is kept exactly, so x is the only free
coordinate).  The pressures of the relaxed cells are fitted by a Birch–Murnaghan EOS.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from dpqtb.dft.settings import PRODUCTION, DFTSettings, code_versions
from dpqtb.dft.store import Job, JobStore, compute_frame, job_id
from dpqtb.entry import entry_point
from dpqtb.structures.eos import EOS
from dpqtb.structures.lah10 import X32F_DEFAULT, fm3m

A_GRID = (4.55, 4.65, 4.75, 4.85, 4.95, 5.05, 5.15, 5.25, 5.40)
X_STEP = 0.004
F_TOL = 0.005  # eV/Å: residual force on the 32f H along <111>


def _rank():
    try:
        from gpaw.mpi import world

        return world.rank
    except ImportError:  # pragma: no cover
        return 0


def label(store: JobStore, atoms, settings: DFTSettings, meta: dict) -> dict:
    """Frame for ``atoms`` from the store, computing (and storing) it if needed. All ranks."""
    jid = store.find(atoms, settings) or job_id(atoms, settings)
    if store.has_frame(jid):
        return store.frame(jid)
    job = Job(jid, atoms, settings, meta)
    rank = _rank()
    if rank == 0:
        store.add(atoms, settings, meta)
        store.logs_dir.mkdir(parents=True, exist_ok=True)
    frame = compute_frame(job, txt=str(store.logs_dir / f"{jid}.txt") if rank == 0 else None)
    if rank == 0:
        store.write_frame(frame)
    return frame


def generalised_force(a: float, x: float, forces: np.ndarray) -> float:
    """-dE/dx (eV per unit x) from the Cartesian forces of the primitive cell at (a, x)."""
    d = 1e-6
    r0 = fm3m(a, "primitive", x=x)
    r1 = fm3m(a, "primitive", x=x + d)
    dr = r1.positions - r0.positions
    frac = np.linalg.solve(r0.cell.array.T, dr.T).T
    frac -= np.round(frac)
    dr = frac @ r0.cell.array / d
    return float(np.sum(forces * dr))


def relax_x(store: JobStore, a: float, settings: DFTSettings, log=print,
            x_start: float = X32F_DEFAULT, stiffness: float | None = None) -> dict:
    """Relax x at lattice constant ``a``; ``stiffness`` (-dg/dx, eV) from a previous a gives a
    Newton first step, later steps are secant steps."""
    xs, gs, frames = [], [], []
    x = x_start
    for it in range(5):
        fr = label(store, fm3m(a, "primitive", x=x), settings, {"series": "eos", "a_A": a,
                                                                   "x32f": x})
        g = generalised_force(a, x, np.asarray(fr["forces_eV_per_A"]))
        xs.append(x)
        gs.append(g)
        frames.append(fr)
        log(f"a={a:.3f} x={x:.5f} g={g:+.4f} eV P={fr['pressure_GPa']:.2f} GPa")
        # the 8 H(32f) of the primitive cell move by a·√3 per unit x: g = 8·a·√3·F_H
        if abs(g) / (8.0 * a * np.sqrt(3.0)) < F_TOL:
            break
        if len(xs) == 1:
            x = x + (g / stiffness if stiffness else X_STEP * np.sign(g))
        else:
            x = xs[-1] - gs[-1] * (xs[-1] - xs[-2]) / (gs[-1] - gs[-2])
    best = int(np.argmin(np.abs(gs)))
    k = -(gs[-1] - gs[-2]) / (xs[-1] - xs[-2]) if len(xs) > 1 else stiffness
    return {"a_A": a, "x32f": xs[best], "pressure_GPa": frames[best]["pressure_GPa"],
            "energy_eV": frames[best]["energy_eV"], "g_eV": gs[best], "id": frames[best]["id"],
            "stiffness_eV": k}


@entry_point
def main(argv=None) -> int:
    """``python -m dpqtb.dft.eos STORE [--write EOS.json]``: relax x(32f) on the lattice grid,
    fit the EOS."""
    ap = argparse.ArgumentParser()
    ap.add_argument("store")
    ap.add_argument("--write", default=None, help="write the fitted EOS json here (rank 0)")
    args = ap.parse_args(argv)
    store = JobStore(args.store)
    rank = _rank()
    log = print if rank == 0 else (lambda *a, **k: None)
    pts = []
    x0, k0 = X32F_DEFAULT, None
    for a in A_GRID:
        if len(pts) >= 2:  # linear extrapolation of x(a)
            p1, p2 = pts[-2], pts[-1]
            x0 = p2["x32f"] + (a - p2["a_A"]) * (p2["x32f"] - p1["x32f"]) / (p2["a_A"] - p1["a_A"])
        elif pts:
            x0 = pts[-1]["x32f"]
        pts.append(relax_x(store, a, PRODUCTION, log=lambda s: log(s, flush=True), x_start=x0,
                           stiffness=k0))
        k0 = pts[-1]["stiffness_eV"]
    eos = EOS.fit([p["a_A"] for p in pts], [p["pressure_GPa"] for p in pts],
                  [p["x32f"] for p in pts],
                  source="GPAW PBE, 11-atom Fm-3m LaH10, 32f x relaxed (dpqtb.dft.eos)")
    if rank == 0 and args.write:
        out = {"fit": eos.to_dict(), "points": pts, "settings": PRODUCTION.as_dict(),
               "codes": code_versions(), "date": time.strftime("%Y-%m-%d"),
               "units": "a_A in Å, pressure in GPa, energy in eV per 11-atom cell"}
        with open(args.write, "w") as fh:
            json.dump(out, fh, indent=1)
        log(f"EOS written to {args.write}: V0={eos.v0_A3:.3f} Å³ B0={eos.b0_GPa:.1f} GPa "
            f"B0'={eos.b0_prime:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
