"""PIMD cost per step against bead count and atom count, and the memory of the bead arrays.

All beads are evaluated in one batched potential call. The potential here is the Einstein crystal
(cheap and batched), so the numbers measure the ring-polymer machinery (normal-mode transforms,
PILE-L, estimators); with a Deep Potential the force call dominates and scales with beads × atoms.

    python benchmarks/bench_pimd.py [--device cpu|cuda] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from timing import time_steps

from dpqtb.md.integrators import Langevin, TemperatureSchedule
from dpqtb.md.pimd import PIMD
from dpqtb.md.state import MDState
from dpqtb.potential import EinsteinCrystal
from dpqtb.structures.lah10 import fm3m, supercell


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (1: stable timings on a shared 2-core machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for n_cells in (2, 4, 6):  # 352, 2816, 9504 atoms
        atoms = supercell(fm3m(4.955, cell="conventional"), n_cells)
        for beads in (1, 8, 32):
            if beads * len(atoms) > 320_000:
                continue
            state = MDState.from_atoms(atoms, type_map=("La", "H"), device=args.device)
            pot = EinsteinCrystal(state.positions.clone(), state.cell.clone(), k_by_species={"La": 10.0, "H": 20.0})
            sched = TemperatureSchedule(200.0)
            if beads == 1:
                integ = Langevin(pot, 0.5, sched, 100.0, 1)
            else:
                integ = PIMD(pot, 0.5, sched, beads, 100.0, 1)
            n = max(3, int(2e6 / (beads * len(atoms))))
            t = time_steps(integ, state, min(n, 200), repeats=1)
            bead_bytes = 0 if beads == 1 else sum(x.numel() * x.element_size() for x in (state.ring.q, state.ring.p, state.ring.f))
            rows.append({"n_atoms": len(atoms), "beads": beads, "step_ms": t * 1e3,
                         "us_per_bead_atom_step": t * 1e6 / (beads * len(atoms)),
                         "bead_arrays_MB": bead_bytes / 1e6, "integrator": integ.name})
            print(rows[-1], flush=True)
    out = {"benchmark": "pimd_cost", "device": args.device,
           "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.machine(),
           "torch": torch.__version__, "threads": torch.get_num_threads(), "potential": "EinsteinCrystal (batched)",
           "baseline": "beads = 1 is a classical Langevin step on the same cell", "results": rows}
    path = Path(args.out or Path(__file__).parent / "results" / f"pimd_{args.device.split(':')[0]}.json")
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
