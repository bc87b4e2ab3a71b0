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

In parts: the beads are state (:class:`dpqtb.md.ring_polymer.RingPolymer`, ``MDState.ring``), PILE is a
bath (:class:`PILEBath`: its O step, its random stream, its estimators), and :class:`PIMD` is the one
splitting integrator of :mod:`dpqtb.md.integrators` with that bath, whose A step on a ring polymer is
the exact free ring-polymer propagation.
"""

from __future__ import annotations

import numpy as np
import torch

from dpqtb import InputError
from dpqtb.md.baths import NoBath, remove_net_impulse, resolve_zero_net_force
from dpqtb.md.integrators import Integrator
from dpqtb.md.ring_polymer import (RingPolymer, free_ring_frequencies, harmonic_pimd_potential_energy,  # noqa: F401
                                   normal_mode_matrix)
from dpqtb.md.schedule import TemperatureSchedule
from dpqtb.md.state import MDState
from dpqtb.potential.base import Potential
from dpqtb.units import KB, MVV2E

#: PILE-L internal-mode friction γ_k = 2λω_k: λ = 1 damps each free ring-polymer mode critically (PIMD) ...
DEFAULT_PILE_LAMBDA = 1.0
#: ... and TRPMD uses λ = 1/2 (Rossi et al. 2014), the config's default for ``thermostat.kind = "trpmd"``.
DEFAULT_TRPMD_LAMBDA = 0.5


class PILEBath(NoBath):
    """PILE-L, the O step of ring polymers in normal modes: p̃_k ← c_k p̃_k + sqrt((1 − c_k²) m P k_B T) ξ.

    Acts on ``state.ring``, which its :meth:`setup` creates (beads on the centroid, momenta at P·T) when the
    state has none. Its estimators are the ring polymer's: centroid-virial kinetic energy and pressure.

    Parameters
    ----------
    temperature : TemperatureSchedule
        A constant temperature > 0 (ω_P = P k_B T/ħ; no ramps).
    beads : int
        Number of beads P (>= 1; 1 is classical Langevin on the centroid).
    centroid_damp_fs : float or None
        Friction time of the centroid's Langevin thermostat (fs); None: none (ignored for TRPMD).
    seed : int
        Seed of the random generator (initial bead momenta and the noise).
    pile_lambda : float
        λ of the internal modes' friction γ_k = 2λω_k (> 0).
    trpmd : bool
        Thermostatted RPMD: no centroid thermostat.
    zero_net_force : bool, optional
        Remove the net random impulse of the centroid; None: when the potential is translation-invariant.
    centroid_thermostat_steps : int
        TRPMD only: the centroid has the Langevin thermostat of ``centroid_damp_fs`` while ``state.step`` is below
        this, then runs free. Without it, centroids started at the lattice minimum with momenta at T share
        their energy with their own potential energy and sit near T/2 until the anharmonic coupling to the
        thermostatted internal modes heats them, which for heavy atoms takes picoseconds (La in LaH10:
        ~4 ps at 200 K; docs/paper.md).
    """

    name = "pimd"
    has_temperature = True

    def __init__(self, temperature: TemperatureSchedule, beads: int, centroid_damp_fs: float | None, seed: int,
                 pile_lambda: float = DEFAULT_PILE_LAMBDA, trpmd: bool = False, zero_net_force: bool | None = None,
                 centroid_thermostat_steps: int = 0):
        super().__init__()
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
        if int(centroid_thermostat_steps) != centroid_thermostat_steps or centroid_thermostat_steps < 0:
            raise InputError(f"thermostat.centroid_thermostat_steps must be an integer >= 0, got {centroid_thermostat_steps}")
        if centroid_thermostat_steps and not self.trpmd:
            raise InputError("thermostat.centroid_thermostat_steps is for TRPMD (PIMD's centroid is always thermostatted)")
        if centroid_thermostat_steps and centroid_damp_fs is None:
            raise InputError("thermostat.centroid_thermostat_steps needs thermostat.damp_fs (the centroid's friction time)")
        self.centroid_thermostat_steps = int(centroid_thermostat_steps)
        self.thermalizing_damp = centroid_damp_fs if self.centroid_thermostat_steps else None
        if self.trpmd:
            self.name = "trpmd"
            centroid_damp_fs = None
        self.centroid_damp = centroid_damp_fs
        self.lam = float(pile_lambda)
        # the centroid's random impulse loses its net part exactly as in Langevin/QTB (remove_net_impulse);
        # the internal modes carry no centre-of-mass motion. zero_momentum (NoBath) stays False: K_cv
        # counts (3/2) k_B T for every atom's centroid, so the temperature is over 3N degrees of freedom
        self.zero_net_force = zero_net_force
        self.zero_net_force_used = bool(zero_net_force)
        self.seed = int(seed)
        self.generator = None

    #: P copies of the cell in H_P: the ring polymer's enthalpy term is P·P₀V (docs/barostat.md)
    @property
    def replicas(self) -> int:
        return self.P

    def setup(self, state: MDState, dt_fs: float, potential: Potential) -> None:
        super().setup(state, dt_fs, potential)
        self.zero_net_force_used = resolve_zero_net_force(self.zero_net_force, potential, state)
        self.generator = torch.Generator(device=state.device)
        self.generator.manual_seed(self.seed)
        if state.ring is None:
            state.ring = RingPolymer.on_centroid(state, self.P, self.T, self.generator)
        elif state.ring.beads != self.P or state.ring.temperature_K != self.T:
            raise InputError(f"the state's ring polymer has {state.ring.beads} beads at {state.ring.temperature_K} K, "
                             f"this run {self.P} at {self.T} K")
        wk = free_ring_frequencies(self.P, self.T)
        gamma = 2.0 * self.lam * wk
        gamma[0] = 0.0 if self.centroid_damp is None else 1.0 / self.centroid_damp

        def ou(gamma):  # the exact Ornstein–Uhlenbeck step of every normal mode: p → c1 p + c2 σ ξ
            c1 = torch.tensor(np.exp(-gamma * self.dt), dtype=state.dtype, device=state.device)
            return c1, torch.sqrt(1.0 - c1**2)

        self.c1, self.c2 = ou(gamma)
        self._thermalizing = None
        if self.thermalizing_damp is not None:  # TRPMD's first steps: the centroid thermostatted too
            gamma[0] = 1.0 / self.thermalizing_damp
            self._thermalizing = ou(gamma)

    def o_step(self, state: MDState) -> None:
        ring = state.ring
        ke_before = ring.bead_kinetic_energy()
        pn = ring.to_nm(ring.p)
        c1, c2 = self.c1, self.c2
        if self._thermalizing is not None and state.step < self.centroid_thermostat_steps:
            c1, c2 = self._thermalizing
        std = torch.sqrt(state.masses * self.P * KB * self.T / MVV2E)[None, :, None]
        xi = torch.randn(pn.shape, generator=self.generator, dtype=pn.dtype, device=pn.device)
        noise = c2.view(-1, 1, 1) * std * xi
        if self.zero_net_force_used and state.n_atoms > 1 and float(c2[0]) > 0.0:
            noise[0] = remove_net_impulse(noise[0], state.masses)
        pn = c1.view(-1, 1, 1) * pn + noise
        ring.p = ring.from_nm(pn)
        self.thermostat_energy += float(ke_before - ring.bead_kinetic_energy())

    # ------------------------------------------------------------------ estimators (the ring polymer's)
    def short_run_warning(self, remaining_steps: int, step: int = 0) -> str | None:
        """A one-line warning when the centroid thermostat of ``centroid_thermostat_steps`` covers the whole
        run from ``step``: the run is then PIMD with a Langevin centroid, not TRPMD."""
        if not self.centroid_thermostat_steps or step + remaining_steps > self.centroid_thermostat_steps:
            return None
        return (f"thermostat.centroid_thermostat_steps = {self.centroid_thermostat_steps} covers the whole run "
                f"(steps {step} to {step + remaining_steps}): the centroids stay thermostatted, so this is PIMD, "
                "not TRPMD; run longer, or lower centroid_thermostat_steps")

    def kinetic_energy(self, state: MDState) -> float:
        """Centroid-virial kinetic energy estimator (eV)."""
        return state.ring.centroid_virial_kinetic()

    def atom_kinetic_energy(self, state: MDState) -> torch.Tensor:
        """Centroid-virial kinetic energy of each atom (eV); sums to :meth:`kinetic_energy`."""
        return state.ring.atom_centroid_virial_kinetic()

    def kinetic_tensor(self, state: MDState) -> torch.Tensor:
        """The centroid momenta's Σ p̄⊗p̄/m: the kinetic part of the pressure the barostat drives with."""
        return state.ring.centroid_kinetic_tensor()

    def primitive_kinetic_energy(self, state: MDState) -> float:
        """Primitive (thermodynamic) kinetic energy estimator (eV)."""
        return state.ring.primitive_kinetic()

    def pressure_GPa(self, state: MDState) -> float:
        if not all(state.pbc):
            return float("nan")
        return state.ring.pressure_GPa(state.volume)

    def pressure_tensor_GPa(self, state: MDState) -> torch.Tensor:
        """Centroid-virial pressure tensor (GPa); a third of its trace is :meth:`pressure_GPa`."""
        return state.ring.pressure_tensor_GPa(state.volume)

    def conserved_energy(self, state: MDState) -> float:
        """Bead kinetic + springs + Σ_j V_j (H_P) plus what the thermostat removed."""
        ring = state.ring
        return float(ring.bead_kinetic_energy() + ring.spring_energy() + ring.e.sum()) + self.thermostat_energy

    def n_dof(self, state: MDState) -> int:
        return 3 * state.n_atoms

    def target_temperature(self, step: int) -> float:
        return self.T

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.generator.get_state(), "beads": self.P}

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        if int(d["beads"]) != self.P:
            raise InputError(f"checkpoint has {d['beads']} beads, this run {self.P}")
        self.generator.set_state(d["generator"])


