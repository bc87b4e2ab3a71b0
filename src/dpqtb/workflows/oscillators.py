"""Independent harmonic oscillators (an Einstein crystal with several frequencies): the model
system with exact classical and quantum answers used by the demo and the validation tests."""

from __future__ import annotations

import math

import numpy as np
import torch

from dpqtb.md.state import MDState
from dpqtb.potential import EinsteinCrystal, spring_constant_from_frequency


def oscillator_crystal(freqs_THz, n_per_freq: int, mass_amu: float = 1.008, spacing_A: float = 2.0,
                       symbol: str = "H", device="cpu", dtype=torch.float64):
    """``n_per_freq`` atoms per frequency on a simple-cubic grid, each tied to its site by a spring of
    k = m (2πν)². Returns (state, potential, frequency of each atom in THz)."""
    freqs = np.repeat(np.asarray(freqs_THz, dtype=np.float64), n_per_freq)
    n = freqs.size
    side = math.ceil(n ** (1 / 3))
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n] * spacing_A
    cell = np.eye(3) * side * spacing_A
    t = lambda a: torch.tensor(a, dtype=dtype, device=device)  # noqa: E731
    state = MDState(positions=t(grid), momenta=t(np.zeros((n, 3))), masses=t(np.full(n, mass_amu)),
                    cell=t(cell), species=torch.zeros(n, dtype=torch.long, device=device), type_map=(symbol,))
    k = t([spring_constant_from_frequency(f, mass_amu) for f in freqs])
    pot = EinsteinCrystal(state.positions.clone(), state.cell.clone(), k_per_atom=k)
    return state, pot, freqs


def sample_harmonic_equilibrium(state: MDState, potential: EinsteinCrystal, temperature_K: float,
                                generator: torch.Generator, quantum: bool = True) -> None:
    """Draw positions and momenta from the exact equilibrium distribution of the independent
    oscillators: the Wigner distribution (Gaussian, ⟨E_kin⟩ = ⟨E_pot⟩ = (ħω/4)coth(ħω/2kT) per
    degree of freedom) or the classical Boltzmann one (kT/2)."""
    from dpqtb.md.qtb import harmonic_energy_per_dof
    from dpqtb.units import KB, MVV2E

    k = potential.k_per_atom
    m = state.masses
    omega = torch.sqrt(k / (m * MVV2E))  # rad/fs
    if quantum:
        e = torch.as_tensor(harmonic_energy_per_dof(omega.cpu().numpy(), temperature_K), dtype=m.dtype,
                            device=m.device)
    else:
        e = torch.full_like(m, 0.5 * KB * temperature_K)
    sx = torch.sqrt(2.0 * e / k)
    sp = torch.sqrt(2.0 * e * m / MVV2E)
    shape = state.positions.shape
    state.positions = potential.sites(state.cell) + sx[:, None] * torch.randn(shape, generator=generator,
                                                                               dtype=m.dtype, device=m.device)
    state.momenta = sp[:, None] * torch.randn(shape, generator=generator, dtype=m.dtype, device=m.device)


def measure_oscillators(integrator, state: MDState, potential: EinsteinCrystal, freqs_per_atom: np.ndarray,
                        n_steps: int, n_equil: int, progress=None) -> dict:
    """Run ``integrator`` and return, per distinct frequency, the mean kinetic and potential energy
    per degree of freedom (eV) with standard errors from the spread of the per-degree-of-freedom time
    averages (the oscillators are independent, so these are independent samples)."""
    from dpqtb.units import MVV2E

    integrator.setup(state)
    k = potential.k_per_atom
    sum_p2 = torch.zeros_like(state.momenta)
    sum_x2 = torch.zeros_like(state.momenta)
    for i in range(n_steps):
        integrator.step(state)
        if i >= n_equil:
            sum_p2 += state.momenta ** 2
            sum_x2 += (state.positions - potential.sites(state.cell)) ** 2
        if progress is not None:
            progress(i)
    n = n_steps - n_equil
    kin = (0.5 * MVV2E * sum_p2 / n / state.masses[:, None]).cpu().numpy()
    pot = (0.5 * k[:, None] * sum_x2 / n).cpu().numpy()
    out = {"frequency_THz": [], "kinetic_eV": [], "kinetic_err_eV": [], "potential_eV": [], "potential_err_eV": []}
    for f in np.unique(freqs_per_atom):
        sel = freqs_per_atom == f
        ks, ps = kin[sel].ravel(), pot[sel].ravel()
        out["frequency_THz"].append(float(f))
        out["kinetic_eV"].append(float(ks.mean()))
        out["kinetic_err_eV"].append(float(ks.std(ddof=1) / np.sqrt(ks.size)))
        out["potential_eV"].append(float(ps.mean()))
        out["potential_err_eV"].append(float(ps.std(ddof=1) / np.sqrt(ps.size)))
    return {key: np.array(v) for key, v in out.items()}
