"""`dpqtb validate --phases`: relative enthalpies of DFT-relaxed distorted phases, DP vs DFT, on a
model whose answers are known in closed form (no DeePMD-kit needed).

The stub "model" has E = e0·N + b·V + k·Σ|r_i − r_i⁰|² (the first structure's positions r⁰), so its
pressure is −b exactly (virial −b·V·1 from the volume term; the position term is not strained),
its force −2k(r − r⁰), and at the target pressure P
    ΔH_DP = (b + P)(V₁/N₁ − V₀/N₀) + k Σ|r − r⁰|²/N     (per atom, relative to Fm-3m)
with the records' DFT ΔH read back unchanged."""

import json

import numpy as np
import pytest
from ase import Atoms
from ase.io import read, write
from ase.units import GPa

from dpqtb import DpqtbError
from dpqtb.structures.lah10 import fm3m
from dpqtb.train import validate as V

EV_PER_A3_TO_GPA = 160.21766208


class LinearVolumeModel:
    type_map = ["La", "H"]
    name = "stub"

    def __init__(self, e0=-3.0, b=0.2, k=0.5, r0=None):
        self.e0, self.b, self.k, self.r0 = e0, b, k, r0

    def evaluate(self, symbols, coords_A, cells_A):
        e, f, w = [], [], []
        for pos, cell in zip(np.asarray(coords_A), np.asarray(cells_A)):
            vol = abs(np.linalg.det(cell))
            d = pos - self.r0
            e.append(self.e0 * len(pos) + self.b * vol + self.k * (d * d).sum())
            f.append(-2 * self.k * d)
            w.append(-self.b * vol * np.eye(3))
        return np.array(e), np.array(f), np.array(w)


def _record(folder, name, atoms: Atoms, phase, p_GPa, h_eV, seed=0):
    write(folder / f"{name}.extxyz", atoms)
    (folder / f"{name}.extxyz.json").write_text(json.dumps({
        "phase_start": phase, "pressure_target_GPa": p_GPa, "seed": seed,
        "final": {"enthalpy_eV_per_atom": h_eV, "pressure_GPa": p_GPa + 0.1, "max_force_eV_per_A": 0.01,
                  "space_group": {"0.001": phase, "0.01": phase, "0.1": phase}}}))


def _phases(tmp_path):
    ref = fm3m(5.1, "primitive")
    c2 = ref.copy()
    c2.set_cell(ref.cell.array @ np.diag([1.02, 1.0, 0.99]), scale_atoms=True)
    rng = np.random.default_rng(3)
    c2.positions += rng.normal(0, 0.05, c2.positions.shape)
    _record(tmp_path, "Fm-3m_100GPa_s0", ref, "Fm-3m", 100.0, -0.60)
    _record(tmp_path, "C2_100GPa_s1", c2, "C2", 100.0, -0.6168, seed=1)
    _record(tmp_path, "C2_200GPa_s0", c2, "C2", 200.0, -0.5)  # no Fm-3m at 200 GPa: no row
    return ref, c2


def test_phase_enthalpies_exact(tmp_path):
    _phases(tmp_path)
    # the structures as stored (extxyz keeps 8 decimals of Å)
    ref, c2 = (read(tmp_path / f"{k}.extxyz") for k in ("Fm-3m_100GPa_s0", "C2_100GPa_s1"))
    m = LinearVolumeModel(r0=ref.positions.copy())
    out = V.phase_enthalpies(m, tmp_path)
    assert len(out["rows"]) == 1
    r = out["rows"][0]
    n = len(ref)
    d = c2.positions - ref.positions
    exact = (m.b + 100.0 * GPa) * (c2.get_volume() - ref.get_volume()) / n + m.k * (d * d).sum() / n
    assert r["dH_dp_meV_per_atom"] == pytest.approx(1000 * exact, rel=1e-10)
    assert r["dH_dft_meV_per_atom"] == pytest.approx(-16.8, abs=1e-9)
    assert r["error_meV_per_atom"] == pytest.approx(1000 * exact + 16.8, rel=1e-10)
    assert r["pressure_dp_GPa"] == pytest.approx(-m.b * EV_PER_A3_TO_GPA, rel=1e-9)
    assert r["max_force_dp_eV_per_A"] == pytest.approx(2 * m.k * np.linalg.norm(d, axis=1).max(), rel=1e-9)
    assert r["reference"] == "Fm-3m_100GPa_s0" and r["seed"] == 1
    assert out["max_abs_error_meV_per_atom"] == pytest.approx(abs(r["error_meV_per_atom"]), rel=1e-12)


def test_phase_enthalpies_in_the_report_markdown(tmp_path):
    ref, _ = _phases(tmp_path)
    rep = {"model": {"path": "m.pth", "sha256": "0" * 64}, "date": "d", "evaluator": "stub",
           "data": {"dir": "x"}, "test": {"frames": 1, "atoms": 11, "rmse_e_meV_per_atom": 1.0,
                                          "mae_e_meV_per_atom": 1.0, "rmse_f_eV_per_A": 0.1,
                                          "mae_f_eV_per_A": 0.1, "rmse_f_by_species_eV_per_A": {"H": 0.1},
                                          "force_rms_dft_eV_per_A": 1.0},
           "phases": V.phase_enthalpies(LinearVolumeModel(r0=ref.positions.copy()), tmp_path)}
    md = V._markdown(rep)
    assert "## Distorted phases at the DFT minima" in md
    assert "| C2 | 100 | 1 | C2 | -16.80 |" in md


def test_phase_enthalpies_bad_input(tmp_path):
    with pytest.raises(DpqtbError, match="not found"):
        V.phase_enthalpies(LinearVolumeModel(), tmp_path / "missing")
    (tmp_path / "x.extxyz.json").write_text("{not json")
    with pytest.raises(DpqtbError, match="x.extxyz.json: not a dpqtb.dft.relax record"):
        V.phase_enthalpies(LinearVolumeModel(), tmp_path)
    (tmp_path / "x.extxyz.json").unlink()
    with pytest.raises(DpqtbError, match="no distorted-phase record"):
        V.phase_enthalpies(LinearVolumeModel(), tmp_path)