class PIMD(Integrator):
    """Ring-polymer MD (PIMD with PILE-L, or TRPMD with ``trpmd=True``): the splitting integrator with a
    :class:`PILEBath`.

    Parameters
    ----------
    potential : Potential
        Evaluated on all beads at once (positions of shape (P, N, 3)).
    dt_fs : float
        Time step (fs), > 0.
    temperature, beads, centroid_damp_fs, seed, pile_lambda, trpmd, zero_net_force, centroid_thermostat_steps
        As for :class:`PILEBath`.
    barostat : StochasticCellRescaling, optional
        Constant pressure: scales the centroids and the cell (docs/barostat.md).

    Raises
    ------
    InputError
        A value out of range, a temperature ramp or a temperature that is not > 0.
    """

    def __init__(self, potential: Potential, dt_fs: float, temperature: TemperatureSchedule, beads: int,
                 centroid_damp_fs: float | None, seed: int, pile_lambda: float = DEFAULT_PILE_LAMBDA,
                 trpmd: bool = False, zero_net_force: bool | None = None, barostat=None,
                 centroid_thermostat_steps: int = 0):
        bath = PILEBath(temperature, beads, centroid_damp_fs, seed, pile_lambda, trpmd, zero_net_force,
                        centroid_thermostat_steps)
        super().__init__(potential, dt_fs, bath, barostat)

    @property
    def P(self) -> int:
        return self.bath.P

    def primitive_kinetic_energy(self, state: MDState) -> float:
        return self.bath.primitive_kinetic_energy(state)


__all__ = ["PIMD", "PILEBath", "RingPolymer", "DEFAULT_PILE_LAMBDA", "DEFAULT_TRPMD_LAMBDA", "normal_mode_matrix",
           "free_ring_frequencies", "harmonic_pimd_potential_energy"]
