"""Quantum thermal bath (Dammak et al., PRL 103, 190601 (2009)) and its adaptive version
(Mangaud et al., JCTC 15, 2863 (2019)).

Equation of motion of each degree of freedom (mass m, friction γ, conservative force F):

    m dv/dt = F - m γ v + R(t),      ⟨R(t) R(t')⟩ has power spectral density 2 m γ_r(ω) θ(ω, T)

with θ(ω, T) = ħω [1/2 + 1/(exp(ħω/kT) - 1)] = (ħω/2) coth(ħω/2kT) (→ kT classically) and
γ_r = γ for the plain QTB. The parameters have the meaning of LAMMPS ``fix qtb``:

* ``f_max`` (THz): the noise is refreshed every α = int(1/(2 f_max dt)) MD steps, i.e. with period
  h = α dt; its spectrum is defined up to the Nyquist frequency 1/(2h) ≈ f_max.
* ``n_f``: number of frequency bins; the filter has 2 n_f taps and the spectral resolution is
  Δf = 1/(2 n_f h).
* ``damp_fs`` = 1/γ, ``temperature_K``, ``seed``.

Noise generation (memory O(n_f) per degree of freedom, continuous in time): each degree of freedom
keeps a ring buffer of its last 2 n_f white-noise samples and the coloured force is the filter
R_n = sqrt(2 m γ / h) Σ_m H_m ξ_{n-m} (m in eV·fs²/Å² = amu·MVV2E), where the zero-phase filter H has |Ĥ(f_k)|² = θ(f_k) γ_r(f_k)/γ
on the grid f_k = k Δf (with LAMMPS's correction for holding R constant over α steps). As in LAMMPS
the white noise is uniform; each sample is stored as a 16-bit integer u ∈ [-32768, 32767] and used as
ξ = √12 (u + ½)/65536 (zero mean, variance 1 - 2⁻³²), i.e. 2 bytes per sample: 44,000 atoms with
n_f = 100 need 53 MB of noise state (LAMMPS stores 8-byte doubles: 211 MB). The filter sum is
evaluated in float32 (its input has 16-bit resolution) and R is then cast to the state's dtype.
Like LAMMPS's, the force is Gaussian only through the central limit theorem of the filter sum: with
the classical kernel (white spectrum, H ≈ δ) it is uniform, which gives the same second moments.

Fluctuation–dissipation diagnostic (Mangaud 2019): Δ_FD(ω) = Re C_vR(ω) - m γ_r(ω) C_vv(ω), estimated
per adaptation group (species, symmetry site or user-given atoms) from Hann-windowed one-sided periodograms
over segments of 2 n_f noise periods, where v is the velocity averaged over each noise period (the exact
conjugate of the piecewise-constant R) and R the random force actually applied (net part removed). In a
harmonic system Δ_FD = 0 exactly for γ_r = γ; a non-zero Δ_FD measures the energy the conservative forces
move between frequencies, i.e. zero-point-energy leakage. adQTB adapts γ_r(ω) per group,

    γ_r ← max(γ_r,min, γ_r + (T_seg/τ_ad) Δ_FD,seg(ω) / (⟨m C_vv⟩(ω) + ε max_ω⟨m C_vv⟩)),

which relaxes γ_r towards Re C_vR / (m C_vv) (the γ_r that makes Δ_FD vanish) with time constant τ_ad
wherever the group has spectral weight; at frequencies where its smoothed m C_vv is below 10⁻³ of
its peak there is no signal to adapt to and γ_r relaxes back to γ. Since v̄ is the mean of the α
midpoint velocities of a period, C_vv is estimated as C_v̄v̄ / D(f)², D = sin(π f h)/(α sin(π f dt)).
The first ``fd_skip_segments`` segments (start-up transient) are left out. The spectra use at most
``fd_max_dof`` degrees of freedom per group (a fixed strided subset of whole atoms).

The same spectra give the finite-γ kinetic-energy correction and the phonon DOS (deconvolution of the
Lorentzian response: :func:`dpqtb.md.qtb_response.kinetic_correction_factor`), and the run-time diagnosis of a leak the friction
cannot drain (:func:`leakage_diagnosis`). See docs/qtb.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dpqtb import InputError
from dpqtb.units import HBAR, KB, MVV2E


# ----------------------------------------------------------------------------- spectra
def theta_qtb(omega: np.ndarray, temperature_K: float, classical: bool = False) -> np.ndarray:
    """θ(ω, T) in eV for angular frequencies ω (rad/fs); θ(0) = kT; θ = ħ|ω|/2 at T = 0."""
    omega = np.abs(np.asarray(omega, dtype=np.float64))
    kt = KB * temperature_K
    if classical:
        return np.full_like(omega, kt)
    hw = HBAR * omega
    out = np.empty_like(omega)
    zero = omega == 0.0
    out[zero] = kt
    if temperature_K <= 0.0:
        out[~zero] = 0.5 * hw[~zero]
        return out
    x = hw[~zero] / kt
    # (ħω/2) coth(x/2) = ħω (1/2 + 1/expm1(x)); expm1 overflows to inf for x > 709 -> 1/inf = 0.
    with np.errstate(over="ignore"):
        out[~zero] = hw[~zero] * (0.5 + 1.0 / np.expm1(x))
    return out


def harmonic_energy_per_dof(omega: np.ndarray, temperature_K: float) -> np.ndarray:
    """Exact quantum kinetic (= potential) energy per degree of freedom of a harmonic oscillator,
    (ħω/4) coth(ħω/2kT) in eV, for ω in rad/fs."""
    return 0.5 * theta_qtb(omega, temperature_K)


#: Defaults of the bath's parameters, by config key (``thermostat.*``): the config schema
#: (:data:`dpqtb.md.config.SCHEMA`) and the Python constructors (:class:`QTBParameters`,
#: :class:`dpqtb.md.integrators.QTB`, :class:`FDSpectra`, :class:`GammaAdaptation`) take them from here.
QTB_DEFAULTS = {
    "f_max_THz": 200.0,  # noise cutoff: refreshed every α = int(1/(2 f_max dt)) steps
    "n_f": 100,  # frequency bins of the filter (2 n_f taps)
    "classical_kernel": False,  # θ = kT instead of the quantum θ(ω, T)
    "fd_diagnostic": True,  # Δ_FD spectra (qtb_fd_*.csv)
    "tau_ad_fs": 5000.0,  # adQTB adaptation time
    "fd_max_dof": 6000,  # degrees of freedom per group in the spectra
    "adapt_groups": "species",  # atoms sharing a filter and an adapted γ_r(ω)
    "kinetic_correction": True,  # report the kinetic energy without the finite-γ broadening bias
    "fd_skip_segments": 1,  # start-up Δ_FD segments left out
    "gamma_r_min_ratio": 0.05,  # floor of γ_r/γ
}
#: ε of the adQTB update's denominator, in units of the largest ⟨m C_vv⟩ (not a config key).
DEFAULT_ADAPT_EPS = 0.05


@dataclass(frozen=True)
class QTBParameters:
    """The bath's filter: target temperature, friction and noise spectrum (checked on construction).

    Parameters
    ----------
    temperature_K : float
        Target temperature (K), >= 0.
    damp_fs : float
        Friction time 1/γ (fs), > 0.
    f_max_THz : float
        Noise cutoff (THz), > 0.
    n_f : int
        Frequency bins of the filter, >= 2.
    classical_kernel : bool
        θ = k_B T at every frequency (classical Langevin with coloured-noise machinery).

    Raises
    ------
    InputError
        A value out of range.
    """

    temperature_K: float
    damp_fs: float
    f_max_THz: float = QTB_DEFAULTS["f_max_THz"]
    n_f: int = QTB_DEFAULTS["n_f"]
    classical_kernel: bool = QTB_DEFAULTS["classical_kernel"]

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise InputError for a value out of range (done on construction)."""
        if not self.temperature_K >= 0:
            raise InputError(f"thermostat.temperature_K must be >= 0, got {self.temperature_K}")
        if not self.damp_fs > 0:
            raise InputError(f"thermostat.damp_fs must be > 0, got {self.damp_fs}")
        if not self.f_max_THz > 0:
            raise InputError(f"thermostat.f_max_THz must be > 0, got {self.f_max_THz}")
        if int(self.n_f) != self.n_f or self.n_f < 2:
            raise InputError(f"thermostat.n_f must be an integer >= 2, got {self.n_f}")


