"""Symmetry-constrained relaxation of a LaH10 phase at a target pressure (GPAW, under mpiexec).

    OMP_NUM_THREADS=1 GPAW_MPI_BACKEND=cgpaw mpiexec --allow-run-as-root -n 2 \\
        python -m dpqtb.dft.relax --phase C2 --pressure-GPa 150 --out c2_150GPa.extxyz

The starting cell is the Fm-3m structure at the target pressure (stored EOS) lowered to the
requested symmetry (:func:`dpqtb.structures.lah10.lowered`).  Positions and cell relax under
ASE's FixSymmetry (the space group found by spglib at the start is kept) and a
FrechetCellFilter at the scalar pressure, so the result is the nearest enthalpy minimum of that
symmetry.  Whether it falls back to Fm-3m (as expected at high pressure) is a result.
"""

from __future__ import annotations

import argparse
import sys

from ase.units import GPa

from dpqtb.dft.settings import PRODUCTION, make_calculator


def relax(atoms, settings=PRODUCTION, pressure_GPa: float = 0.0, fmax: float = 0.02,
          steps: int = 200, txt: str | None = "-", trajectory: str | None = None, calc=None):
    """Relax positions and cell of ``atoms`` at ``pressure_GPa`` keeping its space group.

    ``calc`` replaces the GPAW calculator (tests)."""
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    atoms = atoms.copy()
    atoms.set_constraint(FixSymmetry(atoms, symprec=1e-3))
    atoms.calc = calc if calc is not None else make_calculator(atoms, settings, txt=txt)
    flt = FrechetCellFilter(atoms, scalar_pressure=pressure_GPa * GPa)
    BFGS(flt, trajectory=trajectory, logfile=None if calc is not None else "-").run(
        fmax=fmax, steps=steps)
    return atoms


def main(argv=None) -> int:
    from ase.io import write

    from dpqtb.structures.eos import fm3m_at_pressure
    from dpqtb.structures.lah10 import lowered

    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", required=True, choices=["Fm-3m", "C2", "P-1", "R-3m"])
    ap.add_argument("--pressure-GPa", type=float, required=True)
    ap.add_argument("--cell", default="primitive", choices=["primitive", "conventional"])
    ap.add_argument("--amplitude-A", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fmax-eV-per-A", type=float, default=0.02)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    atoms = fm3m_at_pressure(a.pressure_GPa, a.cell)
    if a.phase != "Fm-3m":
        atoms = lowered(atoms, a.phase, amplitude=a.amplitude_A, rng=a.seed)
    out = relax(atoms, pressure_GPa=a.pressure_GPa, fmax=a.fmax_eV_per_A,
                txt=a.out + ".gpaw.txt", trajectory=a.out + ".traj")
    out.set_constraint()
    write(a.out, out, format="extxyz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
