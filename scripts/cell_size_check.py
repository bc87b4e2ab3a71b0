"""Is a label independent of the cell it is computed in?  An 11-atom labelled frame (primitive fcc
cell) is expanded to its 44-atom conventional supercell — the same infinite crystal — and labelled
with the same production settings; the k-mesh of each cell comes from the same density rule
(0.25 Å⁻¹: 9³ vs 6³ here), so any difference in energy per atom, pressure or forces is the
inconsistency between the two cell sizes that the training set mixes.  Result:
data/convergence/cell_size/ID.json (docs/dft_convergence.md).

    OMP_NUM_THREADS=1 GPAW_MPI_BACKEND=cgpaw mpiexec --allow-run-as-root -n 1 \\
        .venv/bin/python scripts/cell_size_check.py run data/labels/round0 FRAME_ID
    .venv/bin/python scripts/cell_size_check.py report
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
from ase.units import GPa

from dpqtb.structures.lah10 import to_conventional

OUT = Path(__file__).resolve().parent.parent / "data" / "convergence" / "cell_size"


def run(store: str, fid: str) -> None:
    from dpqtb.dft.settings import PRODUCTION, DFTSettings, code_versions, kpoint_mesh, make_calculator
    from dpqtb.dft.store import JobStore, frame_to_atoms

    fr = JobStore(store).frame(fid)
    if DFTSettings.from_dict(fr["settings"]) != PRODUCTION:
        raise SystemExit(f"{fid} was not labelled with the production settings: no comparison")
    small = frame_to_atoms(fr)
    big = to_conventional(small)  # copies of the 11 atoms, cell by cell
    big.calc = make_calculator(big, PRODUCTION, txt=None)
    t = time.time()
    e = big.get_potential_energy(force_consistent=True)
    f, s = big.get_forces(), big.get_stress(voigt=False)
    out = {"id": fid, "store": store, "k_small": list(kpoint_mesh(small, PRODUCTION.kspacing_invA)),
           "k_big": list(kpoint_mesh(big, PRODUCTION.kspacing_invA)),
           "e_small_eV_per_atom": fr["energy_eV"] / len(small), "e_big_eV_per_atom": float(e) / len(big),
           "p_small_GPa": fr["pressure_GPa"], "p_big_GPa": float(-np.trace(s) / 3 / GPa),
           "f_big": np.round(f, 8).tolist(), "f_small": fr["forces_eV_per_A"], "wall_s": time.time() - t,
           "codes": code_versions()}
    from gpaw.mpi import world

    if world.rank == 0:
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / f"{fid}.json").write_text(json.dumps(out))
    print(summary(out))


def summary(d: dict) -> str:
    fb, fs = np.array(d["f_big"]), np.array(d["f_small"])
    df = np.abs(fb - np.tile(fs, (len(fb) // len(fs), 1))).max()
    return (f"{d['id']}: k {d['k_small']} (11 atoms) vs {d['k_big']} (44 atoms): "
            f"dE {1000 * (d['e_big_eV_per_atom'] - d['e_small_eV_per_atom']):+.3f} meV/atom, "
            f"dP {d['p_big_GPa'] - d['p_small_GPa']:+.2f} GPa at {d['p_small_GPa']:.0f} GPa, "
            f"max dF {df:.4f} eV/A (max |F| {np.abs(fs).max():.2f})")


if __name__ == "__main__":
    if sys.argv[1:2] == ["run"]:
        run(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["report"]:
        for p in sorted(OUT.glob("*.json")):
            print(summary(json.loads(p.read_text())))
    else:
        sys.exit(__doc__)
