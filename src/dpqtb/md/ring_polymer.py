"""The ring-polymer state of path-integral MD: P beads of every atom, and the centroid view the rest of
dpqtb sees.

P beads per atom sample exp(-β_P H_P), β_P = β/P, with

    H_P = Σ_j Σ_i [ p_ij²/2m_i + ½ m_i ω_P² |q_ij − q_i,j+1|² ] + Σ_j V(q_j),   ω_P = P k_B T / ħ.

:class:`RingPolymer` holds the bead positions and momenta (P, N, 3), the forces, energies and virials of
their last evaluation (all beads in one call of the potential), the normal-mode transform and the exact
free ring-polymer propagator (the A step of the splitting, :mod:`dpqtb.md.integrators`). The thermostat
of the beads (PILE) is a bath like any other (:class:`dpqtb.md.pimd.PILEBath`); the estimators
(centroid-virial kinetic energy and pressure, primitive kinetic energy, spring energy) belong to this
state. :meth:`RingPolymer.view` writes the centroid into the :class:`~dpqtb.md.state.MDState`, whose
positions and momenta are then the centroid's, so trajectories and the analysis apply unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dpqtb import InputError
from dpqtb.md.state import MDState
from dpqtb.potential.base import Potential
from dpqtb.units import EV_PER_A3_TO_GPA, HBAR, KB, MVV2E


def normal_mode_matrix(p: int) -> np.ndarray:
    """Orthogonal C (P×P) with q̃_k = Σ_j C_jk q_j (Ceriotti 2010, Eq. 8)."""
    c = np.zeros((p, p))
    j = np.arange(p)
    for k in range(p):
        if k == 0:
            c[:, k] = math.sqrt(1.0 / p)
        elif k < p / 2:
            c[:, k] = math.sqrt(2.0 / p) * np.cos(2.0 * math.pi * j * k / p)
        elif k == p / 2:
            c[:, k] = math.sqrt(1.0 / p) * (-1.0) ** j
        else:
            c[:, k] = math.sqrt(2.0 / p) * np.sin(2.0 * math.pi * j * k / p)
    return c


def free_ring_frequencies(p: int, temperature_K: float) -> np.ndarray:
    """ω_k = 2 ω_P sin(kπ/P) in rad/fs."""
    omega_p = p * KB * temperature_K / HBAR
    return 2.0 * omega_p * np.sin(np.arange(p) * math.pi / p)


def harmonic_pimd_potential_energy(omega: float, temperature_K: float, p: int) -> float:
    """Exact ⟨V⟩ per degree of freedom (eV) of a harmonic oscillator (ω in rad/fs) sampled with P beads:
    ½ k_B T Σ_k ω²/(ω² + ω_k²); equals ⟨K_cv⟩ and → (ħω/4)coth(ħω/2kT) as P → ∞."""
    wk = free_ring_frequencies(p, temperature_K)
    return 0.5 * KB * temperature_K * float(np.sum(omega**2 / (omega**2 + wk**2)))


class RingPolymer:
    """P beads of every atom at temperature T (ω_P = P k_B T/ħ).

    Parameters
    ----------
    q, p : torch.Tensor
        Bead positions (Å) and momenta (amu·Å/fs), shape (P, N, 3).
    masses : torch.Tensor
        Physical masses (amu), shape (N,); every bead carries the physical mass.
    temperature_K : float
        Temperature of the ensemble, > 0.

    Attributes
    ----------
    f, e, w : torch.Tensor
        Forces (P, N, 3), energies (P,) and virials (P, 3, 3) of the beads' last evaluation.
    """

    def __init__(self, q: torch.Tensor, p: torch.Tensor, masses: torch.Tensor, temperature_K: float):
        if q.shape != p.shape or q.dim() != 3:
            raise InputError(f"ring polymer: bead positions {tuple(q.shape)} and momenta {tuple(p.shape)} "
                             "must both have shape (P, N, 3)")
        if not temperature_K > 0:
            raise InputError("thermostat.temperature_K must be > 0 for PIMD")
        self.q, self.p, self.masses = q, p, masses
        self.temperature_K = float(temperature_K)
        self.beads = int(q.shape[0])
        self.C = torch.tensor(normal_mode_matrix(self.beads), dtype=q.dtype, device=q.device)
        self.omega_k = free_ring_frequencies(self.beads, self.temperature_K)  # rad/fs (numpy)
        self.omega_p = self.beads * KB * self.temperature_K / HBAR
        self.f = self.e = self.w = None
        self._propagators: dict[float, tuple] = {}

    @classmethod
    def on_centroid(cls, state: MDState, beads: int, temperature_K: float,
                    generator: torch.Generator) -> "RingPolymer":
        """Every bead on the state's positions; bead momenta drawn at the bead temperature P·T from
        ``generator``, shifted so that their average is the state's (centroid) momentum."""
        q = state.positions.unsqueeze(0).repeat(beads, 1, 1).clone()
        std = torch.sqrt(state.masses * beads * KB * temperature_K / MVV2E)
        p = torch.randn((beads,) + state.positions.shape, generator=generator, dtype=state.dtype,
                        device=state.device) * std[:, None]
        p += state.momenta - p.mean(0)
        return cls(q, p, state.masses, temperature_K)

    # ------------------------------------------------------------------ normal modes and the A step
    def to_nm(self, x: torch.Tensor) -> torch.Tensor:
        """q̃_k = Σ_j C_jk q_j (one P×P matrix product over all atoms)."""
        return (self.C.T @ x.reshape(self.beads, -1)).reshape(x.shape)

    def from_nm(self, x: torch.Tensor) -> torch.Tensor:
        return (self.C @ x.reshape(self.beads, -1)).reshape(x.shape)

    def _propagator(self, dt: float) -> tuple:
        """cos(ω_k dt), sin(ω_k dt)/ω_k (dt for k = 0), ω_k sin(ω_k dt), cached per dt."""
        out = self._propagators.get(dt)
        if out is None:
            wk, wt = self.omega_k, self.omega_k * dt
            with np.errstate(divide="ignore", invalid="ignore"):
                sin_over_w = np.where(wk > 0, np.sin(wt) / np.where(wk > 0, wk, 1.0), dt)
            kw = {"dtype": self.q.dtype, "device": self.q.device}
            out = tuple(torch.tensor(x, **kw).view(-1, 1, 1) for x in (np.cos(wt), sin_over_w, wk * np.sin(wt)))
            self._propagators[dt] = out
        return out

    def free_ring(self, dt: float) -> None:
        """Exact free ring-polymer propagation for ``dt`` (the springs and the kinetic energy): a harmonic
        rotation of each normal mode, a free drift of the centroid."""
        cos, s_w, w_s = self._propagator(float(dt))
        m = self.masses[None, :, None]
        qn, pn = self.to_nm(self.q), self.to_nm(self.p)
        q_new = qn * cos + pn / m * s_w
        p_new = pn * cos - m * qn * w_s
        self.q, self.p = self.from_nm(q_new), self.from_nm(p_new)

    def kick(self, dt: float) -> None:
        """p_j += dt F_j with the physical forces of each bead."""
        self.p.add_(self.f, alpha=dt / MVV2E)

    def evaluate(self, potential: Potential, state: MDState) -> None:
        """Energies, forces and virials of all beads in one call (positions (P, N, 3))."""
        out = potential(self.q, state.cell, state.species, state.pbc)
        self.e = out.energy.reshape(self.beads)
        self.f = out.forces.reshape(self.q.shape)
        self.w = out.virial.reshape(self.beads, 3, 3)

    def view(self, state: MDState) -> None:
        """Write the centroid into ``state``: positions, momenta (bead averages), energy, forces and virial
        (bead averages)."""
        state.positions = self.q.mean(0)
        state.momenta = self.p.mean(0)
        state.energy = self.e.mean()
        state.forces = self.f.mean(0)
        state.virial = self.w.mean(0)

    # ------------------------------------------------------------------ estimators
    def bead_kinetic_energy(self) -> torch.Tensor:
        """Σ_j Σ_i p_ij²/2m_i (eV)."""
        return 0.5 * MVV2E * (self.p.pow(2).sum(-1) / self.masses).sum()

    def spring_energy(self) -> torch.Tensor:
        """Σ_j Σ_i ½ m_i ω_P² |q_ij − q_i,j+1|² (eV)."""
        d = self.q - torch.roll(self.q, -1, dims=0)
        return 0.5 * MVV2E * self.omega_p**2 * (self.masses[None, :, None] * d * d).sum()

    def _deviation_dot_forces(self) -> torch.Tensor:
        """Σ_j (q_ij − q̄_i)·F_ij per atom, shape (N,)."""
        dq = self.q - self.q.mean(0, keepdim=True)
        return (dq * self.f).sum((0, 2))

    def atom_centroid_virial_kinetic(self) -> torch.Tensor:
        """Centroid-virial kinetic energy of each atom (eV): (3/2) k_B T − (1/2P) Σ_j (q_j − q̄)·F_j."""
        return 1.5 * KB * self.temperature_K - 0.5 / self.beads * self._deviation_dot_forces()

    def centroid_virial_kinetic(self) -> float:
        """K_cv = (3N/2) k_B T − (1/2P) Σ_j Σ_i (q_ij − q̄_i)·F_ij (eV)."""
        dq = self.q - self.q.mean(0, keepdim=True)
        n = self.q.shape[1]
        return float(1.5 * n * KB * self.temperature_K - 0.5 / self.beads * (dq * self.f).sum())

    def primitive_kinetic(self) -> float:
        """Primitive (thermodynamic) estimator (3NP/2) k_B T − (1/P) Σ ½ m ω_P² |Δq|² (eV)."""
        n = self.q.shape[1]
        return float(1.5 * n * self.beads * KB * self.temperature_K - self.spring_energy() / self.beads)

    def centroid_kinetic_tensor(self) -> torch.Tensor:
        """Σ_i p̄_i⊗p̄_i/m_i of the centroid momenta (eV, 3×3)."""
        pc = self.p.mean(0)
        return MVV2E * torch.einsum("ia,ib,i->ab", pc, pc, 1.0 / self.masses)

    def pressure_tensor_GPa(self, volume_A3: float) -> torch.Tensor:
        """Centroid-virial pressure tensor [N k_B T δ − (1/P) Σ_j Σ_i (q_ij − q̄_i) ⊗ F_ij + (1/P) Σ_j W_j]/V
        (GPa)."""
        dq = self.q - self.q.mean(0, keepdim=True)
        eye = torch.eye(3, dtype=self.q.dtype, device=self.q.device)
        k = self.q.shape[1] * KB * self.temperature_K * eye - torch.einsum("jia,jib->ab", dq, self.f) / self.beads
        return (k + self.w.mean(0)) / volume_A3 * EV_PER_A3_TO_GPA

    def pressure_GPa(self, volume_A3: float) -> float:
        """Centroid-virial pressure (2 K_cv + (1/P) Σ_j tr W_j)/3V (GPa)."""
        return (2.0 * self.centroid_virial_kinetic() + float(self.w.diagonal(dim1=-2, dim2=-1).sum(-1).mean())) \
            / (3.0 * volume_A3) * EV_PER_A3_TO_GPA

    def effective_virial(self) -> torch.Tensor:
        """Σ_j [W_j − Σ_i (q_ij − q̄_i) ⊗ F_ij] (eV, 3×3): −∂(Σ_j V_j)/∂ε when the cell and the centroids are
        strained and the internal ring-polymer modes are not."""
        dq = self.q - self.q.mean(0, keepdim=True)
        return self.w.sum(0) - torch.einsum("jia,jib->ab", dq, self.f)

    # ------------------------------------------------------------------ the barostat's affine move
    def strain_centroids(self, a: torch.Tensor) -> None:
        """Centroid positions r̄ → r̄ a and momenta p̄ → p̄ a^-T; the internal modes (q − q̄, p − p̄) unchanged."""
        qc, pc = self.q.mean(0), self.p.mean(0)
        self.q += (qc @ a - qc)[None]
        self.p += (pc @ torch.linalg.inv(a).T - pc)[None]

    # ------------------------------------------------------------------ checkpoint
    def copy(self) -> "RingPolymer":
        out = RingPolymer(self.q.clone(), self.p.clone(), self.masses, self.temperature_K)
        out.f, out.e, out.w = (None if t is None else t.clone() for t in (self.f, self.e, self.w))
        return out

    def state_dict(self) -> dict:
        return {"q": self.q.clone(), "p": self.p.clone(), "temperature_K": self.temperature_K}

    @classmethod
    def from_state_dict(cls, d: dict, state: MDState) -> "RingPolymer":
        q = d["q"].to(device=state.device, dtype=state.dtype)
        p = d["p"].to(device=state.device, dtype=state.dtype)
        if q.dim() != 3 or q.shape[1:] != state.positions.shape:
            raise InputError(f"checkpoint ring polymer has shape {tuple(q.shape)}, this system "
                             f"(P, {state.n_atoms}, 3)")
        return cls(q, p, state.masses, float(d["temperature_K"]))


__all__ = ["RingPolymer", "normal_mode_matrix", "free_ring_frequencies", "harmonic_pimd_potential_energy"]
