"""Quasi-harmonic zero-point pressure and expansion of Fm-3m LaH10 with a Deep Potential (issue 23's
independent harmonic reference for the QTB, adQTB and PIMD NPT runs).

For each pressure P: 7 lattice constants from 0.6 % below to 1.8 % above the static-DFT a(P)
(the 32f parameter x relaxed by the model at each, as `dpqtb validate` does), the model's static pressure
there, and phonopy phonons (2×2×2 conventional supercell, 352 atoms, ± displacements of 0.01 Å, 16³ mesh
without Γ). dpqtb.analysis.qha then gives the zero-point pressure −∂F_zp/∂V at the model's static volume,
the T = 0 quasi-harmonic expansion, and the quantum − classical expansion at 5, 100 and 200 K (what the NPT
runs of the verdict measure against classical Langevin). At 200 GPa the supercell (3×3×3), the mesh (24³)
and the displacement (0.02 Å) are each changed once, as a convergence check.

    python scripts/qha_zero_point.py [--model builtin:lah10] [--out data/npt/qha_zero_point.json]

Cost: ~1 min on one core (a 352-atom model call per displacement: 8 per volume).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PRESSURES_GPA = (150.0, 200.0, 300.0)
TEMPERATURES_K = (5.0, 100.0, 200.0)
A_STEPS = np.linspace(-0.006, 0.018, 7)  # relative to the static-DFT a(P)
DEFAULT = {"supercell": 2, "mesh": 16, "displacement_A": 0.01}
CHECKS = ({"supercell": 3}, {"mesh": 24}, {"displacement_A": 0.02})


def _volume_grid(evaluator, calc, a_dft: float, settings: dict) -> dict:
    from dpqtb.analysis.qha import phonons
    from dpqtb.structures.lah10 import fm3m
    from dpqtb.train.validate.eos import relax_x_batch

    a_values = [a_dft * (1 + s) for s in A_STEPS]
    relaxed = relax_x_batch(evaluator, a_values)
    rows, phs = [], []
    for r in relaxed:
        atoms = fm3m(r["a_A"], "conventional", x=r["x32f"])
        n = settings["supercell"]
        ph = phonons(atoms, calc, supercell=(n, n, n), mesh=settings["mesh"],
                     displacement_A=settings["displacement_A"], primitive_matrix="F")
        phs.append(ph)
        rows.append({"a_A": r["a_A"], "x32f": r["x32f"], "V_A3": ph.volume_A3,
                     "static_pressure_GPa": r["pressure_GPa"], "max_force_32f_eV_per_A": r["max_force_32f_eV_per_A"],
                     "zero_point_energy_eV_per_fu": ph.free_energy_eV(0.0),
                     "imaginary_fraction": ph.imaginary_fraction,
                     "lowest_frequency_THz": float(ph.frequencies_THz.min())})
    return {"rows": rows, "phonons": phs}


def _summary(grid: dict, pressure: float) -> dict:
    from dpqtb.analysis.qha import quasi_harmonic

    q = quasi_harmonic([r["V_A3"] for r in grid["rows"]], [r["static_pressure_GPa"] for r in grid["rows"]],
                       grid["phonons"], pressure, TEMPERATURES_K,
                       # computed also where the phonons have imaginary modes (150 GPa: up to 4 %), to show how
                       # far the model's Fm-3m is from a harmonic minimum; the report marks those rows invalid
                       max_imaginary_fraction=1.0)
    a_of = lambda v: (4 * v) ** (1 / 3)  # noqa: E731  (primitive fcc cell: V = a³/4)
    out = {"a_static_A": a_of(q["static"]["V_A3"]),
           "zero_point_pressure_GPa": q["zero_point"]["P_zp_at_static_V_GPa"],
           "a_zero_point_A": a_of(q["zero_point"]["V_A3"]),
           "zero_point_expansion_percent": q["zero_point"]["expansion_percent"],
           "imaginary_fraction_max": q["imaginary_fraction_max"], "temperatures": []}
    out["zero_point_expansion_A"] = out["a_zero_point_A"] - out["a_static_A"]
    for t in q["temperatures"]:
        aq, ac = a_of(t["V_quantum_A3"]), a_of(t["V_classical_A3"])
        out["temperatures"].append({"temperature_K": t["temperature_K"], "a_quantum_A": aq, "a_classical_A": ac,
                                    "expansion_A": aq - ac, "expansion_percent": t["expansion_percent"],
                                    "P_quantum_minus_classical_at_static_V_GPa":
                                        t["P_quantum_minus_classical_at_static_V_GPa"]})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:lah10")
    parser.add_argument("--out", default=str(ROOT / "data/npt/qha_zero_point.json"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-checks", action="store_true", help="skip the convergence checks at 200 GPa")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from dpqtb.potential.builtin import resolve
    from dpqtb.potential.calculator import PotentialCalculator
    from dpqtb.structures.eos import lattice_constant
    from dpqtb.train.dataset import file_sha256
    from dpqtb.train.validate.evaluator import DeepPotentialEvaluator

    model = resolve(args.model)
    evaluator = DeepPotentialEvaluator(model)
    calc = PotentialCalculator(evaluator.potential, type_map=tuple(evaluator.type_map))
    result = {"what": "quasi-harmonic (phonopy) zero-point pressure and expansion of Fm-3m LaH10; "
                      "scripts/qha_zero_point.py",
              "model": args.model, "model_sha256": file_sha256(model), "settings": DEFAULT, "a_steps_relative": A_STEPS.tolist(),
              "temperatures_K": list(TEMPERATURES_K), "pressures": []}
    for p in PRESSURES_GPA:
        a_dft = lattice_constant(p)
        grid = _volume_grid(evaluator, calc, a_dft, DEFAULT)
        entry = {"pressure_GPa": p, "a_static_dft_A": a_dft, **_summary(grid, p), "volumes": grid["rows"],
                 "checks": []}
        if p == 200.0 and not args.no_checks:
            for change in CHECKS:
                s = {**DEFAULT, **change}
                summary = _summary(_volume_grid(evaluator, calc, a_dft, s), p)
                entry["checks"].append({"settings": s, **{k: summary[k] for k in
                                        ("zero_point_pressure_GPa", "zero_point_expansion_percent",
                                         "imaginary_fraction_max")}})
        result["pressures"].append(entry)
        print(f"{p:.0f} GPa: P_zp = {entry['zero_point_pressure_GPa']:.2f} GPa, zero-point expansion "
              f"{entry['zero_point_expansion_A']:.4f} Å ({entry['zero_point_expansion_percent']:.2f} %), "
              f"imaginary fraction {entry['imaginary_fraction_max']:.4f}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
