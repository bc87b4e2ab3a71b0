"""The O step of the BAOAB splitting as components: no bath (NVE), white noise (Langevin), the
quantum thermal bath (QTB, adQTB). Each bath owns its random generator, its ``state_dict`` and its
diagnostics, and the kinetic-energy estimators the run reports (a quantum bath corrects them).

    O (Langevin): p ← c p + sqrt((1 - c²) m kT) ξ,           c = exp(-γ dt)
    O (QTB):      p ← c p + (1 - c)/γ · R,                    R held over the noise period

The O step is the exact solution of dp/dt = -γ p + R for R constant over the step. The energy a bath
removes is accumulated in ``thermostat_energy`` so that the integrator's conserved quantity stays
constant up to integration error. The integrator that calls these: :mod:`dpqtb.md.integrators`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dpqtb import InputError
from dpqtb.md.qtb import DEFAULT_ADAPT_EPS, QTB_DEFAULTS, ColoredNoise, FDSpectra, GammaAdaptation, QTBParameters
from dpqtb.md.qtb_groups import adaptation_groups
from dpqtb.md.schedule import TemperatureSchedule
from dpqtb.md.state import MDState
from dpqtb.potential.base import Potential
from dpqtb.units import EV_PER_A3_TO_GPA, KB, MVV2E


def remove_net_impulse(impulse: torch.Tensor, masses: torch.Tensor) -> torch.Tensor:
    """Δp_i − (m_i/M) Σ_j Δp_j: the orthogonal projection (in mass-weighted coordinates) that removes the
    centre-of-mass part of a random impulse or force and leaves every other degree of freedom's noise
    intact, so equipartition holds per species (T_i over 3 − 3 m_i/M degrees of freedom per atom).

    Subtracting the plain mean (as LAMMPS ``fix qtb`` does) is not a projection for unequal masses: it
    gives light atoms extra noise ≈ M/(N² m_i) of their own (+26 % on H in 44-atom LaH10).
    """
    total = impulse.sum(0)
    return impulse - masses[:, None] * (total / masses.sum())


def resolve_zero_net_force(requested: bool | None, potential: Potential, state: MDState) -> bool:
    """``zero_net_force`` as given, or (None) whether the potential is translation-invariant (declared by
    its class, or tested once for a user function): only then is the total momentum a constant of the
    motion whose noise should be removed. A single atom has no internal motion to keep."""
    if state.n_atoms < 2:
        return False
    if requested is not None:
        return bool(requested)
    test = getattr(potential, "is_translation_invariant", None)
    if test is None:  # a duck-typed force provider: its declaration, else assume Σ F = 0 like any real potential
        return bool(getattr(potential, "translation_invariant", True))
    return test(state.positions, state.cell, state.species, state.pbc)


#: the kinetic-correction factor's definition: 2 = the response truncated at the noise cutoff (session 22)
KIN_CORR_VERSION = 2


class NoBath:
    """No bath (NVE): the O step is the identity. Owns the estimators every bath shares — kinetic energy,
    temperature per species over its degrees of freedom, pressure — which the baths below refine.
    """

    name = "nve"
    has_temperature = False

    def __init__(self):
        self.thermostat_energy = 0.0  # energy removed by the bath (eV); zero without one
        self.zero_momentum = False

    def setup(self, state: MDState, dt_fs: float, potential: Potential) -> None:
        """Called once by the integrator after the first force evaluation."""
        self.dt = float(dt_fs)

    def before_step(self, state: MDState) -> None:
        pass

    def o_step(self, state: MDState) -> None:  # pragma: no cover - the integrator skips it without a bath
        pass

    def after_step(self, state: MDState) -> None:
        pass

    def conserved_energy(self, state: MDState) -> float:
        return float(state.kinetic_energy() + state.energy) + self.thermostat_energy

    def kinetic_tensor(self, state: MDState) -> torch.Tensor:
        """Σ p⊗p/m (eV) of the kinetic-energy estimator: the pressure tensor's kinetic part."""
        return state.kinetic_tensor()

    def kinetic_energy(self, state: MDState) -> float:
        """Kinetic energy estimator written to thermo.csv (eV)."""
        return float(state.kinetic_energy())

    def pressure_GPa(self, state: MDState) -> float:
        return state.pressure_GPa()

    def pressure_tensor_GPa(self, state: MDState) -> torch.Tensor:
        """(Σ p⊗p/m + W)/V in GPa with this bath's kinetic estimator (positive = compressive)."""
        return (self.kinetic_tensor(state) + state.virial) / state.volume * EV_PER_A3_TO_GPA

    #: copies of the cell in the conserved quantity's P₀V (a ring polymer: its P beads)
    replicas = 1

    def n_dof(self, state: MDState) -> int:
        return 3 * state.n_atoms - (3 if self.zero_momentum and state.n_atoms > 1 else 0)

    def species_n_dof(self, state: MDState) -> np.ndarray:
        """Degrees of freedom of each species: 3 N_X, less 3 Σ_{i∈X} m_i/M when the net random impulse
        is removed (the centre-of-mass motion is shared among atoms in proportion to their masses)."""
        n_sp = len(state.type_map)
        counts = torch.bincount(state.species, minlength=n_sp).double().cpu().numpy()
        dof = 3.0 * counts
        if self.zero_momentum and state.n_atoms > 1:
            m = state.masses.double()
            share = torch.zeros(n_sp, dtype=m.dtype, device=m.device).index_add_(0, state.species, m) / m.sum()
            dof = dof - 3.0 * share.cpu().numpy()
        return dof

    def atom_kinetic_energy(self, state: MDState) -> torch.Tensor:
        """Kinetic energy estimator of each atom (eV), shape (N,); sums to :meth:`kinetic_energy`."""
        return 0.5 * MVV2E * state.momenta.pow(2).sum(-1) / state.masses

    def kinetic_energy_by_species(self, state: MDState, per_atom: torch.Tensor | None = None) -> np.ndarray:
        """Kinetic energy estimator of each species (eV): :meth:`atom_kinetic_energy` (or ``per_atom``)
        summed per species."""
        per_atom = self.atom_kinetic_energy(state) if per_atom is None else per_atom
        n_sp = len(state.type_map)
        return torch.zeros(n_sp, dtype=per_atom.dtype, device=per_atom.device).index_add_(
            0, state.species, per_atom).cpu().numpy().astype(np.float64)

    def extra_thermo_columns(self, type_map) -> list[str]:
        return [f"temperature_{name}_K" for name in type_map]

    def extra_thermo(self, state: MDState) -> dict:
        """Columns of thermo.csv beyond the fixed ones: ``temperature_<X>_K`` of every species (from the
        same kinetic-energy estimator as ``temperature_K``, over that species' degrees of freedom)."""
        ke = self.kinetic_energy_by_species(state)
        dof = self.species_n_dof(state)
        return {f"temperature_{name}_K": (2.0 * ke[i] / (dof[i] * KB) if dof[i] > 0 else float("nan"))
                for i, name in enumerate(state.type_map)}

    def target_temperature(self, step: int) -> float:
        return float("nan")

    def state_dict(self) -> dict:
        return {"thermostat_energy": self.thermostat_energy}

    def load_state_dict(self, d: dict) -> None:
        self.thermostat_energy = float(d["thermostat_energy"])


