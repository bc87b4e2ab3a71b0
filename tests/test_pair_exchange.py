"""Relaxed pair-exchange sampling: the pair-direction constraint against exact answers."""

import math

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.morse import MorsePotential

from dpqtb import DpqtbError
from dpqtb.structures import sampling as S
from dpqtb.structures.lah10 import fm3m


def test_projection_is_the_orthogonal_projector_onto_translation_and_stretch():
    rng = np.random.default_rng(1)
    u = rng.normal(size=3)
    c = S.FixPairDirection(0, 1, u)
    u = u / np.linalg.norm(u)
    # build the 6x6 matrix of the force projection
    P = np.zeros((6, 6))
    for k in range(6):
        f = np.zeros((2, 3))
        f.flat[k] = 1.0
        c.adjust_forces(None, f)
        P[:, k] = f.ravel()
    np.testing.assert_allclose(P, P.T, atol=1e-15)
    np.testing.assert_allclose(P @ P, P, atol=1e-15)
    assert np.linalg.matrix_rank(P) == 4 == 6 - c.get_removed_dof(None)
    # translations and the stretch pass unchanged; rotations of u are removed
    for e in np.eye(3):
        np.testing.assert_allclose(P @ np.r_[e, e], np.r_[e, e], atol=1e-15)
    np.testing.assert_allclose(P @ np.r_[-u, u], np.r_[-u, u], atol=1e-15)
    w = np.cross(u, rng.normal(size=3))
    np.testing.assert_allclose(P @ np.r_[-w, w], 0.0, atol=1e-15)