def noise_period(dt_fs: float, f_max_THz: float) -> tuple[int, float]:
    """(α, h): the noise is refreshed every α MD steps, h = α dt (fs), exactly as LAMMPS fix qtb."""
    f_max = f_max_THz * 1e-3  # 1/fs
    alpha = int(1.0 / (2.0 * f_max * dt_fs))
    if alpha == 0:
        raise InputError(
            f"thermostat.f_max_THz = {f_max_THz} is above the Nyquist frequency of the time step "
            f"({1e3 / (2 * dt_fs):.1f} THz for {dt_fs} fs); lower f_max or the time step")
    return alpha, alpha * dt_fs


def frequency_grid(n_f: int, h_fs: float) -> np.ndarray:
    """One-sided grid f_k = k/(2 n_f h), k = 0..n_f, in 1/fs."""
    return np.arange(n_f + 1) / (2.0 * n_f * h_fs)


def filter_amplitude(params: QTBParameters, alpha: int, h_fs: float, gamma_ratio: np.ndarray | None = None,
                     temperature_K: float | None = None) -> np.ndarray:
    """|Ĥ(f_k)| (√eV) on the one-sided grid, including the hold correction of LAMMPS fix qtb."""
    t = params.temperature_K if temperature_K is None else temperature_K
    f = frequency_grid(params.n_f, h_fs)
    power = theta_qtb(2.0 * math.pi * f, t, params.classical_kernel)
    if gamma_ratio is not None:
        power = power * np.asarray(gamma_ratio, dtype=np.float64)
    amp = np.sqrt(power)
    # R is held constant for α MD steps: at MD resolution this multiplies the spectrum amplitude by
    # |sin(π f h)/(α sin(π f dt))|; divide it out (identity for α = 1).
    return amp / hold_response(params.n_f, alpha)


