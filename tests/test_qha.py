"""Quasi-harmonic free energies and volumes (dpqtb.analysis.qha) against the closed form of a rock-salt
crystal with nearest-neighbour central (Morse) bonds and the masses of La and H.

Reference, derived here without dpqtb: for rock salt (A at 0, B at a/2 x̂, conventional a, bond r = a/2)
with bonds K_R = φ''(r) R̂R̂ + (φ'(r)/r)(1 − R̂R̂) to the six neighbours ±r ê_α, every Cartesian direction α
decouples into a 2×2 dynamical matrix

    [[s/m_A, −g_α/√(m_A m_B)], [−g_α/√(m_A m_B), s/m_B]],  s = 2φ'' + 4φ'/r,
    g_α = 2 cos(q_α r) φ'' + 2 (φ'/r) Σ_{β≠α} cos(q_β r),

whose eigenvalues are ω². A primitive cell (2 atoms, V = 2r³) holds 6 bonds: E = 6φ(r) and the static
pressure is P = −dE/dV = −φ'(r)/r². The crystal is stretched (r > r0), where the bond tension keeps the
transverse modes real (a compressed rock salt with central forces only is unstable to shear).

Tolerances: phonopy's ± displacements of u leave the quartic term φ''''u²/6 in a force constant, relative
(for Morse near r0) ≈ 2.5 α²u² = 5e-5 at u = 0.003 Å, α = 1.5/Å: ≤ 1e-4 relative in ν and F. The
quasi-harmonic pressures come from cubic fits of F(V) over ±4.5 % in V (7 volumes); a quartic fit changes
P_zp by 5e-6 relative, so P_zp is held to 5e-4, and the volumes, which move by δP/(dP_st/dV), to 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.constants as C
from ase import Atoms
from scipy.optimize import brentq

pytest.importorskip("phonopy")

from dpqtb import InputError  # noqa: E402
from dpqtb.analysis.qha import phonons, quasi_harmonic  # noqa: E402
from dpqtb.potential.calculator import PotentialCalculator  # noqa: E402
from dpqtb.potential.morse import Morse  # noqa: E402

D, ALPHA, R0, RC = 0.5, 1.5, 2.0, 2.6  # eV, 1/Å, Å, Å (cutoff between the first (r) and second (√2 r) shells)
M_A, M_B = 138.90547, 1.00794  # La, H (amu), ASE's masses
MESH = 8


def _dphi(r):
    e = np.exp(-ALPHA * (r - R0))
    return 2 * D * ALPHA * (1 - e) * e, 2 * D * ALPHA**2 * e * (2 * e - 1)  # φ', φ''


def _rocksalt(r):
    a = 2 * r
    return Atoms("La4H4", cell=np.eye(3) * a, pbc=True,
                 scaled_positions=[(0, 0, 0), (0, .5, .5), (.5, 0, .5), (.5, .5, 0),
                                   (.5, 0, 0), (0, .5, 0), (0, 0, .5), (.5, .5, .5)])


def _frequencies_THz(r, qpoints_reduced):
    """Closed-form ν (THz) at the phonopy mesh points (reduced coordinates of the fcc primitive cell)."""
    a = 2 * r
    prim = 0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]])
    q = 2 * np.pi * qpoints_reduced @ np.linalg.inv(prim).T  # Cartesian (1/Å)
    d1, d2 = _dphi(r)
    t = d1 / r
    s = 2 * d2 + 4 * t
    c = np.cos(q * r)  # (n_q, 3)
    g = 2 * c * d2 + 2 * t * (c.sum(axis=1, keepdims=True) - c)
    tr = s / M_A + s / M_B
    disc = np.sqrt((s / M_A - s / M_B) ** 2 + 4 * g**2 / (M_A * M_B))
    w2 = np.concatenate([0.5 * (tr - disc), 0.5 * (tr + disc)], axis=1)  # eV/(Å² amu)
    omega = np.sqrt(w2 * C.e / (C.atomic_mass * 1e-20))  # rad/s
    return omega / (2 * np.pi) / 1e12


def _free_energy(nu_THz, weights, T):
    """Per primitive cell (eV): Σ hν/2 + kT ln(1 − e^{−hν/kT}) (T > 0) or the classical kT ln(hν/kT)."""
    e = C.h * nu_THz * 1e12 / C.e
    w = weights[:, None] / weights.sum()
    if T is None:
        return float((w * 0.5 * e).sum())
    kt = C.k * T / C.e
    return float((w * (0.5 * e + kt * np.log1p(-np.exp(-e / kt)))).sum())


def _classical(nu_THz, weights, T):
    e = C.h * nu_THz * 1e12 / C.e
    kt = C.k * T / C.e
    return float((weights[:, None] / weights.sum() * kt * np.log(e / kt)).sum())


@pytest.fixture(scope="module")
def grid():
    calc = PotentialCalculator(Morse(D, ALPHA, R0, RC), type_map=("La", "H"))
    rs = 2.1 * (1 + np.linspace(-0.015, 0.015, 7))  # V ∝ r³: ±4.5 %
    phs = [phonons(_rocksalt(r), calc, supercell=(2, 2, 2), mesh=MESH, displacement_A=0.003) for r in rs]
    return rs, phs


def test_frequencies_and_free_energies_equal_the_closed_form(grid):
    rs, phs = grid
    for r, ph in zip(rs, phs):
        assert ph.n_atoms == 2 and ph.volume_A3 == pytest.approx(2 * r**3, rel=1e-12)
        assert ph.imaginary_fraction == 0.0
        ref = np.sort(_frequencies_THz(r, ph.qpoints), axis=1)
        np.testing.assert_allclose(np.sort(ph.frequencies_THz, axis=1), ref, rtol=1e-4, atol=1e-4)
        assert ph.free_energy_eV(0.0) == pytest.approx(_free_energy(ref, ph.weights, None), rel=1e-4)
        assert ph.free_energy_eV(300.0) == pytest.approx(_free_energy(ref, ph.weights, 300.0), rel=1e-4)
        # the classical F is ~kT ln(hν/kT): compare its difference to the quantum one, not its size
        assert ph.free_energy_eV(300.0, quantum=False) == pytest.approx(_classical(ref, ph.weights, 300.0),
                                                                        abs=2e-4 * ph.free_energy_eV(0.0))


def test_quasi_harmonic_volumes_equal_the_closed_form(grid):
    rs, phs = grid
    p_static = [-_dphi(r)[0] / r**2 * C.e * 1e30 / 1e9 for r in rs]  # eV/Å³ -> GPa
    target = p_static[1]  # negative (the stretched crystal); the zero-point expansion is ~2 % in length
    out = quasi_harmonic([2 * r**3 for r in rs], p_static, phs, target, [100.0])
    q_ref = phs[2].qpoints  # the reduced mesh is the same at every volume

    def fzp(r):
        return _free_energy(_frequencies_THz(r, q_ref), phs[2].weights, None)

    def pst(r):
        return -_dphi(r)[0] / r**2 * C.e * 1e30 / 1e9

    def pvib(r, f):
        h = 1e-5 * r
        return -(f(r + h) - f(r - h)) / (2 * (r + h) ** 3 - 2 * (r - h) ** 3) * C.e * 1e30 / 1e9

    r_static = brentq(lambda r: pst(r) - target, rs[0], rs[-1], xtol=1e-14)
    assert out["static"]["V_A3"] == pytest.approx(2 * r_static**3, rel=2e-5)  # cubic fit of P_st: 4e-6
    assert out["zero_point"]["P_zp_at_static_V_GPa"] == pytest.approx(pvib(r_static, fzp), rel=5e-4)
    r_zp = brentq(lambda r: pst(r) + pvib(r, fzp) - target, rs[0], rs[-1], xtol=1e-14)
    assert out["zero_point"]["V_A3"] == pytest.approx(2 * r_zp**3, rel=1e-4)
    assert out["zero_point"]["expansion_percent"] == pytest.approx(100 * (r_zp / r_static - 1), rel=5e-3)
    assert out["zero_point"]["expansion_percent"] > 1.0

    def fq(r):
        return _free_energy(_frequencies_THz(r, q_ref), phs[2].weights, 100.0)

    def fc(r):
        return _classical(_frequencies_THz(r, q_ref), phs[2].weights, 100.0)

    row = out["temperatures"][0]
    r_q = brentq(lambda r: pst(r) + pvib(r, fq) - target, rs[0], rs[-1], xtol=1e-14)
    r_c = brentq(lambda r: pst(r) + pvib(r, fc) - target, rs[0], rs[-1], xtol=1e-14)
    assert row["V_quantum_A3"] == pytest.approx(2 * r_q**3, rel=1e-4)
    assert row["V_classical_A3"] == pytest.approx(2 * r_c**3, rel=1e-4)
    assert row["expansion_percent"] == pytest.approx(100 * (r_q / r_c - 1), rel=1e-2)


def test_bad_input_is_one_clear_error(grid):
    rs, phs = grid
    calc = PotentialCalculator(Morse(D, ALPHA, R0, RC), type_map=("La", "H"))
    with pytest.raises(InputError, match="even integer"):
        phonons(_rocksalt(2.1), calc, mesh=7)
    with pytest.raises(InputError, match="not reached"):
        quasi_harmonic([2 * r**3 for r in rs], [0.0, 1, 2, 3, 4, 5, 6], phs, 100.0, [])
    with pytest.raises(InputError, match="classical"):
        phs[0].free_energy_eV(0.0, quantum=False)
    # one band imaginary at every q of the largest volume (a fraction 1/n_bands of its modes): refused by
    # default, computed on request with the fraction reported
    import dataclasses

    nu = phs[-1].frequencies_THz.copy()
    nu[:, 0] = -1.0
    soft = [*phs[:-1], dataclasses.replace(phs[-1], frequencies_THz=nu)]
    vols = [2 * r**3 for r in rs]
    p_static = [-_dphi(r)[0] / r**2 * C.e * 1e30 / 1e9 for r in rs]
    with pytest.raises(InputError, match="imaginary at V = "):
        quasi_harmonic(vols, p_static, soft, p_static[1], [])
    # (computed on request: here with the same band imaginary at every volume, so F_vib(V) has no jump from
    # the count and the target stays in range; the jump of ``soft`` puts it out of range, as it should)
    every = [dataclasses.replace(ph, frequencies_THz=np.where(np.arange(nu.shape[1]) == 0, -1.0,
                                                              ph.frequencies_THz)) for ph in phs]
    out = quasi_harmonic(vols, p_static, every, p_static[1], [], max_imaginary_fraction=1.0)
    assert out["imaginary_fraction_max"] == pytest.approx(1 / nu.shape[1])
    # the bound itself: a fraction equal to it is accepted, one just above refused; NaN or < 0 is an error
    f = 1 / nu.shape[1]
    assert quasi_harmonic(vols, p_static, every, p_static[1], [], max_imaginary_fraction=f)["static"]["V_A3"] > 0
    with pytest.raises(InputError, match="imaginary at V = "):
        quasi_harmonic(vols, p_static, every, p_static[1], [], max_imaginary_fraction=0.999 * f)
    for bad in (float("nan"), -0.1):
        with pytest.raises(InputError, match="max_imaginary_fraction"):
            quasi_harmonic(vols, p_static, phs, p_static[1], [], max_imaginary_fraction=bad)
