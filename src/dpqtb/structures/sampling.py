"""Sampling plan for the La–H training set.

Configurations are drawn the way (quantum) MD visits them rather than by large random rattles:

* **cell**: the Fm-3m lattice constant at the target pressure from the stored DFT EOS, then a
  small random symmetric strain (``strain``, default ≤ 2 %);
* **phase**: cubic Fm-3m, or a symmetry-lowered C2, P-1 or R-3m cell (:func:`lah10.lowered`),
  in the 11-atom primitive or the 44-atom conventional cell;
* **displacements**: Gaussian, with the quantum harmonic width of an oscillator of energy ħω at
  temperature T (zero point included):

      σ² = ħ / (2 m ω) · coth(ħω / 2 k_B T)

  with ħω = 0.20 eV for H (the H optical band of LaH10 spans ≈ 0.1–0.25 eV) and 0.025 eV for La,
  scaled by a random factor in [0.5, 1] (correlated phonon motion displaces neighbours together,
  so uncorrelated Gaussians at the full width overestimate the forces).  This gives σ_H ≈
  0.05–0.10 Å and σ_La ≈ 0.01–0.05 Å over 0–600 K;
* **H–H pair rotations**: a nearest-neighbour H–H pair rotated about its centre by an angle up to
  180° (180° is the exchange of the two protons), the path of the proton-exchange events;
* **relaxed pair exchanges** (kind ``pair-exchange``): the same rotation applied to the undisplaced
  cell, then the cage around the pair relaxed with a cheap model (the shipped Deep Potential)
  while the pair keeps its new orientation (:class:`FixPairDirection`), then the thermal
  displacements.  A rigid rotation at 60–130° pushes the turned protons into their neighbours
  (max |F| up to 16 eV/Å in round 0); MD crosses the same angles with the cage already moved out
  of the way, which is what these configurations sample.  Their labels are still plain DFT: the
  model only proposes the geometry.

Every configuration carries its metadata (pressure, temperature, phase, kind, seed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers

from dpqtb import InputError
from dpqtb.units import HBAR, KB, MVV2E

#: Effective phonon energies (eV) used for the quantum displacement widths.
HBAR_OMEGA_EV = {"H": 0.20, "La": 0.025}


def quantum_width(symbol: str, temperature_K: float, hbar_omega_eV: float | None = None) -> float:
    """RMS displacement per Cartesian direction (Å) of a quantum harmonic oscillator."""
    if temperature_K < 0:
        raise InputError(f"temperature {temperature_K} K must be non-negative")
    hw = HBAR_OMEGA_EV[symbol] if hbar_omega_eV is None else hbar_omega_eV
    mass = atomic_masses[atomic_numbers[symbol]]  # amu
    omega = hw / HBAR  # 1/fs
    # ħ/(2 m ω) in Å²: ħ in eV·fs, m in amu -> convert amu·Å²/fs² to eV with MVV2E
    var0 = HBAR / (2.0 * mass * omega * MVV2E)
    if temperature_K == 0:
        return math.sqrt(var0)
    return math.sqrt(var0 / math.tanh(hw / (2.0 * KB * temperature_K)))


def thermal_displace(atoms: Atoms, temperature_K: float, rng: np.random.Generator,
                     scale: float = 1.0) -> Atoms:
    """Gaussian quantum-width displacements (centre of mass kept fixed)."""
    out = atoms.copy()
    sig = np.array([quantum_width(s, temperature_K) for s in atoms.get_chemical_symbols()])
    u = rng.normal(size=(len(atoms), 3)) * sig[:, None] * scale
    m = atoms.get_masses()
    u -= (m[:, None] * u).sum(0) / m.sum()
    out.positions += u
    return out


def random_strain(rng: np.random.Generator, size: float) -> np.ndarray:
    e = rng.uniform(-size, size, size=(3, 3))
    return 0.5 * (e + e.T)


def rotate_pair(atoms: Atoms, angle_deg: float, rng: np.random.Generator,
                cutoff: float = 1.25) -> Atoms:
    """Rotate a random nearest-neighbour H–H pair about its midpoint by ``angle_deg``."""
    return rotate_pair_indexed(atoms, angle_deg, rng, cutoff)[0]


def rotate_pair_indexed(atoms: Atoms, angle_deg: float, rng: np.random.Generator,
                        cutoff: float = 1.25) -> tuple[Atoms, tuple[int, int]]:
    """:func:`rotate_pair`, also returning the indices of the turned pair (their positions are
    left unwrapped, next to each other)."""
    from ase.neighborlist import neighbor_list

    i, j, D = neighbor_list("ijD", atoms, cutoff)
    h = atoms.numbers == 1
    sel = np.flatnonzero(h[i] & h[j] & (i < j))
    if len(sel) == 0:
        raise InputError("no H–H pair within the cutoff to rotate")
    k = sel[rng.integers(len(sel))]
    a, b, d = i[k], j[k], D[k]
    axis = np.cross(d, rng.normal(size=3))
    axis /= np.linalg.norm(axis)
    th = math.radians(angle_deg)
    # Rodrigues rotation of the half bond vectors about the midpoint
    def rot(v):
        return (v * math.cos(th) + np.cross(axis, v) * math.sin(th)
                + axis * np.dot(axis, v) * (1 - math.cos(th)))
    mid = atoms.positions[a] + d / 2
    out = atoms.copy()
    out.positions[a] = mid + rot(-d / 2)
    out.positions[b] = mid + rot(d / 2)
    return out, (int(a), int(b))


class FixPairDirection:
    """ASE constraint: atoms ``a`` and ``b`` keep the direction of their bond vector.

    Allowed motions of the pair are a translation of its midpoint (3 DOF) and a stretch along the
    current unit bond vector u (1 DOF); the two rotations of u are removed.  For equal masses the
    orthogonal projection of the pair's forces onto that subspace is

        F_a' = (F_a + F_b)/2 − f u,   F_b' = (F_a + F_b)/2 + f u,   f = (F_b − F_a)·u / 2,

    so a relaxation under this constraint finds the cage's minimum at a fixed pair orientation,
    and the force left on the pair is the torque of the exchange path.  Steps proposed by an
    optimiser are projected the same way.
    """

    def __init__(self, a: int, b: int, direction):
        u = np.asarray(direction, dtype=float)
        n = np.linalg.norm(u)
        if a == b or n == 0:
            raise InputError("FixPairDirection needs two different atoms and a non-zero direction")
        self.a, self.b, self.u = int(a), int(b), u / n

    def _project(self, va: np.ndarray, vb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = 0.5 * (va + vb)
        f = 0.5 * np.dot(vb - va, self.u)
        return mean - f * self.u, mean + f * self.u

    def adjust_positions(self, atoms, new):
        old = atoms.positions
        da, db = self._project(new[self.a] - old[self.a], new[self.b] - old[self.b])
        new[self.a] = old[self.a] + da
        new[self.b] = old[self.b] + db

    def adjust_forces(self, atoms, forces):
        forces[self.a], forces[self.b] = self._project(forces[self.a], forces[self.b])

    def adjust_momenta(self, atoms, momenta):
        momenta[self.a], momenta[self.b] = self._project(momenta[self.a], momenta[self.b])

    def get_removed_dof(self, atoms):
        return 2

    def get_indices(self):
        return [self.a, self.b]

    def todict(self):
        return {"name": "FixPairDirection", "kwargs": {"a": self.a, "b": self.b,
                                                       "direction": self.u.tolist()}}

    def __repr__(self):
        return f"FixPairDirection({self.a}, {self.b}, {self.u.round(4).tolist()})"


def relax_around_pair(atoms: Atoms, pair: tuple[int, int], calc, radius_A: float = 3.0,
                      fmax_eV_per_A: float = 0.05, steps: int = 300) -> tuple[Atoms, dict]:
    """Relax the atoms within ``radius_A`` of the pair's midpoint (periodic images counted) with
    ``calc``, the pair keeping its bond direction; everything farther away stays fixed.

    Returns the relaxed copy and a record: steps taken, residual max constrained force on the
    free atoms and max model force on the pair (the exchange-path torque), both eV/Å, the
    relaxation energy (eV) and the number of free atoms."""
    from ase.constraints import FixAtoms
    from ase.geometry import find_mic
    from ase.optimize import FIRE

    a, b = pair
    out = atoms.copy()
    d = out.positions[b] - out.positions[a]
    mid = out.positions[a] + d / 2
    # minimum-image distance of every atom to the midpoint (ASE's find_mic: also right in the
    # 60° primitive cell, where rounding fractional coordinates picks the wrong image)
    _, dist = find_mic(out.positions - mid, out.cell, out.pbc)
    free = dist <= radius_A
    free[[a, b]] = True
    out.set_constraint([FixAtoms(mask=~free), FixPairDirection(a, b, d)])
    out.calc = calc
    e0 = out.get_potential_energy()
    opt = FIRE(out, logfile=None)
    opt.run(fmax=fmax_eV_per_A, steps=steps)
    fres = float(np.linalg.norm(out.get_forces(), axis=1).max())
    fpair = float(np.linalg.norm(out.get_forces(apply_constraint=False)[[a, b]], axis=1).max())
    record = {"relax_steps": int(opt.nsteps), "relax_fmax_eV_per_A": round(fres, 4),
              "relax_pair_force_eV_per_A": round(fpair, 3),
              "relax_dE_eV": round(float(out.get_potential_energy() - e0), 4),
              "relax_free_atoms": int(free.sum()), "relax_radius_A": radius_A}
    out.calc = None
    out.set_constraint()
    return out, record


@dataclass(frozen=True)
class SampleSpec:
    pressure_GPa: float
    temperature_K: float
    phase: str  # Fm-3m, C2, P-1, R-3m
    cell: str  # primitive (11 atoms) or conventional (44 atoms)
    kind: str  # thermal, strained, pair-rotation
    seed: int


#: Closest approach (Å) allowed in a sampled configuration; closer draws are redrawn.
MIN_SAMPLE_DISTANCE_A = 0.6


#: Sample kinds; ``pair-exchange`` needs a calculator to relax the cage (see the module docstring).
KINDS = ("thermal", "strained", "pair-rotation", "pair-exchange")
#: The round-0 mix of kinds (drawn uniformly: thermal twice as often).
ROUND0_KINDS = ("thermal", "thermal", "strained", "pair-rotation")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InputError(f"unknown sample kind {kind!r}: choose from {', '.join(KINDS)}")


def build_sample(spec: SampleSpec, calc=None) -> tuple[Atoms, dict]:
    """The configuration described by ``spec`` and its metadata (deterministic in the seed; for
    ``pair-exchange`` also in the relaxing calculator ``calc``: an ASE calculator, for dpqtb's models
    :func:`dpqtb.potential.calculator.calculator_from_spec`, the Deep Potential as MD evaluates it).

    A draw with two atoms closer than ``MIN_SAMPLE_DISTANCE_A`` is redrawn with the next
    sub-seed (recorded as ``attempt`` in the metadata).
    """
    from ase.neighborlist import neighbor_list

    _check_kind(spec.kind)
    if spec.kind == "pair-exchange" and calc is None:
        raise InputError("pair-exchange samples need a model to relax the cage around the pair "
                         "(e.g. --relax-model builtin:lah10)")
    for attempt in range(20):
        atoms, meta = _build_sample(spec, np.random.default_rng([spec.seed, attempt]), calc)
        if len(neighbor_list("d", atoms, MIN_SAMPLE_DISTANCE_A)) == 0:
            meta["attempt"] = attempt
            return atoms, meta
    raise InputError(f"could not draw a configuration without overlaps for {spec}")


def _build_sample(spec: SampleSpec, rng: np.random.Generator, calc=None) -> tuple[Atoms, dict]:
    from dpqtb.structures.eos import load_eos
    from dpqtb.structures.lah10 import apply_strain, fm3m, lowered

    eos = load_eos()
    a = eos.lattice_constant(spec.pressure_GPa)
    atoms = fm3m(a, spec.cell, x=eos.x32f(a))
    meta: dict = {"target_pressure_GPa": spec.pressure_GPa, "temperature_K": spec.temperature_K,
                  "phase": spec.phase, "cell": spec.cell, "kind": spec.kind, "seed": spec.seed,
                  "a_A": round(a, 5)}
    if spec.phase != "Fm-3m":
        amp = rng.uniform(0.03, 0.10)
        atoms = lowered(atoms, spec.phase, amplitude=amp, strain=0.015, rng=rng)
        meta["distortion_A"] = round(amp, 4)
    scale = rng.uniform(0.5, 1.0)
    meta["width_scale"] = round(scale, 4)
    if spec.kind == "strained":
        atoms = apply_strain(atoms, random_strain(rng, 0.02))
    if spec.kind == "pair-exchange":  # turn, let the cage follow, then the thermal displacements
        ang = rng.uniform(15.0, 180.0)
        atoms, pair = rotate_pair_indexed(atoms, ang, rng)
        atoms, record = relax_around_pair(atoms, pair, calc)
        meta["pair_angle_deg"] = round(ang, 2)
        meta["pair"] = list(pair)
        meta.update(record)
    atoms = thermal_displace(atoms, spec.temperature_K, rng, scale=scale)
    if spec.kind == "pair-rotation":
        ang = rng.uniform(20.0, 180.0)
        atoms = rotate_pair(atoms, ang, rng)
        meta["pair_angle_deg"] = round(ang, 2)
    atoms.wrap()
    return atoms, meta


def round0_plan(n_small: int = 260, n_large: int = 180, p_range=(100.0, 350.0),
                t_range=(0.0, 600.0), seed: int = 2026,
                kinds: tuple[str, ...] = ROUND0_KINDS) -> list[SampleSpec]:
    """The first training round: 11-atom and 44-atom cells over ``p_range`` and ``t_range``.

    The list is in labelling order: small and large cells interleaved and all strata mixed, so
    any prefix of it is a balanced data set.  ``kinds`` is drawn from uniformly (repeat an entry
    to weight it); the default is the round-0 mix.
    """
    for k in kinds:
        _check_kind(k)
    rng = np.random.default_rng(seed)
    phases = ["Fm-3m", "Fm-3m", "C2", "P-1", "R-3m"]
    kinds = list(kinds)
    specs = []
    for n, cell in ((n_small, "primitive"), (n_large, "conventional")):
        for _ in range(n):
            specs.append(SampleSpec(
                pressure_GPa=round(float(rng.uniform(*p_range)), 1),
                temperature_K=round(float(rng.uniform(*t_range)), 0),
                phase=phases[rng.integers(len(phases))],
                cell=cell,
                kind=kinds[rng.integers(len(kinds))],
                seed=int(rng.integers(2**31)),
            ))
    small = [s for s in specs if s.cell == "primitive"]
    large = [s for s in specs if s.cell == "conventional"]
    # interleave: large cells cost ~3x more; keep their share of labelling time balanced
    out = []
    while small or large:
        for _ in range(3):
            if small:
                out.append(small.pop(0))
        if large:
            out.append(large.pop(0))
    return out
