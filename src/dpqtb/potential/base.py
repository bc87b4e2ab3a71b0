"""The potential interface of the engine: energy (eV), forces (eV/Å), virial (eV).

A potential is called with positions of shape (N, 3) — or (B, N, 3) for a batch of replicas
(path-integral beads) — a cell (3, 3) or (B, 3, 3) whose rows are lattice vectors, the species
indices (N,) into the state's ``type_map``, and the periodicity. The virial is W_ab = -dE/dε_ab for
a homogeneous strain ε applied to positions and cell (W = Σ r_a F_b for pair forces).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dpqtb import InputError


@dataclass
class PotentialOutput:
    """What a potential returns: energy, forces and virial of one configuration or a batch."""

    energy: torch.Tensor  # () or (B,) eV
    forces: torch.Tensor  # (N,3) or (B,N,3) eV/Å
    virial: torch.Tensor  # (3,3) or (B,3,3) eV


class Potential:
    """Base class. Subclasses implement :meth:`_compute` for one configuration.

    ``batched = True`` subclasses accept (B, N, 3) positions in ``_compute`` directly; the others are
    looped over replicas by :meth:`__call__`.
    """

    #: species names this potential knows (None: any species).
    type_map: tuple[str, ...] | None = None
    batched: bool = False
    #: E(x + a) = E(x) for a rigid translation, so Σ F = 0 and the total momentum is conserved. Baths then
    #: remove the net random impulse by default (``zero_net_force``); a potential that pins atoms to fixed
    #: sites (Einstein crystal) is not invariant and its centre of mass must stay thermostatted.
    translation_invariant: bool | None = True

    def is_translation_invariant(self, positions, cell, species, pbc, shift_A: float = 0.137) -> bool:
        """``translation_invariant`` if the class declares it; else (None: a user function) tested once: the
        energy after a rigid shift of every atom equals the energy before, to 1e-9 relative.

        Parameters
        ----------
        positions, cell, species, pbc
            A configuration, as for :meth:`__call__`.
        shift_A : float
            Length of the rigid shift tested (Å).

        Returns
        -------
        bool
        """
        if self.translation_invariant is not None:
            return bool(self.translation_invariant)
        shift = torch.tensor([1.0, -0.7, 0.3], dtype=positions.dtype, device=positions.device) * shift_A
        e0 = float(self(positions, cell, species, pbc).energy.sum())
        e1 = float(self(positions + shift, cell, species, pbc).energy.sum())
        return abs(e1 - e0) <= 1e-9 * max(1.0, abs(e0))

    def bind(self, type_map: tuple[str, ...]) -> None:
        """Called once with the system's type map, before the first evaluation.

        Parameters
        ----------
        type_map : tuple of str
            Species names; ``species`` indices of later calls index this tuple.

        Raises
        ------
        InputError
            A species this potential has no parameters for.
        """
        if self.type_map is not None:
            missing = [s for s in type_map if s not in self.type_map]
            if missing:
                raise InputError(f"potential has no parameters for species {missing} (knows {list(self.type_map)})")

    def _compute(self, positions, cell, species, pbc) -> PotentialOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, positions: torch.Tensor, cell: torch.Tensor, species: torch.Tensor,
                 pbc=(True, True, True)) -> PotentialOutput:
        """Energy, forces and virial of one configuration or a batch of replicas.

        Parameters
        ----------
        positions : torch.Tensor
            (N, 3) or (B, N, 3) Cartesian positions (Å); unwrapped positions are fine.
        cell : torch.Tensor
            (3, 3) or (B, 3, 3) lattice vectors as rows (Å).
        species : torch.Tensor
            (N,) int64 indices into the type map given to :meth:`bind`.
        pbc : tuple of 3 bool
            Periodicity along the three cell vectors.

        Returns
        -------
        PotentialOutput
            energy () or (B,) eV, forces like ``positions`` eV/Å, virial (3, 3) or (B, 3, 3) eV.
        """
        if positions.dim() == 2 or self.batched:
            return self._compute(positions, cell, species, pbc)
        b = positions.shape[0]
        cells = cell if cell.dim() == 3 else cell.expand(b, 3, 3)
        outs = [self._compute(positions[k], cells[k], species, pbc) for k in range(b)]
        return PotentialOutput(torch.stack([o.energy for o in outs]), torch.stack([o.forces for o in outs]),
                               torch.stack([o.virial for o in outs]))


def autograd_energy_forces_virial(energy_fn, positions: torch.Tensor, cell: torch.Tensor) -> PotentialOutput:
    """Forces and virial of ``energy_fn(positions, cell) -> energy`` by automatic differentiation.

    A strain ε is applied to positions and cell (x → x(1+ε), h → h(1+ε)); F = -∂E/∂x, W = -∂E/∂ε.
    Works for batched inputs (leading batch dimension); energies of a batch are summed for the
    gradient since replicas are independent.

    Parameters
    ----------
    energy_fn : callable
        ``energy_fn(positions, cell) -> energy`` (eV), differentiable in torch.
    positions : torch.Tensor
        (..., N, 3) positions (Å).
    cell : torch.Tensor
        (..., 3, 3) cell (Å).

    Returns
    -------
    PotentialOutput

    Raises
    ------
    InputError
        ``energy_fn`` returned an energy of the wrong shape.
    """
    with torch.enable_grad():
        pos = positions.detach().requires_grad_(True)
        batch_shape = positions.shape[:-2]
        strain = torch.zeros(batch_shape + (3, 3), dtype=positions.dtype, device=positions.device,
                             requires_grad=True)
        eye = torch.eye(3, dtype=positions.dtype, device=positions.device)
        defo = eye + strain
        pos_d = pos @ defo
        cell_d = cell.detach() @ defo
        energy = energy_fn(pos_d, cell_d)
        if energy.shape != batch_shape:
            raise InputError(f"energy function returned shape {tuple(energy.shape)}, expected {tuple(batch_shape)}")
        g_pos, g_strain = torch.autograd.grad(energy.sum(), (pos, strain))
    return PotentialOutput(energy.detach(), -g_pos, -g_strain)
