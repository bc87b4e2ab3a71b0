"""Conformance: every Potential class in src/dpqtb/potential/ obeys the engine's interface.

For each class, on a small rattled and sheared cell in float64:

* energy finite, of shape () (one configuration) or (B,) (a batch), forces (N, 3), virial (3, 3);
* forces = -∂E/∂x by central finite differences;
* virial W = -∂E/∂ε by central finite differences of a homogeneous strain of positions and cell;
* a batch of replicas equals the replicas evaluated one by one;
* :class:`~dpqtb.potential.calculator.PotentialCalculator` returns the same energy, forces and stress
  (= -W/V, Voigt) through ASE;
* E(x + a) = E(x) and Σ F = 0 where the class declares ``translation_invariant`` (a user function,
  None, is tested once by ``is_translation_invariant``, which must find it invariant here).

A new Potential class in src/dpqtb/potential/ fails :func:`test_every_potential_class_is_covered` until it
gets a case below.  About 10 s in all (the Deep Potential case loads the shipped model).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import dpqtb.potential as potential_pkg
from dpqtb.potential import (EinsteinCrystal, HarmonicNetwork, Morse, Potential, PotentialCalculator,
                             TorchFunctionPotential)
from dpqtb.structures.lah10 import fm3m

PBC = (True, True, True)


@dataclass
class Case:
    pot: Potential
    positions: torch.Tensor  # (N, 3) Å
    cell: torch.Tensor  # (3, 3) Å
    species: torch.Tensor  # (N,) into type_map
    type_map: tuple
    #: finite-difference step (Å for positions, dimensionless for strain) and tolerance on
    #: |FD − analytic| / max(1, largest |component|) (of the forces, of the virial); see the case
    #: builders for the reasoning
    step: float = 1e-5
    tol: float = 1e-6
    #: Cartesian components checked by finite differences (None: all)
    components: tuple | None = None


def _lah10(seed: int = 0, a: float = 4.9, rattle: float = 0.05):
    """11-atom primitive LaH10, rattled and sheared (no symmetry left)."""
    rng = np.random.default_rng(seed)
    atoms = fm3m(a, "primitive")
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + rng.normal(0, 0.02, (3, 3))), scale_atoms=True)
    atoms.positions += rng.normal(0, rattle, atoms.positions.shape)
    type_map = ("La", "H")
    species = torch.tensor([type_map.index(s) for s in atoms.get_chemical_symbols()])
    return torch.tensor(atoms.positions), torch.tensor(atoms.cell.array), species, type_map


# Tolerances of the float64 cases: central differences with h = 1e-5 have a truncation error
# h²/6·|E'''| ~ 1e-10 (curvatures of a few eV/Å² over Å) and a round-off error ~ eps·|E|/h ~
# 1e-16·10/1e-5 = 1e-10 eV/Å, so 1e-6 relative leaves four orders of magnitude of margin.

def _einstein() -> Case:
    x, h, sp, tm = _lah10(1)
    ref, _, _, _ = _lah10(1, rattle=0.0)
    pot = EinsteinCrystal(ref, h, k_by_species={"La": 8.0, "H": 3.0})
    return Case(pot, x, h, sp, tm)


def _harmonic_network() -> Case:
    x, h, sp, tm = _lah10(2)
    ref, _, _, _ = _lah10(2, rattle=0.0)
    pot = HarmonicNetwork(ref, h, sp, tm, {("H", "H"): 3.0, ("La", "H"): 1.5}, {("H", "H"): 1.3, ("La", "H"): 2.2})
    return Case(pot, x, h, sp, tm)


def _morse() -> Case:
    # cutoff 3.2 Å: the Morse force jumps at the cutoff (energy shifted, force not), so no pair may sit
    # within the FD step of it; the rattled cell's pair distances avoid 3.2 ± 1e-4 (checked below)
    x, h, sp, tm = _lah10(3)
    return Case(Morse(D_eV=0.2, a_per_A=1.6, r0_A=1.9, cutoff_A=3.2), x, h, sp, tm)


def _soft_pairs(x, h, species):
    """A smooth periodic pair sum over the 27 nearest images, batched over leading dimensions."""
    shifts = torch.tensor([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=x.dtype)
    images = shifts @ h  # (27, 3) or (B, 27, 3)
    d = x[..., None, :, None, :] - x[..., :, None, None, :] + images[..., None, None, :, :]
    r2 = (d * d).sum(-1)
    n = x.shape[-2]
    self_pair = torch.zeros(n, n, 27, dtype=torch.bool)
    self_pair[torch.arange(n), torch.arange(n), 13] = True  # shift (0, 0, 0) of an atom with itself
    e = torch.where(self_pair, torch.zeros_like(r2), torch.exp(-r2 / 1.7))
    return 0.5 * e.sum(dim=(-1, -2, -3))


def _torch_function() -> Case:
    x, h, sp, tm = _lah10(4)
    return Case(TorchFunctionPotential(_soft_pairs, batched=True, name="soft_pairs"), x, h, sp, tm)


def _deep_potential() -> Case:
    pytest.importorskip("deepmd.pt")
    from dpqtb.potential.builtin import resolve
    from dpqtb.potential.deepmd import DeepPotential

    x, h, sp, tm = _lah10(5, a=4.85)
    pot = DeepPotential(resolve("builtin:lah10"))
    # The shipped model computes in float32: E (-22 eV here) carries a round-off of ~3e-5 eV (a sum of
    # float32 atomic energies, ~16 ulp), so FD needs a larger step, h = 3e-3 (Å, or strain): measured
    # |FD − analytic| is then 1e-3 eV/Å on forces (of ~1 eV/Å) and 4e-3 eV on the virial (of ~45 eV;
    # h = 1e-3: 3e-3 and 1.6e-2, round-off dominated; h = 1e-2: 6e-4 and 1.8e-2, truncation dominated).
    # tol = 2e-3 of the largest component; six force components keep the case at a few seconds.
    return Case(pot, x, h, sp, tm, step=3e-3, tol=2e-3, components=((0, 0), (0, 2), (3, 1), (5, 2), (8, 0), (10, 1)))


CASES = {
    "EinsteinCrystal": _einstein,
    "HarmonicNetwork": _harmonic_network,
    "Morse": _morse,
    "TorchFunctionPotential": _torch_function,
    "DeepPotential": _deep_potential,
}


def _potential_classes() -> set[str]:
    found = set()
    for info in pkgutil.iter_modules(potential_pkg.__path__):
        module = importlib.import_module(f"{potential_pkg.__name__}.{info.name}")
        for name, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Potential) and obj is not Potential and obj.__module__ == module.__name__:
                found.add(name)
    return found


def test_every_potential_class_is_covered():
    found = _potential_classes()
    missing = found - set(CASES)
    assert not missing, f"Potential classes without a conformance case: {sorted(missing)} (add them to CASES)"
    assert set(CASES) <= found, f"cases for classes that no longer exist: {sorted(set(CASES) - found)}"


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request) -> Case:
    c = CASES[request.param]()
    c.pot.bind(c.type_map)
    return c


def _energy(c: Case, x, h) -> float:
    return float(c.pot(x, h, c.species, PBC).energy)


def test_shapes_and_finite(case):
    n = case.positions.shape[0]
    out = case.pot(case.positions, case.cell, case.species, PBC)
    assert out.energy.shape == () and out.forces.shape == (n, 3) and out.virial.shape == (3, 3)
    assert out.forces.dtype == torch.float64 and out.virial.dtype == torch.float64
    assert all(bool(torch.isfinite(t).all()) for t in (out.energy, out.forces, out.virial))
    if isinstance(case.pot, Morse):  # no pair within the FD step of the cutoff (see _morse)
        from dpqtb.potential.neighbors import VerletList

        vl = VerletList(case.pot.rc, 0.5)
        vl.update(case.positions, case.cell, PBC)
        r = vl.vectors(case.positions, case.cell).norm(dim=-1)
        assert float((r - case.pot.rc).abs().min()) > 1e-3


def test_forces_are_minus_energy_gradient(case):
    out = case.pot(case.positions, case.cell, case.species, PBC)
    n = case.positions.shape[0]
    comps = case.components or [(i, a) for i in range(n) for a in range(3)]
    scale = max(1.0, float(out.forces.abs().max()))
    for i, a in comps:
        dx = torch.zeros_like(case.positions)
        dx[i, a] = case.step
        fd = -(_energy(case, case.positions + dx, case.cell) - _energy(case, case.positions - dx, case.cell)) \
            / (2 * case.step)
        f = float(out.forces[i, a])
        assert abs(fd - f) <= case.tol * scale, (i, a, fd, f)


def test_virial_is_minus_strain_derivative(case):
    out = case.pot(case.positions, case.cell, case.species, PBC)
    eye = torch.eye(3, dtype=torch.float64)
    scale = max(1.0, float(out.virial.abs().max()))
    for a in range(3):
        for b in range(3):
            s = torch.zeros(3, 3, dtype=torch.float64)
            s[a, b] = case.step
            ep = _energy(case, case.positions @ (eye + s), case.cell @ (eye + s))
            em = _energy(case, case.positions @ (eye - s), case.cell @ (eye - s))
            fd = -(ep - em) / (2 * case.step)
            w = float(out.virial[a, b])
            assert abs(fd - w) <= case.tol * scale, (a, b, fd, w)


def test_batch_equals_loop(case):
    """Three replicas (displaced, one with a strained cell) at once equal three single calls; float64
    round-off only (1e-12 relative: a batched class may reorder its sums)."""
    g = torch.Generator().manual_seed(7)
    xs = torch.stack([case.positions + 0.02 * torch.randn(case.positions.shape, generator=g, dtype=torch.float64)
                      for _ in range(3)])
    strain = torch.eye(3, dtype=torch.float64) + 0.01 * torch.randn(3, 3, generator=g, dtype=torch.float64)
    hs = torch.stack([case.cell, case.cell, case.cell @ strain])
    xs[2] = xs[2] @ strain
    batch = case.pot(xs, hs, case.species, PBC)
    assert batch.energy.shape == (3,) and batch.forces.shape == xs.shape and batch.virial.shape == (3, 3, 3)
    for k in range(3):
        one = case.pot(xs[k], hs[k], case.species, PBC)
        scale = max(1.0, float(one.energy.abs()))
        assert abs(float(batch.energy[k] - one.energy)) <= 1e-12 * scale
        assert torch.allclose(batch.forces[k], one.forces, rtol=0, atol=1e-12 * max(1.0, float(one.forces.abs().max())))
        assert torch.allclose(batch.virial[k], one.virial, rtol=0, atol=1e-12 * max(1.0, float(one.virial.abs().max())))


def test_ase_calculator_gives_the_same_numbers(case):
    """Energy, free energy, forces and stress = -W/V (ASE's sign and Voigt order) through ASE, the
    same evaluation (1e-12 relative), and cached: a second request does not evaluate again."""
    from ase import Atoms
    from ase.stress import voigt_6_to_full_3x3_stress

    out = case.pot(case.positions, case.cell, case.species, PBC)
    atoms = Atoms([case.type_map[int(s)] for s in case.species], positions=case.positions.numpy(),
                  cell=case.cell.numpy(), pbc=True)
    calc = PotentialCalculator(case.pot, type_map=case.type_map)
    atoms.calc = calc
    e = atoms.get_potential_energy()
    assert e == pytest.approx(float(out.energy), rel=1e-12, abs=1e-12)
    assert atoms.get_potential_energy(force_consistent=True) == e
    np.testing.assert_allclose(atoms.get_forces(), out.forces.numpy(), rtol=0,
                               atol=1e-12 * max(1.0, float(out.forces.abs().max())))
    stress = voigt_6_to_full_3x3_stress(atoms.get_stress())
    want = -out.virial.numpy() / abs(np.linalg.det(case.cell.numpy()))
    np.testing.assert_allclose(stress, want, rtol=0, atol=1e-12 * max(1.0, np.abs(want).max()))
    assert calc.n_evaluations == 1
    atoms.positions[0, 0] += 0.01  # a new state is evaluated again
    atoms.get_forces()
    assert calc.n_evaluations == 2


def test_translation_invariance(case):
    declared = type(case.pot).translation_invariant
    if declared is None:  # a user function: detected once; the soft pair sum is invariant
        assert case.pot.is_translation_invariant(case.positions, case.cell, case.species, PBC)
    elif not declared:
        pytest.skip(f"{type(case.pot).__name__} declares translation_invariant = False")
    out = case.pot(case.positions, case.cell, case.species, PBC)
    shifted = case.pot(case.positions + torch.tensor([0.31, -0.17, 0.44], dtype=torch.float64), case.cell,
                       case.species, PBC)
    scale = max(1.0, float(out.energy.abs()))
    # float64 cases: 1e-10 relative; the float32 Deep Potential: its round-off, 1e-6 relative
    tol = 1e-10 if case.tol < 1e-4 else 1e-6
    assert abs(float(shifted.energy - out.energy)) <= tol * scale
    fmax = max(1.0, float(out.forces.abs().max()))
    assert float(out.forces.sum(0).abs().max()) <= (1e-10 if case.tol < 1e-4 else 1e-4) * fmax * out.forces.shape[0]


def test_calculator_without_periodicity_and_bad_specs(tmp_path):
    """Open boundaries: energy and forces, no stress (ASE's PropertyNotImplementedError); the species
    order of the atoms does not matter (type map of first appearance, kept while no new species
    appears); a missing model file is a one-line InputError."""
    from ase import Atoms
    from ase.calculators.calculator import PropertyNotImplementedError

    from dpqtb import InputError
    from dpqtb.potential.calculator import calculator_from_spec

    atoms = Atoms("HLaH", positions=[[0.0, 0.0, 0.0], [1.9, 0.1, 0.0], [0.3, 2.0, 0.2]], pbc=False)
    morse = Morse(D_eV=0.2, a_per_A=1.6, r0_A=1.9, cutoff_A=3.2)
    atoms.calc = PotentialCalculator(morse)
    e = atoms.get_potential_energy()
    f = atoms.get_forces()
    assert np.isfinite(e) and abs(f.sum(0)).max() < 1e-12
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()
    x = torch.tensor(atoms.positions)
    ref = morse(x, torch.zeros(3, 3, dtype=torch.float64), torch.zeros(3, dtype=torch.int64), (False,) * 3)
    assert e == pytest.approx(float(ref.energy), rel=1e-14)
    with pytest.raises(InputError, match="no such model file"):
        calculator_from_spec(tmp_path / "missing.pth")
