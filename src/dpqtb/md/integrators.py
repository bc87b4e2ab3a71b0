"""One splitting integrator (BAOAB) whose O step (the bath) and cell move (the barostat) are components.

Splitting (Leimkuhler & Matthews): B = half kick, A = half drift, O = the bath over dt:

    B: p += (dt/2) F          A: x += (dt/2) p/m          O: see :mod:`dpqtb.md.baths`

    without a bath (NVE):  B A(dt) [C] F B            (velocity Verlet)
    with a bath:           B A O A [C] F B            (BAOAB)

C is the barostat's move (:mod:`dpqtb.md.barostat`): cell, positions and momenta rescaled where
positions and momenta belong to the same time, before the one force evaluation of the step. Each
component owns its random generator and its ``state_dict``; the integrator's ``state_dict`` holds
everything needed to continue bit for bit. ``conserved_energy`` = E_kin + E_pot + the energy the bath
removed (+ P₀V + the energy the barostat's bath took, at constant pressure) is constant up to the
integration error.

:class:`NVE`, :class:`Langevin` and :class:`QTB` are this integrator with a given bath.
"""

from __future__ import annotations

import numpy as np
import torch

from dpqtb import InputError
from dpqtb.md.baths import (NoBath, QTBBath, WhiteNoiseBath, remove_net_impulse,  # noqa: F401 - public
                            resolve_zero_net_force)
from dpqtb.md.barostat import CELL_COLUMNS, cell_thermo  # noqa: F401 - public
from dpqtb.md.qtb_groups import adaptation_groups  # noqa: F401 - public (QTB adaptation groups)
from dpqtb.md.schedule import TemperatureSchedule
from dpqtb.md.state import MDState
from dpqtb.potential.base import Potential
from dpqtb.units import MVV2E


def _eval_forces(potential: Potential, state: MDState) -> None:
    out = potential(state.positions, state.cell, state.species, state.pbc)
    state.energy, state.forces, state.virial = out.energy, out.forces, out.virial


class Integrator:
    """The BAOAB splitting integrator with a bath (O step) and an optional barostat.

    Parameters
    ----------
    potential : Potential
        Energy, forces and virial of the system.
    dt_fs : float
        Time step (fs), > 0.
    bath : NoBath, WhiteNoiseBath or QTBBath, optional
        The O step (None: NVE).
    barostat : StochasticCellRescaling, optional
        Constant pressure (needs a bath with a temperature).
    """

    def __init__(self, potential: Potential, dt_fs: float, bath: NoBath | None = None, barostat=None):
        if not dt_fs > 0:
            raise InputError(f"md.timestep_fs must be > 0, got {dt_fs}")
        self.potential = potential
        self.dt = float(dt_fs)
        self.bath = NoBath() if bath is None else bath
        if barostat is not None and not self.bath.has_temperature:
            raise InputError("a barostat needs a thermostat with a temperature (langevin, qtb, adqtb, pimd), not 'nve'")
        self.barostat = barostat

    # ------------------------------------------------------------------ what the run sees
    @property
    def name(self) -> str:
        return self.bath.name

    @property
    def has_temperature(self) -> bool:
        return self.bath.has_temperature

    @property
    def zero_momentum(self) -> bool:
        return self.bath.zero_momentum

    @property
    def thermostat_energy(self) -> float:
        return self.bath.thermostat_energy

    # ------------------------------------------------------------------ propagation
    def setup(self, state: MDState) -> None:
        """The bath (random streams, noise history; a ring-polymer bath creates ``state.ring``), the forces at
        the state's positions, then the barostat."""
        self.potential.bind(state.type_map)
        self.bath.setup(state, self.dt, self.potential)
        self.evaluate(state)
        if self.barostat is not None:
            self.barostat.setup(state)

    def evaluate(self, state: MDState) -> None:
        """Energy, forces and virial at the state's positions (of every bead of a ring polymer, whose
        centroid view the state then holds)."""
        ring = state.ring
        if ring is None:
            _eval_forces(self.potential, state)
        else:
            ring.evaluate(self.potential, state)
            ring.view(state)

    def kick(self, state: MDState, dt: float) -> None:
        """B: p += dt F (every bead's momenta with its own force)."""
        if state.ring is None:
            state.momenta.add_(state.forces, alpha=dt / MVV2E)
        else:
            state.ring.kick(dt)

    def drift(self, state: MDState, dt: float) -> None:
        """A: x += dt p/m (a ring polymer: the exact free ring-polymer propagation, springs included)."""
        if state.ring is None:
            state.positions.add_(state.momenta / state.masses[:, None], alpha=dt)
        else:
            state.ring.free_ring(dt)

    def step(self, state: MDState) -> None:
        bath = self.bath
        if not bath.has_temperature:  # velocity Verlet: one full drift
            self.kick(state, 0.5 * self.dt)
            self.drift(state, self.dt)
        else:
            bath.before_step(state)
            self.kick(state, 0.5 * self.dt)
            self.drift(state, 0.5 * self.dt)
            bath.o_step(state)
            self.drift(state, 0.5 * self.dt)
        if self.barostat is not None:
            self._cell_move(state)
        if state.ring is None:
            _eval_forces(self.potential, state)
        else:
            state.ring.evaluate(self.potential, state)
        if self.barostat is not None:
            self._cell_after_forces(state)
        self.kick(state, 0.5 * self.dt)
        bath.after_step(state)
        if state.ring is not None:
            state.ring.view(state)
        state.step += 1
        state.time_fs = state.step * self.dt

    def _cell_move(self, state: MDState) -> None:
        temperature = self.bath.target_temperature(state.step)
        if state.ring is None:
            self.barostat.move(state, self.dt, temperature, self.bath.kinetic_tensor(state))
        else:
            self.barostat.move_ring_polymer(state, self.dt, temperature)

    def _cell_after_forces(self, state: MDState) -> None:
        """The barostat's trapezoid for ΔU, with the virial of the forces just computed (a ring polymer's:
        the effective centroid virial)."""
        self.barostat.after_forces(state.virial if state.ring is None else state.ring.effective_virial())

    # ------------------------------------------------------------------ estimators (the bath's)
    def conserved_energy(self, state: MDState) -> float:
        e = self.bath.conserved_energy(state)
        if self.barostat is not None:  # a ring polymer's enthalpy: P copies of the cell
            e += self.bath.replicas * self.barostat.enthalpy_term(state) + self.barostat.barostat_energy
        return e

    def kinetic_energy(self, state: MDState) -> float:
        """Kinetic energy estimator written to thermo.csv (eV)."""
        return self.bath.kinetic_energy(state)

    def atom_kinetic_energy(self, state: MDState) -> torch.Tensor:
        return self.bath.atom_kinetic_energy(state)

    def kinetic_energy_by_species(self, state: MDState) -> np.ndarray:
        return self.bath.kinetic_energy_by_species(state)

    def pressure_GPa(self, state: MDState) -> float:
        return self.bath.pressure_GPa(state)

    def pressure_tensor_GPa(self, state: MDState) -> torch.Tensor:
        """The bath's pressure tensor estimator in GPa (positive = compressive)."""
        return self.bath.pressure_tensor_GPa(state)

    def n_dof(self, state: MDState) -> int:
        return self.bath.n_dof(state)

    def species_n_dof(self, state: MDState) -> np.ndarray:
        return self.bath.species_n_dof(state)

    def extra_thermo_columns(self, type_map) -> list[str]:
        cols = self.bath.extra_thermo_columns(type_map)
        if self.barostat is not None:
            cols = cols + list(CELL_COLUMNS)
        return cols

    def extra_thermo(self, state: MDState) -> dict:
        out = self.bath.extra_thermo(state)
        if self.barostat is not None:
            out.update(cell_thermo(state, self.pressure_tensor_GPa(state)))
        return out

    def target_temperature(self, step: int) -> float:
        return self.bath.target_temperature(step)

    def short_run_warning(self, remaining_steps: int, step: int = 0) -> str | None:
        warn = getattr(self.bath, "short_run_warning", None)
        return None if warn is None else warn(remaining_steps, step)

    # ------------------------------------------------------------------ restart
    def state_dict(self) -> dict:
        d = self.bath.state_dict()
        if self.barostat is not None:
            d["barostat"] = self.barostat.state_dict()
        return d

    def load_state_dict(self, d: dict) -> None:
        if (self.barostat is not None) != ("barostat" in d):
            raise InputError("checkpoint and config disagree about the barostat (constant pressure vs fixed cell)")
        self.bath.load_state_dict(d)
        if self.barostat is not None:
            self.barostat.load_state_dict(d["barostat"])


