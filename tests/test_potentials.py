"""Potentials: forces and virials against brute force / finite differences, exact lattice sums."""

import math

import numpy as np
import pytest
import torch
from ase.build import bulk

from dpqtb import DpqtbError
from dpqtb.potential import EinsteinCrystal, Morse, TorchFunctionPotential, autograd_energy_forces_virial


def _cu(rattle=0.1, shift=7.3, rep=3):
    a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(rep)
    a.rattle(rattle, seed=1)
    a.positions += shift  # unwrapped coordinates outside the cell must not matter
    return torch.tensor(a.positions), torch.tensor(a.cell[:])


def _brute_morse(m, x, h):
    inv = torch.linalg.inv(h)
    d = x[None] - x[:, None]
    f = d @ inv
    d = (f - torch.round(f)) @ h
    r = d.norm(dim=-1) + torch.eye(x.shape[0], dtype=x.dtype) * 100
    return 0.5 * m.pair(r)[0].sum()


def test_morse_matches_minimum_image_brute_force():
    pos, cell = _cu()
    m = Morse(0.3429, 1.3588, 2.866, 5.0)  # cutoff < half the 10.8 Å box: minimum image is exact
    out = m(pos, cell, None)
    ref = autograd_energy_forces_virial(lambda x, h: _brute_morse(m, x, h), pos, cell)
    assert out.energy.item() == pytest.approx(ref.energy.item(), rel=1e-12)
    assert torch.allclose(out.forces, ref.forces, atol=1e-11)
    assert torch.allclose(out.virial, ref.virial, atol=1e-10)


def test_morse_fcc_lattice_sum_exact():
    """Perfect fcc: energy = N/2 Σ_shells z_s φ(r_s); shells 12 at a/√2, 6 at a, 24 at a√(3/2), 12 at a√2."""
    a = 3.6
    atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat(4)
    m = Morse(0.3429, 1.3588, 2.866, 5.2)
    out = m(torch.tensor(atoms.positions), torch.tensor(atoms.cell[:]), None)
    shells = [(12, a / math.sqrt(2)), (6, a), (24, a * math.sqrt(1.5)), (12, a * math.sqrt(2))]
    phi = lambda r: m.pair(torch.tensor(r, dtype=torch.float64))[0].item()  # noqa: E731
    expected = 0.5 * len(atoms) * sum(z * phi(r) for z, r in shells)
    assert out.energy.item() == pytest.approx(expected, rel=1e-12)
    assert out.forces.abs().max().item() < 1e-12
    # cubic symmetry: virial isotropic
    assert torch.allclose(out.virial, out.virial.trace() / 3 * torch.eye(3, dtype=torch.float64), atol=1e-10)


def test_virial_is_minus_strain_derivative():
    pos, cell = _cu()
    m = Morse(0.3429, 1.3588, 2.866, 5.0)
    w = m(pos, cell, None).virial
    eps = 1e-6
    for a_, b_ in [(0, 0), (1, 2), (2, 1)]:
        e = torch.zeros(3, 3, dtype=torch.float64)
        e[a_, b_] = eps
        m_p = Morse(0.3429, 1.3588, 2.866, 5.0)
        m_m = Morse(0.3429, 1.3588, 2.866, 5.0)
        ep = m_p(pos @ (torch.eye(3) + e), cell @ (torch.eye(3) + e), None).energy
        em = m_m(pos @ (torch.eye(3) - e), cell @ (torch.eye(3) - e), None).energy
        assert -(ep - em).item() / (2 * eps) == pytest.approx(w[a_, b_].item(), rel=1e-6, abs=1e-8)


def test_verlet_list_rebuilds_and_stays_exact():
    pos, cell = _cu(rattle=0.0, shift=0.0)
    m = Morse(0.3429, 1.3588, 2.866, 5.0, skin_A=0.4)
    m(pos, cell, None)
    n0 = m.nlist.n_builds
    moved = pos + 0.15 * torch.randn(pos.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = m(moved, cell, None)  # may reuse or rebuild; must agree with a fresh list
    fresh = Morse(0.3429, 1.3588, 2.866, 5.0)(moved, cell, None)
    assert torch.allclose(out.forces, fresh.forces, atol=1e-12)
    far = pos + 0.5 * torch.ones_like(pos) * torch.tensor([1.0, 0, 0], dtype=torch.float64)
    far[0, 0] += 0.6
    m(far, cell, None)
    assert m.nlist.n_builds > n0


def test_einstein_energy_forces_virial_and_batch():
    pos, cell = _cu(rattle=0.0, shift=0.0, rep=2)
    pot = EinsteinCrystal(pos, cell, k_per_atom=torch.linspace(1.0, 3.0, pos.shape[0], dtype=torch.float64))
    d = 0.05 * torch.randn(pos.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = pot(pos + d, cell, None)
    k = pot.k_per_atom
    assert out.energy.item() == pytest.approx(0.5 * (k[:, None] * d * d).sum().item(), rel=1e-13)
    assert torch.allclose(out.forces, -k[:, None] * d)
    ref = autograd_energy_forces_virial(lambda x, h: 0.5 * (k[:, None] * (x - pot.frac_ref @ h) ** 2).sum(),
                                        pos + d, cell)
    assert torch.allclose(out.virial, ref.virial, atol=1e-12)
    batch = pot(torch.stack([pos + d, pos - d]), cell, None)
    assert batch.energy.shape == (2,) and torch.allclose(batch.energy[0], batch.energy[1])


def test_torch_function_potential_batched_and_looped_agree():
    def energy(x, h, species):
        return (x ** 4).sum((-1, -2))

    x = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    cell = torch.eye(3, dtype=torch.float64) * 10
    a = TorchFunctionPotential(energy, batched=True)(x, cell, None)
    b = TorchFunctionPotential(energy, batched=False)(x, cell, None)
    assert torch.allclose(a.forces, -4 * x ** 3) and torch.allclose(a.forces, b.forces)
    assert torch.allclose(a.virial, b.virial)


def test_bad_potential_parameters():
    with pytest.raises(DpqtbError, match="D_eV"):
        Morse(-1.0, 1.0, 2.0, 5.0)
    with pytest.raises(DpqtbError, match="k_eV_per_A2"):
        EinsteinCrystal(torch.zeros(1, 3), torch.eye(3), k_by_species={"H": 0.0})
    p = EinsteinCrystal(torch.zeros(1, 3), torch.eye(3), k_by_species={"H": 1.0})
    with pytest.raises(DpqtbError, match="La"):
        p.bind(("H", "La"))
