"""Path-integral MD: ring polymers with the PILE-L thermostat (Ceriotti, Parrinello, Markland &
Manolopoulos, JCP 133, 124104 (2010)) and thermostatted RPMD (Rossi, Ceriotti & Manolopoulos, JCP 140,
234116 (2014)).

P beads per atom sample exp(-β_P H_P), β_P = β/P, with

    H_P = Σ_j Σ_i [ p_ij²/2m_i + ½ m_i ω_P² |q_ij − q_i,j+1|² ] + Σ_j V(q_j),   ω_P = P k_B T / ħ.

All beads are evaluated in one call of the potential with positions of shape (P, N, 3).
Integration (BAOAB in normal-mode coordinates): B = half kick with the physical forces, A = exact
free ring-polymer propagation for dt/2 (harmonic rotation of each normal mode, ω_k = 2ω_P sin(kπ/P)),
O = PILE-L: p̃_k ← c_k p̃_k + sqrt((1 − c_k²) m P k_B T) ξ with c_k = exp(−γ_k dt), γ_k = 2λω_k for
k > 0 (λ = 1: critical damping, PILE-L; λ = 1/2 for TRPMD) and γ_0 = 1/τ_0 for the centroid (none in
TRPMD production runs, which then follow the centroid dynamics used for diffusion).

Estimators (per step, written by the runner): centroid-virial kinetic energy
K_cv = (3N/2) k_B T − (1/2P) Σ_j Σ_i (q_ij − q̄_i)·F_ij, primitive kinetic energy
K_pr = (3NP/2) k_B T − (1/P) Σ_j Σ_i ½ m_i ω_P² |q_ij − q_i,j+1|², potential V̄ = (1/P) Σ_j V(q_j), and the
centroid-virial pressure P = (2 K_cv + (1/P) Σ_j tr W_j) / 3V. The state's positions and momenta are
the centroid's, so the trajectory is the centroid trajectory and the analysis tools apply unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dpqtb import InputError
from dpqtb.md.barostat import CELL_COLUMNS, cell_thermo
from dpqtb.md.baths import NoBath, remove_net_impulse, resolve_zero_net_force
from dpqtb.md.schedule import TemperatureSchedule
from dpqtb.md.state import MDState
from dpqtb.potential.base import Potential
from dpqtb.units import EV_PER_A3_TO_GPA, HBAR, KB, MVV2E


#: PILE-L internal-mode friction γ_k = 2λω_k: λ = 1 damps each free ring-polymer mode critically (PIMD) ...
DEFAULT_PILE_LAMBDA = 1.0
#: ... and TRPMD uses λ = 1/2 (Rossi et al. 2014), the config's default for ``thermostat.kind = "trpmd"``.
DEFAULT_TRPMD_LAMBDA = 0.5


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


class PIMD(NoBath):
    """Ring-polymer MD (PIMD with PILE-L, or TRPMD with ``trpmd=True``).

    Parameters
    ----------
    potential : Potential
        Evaluated on all beads at once (positions of shape (P, N, 3)).
    dt_fs : float
        Time step (fs), > 0.
    temperature : TemperatureSchedule
        A constant temperature > 0 (ω_P = P k_B T/ħ; no ramps).
    beads : int
        Number of beads P (>= 1; 1 is classical Langevin on the centroid).
    centroid_damp_fs : float or None
        Friction time of the centroid's Langevin thermostat (fs); None: none (ignored for TRPMD).
    seed : int
        Seed of the random generator (initial bead momenta and the noise).
    pile_lambda : float
        λ of the internal modes' friction γ_k = 2λω_k (> 0); the config's default for TRPMD is
        :data:`DEFAULT_TRPMD_LAMBDA`.
    trpmd : bool
        Thermostatted RPMD: no centroid thermostat.
    zero_net_force : bool, optional
        Remove the net random impulse of the centroid; None: when the potential is translation-invariant.

    Raises
    ------
    InputError
        A value out of range, a temperature ramp or a temperature that is not > 0.
    """

    name = "pimd"
    has_temperature = True

    def __init__(self, potential: Potential, dt_fs: float, temperature: TemperatureSchedule, beads: int,
                 centroid_damp_fs: float | None, seed: int, pile_lambda: float = DEFAULT_PILE_LAMBDA,
                 trpmd: bool = False, zero_net_force: bool | None = None, barostat=None):
        super().__init__()
        if not dt_fs > 0:
            raise InputError(f"md.timestep_fs must be > 0, got {dt_fs}")
        self.potential = potential
        self.dt = float(dt_fs)
        self.barostat = barostat  # scales the centroids and the cell (docs/barostat.md)
        self._baro_pending = None
        if int(beads) != beads or beads < 1:
            raise InputError(f"thermostat.beads must be an integer >= 1, got {beads}")
        if temperature.is_ramp:
            raise InputError("thermostat.temperature_K ramps are not supported for PIMD (ω_P depends on T)")
        if not temperature(0) > 0:
            raise InputError("thermostat.temperature_K must be > 0 for PIMD")
        if centroid_damp_fs is not None and not centroid_damp_fs > 0:
            raise InputError(f"thermostat.damp_fs must be > 0, got {centroid_damp_fs}")
        if not pile_lambda > 0:
            raise InputError(f"thermostat.pile_lambda must be > 0, got {pile_lambda}")
        self.P = int(beads)
        self.schedule = temperature
        self.T = temperature(0)
        self.trpmd = bool(trpmd)
        if self.trpmd:
            self.name = "trpmd"
            centroid_damp_fs = None
        self.centroid_damp = centroid_damp_fs
        self.lam = float(pile_lambda)
        # the centroid's random impulse loses its net part exactly as in Langevin/QTB (remove_net_impulse);
        # the internal modes carry no centre-of-mass motion
        self.zero_net_force = zero_net_force
        self.zero_centroid_momentum = bool(zero_net_force)
        self.seed = int(seed)
        self.generator = None
        self.q = self.p = self.f = self.e = self.w = None  # bead arrays (P, N, 3), energies (P,), virials (P,3,3)

    # ------------------------------------------------------------------ setup
    def setup(self, state: MDState) -> None:
        self.potential.bind(state.type_map)
        self.zero_centroid_momentum = resolve_zero_net_force(self.zero_net_force, self.potential, state)
        dev, dt = state.device, state.dtype
        self.generator = torch.Generator(device=dev)
        self.generator.manual_seed(self.seed)
        P = self.P
        self.C = torch.tensor(normal_mode_matrix(P), dtype=dt, device=dev)
        wk = free_ring_frequencies(P, self.T)
        self.omega_k = torch.tensor(wk, dtype=dt, device=dev)
        self.omega_p = P * KB * self.T / HBAR
        gamma = 2.0 * self.lam * wk
        gamma[0] = 0.0 if self.centroid_damp is None else 1.0 / self.centroid_damp
        self.c1 = torch.tensor(np.exp(-gamma * self.dt), dtype=dt, device=dev)
        self.c2 = torch.sqrt(1.0 - self.c1**2)
        half = 0.5 * self.dt
        wt = wk * half
        with np.errstate(divide="ignore", invalid="ignore"):
            sin_over_w = np.where(wk > 0, np.sin(wt) / np.where(wk > 0, wk, 1.0), half)
        self.cos_wt = torch.tensor(np.cos(wt), dtype=dt, device=dev)
        self.sin_wt_w = torch.tensor(sin_over_w, dtype=dt, device=dev)  # sin(ωτ)/ω (τ for k = 0)
        self.w_sin_wt = torch.tensor(wk * np.sin(wt), dtype=dt, device=dev)  # ω sin(ωτ)
        # beads start on the centroid, momenta of each bead from the bead temperature P·T
        self.q = state.positions.unsqueeze(0).repeat(P, 1, 1).clone()
        std = torch.sqrt(state.masses * P * KB * self.T / MVV2E)
        self.p = torch.randn((P,) + state.positions.shape, generator=self.generator, dtype=dt, device=dev) * std[:, None]
        self.p += state.momenta - self.p.mean(0)  # bead-average momentum = the state's (centroid) momentum
        self._state = state
        self._forces(state)
        self._sync_state(state)
        if self.barostat is not None:
            self.barostat.setup(state)

    def _forces(self, state: MDState) -> None:
        out = self.potential(self.q, state.cell, state.species, state.pbc)
        self.e, self.f, self.w = out.energy.reshape(self.P), out.forces.reshape(self.q.shape), out.virial.reshape(self.P, 3, 3)

    def _sync_state(self, state: MDState) -> None:
        state.positions = self.q.mean(0)
        state.momenta = self.p.mean(0)  # centroid momentum (per atom, in physical mass units)
        state.energy = self.e.mean()
        state.forces = self.f.mean(0)
        state.virial = self.w.mean(0)

    # ------------------------------------------------------------------ propagation
    def _to_nm(self, x: torch.Tensor) -> torch.Tensor:
        """q̃_k = Σ_j C_jk q_j (one P×P matrix product over all atoms)."""
        return (self.C.T @ x.reshape(self.P, -1)).reshape(x.shape)

    def _from_nm(self, x: torch.Tensor) -> torch.Tensor:
        return (self.C @ x.reshape(self.P, -1)).reshape(x.shape)

    def _free_ring(self, state: MDState) -> None:
        """Exact free ring-polymer propagation for dt/2 in normal modes."""
        m = state.masses[None, :, None]
        qn, pn = self._to_nm(self.q), self._to_nm(self.p)
        shape = (-1, 1, 1)
        cos, s_w, w_s = self.cos_wt.view(shape), self.sin_wt_w.view(shape), self.w_sin_wt.view(shape)
        q_new = qn * cos + pn / m * s_w
        p_new = pn * cos - m * qn * w_s
        self.q, self.p = self._from_nm(q_new), self._from_nm(p_new)

    def _ou(self, state: MDState) -> None:
        ke_before = self._bead_kinetic(state)
        pn = self._to_nm(self.p)
        std = torch.sqrt(state.masses * self.P * KB * self.T / MVV2E)[None, :, None]
        xi = torch.randn(pn.shape, generator=self.generator, dtype=pn.dtype, device=pn.device)
        noise = self.c2.view(-1, 1, 1) * std * xi
        if self.zero_centroid_momentum and state.n_atoms > 1 and float(self.c2[0]) > 0.0:
            noise[0] = remove_net_impulse(noise[0], state.masses)
        pn = self.c1.view(-1, 1, 1) * pn + noise
        self.p = self._from_nm(pn)
        self.thermostat_energy += float(ke_before - self._bead_kinetic(state))

    def _bead_kinetic(self, state: MDState) -> torch.Tensor:
        return 0.5 * MVV2E * (self.p.pow(2).sum(-1) / state.masses).sum()

    def step(self, state: MDState) -> None:
        dt = self.dt
        self.p.add_(self.f, alpha=0.5 * dt / MVV2E)
        self._free_ring(state)
        self._ou(state)
        self._free_ring(state)
        if self.barostat is not None:
            self._barostat_move(state)
        self._forces(state)
        if self.barostat is not None:
            self._barostat_after_forces()
        self.p.add_(self.f, alpha=0.5 * dt / MVV2E)
        self._sync_state(state)
        state.step += 1
        state.time_fs = state.step * self.dt

    # ------------------------------------------------------------------ constant pressure
    def _effective_virial(self) -> torch.Tensor:
        """Σ_j [W_j − Σ_i (q_ij − q̄_i) ⊗ F_ij] (eV, 3×3): −∂(Σ_j V_j)/∂ε when the cell and the centroids are
        strained and the internal ring-polymer modes are not."""
        dq = self.q - self.q.mean(0, keepdim=True)
        return self.w.sum(0) - torch.einsum("jia,jib->ab", dq, self.f)

    def _barostat_move(self, state: MDState) -> None:
        """Stochastic cell rescaling of the centroids (positions and momenta) and the cell, as i-PI's BZP
        moves only the centroid: the Jacobian is that of N particles, and the pressure is the centroid-virial
        one with the centroid momenta's kinetic tensor, P = [Σ p̄⊗p̄/m + (1/P) Σ_j W_eff,j]/V."""
        baro, P = self.barostat, self.P
        qc, pc = self.q.mean(0), self.p.mean(0)
        kc = MVV2E * torch.einsum("ia,ib,i->ab", pc, pc, 1.0 / state.masses)
        w_eff = self._effective_virial().detach().to("cpu", torch.float64)
        volume = state.volume
        p_int = (kc.detach().to("cpu", torch.float64) + w_eff / P) / volume * EV_PER_A3_TO_GPA
        eps = baro.log_strain(volume, p_int, self.T, self.dt)
        a = torch.linalg.matrix_exp(eps).to(device=qc.device, dtype=qc.dtype)
        ke_before = float(self._bead_kinetic(state))
        self.q += (qc @ a - qc)[None]
        self.p += (pc @ torch.linalg.inv(a).T - pc)[None]
        state.cell.copy_(state.cell @ a)
        # heat in the ring polymer's units (H_P and P·P₀V): -(ΔK_beads + ΔΣ_jV_j + P P₀ΔV); springs unchanged
        d_k = float(self._bead_kinetic(state)) - ke_before
        d_u = -float((w_eff * eps).sum())
        d_pv = P * baro.pressure_GPa / EV_PER_A3_TO_GPA * volume * (math.exp(float(torch.trace(eps))) - 1.0)
        baro.barostat_energy -= d_k + d_u + d_pv
        self._baro_pending = (eps, w_eff)

    def _barostat_after_forces(self) -> None:
        """The move's ΔΣ_jV_j by the trapezoid (see :meth:`StochasticCellRescaling.after_forces`)."""
        eps, w_before = self._baro_pending
        w_after = self._effective_virial().detach().to("cpu", torch.float64)
        self.barostat.barostat_energy += 0.5 * float(((w_after - w_before) * eps).sum())
        self._baro_pending = None

    def pressure_tensor_GPa(self, state: MDState) -> torch.Tensor:
        """Centroid-virial pressure tensor [N k_B T δ − (1/P) Σ_j Σ_i (q_ij − q̄_i) ⊗ F_ij + (1/P) Σ_j W_j]/V
        (GPa); a third of its trace is :meth:`pressure_GPa`."""
        dq = self.q - self.q.mean(0, keepdim=True)
        eye = torch.eye(3, dtype=self.q.dtype, device=self.q.device)
        k = state.n_atoms * KB * self.T * eye - torch.einsum("jia,jib->ab", dq, self.f) / self.P
        return (k + self.w.mean(0)) / state.volume * EV_PER_A3_TO_GPA

    def extra_thermo_columns(self, type_map) -> list[str]:
        cols = super().extra_thermo_columns(type_map)
        return cols + list(CELL_COLUMNS) if self.barostat is not None else cols

    def extra_thermo(self, state: MDState) -> dict:
        out = super().extra_thermo(state)
        if self.barostat is not None:
            out.update(cell_thermo(state, self.pressure_tensor_GPa(state)))
        return out

    # ------------------------------------------------------------------ estimators
    def spring_energy(self, state: MDState) -> torch.Tensor:
        d = self.q - torch.roll(self.q, -1, dims=0)
        return 0.5 * MVV2E * self.omega_p**2 * (state.masses[None, :, None] * d * d).sum()

    def kinetic_energy(self, state: MDState) -> float:
        """Centroid-virial kinetic energy estimator (eV)."""
        dq = self.q - self.q.mean(0, keepdim=True)
        return float(1.5 * state.n_atoms * KB * self.T - 0.5 / self.P * (dq * self.f).sum())

    def atom_kinetic_energy(self, state: MDState) -> torch.Tensor:
        """Centroid-virial kinetic energy of each atom (eV): (3/2) k_B T − (1/2P) Σ_j (q_j − q̄)·F_j; sums to
        :meth:`kinetic_energy`."""
        dq = self.q - self.q.mean(0, keepdim=True)
        return 1.5 * KB * self.T - 0.5 / self.P * (dq * self.f).sum((0, 2))

    def primitive_kinetic_energy(self, state: MDState) -> float:
        """Primitive (thermodynamic) kinetic energy estimator (eV): (3NP/2)kT − (1/P) Σ ½ m ω_P² |Δq|²."""
        return float(1.5 * state.n_atoms * self.P * KB * self.T - self.spring_energy(state) / self.P)

    def pressure_GPa(self, state: MDState) -> float:
        if not all(state.pbc):
            return float("nan")
        return (2.0 * self.kinetic_energy(state) + float(self.w.diagonal(dim1=-2, dim2=-1).sum(-1).mean())) \
            / (3.0 * state.volume) * EV_PER_A3_TO_GPA

    def conserved_energy(self, state: MDState) -> float:
        """Ring-polymer Hamiltonian H_P/P-consistent quantity: bead kinetic + springs + Σ_j V_j, plus what the
        thermostat removed (constant up to integration error)."""
        e = float(self._bead_kinetic(state) + self.spring_energy(state) + self.e.sum()) + self.thermostat_energy
        if self.barostat is not None:  # the ring polymer's enthalpy: P copies of the cell
            e += self.P * self.barostat.enthalpy_term(state) + self.barostat.barostat_energy
        return e

    def n_dof(self, state: MDState) -> int:
        return 3 * state.n_atoms

    def target_temperature(self, step: int) -> float:
        return self.T

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict:
        d = {**super().state_dict(), "generator": self.generator.get_state(), "q": self.q.clone(),
             "p": self.p.clone(), "beads": self.P}
        if self.barostat is not None:
            d["barostat"] = self.barostat.state_dict()
        return d

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        if (self.barostat is not None) != ("barostat" in d):
            raise InputError("checkpoint and config disagree about the barostat (constant pressure vs fixed cell)")
        if self.barostat is not None:
            self.barostat.load_state_dict(d["barostat"])
        if int(d["beads"]) != self.P:
            raise InputError(f"checkpoint has {d['beads']} beads, this run {self.P}")
        self.generator.set_state(d["generator"])
        self.q = d["q"].to(self.q.device)
        self.p = d["p"].to(self.p.device)
        self._forces(self._state)  # forces of the restored beads
        self._sync_state(self._state)