class _Traps(Calculator):
    """Harmonic bond k(r − r0)²/2 between atoms 0 and 1, and each atom i tied to point p_i by
    κ|x_i − p_i|²/2 (atom 2 has no bond)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, p, k=3.0, r0=0.8, kappa=1.5):
        super().__init__()
        self.p, self.k, self.r0, self.kappa = np.asarray(p), k, r0, kappa

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        x = self.atoms.positions
        d = x[1] - x[0]
        r = np.linalg.norm(d)
        e = 0.5 * self.k * (r - self.r0) ** 2 + 0.5 * self.kappa * ((x - self.p) ** 2).sum()
        f = -self.kappa * (x - self.p)
        fb = -self.k * (r - self.r0) * d / r
        f[1] += fb
        f[0] -= fb
        self.results = {"energy": e, "forces": f}


def test_constrained_relaxation_reaches_the_closed_form_minimum():
    """Pair (0, 1) held along u with traps pulling it elsewhere: the constrained minimum is
    c = (p0 + p1)/2 and s = (κ u·D/2 + k r0)/(κ/2 + k), D = p1 − p0 (zero derivative in c and s);
    atom 2 lies outside the radius and must not move although its trap pulls on it."""
    p = np.array([[5.0, 5.0, 5.0], [6.0, 5.6, 5.2], [12.0, 12.0, 12.0]])
    u = np.array([1.0, -1.0, 0.5]) / 1.5
    x0 = np.array([[5.2, 5.1, 4.9], [5.2, 5.1, 4.9] + 0.9 * u, [13.0, 12.0, 12.0]])
    atoms = Atoms("H3", positions=x0, cell=[20, 20, 20], pbc=False)
    k, r0, kappa = 3.0, 0.8, 1.5
    out, rec = S.relax_around_pair(atoms, (0, 1), _Traps(p, k, r0, kappa), radius_A=3.0,
                                   fmax_eV_per_A=1e-7, steps=5000)
    D = p[1] - p[0]
    s = (kappa * u @ D / 2 + k * r0) / (kappa / 2 + k)
    c = (p[0] + p[1]) / 2
    np.testing.assert_allclose(out.positions[0], c - s * u / 2, atol=1e-6)
    np.testing.assert_allclose(out.positions[1], c + s * u / 2, atol=1e-6)
    np.testing.assert_array_equal(out.positions[2], x0[2])
    assert rec["relax_free_atoms"] == 2 and rec["relax_fmax_eV_per_A"] < 1e-6
    # the torque the constraint holds against is what the record reports on the pair
    f = _Traps(p, k, r0, kappa).get_forces(out)
    assert rec["relax_pair_force_eV_per_A"] == pytest.approx(np.linalg.norm(f[:2], axis=1).max(),
                                                            abs=1e-3)
    assert not out.constraints and out.calc is None


def _morse():
    return MorsePotential(epsilon=0.05, r0=1.15, rho0=4.0, rcut1=2.2, rcut2=2.8)


def test_relaxed_rotation_keeps_the_angle_and_the_far_cell():
    atoms = fm3m(4.9, "conventional")
    for ang in (40.0, 110.0):
        rot, (a, b) = S.rotate_pair_indexed(atoms, ang, np.random.default_rng(5))
        d0 = atoms.get_distance(a, b, mic=True, vector=True)
        out, rec = S.relax_around_pair(rot, (a, b), _morse(), radius_A=2.5)
        d1 = out.get_distance(a, b, mic=True, vector=True)
        cos = d0 @ d1 / np.linalg.norm(d0) / np.linalg.norm(d1)
        assert math.degrees(math.acos(np.clip(cos, -1, 1))) == pytest.approx(ang, abs=1e-9)
        moved = np.linalg.norm(out.positions - rot.positions, axis=1) > 0
        assert moved[[a, b]].any() and 2 < moved.sum() <= rec["relax_free_atoms"] < len(atoms)
        assert rec["relax_fmax_eV_per_A"] <= 0.05 and rec["relax_dE_eV"] < 0


def test_pair_exchange_sample_needs_a_model_and_is_deterministic():
    spec = S.SampleSpec(pressure_GPa=200.0, temperature_K=100.0, phase="C2", cell="primitive",
                        kind="pair-exchange", seed=11)
    with pytest.raises(DpqtbError, match="need a model"):
        S.build_sample(spec)
    with pytest.raises(DpqtbError, match="unknown sample kind"):
        S.build_sample(S.SampleSpec(200.0, 0.0, "Fm-3m", "primitive", "exchange", 1))
    a1, m1 = S.build_sample(spec, calc=_morse())
    a2, m2 = S.build_sample(spec, calc=_morse())
    np.testing.assert_array_equal(a1.positions, a2.positions)
    assert m1 == m2 and m1["kind"] == "pair-exchange" and 15 <= m1["pair_angle_deg"] <= 180
    assert {"relax_steps", "relax_fmax_eV_per_A", "relax_pair_force_eV_per_A"} <= set(m1)
    plan = S.round0_plan(n_small=3, n_large=1, kinds=("pair-exchange",))
    assert [s.kind for s in plan] == ["pair-exchange"] * 4
    with pytest.raises(DpqtbError, match="unknown sample kind"):
        S.round0_plan(n_small=1, n_large=0, kinds=("rattle",))


def test_relax_radius_uses_the_true_minimum_image_in_the_primitive_cell():
    """In the 60° primitive cell, rounding fractional coordinates picks wrong images; the free atoms
    must be exactly those within the radius by a brute-force search over neighbouring images."""
    import itertools

    from dpqtb.structures.eos import fm3m_at_pressure

    atoms = fm3m_at_pressure(200.0, "primitive")
    rot, (a, b) = S.rotate_pair_indexed(atoms, 60.0, np.random.default_rng(2))
    mid = rot.positions[a] + (rot.positions[b] - rot.positions[a]) / 2
    shifts = np.array(list(itertools.product(range(-2, 3), repeat=3))) @ rot.cell.array
    d = np.linalg.norm(rot.positions[:, None, :] + shifts[None] - mid, axis=2).min(axis=1)
    for radius in (1.6, 2.0, 2.4, 3.0):
        want = int((d <= radius).sum() + sum(d[[a, b]] > radius))
        _, rec = S.relax_around_pair(rot, (a, b), _morse(), radius_A=radius, steps=1)
        assert rec["relax_free_atoms"] == want, radius


def test_pair_exchange_with_the_shipped_model_through_potential_calculator():
    """The pair-exchange plan relaxes the cage with the Deep Potential as MD evaluates it
    (calculator_from_spec: PotentialCalculator around DeepPotential): deterministic, converged to the
    relaxation's fmax, the pair's bond direction kept."""
    pytest.importorskip("deepmd.pt")
    from dpqtb.potential.calculator import calculator_from_spec

    spec = S.SampleSpec(pressure_GPa=200.0, temperature_K=100.0, phase="C2", cell="primitive",
                        kind="pair-exchange", seed=12)
    calc, prov = calculator_from_spec("builtin:lah10")
    a1, m1 = S.build_sample(spec, calc=calc)
    a2, m2 = S.build_sample(spec, calc=calculator_from_spec("builtin:lah10")[0])
    np.testing.assert_array_equal(a1.positions, a2.positions)
    assert m1 == m2 and m1["relax_fmax_eV_per_A"] <= 0.05 and m1["relax_dE_eV"] < 0
    assert prov == {"relax_model": "builtin:lah10", "relax_model_sha256": prov["relax_model_sha256"]}
