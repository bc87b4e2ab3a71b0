"""Pressure and conserved energy against exact answers.

Pressure model: an Einstein crystal on the 352-atom LaH10 cell (2×2×2 conventional) whose spring constant depends on the volume,
E = ½ k₀ (V/V₀)^(−g) Σ_i |x_i − s_i(h)|² (sites follow the cell), as a torch function (virial by
autograd). Its free energy depends on V only through k, so −dF/dV = −(∂F/∂k) k'(V) = g ⟨E_pot⟩/V with the
exact ⟨E_pot⟩ per degree of freedom: kT/2 (classical), θ(ω)/2 = (ħω/4)coth(ħω/2kT) (quantum), and
½kT Σ_k ω²/(ω² + ω_k²) for P beads (ω_k = 2 P k_B T/ħ sin(kπ/P)) — all written out here. La and H have
different ω = sqrt(k/m). The engine's pressure is the virial estimator (2K + tr W)/3V with the bath's
kinetic estimator (QTB: deconvolution-corrected; PIMD: centroid virial).
Tolerances: 4 block standard errors, plus 1.5 % for QTB (filter and time-step budget, see
test_md_species_statistics) and 0.5 % for the classical BAOAB kinetic error.

Conserved energy: with BAOAB the energy error of a thermostatted trajectory is O(dt²): the RMS excursion
of conserved_eV over the same physical time must shrink about 4× when dt is halved (accepted 2.5–6.5×).
"""

import math

import numpy as np
import pytest
import torch

from dpqtb.md.integrators import QTB, Langevin, TemperatureSchedule
from dpqtb.md.pimd import PIMD
from dpqtb.md.run import Simulation
from dpqtb.md.state import MDState, maxwell_boltzmann_momenta
from dpqtb.potential import Potential, PotentialOutput
from dpqtb.units import EV_PER_A3_TO_GPA, HBAR, KB, MVV2E

K0, G = 8.0, 2.0  # eV/Å² at V0; Grüneisen-like exponent


def _lah10():
    from dpqtb.structures.eos import fm3m_at_pressure

    return MDState.from_atoms(fm3m_at_pressure(200.0, cell="conventional").repeat(2))  # 352 atoms


class _VolumeEinstein(Potential):
    """E = ½ k₀ (V/V₀)^(−g) Σ|x − s(h)|²; forces −k d, virial W = −∂E/∂ε = g E I − k Σ d⊗d (derived by hand:
    under a strain d → d(1+ε) and V → V(1 + tr ε)); batched over beads."""

    batched = True
    translation_invariant = False

    def __init__(self, state):
        self.frac = state.positions @ torch.linalg.inv(state.cell)
        self.v0 = float(torch.linalg.det(state.cell))

    def _compute(self, positions, cell, species, pbc):
        k = K0 * (float(torch.linalg.det(cell)) / self.v0) ** (-G)
        d = positions - self.frac @ cell
        energy = 0.5 * k * d.pow(2).sum((-1, -2))
        eye = torch.eye(3, dtype=d.dtype)
        virial = G * energy[..., None, None] * eye - k * d.transpose(-1, -2) @ d
        return PotentialOutput(energy, -k * d, virial)


def _potential(state):
    pot = _VolumeEinstein(state)
    return pot, pot.v0


def _omega(state):
    return torch.sqrt(K0 / (state.masses * MVV2E)).numpy()  # rad/fs per atom