def time_kernel(amplitude: np.ndarray) -> np.ndarray:
    """Zero-phase filter taps H_n, n = 0..2n_f-1 (centred on n = n_f), from one-sided amplitudes.

    H_n = (1/2n_f) Σ_{k=-n_f}^{n_f-1} A_|k| cos(π k (n - n_f)/n_f), as LAMMPS builds ``time_H``.
    """
    n_f = amplitude.shape[-1] - 1
    L = 2 * n_f
    k = np.arange(-n_f, n_f)
    n = np.arange(L)
    a = amplitude[..., np.abs(k)]
    c = np.cos(np.pi * np.outer(k, n - n_f) / n_f)
    return a @ c / L


#: ξ = _U_SCALE (u + ½) has unit variance for u uniform on the 65,536 int16 values.
_U_SCALE = math.sqrt(12.0) / 65536.0


# ----------------------------------------------------------------------------- noise
class ColoredNoise:
    """Ring buffers of 16-bit white noise and the coloured force R (eV/Å), one filter per adaptation group.

    ``groups`` gives each atom's adaptation group (by default its species; finer groups — symmetry sites
    or user-given atom sets — let adQTB tell a leaking mode from a spectator of the same element).
    """

    def __init__(self, params: QTBParameters, dt_fs: float, masses: torch.Tensor, groups: torch.Tensor,
                 n_groups: int, generator: torch.Generator, chunk_dof: int = 16384):
        self.params = params  # checked on construction
        self.alpha, self.h = noise_period(dt_fs, params.f_max_THz)
        self.gamma = 1.0 / params.damp_fs
        self.n_f = int(params.n_f)
        self.L = 2 * self.n_f
        self.generator = generator
        self.chunk = int(chunk_dof)
        self.dtype, self.device = masses.dtype, masses.device
        self.n_atoms = masses.shape[0]
        self.n_groups = self.n_species = int(n_groups)
        # atoms of each group (the buffers are stored group by group)
        self.atom_index = [torch.nonzero(groups == s).flatten() for s in range(self.n_groups)]
        self.scale = [torch.sqrt(2.0 * masses[idx] * self.gamma * MVV2E / self.h).repeat_interleave(3)
                      for idx in self.atom_index]
        self.buffers = [torch.randint(-32768, 32768, (self.L, 3 * idx.numel()), generator=generator,
                                      dtype=torch.int16, device=self.device) for idx in self.atom_index]
        self.head = 0  # buffer row holding the newest sample
        self.gamma_ratio = np.ones((self.n_groups, self.n_f + 1))
        self.temperature_K = params.temperature_K
        self.kernels = None
        self.rebuild_kernels()
        self.force = torch.zeros((self.n_atoms, 3), dtype=self.dtype, device=self.device)
        self._compute_force()

    # -- filter
    def rebuild_kernels(self, temperature_K: float | None = None) -> None:
        if temperature_K is not None:
            self.temperature_K = temperature_K
        amps = np.stack([filter_amplitude(self.params, self.alpha, self.h, self.gamma_ratio[s], self.temperature_K)
                         for s in range(self.n_species)])
        self.kernels = torch.tensor(time_kernel(amps), dtype=self.dtype, device=self.device)

    # -- noise
    def advance(self) -> None:
        """Draw one new white-noise sample per degree of freedom and recompute R."""
        self.head = (self.head + 1) % self.L
        for s, buf in enumerate(self.buffers):
            if buf.shape[1]:
                buf[self.head] = torch.randint(-32768, 32768, (buf.shape[1],), generator=self.generator,
                                               dtype=torch.int16, device=self.device)
        self._compute_force()

    def _compute_force(self) -> None:
        # R_n = scale * Σ_m H_m ξ_{n-m}; buffer row (head - m) mod L holds ξ_{n-m}.
        rows = (self.head - torch.arange(self.L, device=self.device)) % self.L
        out = self.force.view(-1)
        for s, buf in enumerate(self.buffers):
            n = buf.shape[1]
            if n == 0:
                continue
            h_rot = torch.empty_like(self.kernels[s])
            h_rot[rows] = self.kernels[s]
            # Σ_m H_m √12 (u_m + ½)/65536 = √12/65536 (Σ_m H_m u_m + ½ Σ_m H_m)
            h32 = h_rot.to(torch.float32)
            r = torch.empty(n, dtype=self.dtype, device=self.device)
            for a in range(0, n, self.chunk):
                b = min(n, a + self.chunk)
                r[a:b] = (h32 @ buf[:, a:b].to(torch.float32)).to(self.dtype)
            r += 0.5 * h_rot.sum()
            r *= self.scale[s] * _U_SCALE
            idx = self.atom_index[s]
            out_dofs = (3 * idx[:, None] + torch.arange(3, device=self.device)).flatten()
            out[out_dofs] = r

    def memory_bytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.buffers)

    def state_dict(self) -> dict:
        return {"buffers": [b.clone() for b in self.buffers], "head": self.head,
                "gamma_ratio": self.gamma_ratio.copy(), "temperature_k": self.temperature_K,  # checkpoint key
                "force": self.force.clone()}

    def load_state_dict(self, d: dict) -> None:
        if len(d["buffers"]) != len(self.buffers) or any(a.shape != b.shape for a, b in zip(d["buffers"], self.buffers)):
            raise InputError("checkpoint QTB noise buffers do not match this system or n_f")
        self.buffers = [b.to(self.device) for b in d["buffers"]]
        self.head = int(d["head"])
        self.gamma_ratio = np.array(d["gamma_ratio"], dtype=np.float64)
        self.temperature_K = float(d["temperature_k"])
        self.rebuild_kernels()
        self.force = d["force"].to(device=self.device, dtype=self.dtype)


