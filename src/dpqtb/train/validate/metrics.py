"""Held-out errors of a model (definitions of ``dp test``): energy per atom, force components,
virial per atom and pressure, overall, per frame and per subset of frames."""

from __future__ import annotations

import numpy as np

from dpqtb import InputError

EV_PER_A3_TO_GPA = 160.21766208


def _pressure_GPa(virial_eV: np.ndarray, cell_A: np.ndarray) -> float:
    """Virial pressure tr(W)/(3V) of one frame (GPa)."""
    return float(np.trace(virial_eV) / (3.0 * abs(np.linalg.det(cell_A))) * EV_PER_A3_TO_GPA)


def test_errors(evaluator, systems: list[dict]) -> dict:
    """Errors of the model on labelled systems (see the module doc for the definitions)."""
    if not systems:
        raise InputError("no test frames")
    e_dft, e_dp, nat = [], [], []
    f_dft, f_dp, f_species, frame_sq_f, frame_n_f, frame_de = [], [], [], [], [], []
    v_dft, v_dp, v_nat = [], [], []
    p_dft, p_dp = [], []
    for s in systems:
        e, f, v = evaluator.evaluate(s["symbols"], s["coords_A"], s["cells_A"])
        n = len(s["symbols"])
        e_dft.append(s["energy_eV"] / n)
        e_dp.append(e / n)
        nat.append(np.full(len(e), n))
        f_dft.append(s["forces_eV_per_A"].reshape(-1, 3))
        f_dp.append(f.reshape(-1, 3))
        f_species.append(np.tile(s["symbols"], len(e)))
        sq, nf, de = _frame_errors(s, e, f)
        frame_sq_f.append(sq)
        frame_n_f.append(nf)
        frame_de.append(de)
        if s["virial_eV"] is not None:
            vol = np.abs(np.linalg.det(s["cells_A"]))
            v_dft.append(s["virial_eV"].reshape(-1, 9) / n)
            v_dp.append(v.reshape(-1, 9) / n)
            v_nat.append(np.full(len(e), n))
            p_dft.append(np.trace(s["virial_eV"], axis1=1, axis2=2) / (3 * vol) * EV_PER_A3_TO_GPA)
            p_dp.append(np.trace(v, axis1=1, axis2=2) / (3 * vol) * EV_PER_A3_TO_GPA)
    e_dft, e_dp = np.concatenate(e_dft), np.concatenate(e_dp)
    f_dft, f_dp, f_species = np.concatenate(f_dft), np.concatenate(f_dp), np.concatenate(f_species)

    def rmse(a, b):
        return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))

    def mae(a, b):
        return float(np.mean(np.abs(np.asarray(a) - np.asarray(b))))

    out = {
        "frames": int(len(e_dft)),
        "atoms": int(np.concatenate(nat).sum()),
        "rmse_e_meV_per_atom": 1000 * rmse(e_dp, e_dft),
        "mae_e_meV_per_atom": 1000 * mae(e_dp, e_dft),
        "rmse_f_eV_per_A": rmse(f_dp, f_dft),
        "mae_f_eV_per_A": mae(f_dp, f_dft),
        "rmse_f_by_species_eV_per_A": {sp: rmse(f_dp[f_species == sp], f_dft[f_species == sp])
                                        for sp in sorted(set(f_species.tolist()))},
        "force_rms_dft_eV_per_A": float(np.sqrt(np.mean(f_dft**2))),
    }
    arrays = {"e_dft": e_dft, "e_dp": e_dp, "f_dft": f_dft, "f_dp": f_dp, "f_species": f_species,
              "frame_natoms": np.concatenate(nat), "frame_sq_f": np.concatenate(frame_sq_f),
              "frame_n_f": np.concatenate(frame_n_f), "frame_de": np.concatenate(frame_de)}
    if v_dft:
        v_dft, v_dp = np.concatenate(v_dft), np.concatenate(v_dp)
        p_dft, p_dp = np.concatenate(p_dft), np.concatenate(p_dp)
        out.update({"virial_frames": int(len(v_dft)),
                    "rmse_v_meV_per_atom": 1000 * rmse(v_dp, v_dft),
                    "mae_v_meV_per_atom": 1000 * mae(v_dp, v_dft),
                    "rmse_p_GPa": rmse(p_dp, p_dft)})
        arrays.update({"v_dft": v_dft, "v_dp": v_dp, "p_dft": p_dft, "p_dp": p_dp})
    return {"metrics": out, "arrays": arrays}


def per_frame_errors(evaluator, systems: list[dict]) -> dict:
    """Per-frame errors of a model: ``sq_f`` the sum of squared force-component errors (eV²/Å²),
    ``n_f`` the number of force components, ``de`` the energy error per atom (eV), one entry per frame
    in the order of ``systems``.  The RMSEs of :func:`test_errors` are
    sqrt(sum(sq_f)/sum(n_f)) and sqrt(mean(de²))."""
    parts = [_frame_errors(s, *evaluator.evaluate(s["symbols"], s["coords_A"], s["cells_A"])[:2])
             for s in systems]
    return {k: np.concatenate([p[i] for p in parts]) for i, k in enumerate(("sq_f", "n_f", "de"))}


def _frame_errors(s: dict, e, f) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame of system ``s`` with model energies ``e`` and forces ``f``: the sum of squared
    force-component errors, the number of components, the energy error per atom (eV)."""
    n = len(s["symbols"])
    d = np.asarray(f, float).reshape(len(e), -1) - s["forces_eV_per_A"].reshape(len(e), -1)
    return (d**2).sum(axis=1), np.full(len(e), 3 * n), (np.asarray(e, float) - s["energy_eV"]) / n



def subset_errors(arrays: dict, labels: list[str]) -> dict:
    """Errors of the frames sharing each label (``arrays`` from :func:`test_errors`): frames, energy
    RMSE and mean signed error DP − DFT (meV/atom; a mean far from 0 is a bias of the model on that
    subset), force RMSE (eV/Å)."""
    lab = np.asarray(labels)
    de = arrays["e_dp"] - arrays["e_dft"]
    out = {}
    for k in sorted(set(labels)):
        sel = lab == k
        out[k] = {"frames": int(sel.sum()),
                  "rmse_e_meV_per_atom": 1000 * float(np.sqrt(np.mean(de[sel] ** 2))),
                  "mean_e_meV_per_atom": 1000 * float(np.mean(de[sel])),
                  "rmse_f_eV_per_A": float(np.sqrt(arrays["frame_sq_f"][sel].sum() / arrays["frame_n_f"][sel].sum()))}
    return out


def subset_labels(arrays: dict, metas: list[dict] | None) -> dict[str, list[str]]:
    """Two partitions of the frames for :func:`subset_errors`: by cell size and sample kind, and by
    phase (``meta.phase``; frames without one, e.g. model-deviation candidates, are 'unknown')."""
    nat = arrays["frame_natoms"]
    metas = metas or [{}] * len(nat)
    return {"cell size, kind": [f"{n} atoms, {m.get('kind', 'unknown')}" for n, m in zip(nat, metas)],
            "phase": [str(m.get("phase", "unknown")) for m in metas]}
