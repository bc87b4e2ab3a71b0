"""Integrators: NVE velocity Verlet and the BAOAB splitting for Langevin, QTB and adQTB.

Each integrator is a small object with ``setup(state)`` and ``step(state)`` acting on an
:class:`~dpqtb.md.state.MDState` in place, plus ``state_dict()`` / ``load_state_dict()`` holding
everything needed to continue bit for bit (random-generator state, noise history, adaptation).

Splitting (Leimkuhler & Matthews): B = half kick, A = half drift, O = friction + noise over dt:

    B: p += (dt/2) F          A: x += (dt/2) p/m
    O (Langevin): p ← c p + sqrt((1 - c²) m kT) ξ,           c = exp(-γ dt)
    O (QTB):      p ← c p + (1 - c)/γ · R,                    R held over the noise period

The O step is the exact solution of dp/dt = -γ p + R for R constant over the step. The energy the
thermostat removes is accumulated so that ``conserved_energy`` (E_kin + E_pot + removed) is
constant up to integration error.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dpqtb import DpqtbError
from dpqtb.md.qtb import ColoredNoise, FDSpectra, GammaAdaptation, QTBParameters
from dpqtb.md.state import MDState
from dpqtb.potential.base import Potential
from dpqtb.units import KB, MVV2E


class TemperatureSchedule:
    """Target temperature (K), constant or a linear ramp from ``start`` to ``stop`` over ``n_steps``."""

    def __init__(self, start_k: float, stop_k: float | None = None, n_steps: int = 1, first_step: int = 0):
        self.start, self.stop = float(start_k), float(start_k if stop_k is None else stop_k)
        for t in (self.start, self.stop):
            if not t >= 0:
                raise DpqtbError(f"thermostat.temperature_K must be >= 0, got {t}")
        self.n_steps = max(int(n_steps), 1)
        self.first_step = first_step

    @property
    def is_ramp(self) -> bool:
        return self.start != self.stop

    def __call__(self, step: int) -> float:
        if not self.is_ramp:
            return self.start
        frac = min(max((step - self.first_step) / self.n_steps, 0.0), 1.0)
        return self.start + (self.stop - self.start) * frac


def _eval_forces(potential: Potential, state: MDState) -> None:
    out = potential(state.positions, state.cell, state.species, state.pbc)
    state.energy, state.forces, state.virial = out.energy, out.forces, out.virial


class NVE:
    """Velocity Verlet (microcanonical)."""

    name = "nve"
    has_temperature = False

    def __init__(self, potential: Potential, dt_fs: float):
        if not dt_fs > 0:
            raise DpqtbError(f"md.timestep_fs must be > 0, got {dt_fs}")
        self.potential = potential
        self.dt = float(dt_fs)
        self.thermostat_energy = 0.0  # energy removed by a thermostat (eV); zero for NVE
        self.zero_momentum = False

    def setup(self, state: MDState) -> None:
        self.potential.bind(state.type_map)
        _eval_forces(self.potential, state)

    def kick(self, state: MDState, dt: float) -> None:
        state.momenta.add_(state.forces, alpha=dt / MVV2E)

    def drift(self, state: MDState, dt: float) -> None:
        state.positions.add_(state.momenta / state.masses[:, None], alpha=dt)

    def step(self, state: MDState) -> None:
        self.kick(state, 0.5 * self.dt)
        self.drift(state, self.dt)
        _eval_forces(self.potential, state)
        self.kick(state, 0.5 * self.dt)
        self._advance_clock(state)

    def _advance_clock(self, state: MDState) -> None:
        state.step += 1
        state.time_fs = state.step * self.dt

    def conserved_energy(self, state: MDState) -> float:
        return float(state.kinetic_energy() + state.energy) + self.thermostat_energy

    def kinetic_energy(self, state: MDState) -> float:
        """Kinetic energy estimator written to thermo.csv (eV)."""
        return float(state.kinetic_energy())

    def pressure_gpa(self, state: MDState) -> float:
        return state.pressure_gpa()

    def n_dof(self, state: MDState) -> int:
        return 3 * state.n_atoms - (3 if self.zero_momentum and state.n_atoms > 1 else 0)

    def target_temperature(self, step: int) -> float:
        return float("nan")

    def state_dict(self) -> dict:
        return {"thermostat_energy": self.thermostat_energy}

    def load_state_dict(self, d: dict) -> None:
        self.thermostat_energy = float(d["thermostat_energy"])


class Langevin(NVE):
    """Classical Langevin dynamics (BAOAB), optional linear temperature ramp."""

    name = "langevin"
    has_temperature = True

    def __init__(self, potential: Potential, dt_fs: float, temperature: TemperatureSchedule, damp_fs: float,
                 seed: int, zero_net_force: bool = True):
        super().__init__(potential, dt_fs)
        if not damp_fs > 0:
            raise DpqtbError(f"thermostat.damp_fs must be > 0, got {damp_fs}")
        self.schedule = temperature
        self.gamma = 1.0 / damp_fs
        self.c = math.exp(-self.gamma * self.dt)
        self.seed = int(seed)
        self.zero_momentum = bool(zero_net_force)
        self.generator = None

    def setup(self, state: MDState) -> None:
        self.generator = torch.Generator(device=state.device)
        self.generator.manual_seed(self.seed)
        super().setup(state)

    def target_temperature(self, step: int) -> float:
        return self.schedule(step)

    def random_impulse(self, state: MDState) -> torch.Tensor:
        """(1 - c)/γ·R (or the white-noise kick) to add to c·p in the O step, amu·Å/fs."""
        kt = KB * self.schedule(state.step)
        std = torch.sqrt((1.0 - self.c**2) * state.masses * kt / MVV2E)
        xi = torch.randn(state.momenta.shape, generator=self.generator, dtype=state.dtype, device=state.device)
        return xi * std[:, None]

    def ou(self, state: MDState) -> None:
        ke_before = state.kinetic_energy()
        kick = self.random_impulse(state)
        if self.zero_momentum:
            kick -= kick.mean(0)
        p_old = state.momenta.clone() if self.wants_midpoint_velocity else None
        state.momenta.mul_(self.c).add_(kick)
        if p_old is not None:
            self.observe_midpoint_velocity((p_old + state.momenta) / (2.0 * state.masses[:, None]))
        self.thermostat_energy += float(ke_before - state.kinetic_energy())

    wants_midpoint_velocity = False

    def observe_midpoint_velocity(self, v: torch.Tensor) -> None:  # pragma: no cover - hook
        pass

    def step(self, state: MDState) -> None:
        self.before_step(state)
        self.kick(state, 0.5 * self.dt)
        self.drift(state, 0.5 * self.dt)
        self.ou(state)
        self.drift(state, 0.5 * self.dt)
        _eval_forces(self.potential, state)
        self.kick(state, 0.5 * self.dt)
        self._advance_clock(state)

    def before_step(self, state: MDState) -> None:
        pass

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        self.generator.set_state(d["generator"])


class QTB(Langevin):
    """Quantum thermal bath (plain, or adaptive with ``adaptive=True``). See :mod:`dpqtb.md.qtb`."""

    name = "qtb"

    def __init__(self, potential: Potential, dt_fs: float, temperature: TemperatureSchedule, damp_fs: float,
                 seed: int, f_max_thz: float = 200.0, n_f: int = 100, classical_kernel: bool = False,
                 zero_net_force: bool = True, adaptive: bool = False, fd_diagnostic: bool = True,
                 tau_ad_fs: float = 5000.0, tau_avg_fs: float | None = None, fd_max_dof: int = 6000,
                 adapt_eps: float = 0.05):
        super().__init__(potential, dt_fs, temperature, damp_fs, seed, zero_net_force)
        self.params = QTBParameters(temperature(0), damp_fs, f_max_thz, int(n_f), classical_kernel)
        self.params.validate()
        self.adaptive = bool(adaptive)
        if self.adaptive:
            self.name = "adqtb"
        self.fd_enabled = bool(fd_diagnostic or adaptive)
        self.tau_ad_fs, self.tau_avg_fs, self.fd_max_dof, self.adapt_eps = tau_ad_fs, tau_avg_fs, fd_max_dof, adapt_eps
        self.noise = self.fd = self.adapt = None
        self.counter = 0  # MD steps done in the current noise period
        self.wants_midpoint_velocity = self.fd_enabled

    def setup(self, state: MDState) -> None:
        super().setup(state)
        self.noise = ColoredNoise(self.params, self.dt, state.masses, state.species, len(state.type_map),
                                  self.generator)
        if self.schedule.is_ramp:
            self.noise.rebuild_kernels(self.schedule(state.step))
            self.noise._compute_force()
        if self.fd_enabled:
            self.fd = FDSpectra(self.noise, state.masses, self.fd_max_dof)
        if self.adaptive:
            self.adapt = GammaAdaptation(self.noise, self.tau_ad_fs, self.tau_avg_fs, self.adapt_eps)
        self.counter = 0

    @property
    def alpha(self) -> int:
        return self.noise.alpha

    def before_step(self, state: MDState) -> None:
        if self.counter < self.noise.alpha:
            return
        # a noise period just ended
        if self.fd is not None:
            segment_done = self.fd.end_period(self.noise.force.view(-1))
            if segment_done and self.adapt is not None:
                mcvv, _, dfd = self.fd.last
                self.adapt.update(mcvv, dfd)
        if self.schedule.is_ramp:
            self.noise.rebuild_kernels(self.schedule(state.step))
        self.noise.advance()
        self.counter = 0

    def random_impulse(self, state: MDState) -> torch.Tensor:
        r = self.noise.force
        return ((1.0 - self.c) / (self.gamma * MVV2E)) * r

    def observe_midpoint_velocity(self, v: torch.Tensor) -> None:
        self.fd.accumulate_velocity(v.reshape(-1))

    def step(self, state: MDState) -> None:
        super().step(state)
        self.counter += 1

    def state_dict(self) -> dict:
        d = {**super().state_dict(), "noise": self.noise.state_dict(), "counter": self.counter}
        if self.fd is not None:
            d["fd"] = self.fd.state_dict()
        if self.adapt is not None:
            d["adapt"] = self.adapt.state_dict()
        return d

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        self.noise.load_state_dict(d["noise"])
        self.counter = int(d["counter"])
        if self.fd is not None:
            self.fd.load_state_dict(d["fd"])
        if self.adapt is not None:
            self.adapt.load_state_dict(d["adapt"])

    # -- diagnostics
    def fd_table(self, type_map) -> dict[str, dict[str, np.ndarray]]:
        """Per species: frequency grid and run-averaged spectra (see :class:`FDSpectra`)."""
        from dpqtb.md.qtb import frequency_grid, theta_qtb

        avg = self.fd.averages()
        f = frequency_grid(self.noise.n_f, self.noise.h)  # 1/fs
        theta = theta_qtb(2 * np.pi * f, self.noise.temperature_k, self.params.classical_kernel)
        out = {}
        for s, name in enumerate(type_map):
            gamma_r = self.gamma * self.noise.gamma_ratio[s]
            mcvv = avg["mCvv_eV_fs"][s]
            out[name] = {
                "frequency_THz": f * 1e3,
                "theta_eV": theta,
                "gamma_r_per_ps": gamma_r * 1e3,
                "mCvv_eV_fs": mcvv,
                "ReCvR_eV": avg["ReCvR_eV"][s],
                "delta_fd_eV": avg["delta_fd_eV"][s],
                "n_segments": np.full_like(f, avg["n_segments"]),
            }
        return out

    def fd_summary(self) -> np.ndarray:
        """Per species: Σ|Δ_FD| / Σ m γ_r C_vv over the grid (0 when the FDT holds at every frequency)."""
        avg = self.fd.averages()
        gamma_r = self.gamma * self.noise.gamma_ratio
        return np.abs(avg["delta_fd_eV"]).sum(1) / np.maximum((gamma_r * avg["mCvv_eV_fs"]).sum(1), 1e-300)
