"""Einstein (harmonic) crystal: every atom tied by an isotropic spring to its reference site.

E = Σ_i ½ k_i |x_i - r_i|², with reference sites r_i stored as fractional coordinates so they
follow the cell. Each Cartesian degree of freedom is an independent oscillator of angular
frequency ω_i = sqrt(k_i/m_i): the exact classical and quantum answers are known in closed form.
"""

from __future__ import annotations

import math

import torch

from dpqtb import InputError
from dpqtb.potential.base import Potential, PotentialOutput
from dpqtb.units import MVV2E


def spring_constant_from_frequency(freq_THz: float, mass_amu: float) -> float:
    """k in eV/Å² for an oscillator of frequency ν (THz) and mass m (amu): k = m (2πν)²."""
    omega = 2.0 * math.pi * freq_THz * 1e-3  # rad/fs
    return mass_amu * omega**2 * MVV2E


class EinsteinCrystal(Potential):
    """Springs to reference sites.

    Parameters
    ----------
    reference_positions : torch.Tensor
        (N, 3) sites (Å), turned into fractions of ``cell`` so that they follow the cell.
    cell : torch.Tensor
        (3, 3) cell of the reference (Å).
    k_per_atom : torch.Tensor or None
        (N,) spring constants (eV/Å²); or
    k_by_species : dict or None
        {species name: k (eV/Å²)}, resolved with the type map given to :meth:`bind`.
    pbc : tuple of 3 bool
        Periodicity; sites are absolute positions unless periodic along all axes.

    Raises
    ------
    InputError
        Not exactly one of ``k_per_atom``, ``k_by_species``; a non-positive spring constant.
    """

    batched = True
    translation_invariant = False  # springs to fixed sites: the centre of mass is a thermalised mode

    def __init__(self, reference_positions: torch.Tensor, cell: torch.Tensor, k_per_atom: torch.Tensor | None = None,
                 k_by_species: dict[str, float] | None = None, pbc=(True, True, True)):
        if (k_per_atom is None) == (k_by_species is None):
            raise InputError("EinsteinCrystal needs exactly one of k_per_atom or k_by_species")
        self.pbc = tuple(pbc)
        if all(self.pbc):
            self.frac_ref = reference_positions @ torch.linalg.inv(cell)
        else:
            self.frac_ref = None
            self.abs_ref = reference_positions.clone()
        self.k_per_atom = None if k_per_atom is None else torch.as_tensor(k_per_atom, dtype=reference_positions.dtype,
                                                                          device=reference_positions.device)
        self.k_by_species = k_by_species
        if k_by_species is not None:
            for s, k in k_by_species.items():
                if not k > 0:
                    raise InputError(f"potential.k_eV_per_A2 for {s} must be > 0, got {k}")
            self.type_map = tuple(k_by_species)
        self._k_cache = None

    def bind(self, type_map):
        super().bind(type_map)
        self._type_map = tuple(type_map)

    def _k(self, species: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if self.k_per_atom is not None:
            return self.k_per_atom
        if self._k_cache is None or self._k_cache.shape != species.shape:
            table = torch.tensor([self.k_by_species[s] for s in self._type_map], dtype=like.dtype, device=like.device)
            self._k_cache = table[species]
        return self._k_cache

    def sites(self, cell: torch.Tensor) -> torch.Tensor:
        if self.frac_ref is None:
            return self.abs_ref
        cached = getattr(self, "_sites_cache", None)
        if cached is not None and cached[0].shape == cell.shape and torch.equal(cached[0], cell):
            return cached[1]
        sites = self.frac_ref @ cell
        self._sites_cache = (cell.clone(), sites)
        return sites

    def _compute(self, positions, cell, species, pbc) -> PotentialOutput:
        k = self._k(species, positions)
        d = positions - self.sites(cell)
        energy = 0.5 * (k * d.pow(2).sum(-1)).sum(-1)
        forces = -k[:, None] * d
        virial = -(d * k[:, None]).transpose(-1, -2) @ d
        return PotentialOutput(energy, forces, virial)


class HarmonicNetwork(Potential):
    """Atoms joined by linear springs on the displacement of each bond vector from its reference:

        E = ½ Σ_b k_b |Δ_b − Δ⁰_b|²,     Δ_b = x_j − x_i + n_b·h,   Δ⁰_b = reference bond vector (scales with h),

    for every pair closer than ``cutoff_A`` (a number, or per species pair like ``k_by_pair``) in the reference
    structure (periodic images included), with k per species pair. Translation-invariant (total momentum is conserved, unlike the Einstein crystal)
    and exactly harmonic: its normal modes are those of the dynamical matrix D = M^{-1/2} (L ⊗ 1₃) M^{-1/2}
    with L the weighted graph Laplacian (:meth:`laplacian`), so classical and quantum averages are known exactly.

    Parameters
    ----------
    reference_positions : torch.Tensor
        (N, 3) reference structure (Å).
    cell : torch.Tensor
        (3, 3) its cell (Å); bond vectors scale with the cell.
    species : torch.Tensor
        (N,) species indices into ``type_map``.
    type_map : sequence of str
        Species names.
    k_by_pair : dict
        {(name, name): k (eV/Å²)}, either order.
    cutoff_A : float or dict
        Bond cutoff in the reference (Å), one number or {(name, name): Å}.

    Raises
    ------
    InputError
        No bond within the cutoff.
    """

    batched = False

    def __init__(self, reference_positions: torch.Tensor, cell: torch.Tensor, species: torch.Tensor,
                 type_map, k_by_pair: dict[tuple[str, str], float], cutoff_A):
        import numpy as np

        pos = reference_positions.detach().cpu().numpy()
        h = cell.detach().cpu().numpy()
        sp = species.cpu().numpy()
        n = pos.shape[0]
        inv = np.linalg.inv(h)
        cut = dict(cutoff_A) if isinstance(cutoff_A, dict) else None
        rmax = max(cut.values()) if cut else float(cutoff_A)
        reach = [int(np.ceil(rmax * np.linalg.norm(inv[:, a]))) for a in range(3)]
        ii, jj, shifts, ks = [], [], [], []
        for i in range(n):
            for j in range(i + 1, n):  # a bond of an atom with its own image has a constant vector: no force
                for s in np.array(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij")).reshape(3, -1).T:
                    d = pos[j] + s @ h - pos[i]
                    pair = (type_map[sp[i]], type_map[sp[j]])
                    rc = (cut.get(pair, cut.get(pair[::-1], 0.0)) if cut else rmax)
                    if np.linalg.norm(d) < rc:
                        k = k_by_pair.get(pair, k_by_pair.get(pair[::-1]))
                        if k:
                            ii.append(i), jj.append(j), shifts.append(s), ks.append(k)
        if not ii:
            raise InputError("HarmonicNetwork: no bond within the cutoff")
        dt, dev = reference_positions.dtype, reference_positions.device
        self.i = torch.tensor(ii, device=dev)
        self.j = torch.tensor(jj, device=dev)
        self.shift = torch.tensor(np.array(shifts), dtype=dt, device=dev)
        self.k = torch.tensor(ks, dtype=dt, device=dev)
        d0 = reference_positions[self.j] + self.shift @ cell - reference_positions[self.i]
        self.d0_frac = d0 @ torch.linalg.inv(cell)
        self.n_atoms = n

    def laplacian(self):
        """(N, N) numpy weighted graph Laplacian L (eV/Å²): the force constants are L ⊗ 1₃."""
        import numpy as np

        lap = np.zeros((self.n_atoms, self.n_atoms))
        for i, j, k in zip(self.i.tolist(), self.j.tolist(), self.k.tolist()):
            if i == j:
                continue
            lap[i, i] += k
            lap[j, j] += k
            lap[i, j] -= k
            lap[j, i] -= k
        return lap

    def _compute(self, positions, cell, species, pbc) -> PotentialOutput:
        d = positions[self.j] + self.shift @ cell - positions[self.i] - self.d0_frac @ cell
        kd = self.k[:, None] * d
        energy = 0.5 * (kd * d).sum()
        forces = torch.zeros_like(positions)
        forces.index_add_(0, self.i, kd)
        forces.index_add_(0, self.j, -kd)
        virial = -(kd.T @ d)
        return PotentialOutput(energy, forces, virial)
