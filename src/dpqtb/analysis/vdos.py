"""Vibrational density of states from the velocity autocorrelation function, zero-point
temperature, and energy-vs-temperature curves from thermo logs.

Method: the trajectory is cut into segments of ``segment_frames`` frames (default 2 M; streaming:
only one segment of velocities is held, L·N·12 bytes in float32, e.g. 0.5 GB for 44,000 atoms and
L = 1000).  In each segment the per-atom VACF C_i(k) = ⟨v_i(t)·v_i(t+kΔt)⟩ is
computed with zero-padded FFTs (Wiener–Khinchin, unbiased 1/(L−k) normalisation) and summed per
species.  The averaged VACF up to ``max_lag`` M is multiplied by a Hann lag window
w(k) = ½[1 + cos(πk/M)] and cosine-transformed:  g(ν) ∝ C(0) + 2 Σ_k w(k) C(k) cos(2πνkΔt).
Each g is normalised to unit area over ν ≥ 0 (a density per degree of freedom).  The "total"
spectrum weights atoms by mass (Σ m_i C_i), the kinetic-energy weighting for which a classical
harmonic crystal gives its phonon DOS.  Frequency resolution ≈ 2/(M Δt) (Hann main lobe).

T_zero = (1/k_B) ∫ g(ν) hν/2 dν is then the zero-point energy per degree of freedom in kelvin,
directly comparable with E/(3N k_B) at T = 0 for a harmonic system.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dpqtb import InputError
from dpqtb.analysis.msd import species_indices
from dpqtb.units import HBAR, HPLANCK, KB, THZ


@dataclass
class VDOSResult:
    freq_THz: np.ndarray
    g_per_THz: dict[str, np.ndarray]  # per species and "total"; ∫ g dν = 1
    vacf_A2_per_fs2: dict[str, np.ndarray]  # per-atom VACF (species mean; total: mass-weighted)
    lag_fs: np.ndarray
    n_segments: int

    def zero_point_temperature_K(self, key: str = "total") -> float:
        return zero_point_temperature(self.freq_THz, self.g_per_THz[key])

    def peak_THz(self, key: str) -> float:
        return float(self.freq_THz[np.argmax(self.g_per_THz[key])])

    def alias_fraction(self, key: str | None = None) -> float:
        """Share of the spectrum in the top 10 % of the band below the Nyquist frequency 1/(2Δt) (of ``key``,
        default the largest over every species and the total). A resolved spectrum has decayed there;
        frames too far apart fold the high frequencies back and leave weight up to Nyquist (the spectrum
        and T_zero are then wrong)."""
        f = self.freq_THz
        top = f >= 0.9 * f[-1]
        keys = [key] if key is not None else list(self.g_per_THz)
        return max(float(np.trapezoid(self.g_per_THz[k][top], f[top]) / np.trapezoid(self.g_per_THz[k], f))
                   for k in keys)


#: above this alias_fraction the VDOS of a trajectory is refused (a resolved Lorentzian-broadened
#: spectrum keeps well below 1 % there; the main job's 5 fs frames give about 5 % for H)
ALIAS_LIMIT = 0.01


def zero_point_temperature(freq_THz: np.ndarray, g_per_THz: np.ndarray) -> float:
    """T_zero = (1/k_B) ∫ g(ν) hν/2 dν  (K), g normalised to unit area here for safety.

    Parameters
    ----------
    freq_THz : array
        Frequencies (THz).
    g_per_THz : array
        The density of states on them (1/THz).

    Returns
    -------
    float
        T_zero (K).
    """
    nu_per_fs = np.asarray(freq_THz) * THZ
    area = np.trapezoid(g_per_THz, freq_THz)
    if not area > 0:
        raise InputError("VDOS has zero or negative area")
    return float(np.trapezoid(g_per_THz * 0.5 * HPLANCK * nu_per_fs, freq_THz) / area / KB)


def ring_polymer_kinetic_energy(freq_THz: np.ndarray, g_per_THz: np.ndarray, temperature_K: float,
                                beads: int | None) -> float:
    """Mean kinetic energy per degree of freedom (eV) of harmonic modes distributed as g(ν), as a
    ``beads``-bead path integral gives it (None: the exact quantum value): a bead-convergence estimate
    before running PIMD, and the reference its K_cv(P) is read against.

    For one harmonic mode ω the P-bead discretisation gives, exactly (normal modes of the ring polymer,
    ω_k = (2P k_BT/ħ) sin(πk/P); the virial theorem K = E/2),
    K_P(ω) = (k_BT/2) Σ_{k=0}^{P-1} ω² / (ω² + ω_k²), which is k_BT/2 at P = 1 and tends to
    K_∞(ω) = (ħω/4) coth(ħω/2k_BT). Returns ∫ g K_P dν / ∫ g dν (ν = 0 counts as classical). Per atom:
    3 × this, with the species' VDOS (the velocity spectrum of a species weights every mode by that
    species' share of its kinetic energy).

    Parameters
    ----------
    freq_THz, g_per_THz : array
        A vibrational density of states (e.g. :class:`VDOSResult` of one species, or ``vdos.csv``);
        negative values of g (noise of the lag window) are set to zero.
    temperature_K : float
        Temperature (K), > 0.
    beads : int or None
        Number of beads P (>= 1), None for P → ∞.
    """
    if not temperature_K > 0:
        raise InputError(f"temperature must be > 0 K, got {temperature_K}")
    if beads is not None and (int(beads) != beads or beads < 1):
        raise InputError(f"beads must be an integer >= 1, got {beads}")
    f = np.asarray(freq_THz, dtype=float)
    g = np.clip(np.asarray(g_per_THz, dtype=float), 0.0, None)
    area = np.trapezoid(g, f)
    if not area > 0:
        raise InputError("VDOS has zero or negative area")
    kt = KB * temperature_K
    w = 2.0 * np.pi * f * THZ                                   # rad/fs
    with np.errstate(invalid="ignore", divide="ignore"):
        if beads is None:
            x = HBAR * w / (2.0 * kt)
            k = np.where(x > 1e-8, 0.5 * kt * x / np.tanh(x), 0.5 * kt)
        else:
            wk = 2.0 * beads * kt / HBAR * np.sin(np.pi * np.arange(int(beads)) / beads)
            k = 0.5 * kt * np.sum(w[:, None] ** 2 / (w[:, None] ** 2 + wk[None, :] ** 2), axis=1)
            k = np.where(w > 0, k, 0.5 * kt)                    # ν = 0: the k = 0 term alone, k_BT/2
    return float(np.trapezoid(g * k, f) / area)


def ring_polymer_kinetic_fraction(freq_THz: np.ndarray, g_per_THz: np.ndarray, temperature_K: float,
                                  beads: int) -> float:
    """Share of the exact quantum kinetic energy that a ``beads``-bead path integral recovers, for harmonic
    modes distributed as g(ν): K_P / K_∞ of :func:`ring_polymer_kinetic_energy` (``beads`` >= 1)."""
    if beads is None:
        raise InputError("beads must be an integer >= 1, got None")
    k_p = ring_polymer_kinetic_energy(freq_THz, g_per_THz, temperature_K, beads)
    return k_p / ring_polymer_kinetic_energy(freq_THz, g_per_THz, temperature_K, None)


class VDOSAccumulator:
    """Streaming VACF/VDOS per species (see module docstring).

    Frames without velocities fall back to central finite differences of the unwrapped positions
    within each segment (exact frequencies; amplitudes damped by sin(ωΔt)/(ωΔt)).

    Parameters
    ----------
    symbols : array of str
        Species of every atom.
    dt_fs : float
        Time between frames (fs).
    max_lag : int
        VACF window M (frames, >= 4).
    segment_frames : int, optional
        Frames per segment (default 2M, > M).
    masses : (N,) array, optional
        Masses (amu) of the mass-weighted total; default ASE's standard masses.
    """

    def __init__(self, symbols, dt_fs: float, max_lag: int = 500, segment_frames: int | None = None,
                 masses: np.ndarray | None = None):
        if dt_fs <= 0:
            raise InputError("VDOS needs a positive frame spacing (fs)")
        if max_lag < 4:
            raise InputError("VDOS max_lag must be at least 4 frames")
        self.groups = species_indices(symbols)
        self.dt = float(dt_fs)
        self.max_lag = int(max_lag)
        self.L = int(segment_frames or 2 * max_lag)
        self.chunk_atoms = 1024  # FFT this many atoms at a time (memory ~ 2·nfft·chunk·3 complex)
        if self.L <= self.max_lag:
            raise InputError("VDOS segment must be longer than max_lag")
        if masses is None:
            from ase.data import atomic_masses, atomic_numbers

            masses = np.array([atomic_masses[atomic_numbers[str(s)]] for s in symbols])
        self.m = np.asarray(masses, dtype=float)
        self.buf: list[np.ndarray] = []
        self.use_positions: bool | None = None
        self.acf = {k: np.zeros(self.max_lag + 1) for k in [*self.groups, "total"]}
        self.nseg = 0

    def update(self, velocities: np.ndarray | None, positions: np.ndarray | None = None) -> None:
        use_pos = velocities is None
        if self.use_positions is None:
            self.use_positions = use_pos
        elif self.use_positions != use_pos:
            raise InputError("some frames have velocities and others not")
        data = positions if use_pos else velocities
        if data is None:
            raise InputError("VDOS needs velocities or positions")
        self.buf.append(np.asarray(data, dtype=np.float32))
        if len(self.buf) == self.L:
            self._flush()

    def _flush(self) -> None:
        seg = np.stack(self.buf)  # (L, N, 3) float32
        self.buf = []
        L = len(seg)
        nfft = 1 << int(np.ceil(np.log2(2 * L)))
        M = min(self.max_lag, L - 1)
        norm = 1.0 / (L - np.arange(M + 1))
        tot = np.zeros(M + 1)
        for s, idx in self.groups.items():
            acc = np.zeros(M + 1)
            for chunk in np.array_split(idx, max(1, len(idx) // self.chunk_atoms)):
                x = seg[:, chunk, :].astype(np.float64)
                if self.use_positions:
                    x = np.gradient(x, self.dt, axis=0)
                f = np.fft.rfft(x, n=nfft, axis=0)
                p = (f.real ** 2 + f.imag ** 2).sum(axis=2)  # (F, n_chunk)
                acf_atoms = np.fft.irfft(p, n=nfft, axis=0)[: M + 1]  # (M+1, n_chunk)
                acc += acf_atoms.sum(axis=1)
                tot += acf_atoms @ self.m[chunk]
            self.acf[s][: M + 1] += acc / len(idx) * norm
        self.acf["total"][: M + 1] += tot / self.m.sum() * norm
        self.nseg += 1

    def result(self) -> VDOSResult:
        if len(self.buf) > self.max_lag + 1:  # the last, shorter segment
            self._flush()
        if self.nseg == 0:
            raise InputError(f"VDOS needs more than max_lag+1 = {self.max_lag + 1} frames")
        M = self.max_lag
        k = np.arange(M + 1)
        w = 0.5 * (1.0 + np.cos(np.pi * k / M))
        nfreq = 4 * M
        freqs_per_fs = np.arange(nfreq + 1) / (2 * nfreq * self.dt)
        cosm = np.cos(2 * np.pi * np.outer(freqs_per_fs, k) * self.dt)
        coef = np.where(k == 0, 1.0, 2.0) * w
        freq_THz = freqs_per_fs / THZ
        g, vacf = {}, {}
        for key, a in self.acf.items():
            c = a / self.nseg
            vacf[key] = c
            spec = cosm @ (coef * c)
            area = np.trapezoid(spec, freq_THz)
            if not area > 0:
                raise InputError(f"VDOS of {key}: zero velocity autocorrelation (frozen atoms?)")
            g[key] = spec / area
        return VDOSResult(freq_THz, g, vacf, k * self.dt, self.nseg)


def energy_vs_temperature(thermo: dict[str, np.ndarray], n_atoms: int, e_ref_eV: float = 0.0,
                          n_bins: int | None = None, discard_fraction: float = 0.2) -> dict[str, np.ndarray]:
    """E/(3N k_B) (K) against temperature from one thermo log.

    E = total_eV − e_ref_eV (e_ref: the static minimum energy, so a harmonic crystal gives T
    classically and T_zero-like values quantum-mechanically at T → 0).  With ``n_bins`` (a
    temperature ramp) rows are binned by target_temperature_K; without, the last
    (1 − discard_fraction) of the run is averaged into one point with its standard error from
    5 blocks.

    Parameters
    ----------
    thermo : dict of str to array
        Columns of a thermo log (:func:`dpqtb.rundir.read_thermo`).
    n_atoms : int
        Number of atoms N.
    e_ref_eV : float
        Energy zero (eV).
    n_bins : int, optional
        Bins of the target temperature (a ramp); default one point.
    discard_fraction : float
        Leading fraction of the rows skipped (equilibration) without ``n_bins``.

    Returns
    -------
    dict of str to array
        ``target_temperature_K``, ``temperature_K``, ``E_per_3NkB_K``, ``E_err_K``; with the QTB kinetic
        correction also ``E_per_3NkB_raw_K`` (the uncorrected kinetic energy, as a QTB code without the
        correction reports it), and only the rows from the first corrected one (:func:`first_corrected_row`).
    """
    for col in ("target_temperature_K", "temperature_K", "total_eV"):
        if col not in thermo:
            raise InputError(f"thermo log lacks column {col}")
    if n_atoms < 1:
        raise InputError("energy_vs_temperature needs n_atoms >= 1")
    e, e_raw = energy_per_3NkB(thermo, n_atoms, e_ref_eV)
    raw = e_raw is not None
    # only the rows that carry the QTB kinetic correction (it needs two noise segments)
    k_corr = first_corrected_row(thermo)
    tt, tk = thermo["target_temperature_K"], thermo["temperature_K"]
    if n_bins:
        edges = np.linspace(tt.min(), tt.max() + 1e-9, n_bins + 1)
        which = np.clip(np.digitize(tt, edges) - 1, 0, n_bins - 1)
        which[:k_corr] = -1  # rows before the correction exists: in no bin
        rows = []
        for b in range(n_bins):
            sel = which == b
            if sel.sum():
                rows.append((tt[sel].mean(), tk[sel].mean(), e[sel].mean(),
                             e[sel].std(ddof=1) / np.sqrt(sel.sum()) if sel.sum() > 1 else np.nan,
                             e_raw[sel].mean() if raw else np.nan))
        arr = np.array(rows)
    else:
        k0 = max(int(discard_fraction * len(e)), k_corr)
        seg = e[k0:]
        if len(seg) < 2:
            raise InputError("thermo log too short for an energy average")
        blocks = [b.mean() for b in np.array_split(seg, min(5, len(seg)))]
        arr = np.array([[tt[k0:].mean(), tk[k0:].mean(), seg.mean(),
                         np.std(blocks, ddof=1) / np.sqrt(len(blocks)), e_raw[k0:].mean() if raw else np.nan]])
    out = {"target_temperature_K": arr[:, 0], "temperature_K": arr[:, 1],
           "E_per_3NkB_K": arr[:, 2], "E_err_K": arr[:, 3]}
    if raw:
        out["E_per_3NkB_raw_K"] = arr[:, 4]
    return out


def energy_per_3NkB(thermo: dict, n_atoms: int, e_ref_eV: float) -> tuple[np.ndarray, np.ndarray | None]:
    """(E − E_ref)/(3N k_B) (K) per row of a thermo log, and with the QTB kinetic correction also the same
    with the uncorrected kinetic energy (what a QTB code without the correction, the paper's LAMMPS
    ``fix qtb``, reports); None without it."""
    e = (np.asarray(thermo["total_eV"]) - e_ref_eV) / (3 * n_atoms * KB)
    if "kinetic_raw_eV" not in thermo or "kinetic_eV" not in thermo:
        return e, None
    return e, e + (np.asarray(thermo["kinetic_raw_eV"]) - np.asarray(thermo["kinetic_eV"])) / (3 * n_atoms * KB)


def first_corrected_row(thermo: dict) -> int:
    """Index of the first row of a thermo log whose kinetic energy carries the QTB kinetic correction (0 without
    it). The correction factor is built from the Δ_FD spectra of two completed noise segments (1 ps at 0.5 fs and
    n_f = 100); until then it is exactly 1, so ``kinetic_eV`` equals ``kinetic_raw_eV`` to the last digit, and
    averaging those rows with the later ones mixes uncorrected energies into a corrected mean. A log whose two
    columns never differ (no correction in the run, or a run shorter than two segments) gives 0: every row."""
    if "kinetic_raw_eV" not in thermo or "kinetic_eV" not in thermo:
        return 0
    differs = np.flatnonzero(np.asarray(thermo["kinetic_raw_eV"]) != np.asarray(thermo["kinetic_eV"]))
    return int(differs[0]) if len(differs) else 0


def energy_curve(run_dirs, e_ref_eV: float = 0.0, n_atoms: int | None = None,
                 discard_fraction: float = 0.2) -> dict[str, np.ndarray]:
    """E/(3N k_B) vs temperature, one point per run directory (paper Fig. 3a), sorted by target T.

    N comes from each run's run.json ("n_atoms") unless ``n_atoms`` is given.

    Parameters
    ----------
    run_dirs : iterable of path
        Run directories (thermo.csv, run.json).
    e_ref_eV : float
        Energy zero (eV).
    n_atoms : int, optional
        Number of atoms (default each run's run.json).
    discard_fraction : float
        Leading fraction of each log skipped.

    Returns
    -------
    dict of str to array
        As :func:`energy_vs_temperature`, one row per run.
    """
    from dpqtb.rundir import RUN_JSON, read_run_json, read_thermo

    rows = []
    for d in run_dirs:
        n = n_atoms or read_run_json(d).get("n_atoms")
        if not n:
            raise InputError(f"{d}: number of atoms unknown (no {RUN_JSON} n_atoms); pass n_atoms")
        e = energy_vs_temperature(read_thermo(d), int(n), e_ref_eV, discard_fraction=discard_fraction)
        rows.append([e[k][0] for k in ("target_temperature_K", "temperature_K", "E_per_3NkB_K", "E_err_K")])
    if not rows:
        raise InputError("energy_curve needs at least one run directory")
    arr = np.array(sorted(rows))
    return {"target_temperature_K": arr[:, 0], "temperature_K": arr[:, 1],
            "E_per_3NkB_K": arr[:, 2], "E_err_K": arr[:, 3]}