class WhiteNoiseBath(NoBath):
    """The classical Langevin O step (white noise), optional linear temperature ramp.

    Parameters
    ----------
    temperature : TemperatureSchedule
        Target temperature at each step.
    damp_fs : float
        Friction time 1/γ (fs), > 0.
    seed : int
        Seed of the noise's random generator (a run's: :func:`dpqtb.md.config.derived_seed`).
    zero_net_force : bool, optional
        Remove the net random impulse (mass-weighted, :func:`remove_net_impulse`); None: exactly when the
        potential is translation-invariant (:func:`resolve_zero_net_force`).
    """

    name = "langevin"
    has_temperature = True

    def __init__(self, temperature: TemperatureSchedule, damp_fs: float, seed: int,
                 zero_net_force: bool | None = None):
        super().__init__()
        if not damp_fs > 0:
            raise InputError(f"thermostat.damp_fs must be > 0, got {damp_fs}")
        self.schedule = temperature
        self.gamma = 1.0 / damp_fs
        self.seed = int(seed)
        # None: remove the net random impulse exactly when the potential conserves momentum
        self.zero_net_force = zero_net_force
        self.zero_momentum = bool(zero_net_force)
        self.generator = None

    def setup(self, state: MDState, dt_fs: float, potential: Potential) -> None:
        super().setup(state, dt_fs, potential)
        self.c = math.exp(-self.gamma * self.dt)
        self.generator = torch.Generator(device=state.device)
        self.generator.manual_seed(self.seed)
        self.zero_momentum = resolve_zero_net_force(self.zero_net_force, potential, state)

    def target_temperature(self, step: int) -> float:
        return self.schedule(step)

    def random_impulse(self, state: MDState) -> torch.Tensor:
        """sqrt((1 - c²) m kT) ξ to add to c·p in the O step (amu·Å/fs), its net part removed by
        :func:`remove_net_impulse` when ``zero_net_force``."""
        kt = KB * self.schedule(state.step)
        std = torch.sqrt((1.0 - self.c**2) * state.masses * kt / MVV2E)
        xi = torch.randn(state.momenta.shape, generator=self.generator, dtype=state.dtype, device=state.device)
        kick = xi * std[:, None]
        return remove_net_impulse(kick, state.masses) if self.zero_momentum else kick

    def o_step(self, state: MDState) -> None:
        """p ← c p + impulse over dt (exact for a force constant over the step); the kinetic energy it
        changes is counted in ``thermostat_energy``."""
        ke_before = state.kinetic_energy()
        kick = self.random_impulse(state)
        p_old = state.momenta.clone() if self.wants_midpoint_velocity else None
        state.momenta.mul_(self.c).add_(kick)
        if p_old is not None:
            self.observe_midpoint_velocity((p_old + state.momenta) / (2.0 * state.masses[:, None]))
        self.thermostat_energy += float(ke_before - state.kinetic_energy())

    wants_midpoint_velocity = False

    def observe_midpoint_velocity(self, v: torch.Tensor) -> None:  # pragma: no cover - hook
        pass

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        self.generator.set_state(d["generator"])


