"""Convergence study of the GPAW settings (cutoff, k-point spacing) on a displaced LaH10 cell.

    python -m dpqtb.dft.convergence setup STORE     # register the jobs (then label STORE)
    python -m dpqtb.dft.convergence report STORE    # markdown table of the deviations

The test cell is the 11-atom Fm-3m primitive cell at a = 4.955 Å (≈ 200 GPa) with Gaussian
displacements (σ = 0.08 Å for H, 0.02 Å for La, fixed seed), so forces are non-zero.  The cutoff
series is run at a fixed k spacing and compared with the highest cutoff; the k series at a fixed
cutoff, compared with the densest mesh.  Criteria: forces within 0.03 eV/Å, pressure within 2 GPa.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from dpqtb.dft.settings import DFTSettings, kpoint_mesh
from dpqtb.dft.store import JobStore, atoms_from_dict
from dpqtb.entry import entry_point
from dpqtb.structures.lah10 import fm3m

A_TEST = 4.955
ECUTS = (350.0, 400.0, 500.0, 600.0, 700.0, 900.0)
ECUT_SERIES_K = 0.25
KSPACINGS = (0.40, 0.32, 0.25, 0.20, 0.16, 0.14)
K_SERIES_ECUT = 500.0
#: (smearing eV, k spacing) runs compared with the 0.1 eV, densest-k reference
SMEARING_RUNS = ((0.2, 0.25),)
FORCE_TOL = 0.03
PRESSURE_TOL = 2.0


def test_cell():
    atoms = fm3m(A_TEST, "primitive")
    rng = np.random.default_rng(20260)
    sigma = np.where(atoms.numbers == 1, 0.08, 0.02)[:, None]
    atoms.positions += rng.normal(size=atoms.positions.shape) * sigma
    return atoms


def setup(store: JobStore) -> None:
    atoms = test_cell()
    base = DFTSettings()
    order = 0
    for e in ECUTS:
        store.add(atoms, base.replace(ecut_eV=e, kspacing_invA=ECUT_SERIES_K),
                  {"series": "ecut", "order": order})
        order += 1
    for k in KSPACINGS:
        store.add(atoms, base.replace(ecut_eV=K_SERIES_ECUT, kspacing_invA=k),
                  {"series": "kspacing", "order": order})
        order += 1
    for sm, k in SMEARING_RUNS:
        store.add(atoms, base.replace(ecut_eV=K_SERIES_ECUT, kspacing_invA=k, smearing_eV=sm),
                  {"series": "smearing", "order": order})
        order += 1


def report(store: JobStore) -> str:
    frames = store.frames()
    lines = []
    for series, key, fixed in (("ecut", "ecut_eV", f"k spacing {ECUT_SERIES_K} Å⁻¹"),
                               ("kspacing", "kspacing_invA", f"cutoff {K_SERIES_ECUT:.0f} eV")):
        other, value = (("kspacing_invA", ECUT_SERIES_K) if series == "ecut"
                        else ("ecut_eV", K_SERIES_ECUT))
        fs = [f for f in frames if f["meta"].get("series") in ("ecut", "kspacing")
              and f["settings"][other] == value and f["settings"]["smearing_eV"] == 0.1]
        if not fs:
            continue
        fs.sort(key=lambda f: f["settings"][key], reverse=(series == "kspacing"))
        ref = fs[-1]
        fref = np.asarray(ref["forces_eV_per_A"])
        n = len(ref["symbols"])
        lines.append(f"\n### {series} series ({fixed}; reference = last row)\n")
        lines.append(f"| {key} | k-mesh | max ΔF (eV/Å) | ΔP (GPa) | ΔE (meV/atom) | P (GPa) | "
                     "wall (s) |")
        lines.append("|---|---|---|---|---|---|---|")
        for f in fs:
            df = np.abs(np.asarray(f["forces_eV_per_A"]) - fref).max()
            dp = f["pressure_GPa"] - ref["pressure_GPa"]
            de = (f["energy_eV"] - ref["energy_eV"]) / n * 1000
            mesh = "×".join(map(str, kpoint_mesh(atoms_from_dict(f), f["settings"]["kspacing_invA"])))
            lines.append(f"| {f['settings'][key]} | {mesh} | {df:.4f} | {dp:+.2f} | {de:+.2f} | "
                         f"{f['pressure_GPa']:.2f} | {f['provenance']['wall_s']:.0f} |")
    ks = [f for f in frames if f["settings"]["ecut_eV"] == K_SERIES_ECUT
          and f["settings"]["smearing_eV"] == 0.1]
    sm = [f for f in frames if f["meta"].get("series") == "smearing"]
    if ks and sm:
        ref = min(ks, key=lambda f: f["settings"]["kspacing_invA"])
        fref = np.asarray(ref["forces_eV_per_A"])
        n = len(ref["symbols"])
        lines.append(f"\n### smearing (cutoff {K_SERIES_ECUT:.0f} eV; reference: 0.1 eV at k spacing "
                     f"{ref['settings']['kspacing_invA']} Å⁻¹)\n")
        lines.append("| smearing_eV | kspacing_invA | max ΔF (eV/Å) | ΔP (GPa) | ΔE (meV/atom) | "
                     "P (GPa) | wall (s) |")
        lines.append("|---|---|---|---|---|---|---|")
        for f in sorted(sm, key=lambda f: -f["settings"]["kspacing_invA"]):
            df = np.abs(np.asarray(f["forces_eV_per_A"]) - fref).max()
            lines.append(f"| {f['settings']['smearing_eV']} | {f['settings']['kspacing_invA']} | "
                         f"{df:.4f} | {f['pressure_GPa'] - ref['pressure_GPa']:+.2f} | "
                         f"{(f['energy_eV'] - ref['energy_eV']) / n * 1000:+.2f} | "
                         f"{f['pressure_GPa']:.2f} | {f['provenance']['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


@entry_point
def main(argv=None) -> int:
    """``python -m dpqtb.dft.convergence setup|report STORE``: plan or report the convergence tests."""
    ap = argparse.ArgumentParser()
    ap.add_argument("action", choices=["setup", "report"])
    ap.add_argument("store")
    a = ap.parse_args(argv)
    st = JobStore(a.store)
    if a.action == "setup":
        setup(st)
        print(f"{len(st.pending())} pending jobs in {a.store}")
    else:
        print(report(st))
    return 0


if __name__ == "__main__":
    sys.exit(main())
