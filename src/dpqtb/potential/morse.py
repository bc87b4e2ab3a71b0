"""Morse pair potential, shifted to zero at the cutoff.

φ(r) = D [(1 - e^{-a(r - r0)})² - 1] - φ_raw(r_c) for r < r_c.
"""

from __future__ import annotations

import math

import torch

from dpqtb import InputError
from dpqtb.potential.base import Potential, PotentialOutput
from dpqtb.potential.neighbors import DEFAULT_SKIN_A, VerletList


class Morse(Potential):
    """Morse pairs between all atoms (species-blind), shifted to zero at the cutoff.

    Parameters
    ----------
    D_eV : float
        Well depth D (eV), > 0.
    a_per_A : float
        Inverse width a (1/Å), > 0.
    r0_A : float
        Equilibrium distance r0 (Å), > 0.
    cutoff_A : float
        Cutoff r_c (Å), > 0: φ = 0 beyond it (the force jumps there).
    skin_A : float
        Verlet skin (Å); the results do not depend on it.

    Raises
    ------
    InputError
        A parameter that is not positive.
    """

    def __init__(self, D_eV: float, a_per_A: float, r0_A: float, cutoff_A: float, skin_A: float = DEFAULT_SKIN_A):
        for name, value in (("D_eV", D_eV), ("a_per_A", a_per_A), ("r0_A", r0_A), ("cutoff_A", cutoff_A)):
            if not value > 0:
                raise InputError(f"potential.{name} must be > 0, got {value}")
        self.D, self.a, self.r0, self.rc = float(D_eV), float(a_per_A), float(r0_A), float(cutoff_A)
        self.shift = self.D * ((1.0 - math.exp(-self.a * (self.rc - self.r0))) ** 2 - 1.0)
        self.nlist = VerletList(self.rc, skin_A)
        self.skin = skin_A
        self._bead_lists: list[VerletList] = []

    def __call__(self, positions, cell, species, pbc=(True, True, True)) -> PotentialOutput:
        if positions.dim() == 2:
            return self._compute(positions, cell, species, pbc)
        # replicas (path-integral beads): one Verlet list per replica so none is rebuilt every call
        b = positions.shape[0]
        while len(self._bead_lists) < b:
            self._bead_lists.append(VerletList(self.rc, self.skin))
        cells = cell if cell.dim() == 3 else cell.expand(b, 3, 3)
        outs = [self._compute(positions[k], cells[k], species, pbc, self._bead_lists[k]) for k in range(b)]
        return PotentialOutput(torch.stack([o.energy for o in outs]), torch.stack([o.forces for o in outs]),
                               torch.stack([o.virial for o in outs]))

    def pair(self, r: torch.Tensor):
        """Pair energy φ(r) (eV) and its derivative dφ/dr (eV/Å), both zero beyond the cutoff.

        Parameters
        ----------
        r : torch.Tensor
            Distances (Å).

        Returns
        -------
        (torch.Tensor, torch.Tensor)
            φ and dφ/dr, shaped like ``r``.
        """
        e = torch.exp(-self.a * (r - self.r0))
        phi = self.D * ((1.0 - e) ** 2 - 1.0) - self.shift
        dphi = 2.0 * self.D * self.a * (1.0 - e) * e
        inside = r < self.rc
        return torch.where(inside, phi, torch.zeros_like(phi)), torch.where(inside, dphi, torch.zeros_like(dphi))

    def _compute(self, positions, cell, species, pbc, nlist: VerletList | None = None) -> PotentialOutput:
        nlist = self.nlist if nlist is None else nlist
        nlist.update(positions, cell, pbc)
        rij = nlist.vectors(positions, cell)
        r = rij.norm(dim=-1)
        inside = r < self.rc  # only pairs inside the cutoff enter the sums (independent of the skin)
        i, j, rij, r = nlist.i[inside], nlist.j[inside], rij[inside], r[inside]
        phi, dphi = self.pair(r)
        energy = phi.sum()
        fij = (dphi / r)[:, None] * rij  # force on i from j (points from i to j times dφ/dr)
        forces = torch.zeros_like(positions)
        forces.index_add_(0, i, fij)
        forces.index_add_(0, j, -fij)
        virial = -torch.einsum("pa,pb,p->ab", rij, rij, dphi / r)
        return PotentialOutput(energy, forces, virial)
