"""Distorted LaH10 phases at their DFT minima: relative enthalpies, model vs DFT."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from dpqtb import InputError
from dpqtb.train.validate.metrics import _pressure_GPa


def phase_enthalpies(evaluator, phase_dir: str | os.PathLike) -> dict:
    """Relative enthalpies of the DFT-relaxed distorted phases, DP vs DFT, at the DFT geometries.

    ``phase_dir`` holds the records of ``python -m dpqtb.dft.relax`` (``NAME.extxyz`` with the
    relaxed structure, ``NAME.extxyz.json`` with its DFT enthalpy; ``docs/phases.md``).  For every
    non-cubic record with an Fm-3m record at the same target pressure P: ΔH = H − H(Fm-3m) per atom
    with H = (E + P V)/N, DFT (the record, E the Fermi–Dirac free energy as in the labels) and DP
    (the model's energy at the same two structures), the model's residual max force and pressure
    at the DFT minimum.  A static, 0 K check of the few meV/atom that decide the cage distortion.
    """
    from ase.io import read
    from ase.units import GPa

    d = Path(phase_dir)
    if not d.is_dir():
        raise InputError(f"phase records folder not found: {d}")
    recs = []
    for jp in sorted(d.glob("*.extxyz.json")):
        try:
            r = json.loads(jp.read_text())
            f = r["final"]
            atoms = read(jp.with_suffix(""), index=-1)
        except Exception as exc:  # noqa: BLE001 - any unreadable record is named, not skipped
            raise InputError(f"{jp}: not a dpqtb.dft.relax record ({type(exc).__name__}: {exc})") from None
        p = float(r["pressure_target_GPa"])
        e, forces, w = evaluator.evaluate(atoms.get_chemical_symbols(), atoms.positions[None],
                                          atoms.cell.array[None])
        n, v = len(atoms), float(atoms.get_volume())
        recs.append({"name": jp.name[:-len(".extxyz.json")], "phase_start": r["phase_start"],
                     "seed": int(r.get("seed", 0)), "pressure_GPa": p, "natoms": n,
                     "space_group_dft": f["space_group"].get("0.01"),
                     "h_dft_eV_per_atom": float(f["enthalpy_eV_per_atom"]),
                     "h_dp_eV_per_atom": (float(e[0]) + p * GPa * v) / n,
                     "pressure_dft_GPa": float(f["pressure_GPa"]),
                     "pressure_dp_GPa": _pressure_GPa(w[0], atoms.cell.array),
                     "max_force_dft_eV_per_A": float(f["max_force_eV_per_A"]),
                     "max_force_dp_eV_per_A": float(np.linalg.norm(forces[0], axis=1).max())})
    ref = {}
    for r in recs:
        if r["phase_start"] == "Fm-3m":
            ref.setdefault(r["pressure_GPa"], r)
    rows = []
    for r in recs:
        r0 = ref.get(r["pressure_GPa"])
        if r["phase_start"] == "Fm-3m" or r0 is None:
            continue
        dft = 1000 * (r["h_dft_eV_per_atom"] - r0["h_dft_eV_per_atom"])
        dp = 1000 * (r["h_dp_eV_per_atom"] - r0["h_dp_eV_per_atom"])
        rows.append({k: r[k] for k in ("name", "phase_start", "seed", "pressure_GPa", "space_group_dft",
                                       "pressure_dft_GPa", "pressure_dp_GPa", "max_force_dp_eV_per_A")}
                    | {"dH_dft_meV_per_atom": dft, "dH_dp_meV_per_atom": dp, "error_meV_per_atom": dp - dft,
                       "reference": r0["name"]})
    rows.sort(key=lambda r: (r["pressure_GPa"], r["phase_start"], r["seed"]))
    if not rows:
        raise InputError(f"{d}: no distorted-phase record with an Fm-3m record at the same pressure")
    err = np.array([r["error_meV_per_atom"] for r in rows])
    return {"dir": str(d), "rows": rows, "max_abs_error_meV_per_atom": float(np.abs(err).max()),
            "rms_error_meV_per_atom": float(np.sqrt(np.mean(err ** 2)))}