class QTBBath(WhiteNoiseBath):
    """The quantum thermal bath's O step (plain, or adaptive with ``adaptive=True``). See :mod:`dpqtb.md.qtb`.

    Defaults: :data:`dpqtb.md.qtb.QTB_DEFAULTS` (the config's, ``thermostat.*``).

    Parameters
    ----------
    temperature, damp_fs, seed, zero_net_force
        As for :class:`WhiteNoiseBath`.
    f_max_THz, n_f : float, int
        Noise cutoff (THz; refreshed every α = int(1/(2 f_max dt)) steps) and frequency bins (>= 2).
    classical_kernel : bool
        θ = k_B T at every frequency.
    adaptive : bool
        adQTB: adapt γ_r(ω) per group to cancel the fluctuation–dissipation defect Δ_FD.
    fd_diagnostic : bool
        Accumulate the Δ_FD spectra (always on for adQTB and the kinetic correction).
    tau_ad_fs, tau_avg_fs : float, float or None
        adQTB adaptation time and averaging time of its spectra (fs; default ``tau_ad_fs``).
    fd_max_dof, fd_skip_segments : int
        Degrees of freedom per group in the spectra; start-up Δ_FD segments left out (>= 0).
    adapt_eps, gamma_r_min_ratio : float
        Regularisation of the adQTB update (fraction of the largest ⟨m C_vv⟩); floor of γ_r/γ in (0, 1).
    adapt_groups : str or list
        Atoms sharing a filter and (adQTB) an adapted γ_r(ω): ``"species"``, ``"sites"`` (symmetry-equivalent
        sites of the starting structure, spglib) or atom-index lists (0-based; others: one group per species).
    kinetic_correction : bool
        Report kinetic energy, temperature and pressure without the finite-γ broadening bias
        (:func:`dpqtb.md.qtb_response.kinetic_correction_factor`); the raw values are kept alongside.
    """

    name = "qtb"

    def __init__(self, temperature: TemperatureSchedule, damp_fs: float,
                 seed: int, f_max_THz: float = QTB_DEFAULTS["f_max_THz"], n_f: int = QTB_DEFAULTS["n_f"],
                 classical_kernel: bool = QTB_DEFAULTS["classical_kernel"], zero_net_force: bool | None = None,
                 adaptive: bool = False, fd_diagnostic: bool = QTB_DEFAULTS["fd_diagnostic"],
                 tau_ad_fs: float = QTB_DEFAULTS["tau_ad_fs"], tau_avg_fs: float | None = None,
                 fd_max_dof: int = QTB_DEFAULTS["fd_max_dof"], adapt_eps: float = DEFAULT_ADAPT_EPS,
                 adapt_groups=QTB_DEFAULTS["adapt_groups"],
                 kinetic_correction: bool = QTB_DEFAULTS["kinetic_correction"],
                 fd_skip_segments: int = QTB_DEFAULTS["fd_skip_segments"],
                 gamma_r_min_ratio: float = QTB_DEFAULTS["gamma_r_min_ratio"]):
        super().__init__(temperature, damp_fs, seed, zero_net_force)
        self.params = QTBParameters(temperature(0), damp_fs, f_max_THz, int(n_f), classical_kernel)  # checks them
        self.adaptive = bool(adaptive)
        if self.adaptive:
            self.name = "adqtb"
        self.kinetic_correction = bool(kinetic_correction)
        self.fd_enabled = bool(fd_diagnostic or adaptive or kinetic_correction)
        self.tau_ad_fs, self.tau_avg_fs, self.fd_max_dof, self.adapt_eps = tau_ad_fs, tau_avg_fs, fd_max_dof, adapt_eps
        self.adapt_groups = adapt_groups
        if int(fd_skip_segments) != fd_skip_segments or fd_skip_segments < 0:
            raise InputError(f"thermostat.fd_skip_segments must be an integer >= 0, got {fd_skip_segments}")
        self.fd_skip_segments = int(fd_skip_segments)
        self.gamma_r_min_ratio = float(gamma_r_min_ratio)
        self.noise = self.fd = self.adapt = None
        self.counter = 0  # MD steps done in the current noise period
        self.wants_midpoint_velocity = self.fd_enabled
        self.group_names: list[str] = []
        self.kin_corr = None  # per group: raw / deconvolved kinetic energy (1 until the first segment)
        self._kernel_matrix = None
        self._response_matrix = None
        self.reported: set = set()  # diagnoses already printed (not part of the physics state)
        self._groups_provisional = False

    def setup(self, state: MDState, dt_fs: float, potential: Potential) -> None:
        super().setup(state, dt_fs, potential)
        self._state = state
        # symmetry sites belong to the starting structure: a resumed state (step > 0, thermalised positions)
        # takes its groups from the checkpoint (load_state_dict), provisionally one per species until then
        self._groups_provisional = self.adapt_groups == "sites" and state.step > 0
        groups, names = adaptation_groups(state, "species" if self._groups_provisional else self.adapt_groups)
        self._build_bath(state, groups, names)

    def _build_bath(self, state: MDState, groups: torch.Tensor, names: list[str]) -> None:
        self.groups, self.group_names = groups, list(names)
        n_groups = len(self.group_names)
        self.noise = ColoredNoise(self.params, self.dt, state.masses, groups, n_groups, self.generator)
        if self.schedule.is_ramp:
            self.noise.rebuild_kernels(self.schedule(state.step))
            self.noise._compute_force()
        self.fd = self.adapt = None
        if self.fd_enabled:
            self.fd = FDSpectra(self.noise, state.masses, self.fd_max_dof, self.fd_skip_segments)
        if self.adaptive:
            self.adapt = GammaAdaptation(self.noise, self.tau_ad_fs, self.tau_avg_fs, self.adapt_eps,
                                         gamma_ratio_min=self.gamma_r_min_ratio)
        self.kin_corr = np.ones(n_groups)
        # Σ over averaged segments of m C_vv/θ (θ at the segment's temperature): the θ-free spectrum whose
        # deconvolution is the phonon DOS; kept apart from the Δ_FD averages so ramps do not mix θ's
        self.s0_sum = np.zeros((n_groups, self.noise.n_f + 1))
        self.s0_n = 0
        self._dos_cache = None
        self.counter = 0
        self._update_applied_force(state)

    def _update_applied_force(self, state: MDState) -> None:
        """The random force actually applied over the current noise period (eV/Å): R, or R with its net
        part removed (:func:`remove_net_impulse`); the Δ_FD diagnostic correlates v with this force."""
        r = self.noise.force
        self.applied_force = remove_net_impulse(r, state.masses) if self.zero_momentum else r

    @property
    def alpha(self) -> int:
        return self.noise.alpha

    def before_step(self, state: MDState) -> None:
        if self._groups_provisional:
            raise InputError("thermostat.adapt_groups = 'sites' is resolved on the starting structure (step 0): "
                             "resume from a checkpoint, or give the groups as lists of atom indices")
        if self.counter < self.noise.alpha:
            return
        # a noise period just ended
        if self.fd is not None:
            segment_done = self.fd.end_period(self.applied_force.reshape(-1))
            if segment_done:
                mcvv, _, dfd = self.fd.last
                self._accumulate_s0(mcvv)  # with the θ (and γ_r) of the finished segment
                if self.adapt is not None:
                    self.adapt.update(mcvv, dfd)
                if self.kinetic_correction:
                    self._update_kinetic_correction()
        if self.schedule.is_ramp:
            self.noise.rebuild_kernels(self.schedule(state.step))
        self.noise.advance()
        self._update_applied_force(state)
        self.counter = 0

    def random_impulse(self, state: MDState) -> torch.Tensor:
        return ((1.0 - self.c) / (self.gamma * MVV2E)) * self.applied_force

    def observe_midpoint_velocity(self, v: torch.Tensor) -> None:
        self.fd.accumulate_velocity(v.reshape(-1))

    def after_step(self, state: MDState) -> None:
        self.counter += 1

    # -- kinetic-energy correction
    def _theta_grid(self) -> np.ndarray:
        from dpqtb.md.qtb import frequency_grid, theta_qtb

        f = frequency_grid(self.noise.n_f, self.noise.h)
        return theta_qtb(2 * np.pi * f, self.noise.temperature_K, self.params.classical_kernel)

    def _accumulate_s0(self, mcvv: np.ndarray) -> None:
        theta = self._theta_grid()
        self.s0_sum += np.where(theta > 0, mcvv / np.maximum(theta, 1e-300), 0.0)
        self.s0_n += 1

    def _deconvolved_dos(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """(θ on the grid now, per group the deconvolved DOS g on the grid; Σ g Δf ≈ 1)."""
        from dpqtb.md.qtb_response import deconvolve_richardson_lucy, kinetic_kernel_matrix

        if self._kernel_matrix is None:
            self._kernel_matrix = kinetic_kernel_matrix(self.noise.n_f, self.noise.h, self.gamma)
        key = (self.s0_n, self.noise.temperature_K)  # s0 changes only when a segment is added
        if self._dos_cache is None or self._dos_cache[0] != key:
            s0 = self.s0_sum / max(self.s0_n, 1)
            dos = [deconvolve_richardson_lucy(s0[g], self._kernel_matrix) for g in range(self.noise.n_groups)]
            self._dos_cache = (key, self._theta_grid(), dos)
        return self._dos_cache[1], self._dos_cache[2]

    def _update_kinetic_correction(self) -> None:
        from dpqtb.md.qtb_response import kinetic_correction_factor

        theta, dos = self._deconvolved_dos()
        if self._response_matrix is None:  # the response truncated at the noise cutoff (see kinetic_kernel_matrix)
            from dpqtb.md.qtb_response import kinetic_kernel_matrix

            self._response_matrix = kinetic_kernel_matrix(self.noise.n_f, self.noise.h, self.gamma, open_last_bin=False)
        for g in range(self.noise.n_groups):
            self.kin_corr[g] = kinetic_correction_factor(dos[g], theta, self._response_matrix)

    def atom_kinetic_energy(self, state: MDState) -> torch.Tensor:
        """Per-atom kinetic energy (eV) with the broadening bias removed per group (raw without the correction)."""
        per_atom = super().atom_kinetic_energy(state)
        if not self.kinetic_correction:
            return per_atom
        inv = torch.as_tensor(1.0 / self.kin_corr, dtype=per_atom.dtype, device=per_atom.device)
        return per_atom * inv[self.groups]

    def kinetic_energy(self, state: MDState) -> float:
        """Kinetic energy estimator (eV): the raw one with the broadening bias removed per group."""
        return float(self.atom_kinetic_energy(state).sum())

    def kinetic_tensor(self, state: MDState) -> torch.Tensor:
        """Σ p⊗p/m (eV) with each atom's term divided by its group's kinetic correction (raw without it)."""
        if not self.kinetic_correction:
            return super().kinetic_tensor(state)
        inv = torch.as_tensor(1.0 / self.kin_corr, dtype=state.dtype, device=state.device)[self.groups]
        return MVV2E * torch.einsum("ia,ib,i->ab", state.momenta, state.momenta, inv / state.masses)

    def pressure_GPa(self, state: MDState) -> float:
        """Pressure (GPa) with the corrected kinetic energy: (2 K + tr W)/3V."""
        return state.pressure_GPa(self.kinetic_energy(state))

    def extra_thermo_columns(self, type_map) -> list[str]:
        """With the kinetic correction, also the uncorrected values: ``kinetic_raw_eV``, ``temperature_raw_K``,
        ``pressure_raw_GPa`` and ``temperature_raw_<X>_K`` per species (what a QTB code without the correction,
        LAMMPS ``fix qtb``, reports)."""
        raw = (["kinetic_raw_eV", "temperature_raw_K", "pressure_raw_GPa"]
               + [f"temperature_raw_{name}_K" for name in type_map]) if self.kinetic_correction else []
        return super().extra_thermo_columns(type_map) + raw

    def extra_thermo(self, state: MDState) -> dict:
        out = super().extra_thermo(state)
        if self.kinetic_correction:
            ke_raw = float(state.kinetic_energy())
            out["kinetic_raw_eV"] = ke_raw
            out["temperature_raw_K"] = 2.0 * ke_raw / (self.n_dof(state) * KB)
            out["pressure_raw_GPa"] = state.pressure_GPa()
            ke = self.kinetic_energy_by_species(state, NoBath.atom_kinetic_energy(self, state))  # uncorrected
            dof = self.species_n_dof(state)
            for i, name in enumerate(state.type_map):
                out[f"temperature_raw_{name}_K"] = 2.0 * ke[i] / (dof[i] * KB) if dof[i] > 0 else float("nan")
        return out

    def short_run_warning(self, remaining_steps: int, step: int = 0) -> str | None:
        """A one-line warning when no Δ_FD segment will be averaged in a run of ``remaining_steps``: adQTB
        would then be plain QTB and the kinetic correction would stay 1 (``step``, the run's first, is unused:
        the bath counts its own segments)."""
        if self.fd is None or self.fd.n_segments > 0 or not (self.adaptive or self.kinetic_correction):
            return None
        seg_steps = self.fd.n_seg * self.noise.alpha
        needed = (self.fd.skip_segments + 1 - self.fd.n_done) * seg_steps - self.fd.i_seg * self.noise.alpha \
            - self.counter
        if remaining_steps > needed:  # the segment closes at the start of the step after its last
            return None
        what = "adQTB never adapts (it runs as plain QTB)" if self.adaptive else "the kinetic energy stays uncorrected"
        return (f"{remaining_steps} steps are fewer than the {needed} before the first Δ_FD segment is averaged "
                f"({self.fd.skip_segments} start-up segment(s) skipped + 1, each 2 n_f × α = {seg_steps} steps): "
                f"{what}; run longer, or lower n_f or thermostat.fd_skip_segments")

    # -- phonon density of states
    def phonon_dos(self) -> dict[str, np.ndarray]:
        """Phonon density of states per adaptation group and in total (per degree of freedom, unit area,
        1/THz) from the QTB spectra: m C_vv(ω) = θ(ω) [K ∗ g](ω), so dividing each segment's spectrum by θ and
        deconvolving the Lorentzian response K gives the g(ω) of the paper's T_zero = (1/k_B) ∫ g(ω) ħω/2 dω
        (the velocity spectrum itself is θ-weighted). Resolved up to the noise's Nyquist frequency
        1/(2h) ≈ f_max, whatever the trajectory spacing."""
        from dpqtb.md.qtb import frequency_grid

        f = frequency_grid(self.noise.n_f, self.noise.h)
        _, dos_all = self._deconvolved_dos()
        df_THz = (f[1] - f[0]) * 1e3
        out = {"freq_THz": f * 1e3}
        total = np.zeros_like(f)
        n_total = 0
        for g, name in enumerate(self.group_names):
            dos = dos_all[g]
            area = dos.sum() * df_THz
            dos = dos / area if area > 0 else dos
            out[name] = dos
            n = int(self.noise.atom_index[g].numel())
            total += n * dos
            n_total += n
        out["total"] = total / max(n_total, 1)
        return out

    # -- diagnosis
    def diagnose(self) -> list[str]:
        """One-line messages for adaptation groups where adQTB cannot cure zero-point-energy leakage with
        the present friction (γ_r pinned at its floor, Δ_FD negative): the numbers and the γ to use."""
        from dpqtb.md.qtb import frequency_grid, leakage_diagnosis

        if self.adapt is None:
            return []
        f = frequency_grid(self.noise.n_f, self.noise.h) * 1e3
        out = []
        for d in leakage_diagnosis(self.adapt, f):
            name = self.group_names[d["group"]]
            if np.isfinite(d["recommended_gamma_per_ps"]):
                advice = (f"use damp_fs <= {d['recommended_damp_fs']:.0f} (gamma >= "
                          f"{d['recommended_gamma_per_ps']:.3g} ps^-1)")
            else:
                advice = "increase gamma (no estimate: Re C_vR <= 0 at the floor)"
            out.append(
                f"adQTB cannot drain the zero-point energy leaking into {name}: at {d['band_THz'][0]:.1f}-"
                f"{d['band_THz'][1]:.1f} THz gamma_r stays pinned at its floor with Delta_FD < 0 over "
                f"{100 * d['weight']:.0f} % of its spectral weight (Re C_vR/(m gamma_r C_vv) = {d['rho']:.2f}); "
                f"the friction {d['gamma_per_ps']:.3g} ps^-1 is below the leakage rate: {advice} and check "
                "the cure in qtb_fd_*.csv")
        return out

    def state_dict(self) -> dict:
        d = {**super().state_dict(), "noise": self.noise.state_dict(), "counter": self.counter,
             "kin_corr": self.kin_corr.copy(), "kin_corr_version": KIN_CORR_VERSION,
             "s0_sum": self.s0_sum.copy(), "s0_n": self.s0_n,
             "groups": self.groups.detach().cpu().clone(), "group_names": list(self.group_names)}
        if self.fd is not None:
            d["fd"] = self.fd.state_dict()
        if self.adapt is not None:
            d["adapt"] = self.adapt.state_dict()
        return d

    def load_state_dict(self, d: dict) -> None:
        # the groups of the run, not of the resumed (thermalised) positions
        groups = torch.as_tensor(d["groups"], dtype=torch.long, device=self._state.device)
        if groups.shape != self.groups.shape:
            raise InputError("checkpoint QTB adaptation groups do not match this system")
        if not torch.equal(groups, self.groups) or list(d["group_names"]) != self.group_names:
            self._build_bath(self._state, groups, list(d["group_names"]))  # before the generator is restored
        self._groups_provisional = False
        super().load_state_dict(d)
        self.noise.load_state_dict(d["noise"])
        self.counter = int(d["counter"])
        self.kin_corr = np.array(d["kin_corr"], dtype=np.float64)
        self.s0_sum = np.array(d["s0_sum"], dtype=np.float64)
        self.s0_n = int(d["s0_n"])
        if self.kinetic_correction and self.s0_n > 0 and d.get("kin_corr_version") != KIN_CORR_VERSION:
            # a checkpoint of the correction before session 22 (the open last bin): the factor again, now,
            # from the stored spectra, so that the resumed run does not drive on the old one until a segment ends
            self._update_kinetic_correction()
        self._update_applied_force(self._state)
        if self.fd is not None:
            self.fd.load_state_dict(d["fd"])
        if self.adapt is not None:
            self.adapt.load_state_dict(d["adapt"])

    # -- diagnostics
    def fd_table(self, type_map=None) -> dict[str, dict[str, np.ndarray]]:
        """Per adaptation group: frequency grid and run-averaged spectra (see :class:`FDSpectra`)."""
        from dpqtb.md.qtb import frequency_grid, theta_qtb

        avg = self.fd.averages()
        f = frequency_grid(self.noise.n_f, self.noise.h)  # 1/fs
        theta = theta_qtb(2 * np.pi * f, self.noise.temperature_K, self.params.classical_kernel)
        out = {}
        for s, name in enumerate(self.group_names):
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
                "kinetic_correction": np.full_like(f, self.kin_corr[s]),
            }
        return out

    def fd_summary(self) -> np.ndarray:
        """Per group: Σ|Δ_FD| / Σ m γ_r C_vv over the grid (0 when the FDT holds at every frequency)."""
        avg = self.fd.averages()
        gamma_r = self.gamma * self.noise.gamma_ratio
        return np.abs(avg["delta_fd_eV"]).sum(1) / np.maximum((gamma_r * avg["mCvv_eV_fs"]).sum(1), 1e-300)