# ----------------------------------------------------------------------------- FD diagnostic
class FDSpectra:
    """Segment periodograms of v̄ (velocity averaged over each noise period) and R, per adaptation group.

    Accumulates, per group on the one-sided grid f_k (k = 0..n_f):
      mCvv(f)  [eV·fs]  m C_vv, PSD of v times the mass, one-sided (Σ_k mCvv Δf = ⟨m v²⟩ per dof),
      CvR(f)   [eV]     Re C_vR, cross PSD of v and the random force actually applied,
      Δ_FD(f)  [eV]     Re C_vR - m γ_r C_vv (using γ_r in force during the segment).

    The first ``skip_segments`` segments after a (fresh) start are the bath's start-up transient: they
    enter neither the run averages nor the adaptation. For very large groups a fixed subset of whole
    atoms (all three Cartesian components) of at most ``fd_max_dof`` degrees of freedom is used.
    """

    def __init__(self, noise: ColoredNoise, masses: torch.Tensor, fd_max_dof: int = QTB_DEFAULTS["fd_max_dof"],
                 skip_segments: int = QTB_DEFAULTS["fd_skip_segments"]):
        self.noise = noise
        self.n_seg = noise.L
        self.h = noise.h
        self.n_species = self.n_groups = noise.n_groups
        self.dtype, self.device = masses.dtype, masses.device
        self.skip_segments = int(skip_segments)
        self.subset = []  # flat dof indices
        self.dof_mass = []  # amu, per dof of the subset
        max_atoms = max(1, int(fd_max_dof) // 3)
        for idx in noise.atom_index:
            if idx.numel() > max_atoms:  # stride over atoms, never over Cartesian components
                idx = idx[::math.ceil(idx.numel() / max_atoms)]
            dofs = (3 * idx[:, None] + torch.arange(3, device=self.device)).flatten()
            self.subset.append(dofs)
            self.dof_mass.append(masses[idx].repeat_interleave(3).to(torch.float64))
        # segment buffers in float32 (diagnostic statistics, half the memory); sums stay in float64
        self.vbuf = [torch.zeros((self.n_seg, d.numel()), dtype=torch.float32, device=self.device) for d in self.subset]
        self.rbuf = [torch.zeros_like(v) for v in self.vbuf]
        self.vsum = [torch.zeros(d.numel(), dtype=self.dtype, device=self.device) for d in self.subset]
        self.k_in_period = 0
        self.i_seg = 0
        self.window = torch.hann_window(self.n_seg, periodic=False, dtype=torch.float32, device=self.device)
        self.wnorm = float((self.window ** 2).mean())
        nk = noise.n_f + 1
        self.n_segments = 0  # segments in the averages
        self.n_done = 0  # segments completed since the start (including skipped ones)
        self.sum_mcvv = np.zeros((self.n_groups, nk))
        self.sum_cvr = np.zeros((self.n_groups, nk))
        self.sum_dfd = np.zeros((self.n_groups, nk))
        self.last = None  # (mcvv, cvr, dfd) of the last segment
        # v̄ is the mean of the α midpoint velocities of a noise period: its PSD is the true one times the
        # discrete hold response |sin(π f h)/(α sin(π f dt))|² (sinc² only in the limit α → ∞); R is
        # constant over the period, so C_v̄R is the true C_vR.
        self.hold2 = hold_response(noise.n_f, noise.alpha) ** 2

    def accumulate_velocity(self, v_flat: torch.Tensor) -> None:
        for s, dofs in enumerate(self.subset):
            self.vsum[s] += v_flat[dofs]
        self.k_in_period += 1

    def end_period(self, r_flat: torch.Tensor) -> bool:
        """Store v̄ and R of the finished noise period; True when a segment that counts is complete."""
        for s, dofs in enumerate(self.subset):
            self.vbuf[s][self.i_seg] = self.vsum[s] / self.k_in_period
            self.rbuf[s][self.i_seg] = r_flat[dofs]
            self.vsum[s].zero_()
        self.k_in_period = 0
        self.i_seg += 1
        if self.i_seg < self.n_seg:
            return False
        self.i_seg = 0
        self.n_done += 1
        if self.n_done <= self.skip_segments:
            return False
        self._segment_spectra()
        return True

    def _segment_spectra(self) -> None:
        nk = self.noise.n_f + 1
        mcvv = np.zeros((self.n_groups, nk))
        cvr = np.zeros((self.n_groups, nk))
        norm = self.h / (self.n_seg * self.wnorm)
        for s in range(self.n_groups):
            if self.subset[s].numel() == 0:
                continue
            w = self.window[:, None]
            fv = torch.fft.rfft(self.vbuf[s] * w, dim=0)
            fr = torch.fft.rfft(self.rbuf[s] * w, dim=0)
            pv = (fv.abs().pow(2).double() * self.dof_mass[s]).mean(1).cpu().numpy()[:nk]
            mcvv[s] = (MVV2E * norm) * pv / self.hold2
            cvr[s] = norm * (fv.conj() * fr).real.double().mean(1).cpu().numpy()[:nk]
        # one-sided: the k = 1..n_f-1 bins collect both ±f (DC and Nyquist are their own mirror)
        one_sided = np.full(nk, 2.0)
        one_sided[0] = one_sided[-1] = 1.0
        mcvv *= one_sided
        cvr *= one_sided
        gamma_r = self.noise.gamma * self.noise.gamma_ratio
        dfd = cvr - gamma_r * mcvv
        self.last = (mcvv, cvr, dfd)
        self.n_segments += 1
        self.sum_mcvv += mcvv
        self.sum_cvr += cvr
        self.sum_dfd += dfd

    def averages(self) -> dict:
        n = max(self.n_segments, 1)
        return {"mCvv_eV_fs": self.sum_mcvv / n, "ReCvR_eV": self.sum_cvr / n, "delta_fd_eV": self.sum_dfd / n,
                "n_segments": self.n_segments}

    def reset_averages(self) -> None:
        self.n_segments = 0
        self.sum_mcvv[:] = 0
        self.sum_cvr[:] = 0
        self.sum_dfd[:] = 0

    def state_dict(self) -> dict:
        return {"vbuf": [v.clone() for v in self.vbuf], "rbuf": [r.clone() for r in self.rbuf],
                "vsum": [v.clone() for v in self.vsum], "k_in_period": self.k_in_period, "i_seg": self.i_seg,
                "n_segments": self.n_segments, "n_done": self.n_done, "sum_mcvv": self.sum_mcvv.copy(),
                "sum_cvr": self.sum_cvr.copy(), "sum_dfd": self.sum_dfd.copy(), "last": self.last}

    def load_state_dict(self, d: dict) -> None:
        if len(d["vbuf"]) != len(self.vbuf) or any(a.shape != b.shape for a, b in zip(d["vbuf"], self.vbuf)):
            raise InputError("checkpoint QTB spectra do not match this run's adaptation groups or fd_max_dof")
        self.vbuf = [v.to(self.device) for v in d["vbuf"]]
        self.rbuf = [r.to(self.device) for r in d["rbuf"]]
        self.vsum = [v.to(self.device) for v in d["vsum"]]
        self.k_in_period, self.i_seg, self.n_segments = int(d["k_in_period"]), int(d["i_seg"]), int(d["n_segments"])
        self.n_done = int(d["n_done"])
        self.sum_mcvv, self.sum_cvr, self.sum_dfd = (np.array(d[k]) for k in ("sum_mcvv", "sum_cvr", "sum_dfd"))
        self.last = d["last"]


def hold_response(n_f: int, alpha: int) -> np.ndarray:
    """|sin(π f h)/(α sin(π f dt))| on the grid f_k = k/(2 n_f h): the response of the mean of α samples
    dt apart (h = α dt); 1 at f = 0 and for α = 1."""
    k = np.arange(n_f + 1)
    x = np.pi * k / (2.0 * n_f)  # π f_k h
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(k == 0, 1.0, np.sin(x) / (alpha * np.sin(x / alpha)))


class GammaAdaptation:
    """adQTB update of γ_r(ω)/γ per adaptation group (see module docstring)."""

    #: weight of the newest segment in the running record of where the update is clipped at the floor
    PIN_MEMORY = 0.3

    def __init__(self, noise: ColoredNoise, tau_ad_fs: float, tau_avg_fs: float | None = None,
                 eps: float = DEFAULT_ADAPT_EPS, gamma_ratio_min: float = QTB_DEFAULTS["gamma_r_min_ratio"],
                 weight_min: float = 1e-3):
        if not tau_ad_fs > 0:
            raise InputError(f"thermostat.tau_ad_fs must be > 0, got {tau_ad_fs}")
        if not 0.0 < gamma_ratio_min < 1.0:
            raise InputError(f"thermostat.gamma_r_min_ratio must lie in (0, 1), got {gamma_ratio_min}")
        self.noise = noise
        self.t_seg = noise.L * noise.h
        self.eta = self.t_seg / tau_ad_fs
        self.beta = min(1.0, self.t_seg / (tau_avg_fs if tau_avg_fs else tau_ad_fs))
        self.eps = eps
        self.ratio_min = gamma_ratio_min
        self.weight_min = weight_min
        self.smooth_mcvv = None
        shape = noise.gamma_ratio.shape
        # running records (weight PIN_MEMORY per segment) of where the update wanted γ_r below the floor (a
        # leak the friction cannot drain) and of Re C_vR, m γ γ_r C_vv there (see leakage_diagnosis)
        self.n_updates = 0
        self.pinned_fraction = np.zeros(shape)  # running share of recent segments clipped at the floor
        self.pinned_cvr = np.zeros(shape)
        self.pinned_gmcvv = np.zeros(shape)

    def update(self, mcvv: np.ndarray, dfd: np.ndarray) -> None:
        if self.smooth_mcvv is None:
            self.smooth_mcvv = mcvv.copy()
        else:
            self.smooth_mcvv = (1.0 - self.beta) * self.smooth_mcvv + self.beta * mcvv
        peak = self.smooth_mcvv.max(axis=1, keepdims=True)
        denom = self.smooth_mcvv + self.eps * peak + 1e-300
        # Δ_FD/(m C_vv) is a friction (1/fs); express it relative to γ. Where a species has no spectral
        # weight (below weight_min of its peak) there is nothing to adapt: γ_r relaxes back to γ.
        step = self.eta * dfd / denom / self.noise.gamma
        empty = self.smooth_mcvv < self.weight_min * peak
        step = np.where(empty, self.eta * (1.0 - self.noise.gamma_ratio), step)
        gmcvv = self.noise.gamma * self.noise.gamma_ratio * mcvv
        cvr = dfd + gmcvv
        want = self.noise.gamma_ratio + step
        clipped = (want < self.ratio_min) & ~empty
        lam = self.PIN_MEMORY
        self.n_updates += 1
        self.pinned_fraction = (1.0 - lam) * self.pinned_fraction + lam * clipped
        self.pinned_cvr = (1.0 - lam) * self.pinned_cvr + lam * np.where(clipped, cvr, 0.0)
        self.pinned_gmcvv = (1.0 - lam) * self.pinned_gmcvv + lam * np.where(clipped, gmcvv, 0.0)
        self.noise.gamma_ratio = np.maximum(self.ratio_min, want)
        self.noise.rebuild_kernels()

    def state_dict(self) -> dict:
        return {"smooth_mcvv": None if self.smooth_mcvv is None else self.smooth_mcvv.copy(),
                "n_updates": self.n_updates, "pinned_fraction": self.pinned_fraction.copy(),
                "pinned_cvr": self.pinned_cvr.copy(),
                "pinned_gmcvv": self.pinned_gmcvv.copy()}

    def load_state_dict(self, d: dict) -> None:
        self.smooth_mcvv = None if d["smooth_mcvv"] is None else np.array(d["smooth_mcvv"])
        self.n_updates = int(d["n_updates"])
        self.pinned_fraction = np.array(d["pinned_fraction"], dtype=np.float64)
        self.pinned_cvr = np.array(d["pinned_cvr"], dtype=np.float64)
        self.pinned_gmcvv = np.array(d["pinned_gmcvv"], dtype=np.float64)


def leakage_diagnosis(adapt: "GammaAdaptation", freq_THz: np.ndarray, min_segments: int = 4,
                      weight_threshold: float = 0.05) -> list[dict]:
    """Where adQTB cannot restore the fluctuation–dissipation theorem, and the friction that could.

    A leak the friction cannot drain shows as γ_r pinned at its floor with the update still pointing
    down (Δ_FD < 0 at the floor) in most recent segments (running share > ½, after ``min_segments``
    updates), over a band holding more than ``weight_threshold`` of the group's spectral weight.
    Linear-response estimate of the cure: with a noise-driven spectral weight γ_r·a (γ_r absolute) and a
    leaked one C_leak, Re C_vR = m γ γ_r a (the response of a mode with friction γ) while
    m C_vv = m (γ_r a + C_leak), so ρ = Re C_vR/(m γ_r C_vv) = γ a/(γ_r a + C_leak) ≈ γ a/C_leak at the
    floor. The adaptation's fixed point γ_r = γ − C_leak/a exists for γ > C_leak/a ≈ γ/ρ; with margin
    (γ_r ≈ γ/2 at the fixed point) γ ≳ 2γ/ρ. An estimate, not a guarantee: the leak rate itself can grow
    with the energy left in the stiff modes.
    """
    out = []
    if adapt.smooth_mcvv is None:
        return out
    noise = adapt.noise
    for g in range(adapt.smooth_mcvv.shape[0]):
        weight_all = adapt.smooth_mcvv[g]
        total = weight_all.sum()
        pinned = adapt.pinned_fraction[g] > 0.5
        if adapt.n_updates < min_segments or not total > 0 or not pinned.any():
            continue
        weight = float(weight_all[pinned].sum() / total)
        if weight < weight_threshold:
            continue
        rho = float(adapt.pinned_cvr[g][pinned].sum() / max(adapt.pinned_gmcvv[g][pinned].sum(), 1e-300))
        if not rho > 0.0:  # no usable signal at the floor: name no number
            gamma_needed = float("nan")
        else:  # capped at one friction time per noise period (beyond that the bath is no thermostat)
            gamma_needed = min(max(2.0, 2.0 / rho) * noise.gamma, 1.0 / noise.h)
        f = freq_THz[pinned]
        out.append({"group": g, "weight": weight, "band_THz": (float(f.min()), float(f.max())), "rho": rho,
                    "gamma_per_ps": noise.gamma * 1e3, "recommended_gamma_per_ps": gamma_needed * 1e3,
                    "recommended_damp_fs": 1.0 / gamma_needed})
    return out