def _run(state, integ, n_steps, tmp, every=5):
    sim = Simulation(state, integ, tmp, thermo_every=every, trajectory_every=0, checkpoint_every=0, progress=False)
    sim.run(n_steps)
    data = np.genfromtxt(tmp / "thermo.csv", delimiter=",", names=True)
    return data[len(data) // 5:]


def _mean_err(x, nb=20):
    b = x[: len(x) // nb * nb].reshape(nb, -1).mean(1)
    return x.mean(), b.std(ddof=1) / math.sqrt(nb)


def _theta(w, T):
    return 0.5 * HBAR * w / np.tanh(0.5 * HBAR * w / (KB * T))


def test_classical_virial_pressure_is_minus_dF_dV(tmp_path):
    T = 300.0
    state = _lah10()
    pot, v0 = _potential(state)
    state.momenta = maxwell_boltzmann_momenta(state.masses, T, torch.Generator().manual_seed(2), zero_com=False)
    integ = Langevin(pot, 0.25, TemperatureSchedule(T), damp_fs=20.0, seed=4, zero_net_force=False)
    d = _run(state, integ, 6_000, tmp_path)
    exact = G * 1.5 * state.n_atoms * KB * T / v0 * EV_PER_A3_TO_GPA
    p, err = _mean_err(d["pressure_GPa"])
    assert err / exact < 0.02
    assert abs(p - exact) < 4 * err + 0.005 * exact, (p, err, exact)


def test_qtb_quantum_pressure_is_minus_dF_dV(tmp_path):
    T = 100.0
    state = _lah10()
    pot, v0 = _potential(state)
    state.momenta = maxwell_boltzmann_momenta(state.masses, T, torch.Generator().manual_seed(2), zero_com=False)
    integ = QTB(pot, 0.25, TemperatureSchedule(T), damp_fs=200.0, seed=4, zero_net_force=False)
    d = _run(state, integ, 12_000, tmp_path)
    e_pot = 3 * 0.5 * _theta(_omega(state), T).sum()
    exact = G * e_pot / v0 * EV_PER_A3_TO_GPA
    classical = G * 1.5 * state.n_atoms * KB * T / v0 * EV_PER_A3_TO_GPA
    assert exact > 3 * classical  # deep quantum regime (H at 44 THz, 100 K)
    p, err = _mean_err(d["pressure_GPa"])
    assert abs(p - exact) < 4 * err + 0.015 * exact, (p, err, exact)
    raw, _ = _mean_err(d["pressure_raw_GPa"])
    assert raw > p  # the raw kinetic energy carries the broadening bias


def test_pimd_centroid_virial_pressure_is_exact_for_p_beads(tmp_path):
    T, P = 300.0, 8
    state = _lah10()
    pot, v0 = _potential(state)
    state.momenta = maxwell_boltzmann_momenta(state.masses, T, torch.Generator().manual_seed(2), zero_com=False)
    integ = PIMD(pot, 0.25, TemperatureSchedule(T), P, 50.0, seed=4, zero_net_force=False)
    d = _run(state, integ, 5_000, tmp_path)
    wk = 2 * P * KB * T / HBAR * np.sin(np.arange(P) * np.pi / P)
    w = _omega(state)
    e_pot = 3 * 0.5 * KB * T * (w[:, None] ** 2 / (w[:, None] ** 2 + wk[None, :] ** 2)).sum()
    exact = G * e_pot / v0 * EV_PER_A3_TO_GPA
    p, err = _mean_err(d["pressure_GPa"])
    assert err / exact < 0.02
    assert abs(p - exact) < 4 * err + 0.005 * exact, (p, err, exact)


def _conserved_rms(kind, dt, t_fs, tmp):
    """RMS excursion of conserved_eV on a smooth anharmonic model (60/30 THz Fermi-resonant pairs,
    cubic + quartic terms; a Morse cutoff would add O(dt) errors from its force step)."""
    from dpqtb.workflows.fermi import FermiModel

    state, pot, _ = FermiModel.resonant(60.0, 1.008, 0.05).build(100)
    state.momenta = maxwell_boltzmann_momenta(state.masses, 300.0, torch.Generator().manual_seed(5), zero_com=False)
    pot.translation_invariant = False
    sched = TemperatureSchedule(300.0)
    if kind == "langevin":
        integ = Langevin(pot, dt, sched, 50.0, seed=7, zero_net_force=False)
    elif kind in ("qtb", "adqtb"):
        integ = QTB(pot, dt, sched, 50.0, seed=7, f_max_THz=150.0, zero_net_force=False, adaptive=(kind == "adqtb"),
                    tau_ad_fs=200.0, fd_skip_segments=0, n_f=20)
    else:
        integ = PIMD(pot, dt, TemperatureSchedule(300.0), 4, 50.0, seed=7, zero_net_force=False)
    every = max(1, int(round(1.0 / dt)))
    d = _run(state, integ, int(round(t_fs / dt)), tmp, every=every)
    c = d["conserved_eV"]
    return float(np.sqrt(np.mean((c - c.mean()) ** 2)))


@pytest.mark.parametrize("kind", ["langevin", "qtb", "adqtb", "pimd"])
def test_conserved_energy_error_scales_as_dt_squared(tmp_path, kind):
    rms = [_conserved_rms(kind, dt, 1000.0, tmp_path / f"dt{dt}") for dt in (0.4, 0.2)]
    ratio = rms[0] / rms[1]
    assert 2.5 < ratio < 6.5, (kind, rms, ratio)
