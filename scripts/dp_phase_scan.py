"""Static (classical, T = 0) phase scan with a Deep Potential: the symmetry-lowering relaxation of
dpqtb.dft.relax (same starts, same constraints) run with the model instead of GPAW, over a pressure
grid; enthalpies relative to Fm-3m at each pressure.  Compare with the DFT relaxations in
data/phases/ (docs/phases.md).

    .venv/bin/python scripts/dp_phase_scan.py --model builtin:lah10 --out data/phases/dp_scan_lah10.json
    .venv/bin/python scripts/dp_phase_scan.py --cell conventional --pressures-GPa 100 125 150 175 \
        --starts C2:1 C2:2 P-1:0 R-3m:0 --out data/phases/dp_scan_lah10_v2_44.json     # 44-atom cells
"""
import argparse
import json
import warnings

from dpqtb.dft.relax import relax_phase


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin:lah10")
    ap.add_argument("--pressures-GPa", type=float, nargs="+", default=[100, 110, 120, 130, 140, 150, 200])
    ap.add_argument("--starts", nargs="+", default=["C2:1", "P-1:0", "R-3m:0"], help="PHASE:SEED")
    ap.add_argument("--cell", default="primitive", choices=["primitive", "conventional"],
                    help="11-atom primitive or 44-atom conventional cells (distortions that double the primitive "
                         "cell need the latter)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    from deepmd.calculator import DP

    from dpqtb.potential.builtin import resolve

    calc = DP(str(resolve(a.model)))
    rows = []
    for p in a.pressures_GPa:
        _, ref = relax_phase("Fm-3m", p, cell=a.cell, calc=calc, fmax=0.002, steps=2000, txt=None, logfile=None)
        for start in a.starts:
            phase, seed = start.split(":")
            _, r = relax_phase(phase, p, cell=a.cell, amplitude_A=0.15, seed=int(seed), calc=calc, fmax=0.002,
                               steps=2000, txt=None, logfile=None)
            f = r["final"]
            rows.append({"pressure_GPa": p, "start": phase, "seed": int(seed),
                         "dH_meV_per_atom": 1000 * (f["enthalpy_eV_per_atom"]
                                                    - ref["final"]["enthalpy_eV_per_atom"]),
                         "space_group": f["space_group"], "volume_A3_per_atom": f["volume_A3_per_atom"],
                         "steps": f["steps"]})
            print(f"{p:g} GPa {phase:5s} seed {seed}: dH {rows[-1]['dH_meV_per_atom']:+.2f} meV/atom, "
                  f"space group (0.01 Å) {f['space_group']['0.01']}", flush=True)
    with open(a.out, "w") as fh:
        json.dump({"model": a.model, "cell": a.cell, "amplitude_A": 0.15, "fmax_eV_per_A": 0.002, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