class NVE(Integrator):
    """Velocity Verlet (microcanonical): the integrator without a bath.

    Parameters
    ----------
    potential : Potential
        Energy, forces and virial of the system.
    dt_fs : float
        Time step (fs), > 0.
    """

    def __init__(self, potential: Potential, dt_fs: float):
        super().__init__(potential, dt_fs, NoBath())


class Langevin(Integrator):
    """Classical Langevin dynamics (BAOAB with :class:`~dpqtb.md.baths.WhiteNoiseBath`).

    Parameters
    ----------
    potential : Potential
        Energy, forces and virial of the system.
    dt_fs : float
        Time step (fs), > 0.
    temperature : TemperatureSchedule
        Target temperature at each step.
    damp_fs : float
        Friction time 1/γ (fs), > 0.
    seed : int
        Seed of the noise's random generator (a run's: :func:`dpqtb.md.config.derived_seed`).
    zero_net_force : bool, optional
        Remove the net random impulse (mass-weighted, :func:`remove_net_impulse`); None: exactly when the
        potential is translation-invariant (:func:`resolve_zero_net_force`).
    barostat : StochasticCellRescaling, optional
        Constant pressure.
    """

    def __init__(self, potential: Potential, dt_fs: float, temperature: TemperatureSchedule, damp_fs: float,
                 seed: int, zero_net_force: bool | None = None, barostat=None):
        super().__init__(potential, dt_fs, WhiteNoiseBath(temperature, damp_fs, seed, zero_net_force), barostat)


class QTB(Integrator):
    """Quantum thermal bath, plain or adaptive (BAOAB with :class:`~dpqtb.md.baths.QTBBath`).

    Parameters
    ----------
    potential, dt_fs, temperature, damp_fs, seed, zero_net_force, barostat
        As for :class:`Langevin`.
    **bath_options
        The bath's options (``f_max_THz``, ``n_f``, ``adaptive``, ``adapt_groups``, ``kinetic_correction``, ...;
        defaults :data:`dpqtb.md.qtb.QTB_DEFAULTS`): see :class:`~dpqtb.md.baths.QTBBath`.
    """

    def __init__(self, potential: Potential, dt_fs: float, temperature: TemperatureSchedule, damp_fs: float,
                 seed: int, zero_net_force: bool | None = None, barostat=None, **bath_options):
        bath = QTBBath(temperature, damp_fs, seed, zero_net_force=zero_net_force, **bath_options)
        super().__init__(potential, dt_fs, bath, barostat)


__all__ = ["Integrator", "NVE", "Langevin", "QTB", "TemperatureSchedule", "remove_net_impulse",
           "resolve_zero_net_force", "adaptation_groups", "CELL_COLUMNS", "cell_thermo"]
