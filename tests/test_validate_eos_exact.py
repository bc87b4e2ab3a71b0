"""The DP side of `dpqtb validate`'s EOS and Table I (x relaxation, lattice constant at a pressure,
BM3 fit, distances) on a model whose answers are known in closed form: no DeePMD-kit needed.

The stub "model" of Fm-3m LaH10 has the stored DFT equation of state shifted by ΔP,
P(a) = P_DFT(a) + ΔP (virial V·P·1), and an energy k (x − x_DFT(a) − Δx)² in the 32f parameter x
(forces its exact gradient). Its lattice constant at pressure p is therefore a_DFT(p − ΔP), its
relaxed x is x_DFT(a) + Δx, and its Table I row is the DFT geometry at those (a, x)."""

import math

import numpy as np
import pytest

from dpqtb.structures.eos import load_eos
from dpqtb.structures.lah10 import fm3m
from dpqtb.train import validate as V

EV_PER_A3_TO_GPA = 160.21766208


class ShiftedEOSModel:
    type_map = ["La", "H"]
    name = "stub"

    def __init__(self, dp_GPa=0.0, dx=0.0, k_eV=40.0):
        self.eos, self.dp, self.dx, self.k = load_eos(), dp_GPa, dx, k_eV
        self._basis = {}

    def evaluate(self, symbols, coords_A, cells_A):
        e, f, w = [], [], []
        for pos, cell in zip(np.asarray(coords_A), np.asarray(cells_A)):
            a = np.sqrt(2.0) * np.linalg.norm(cell[0])  # primitive fcc vectors have length a/√2
            if a not in self._basis:
                p0 = fm3m(a, "primitive", x=0.38).positions
                self._basis[a] = (p0, fm3m(a, "primitive", x=0.39).positions - p0)  # linear in x
            p0, d = self._basis[a]
            x = 0.38 + 0.01 * float(((pos - p0) * d).sum() / (d * d).sum())
            dev = x - (self.eos.x32f(a) + self.dx)
            e.append(self.k * dev**2)
            # dE/dpos = 2k·dev·dx/dpos, dx/dpos = 0.01·d/|d|²
            f.append(-2.0 * self.k * dev * 0.01 * d / (d * d).sum())
            vol = abs(np.linalg.det(cell))
            w.append(vol * (self.eos.pressure(a) + self.dp) / EV_PER_A3_TO_GPA * np.eye(3))
        return np.array(e), np.array(f), np.array(w)


def test_relax_x_recovers_the_minimum_and_pressure():
    m = ShiftedEOSModel(dp_GPa=7.0, dx=0.004)
    for r in V.relax_x_batch(m, [4.75, 4.95]):
        a = r["a_A"]
        assert r["x32f"] == pytest.approx(m.eos.x32f(a) + 0.004, abs=2e-6)
        assert r["pressure_GPa"] == pytest.approx(m.eos.pressure(a) + 7.0, rel=1e-12)
        assert r["max_force_32f_eV_per_A"] < 1e-3 and not r["at_bound"]


class RoundedEnergyModel(ShiftedEOSModel):
    """The same model with its energy rounded to 1e-4 eV (a float32 sum of atomic energies is flat at that
    scale near a minimum) and its forces exact: the energy alone cannot place x closer than
    ~sqrt(1e-4 / k) ≈ 1.6e-3 here; the root of the generalised force can."""

    def evaluate(self, symbols, coords_A, cells_A):
        e, f, w = super().evaluate(symbols, coords_A, cells_A)
        return np.round(e, 4), f, w


def test_relax_x_takes_x_from_the_force_root_not_the_flat_rounded_energy():
    m = RoundedEnergyModel(dx=0.0013)
    for r in V.relax_x_batch(m, [4.75, 4.95, 5.15]):
        assert r["x32f"] == pytest.approx(m.eos.x32f(r["a_A"]) + 0.0013, abs=1e-8)
        assert r["max_force_32f_eV_per_A"] < 1e-6


@pytest.mark.parametrize("dp_GPa,dx", [(0.0, 0.0), (12.0, -0.003)])
def test_eos_and_table1_exact(dp_GPa, dx):
    m = ShiftedEOSModel(dp_GPa, dx)
    eos, table = V.eos_and_table1(m)
    dft = m.eos
    for s in eos["at_dft_points"]:  # DP at the DFT geometries: the fit's pressure + ΔP
        assert s["pressure_dp_same_geometry_GPa"] == pytest.approx(dft.pressure(s["a_A"]) + dp_GPa, rel=1e-12)
        assert s["x32f_dp"] == pytest.approx(dft.x32f(s["a_A"]) + dx, abs=2e-6)
    for r in eos["lattice_constant_at_pressure"]:
        assert r["a_dp_A"] == pytest.approx(dft.lattice_constant(r["pressure_GPa"] - dp_GPa), abs=2e-6)
    for p, row in table["pressures"].items():
        a = dft.lattice_constant(float(p) - dp_GPa)
        exact = V.fm3m_distances(a, dft.x32f(a) + dx)
        for key in ("a_A", "La-H1_A", "La-H2_A", "H-H1_A", "H-H2_A", "La-La_A", "x32f"):
            assert row["dp"][key] == pytest.approx(exact[key], abs=1e-5), key
        assert row["dp"]["residual_pressure_GPa"] == pytest.approx(0.0, abs=1e-3)
        if dp_GPa == 0.0 and dx == 0.0:  # the DP columns then equal the DFT ones
            for key in ("a_A", "La-H1_A", "H-H1_A", "La-La_A"):
                assert row["dp"][key] == pytest.approx(row["dft"][key], abs=1e-5)
    if dp_GPa == 0.0:  # points exactly on the DFT BM3 curve: the DP fit returns its parameters
        fit, ref = eos["dp_fit"], eos["dft_fit"]
        assert fit["v0_A3_per_11_atoms"] == pytest.approx(ref["v0_A3_per_11_atoms"], rel=1e-6)
        assert fit["b0_GPa"] == pytest.approx(ref["b0_GPa"], rel=1e-5)
        assert fit["b0_prime"] == pytest.approx(ref["b0_prime"], rel=1e-5)


@pytest.mark.parametrize("a, x", [(4.749, 0.3794), (5.1, 0.37), (4.6, 0.39)])
def test_table1_distances_equal_their_closed_forms(a, x):
    """Fm-3m LaH10 (La 4a (0,0,0), H 8c (¼,¼,¼), H 32f (x,x,x)), written here from the Wyckoff positions:
    La–H¹ = La (½,½,0) to 32f (x,x,x): a √(x² + 2(½ − x)²); La–H² = a√3/4; H–H¹ = the square edge (x,x,x) to
    (x,x,1 − x): a (1 − 2x); H–H² = (x,x,x) to 8c (¼,¼,¼): a √3 (x − ¼); La–La = a/√2 (every x in 0.34–0.42)."""
    d = V.fm3m_distances(a, x)
    assert d["La-H1_A"] == pytest.approx(a * math.sqrt(x**2 + 2 * (0.5 - x) ** 2), rel=1e-12)
    assert d["La-H2_A"] == pytest.approx(a * math.sqrt(3) / 4, rel=1e-12)
    assert d["H-H1_A"] == pytest.approx(a * (1 - 2 * x), rel=1e-12)
    assert d["H-H2_A"] == pytest.approx(a * math.sqrt(3) * (x - 0.25), rel=1e-12)
    assert d["La-La_A"] == pytest.approx(a / math.sqrt(2), rel=1e-12)
