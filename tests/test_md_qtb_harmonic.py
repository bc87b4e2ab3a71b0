"""QTB on independent 3D harmonic oscillators against the exact quantum answer.

For every frequency the kinetic and the potential energy per degree of freedom must equal
(ħω/4) coth(ħω/2kT) within 2 %, over ħω/kT = 0.1 … 30 and temperatures 1000 K, 100 K and 1 K.

Which correction is applied (the issue asks to say): the potential energy is compared raw. The
kinetic energy of a QTB oscillator carries the finite-friction broadening bias ≈ (ħγ/2π) ln(ω_cut/ω)
(the Lorentzian response picks up the ħω/2 tail of the noise up to the cutoff); at 100 K and γ = 1 ps⁻¹
it is +5 % at 2 THz. We subtract the closed-form bias of the noise actually used
(dpqtb.md.qtb.harmonic_prediction: exact stationary energies of a damped oscillator driven by the
filter's true spectrum, images and hold included) and also assert that the raw MD values agree with
that closed form within 4 standard errors (+0.3 % for the time step), which validates the noise
generator, the filter and the integrator independently of the correction.

Statistics: 4,000 atoms (12,000 independent dofs) per frequency, runs of ≥ 6.7/γ after 1/γ of
equilibration from the exact Wigner distribution; the relative standard error of each energy is
≈ sqrt(2/(γ t N_dof)) ≈ 0.5 %, measured from the spread of per-dof time averages.
"""

import numpy as np
import pytest
import torch

from dpqtb.md.integrators import QTB, TemperatureSchedule
from dpqtb.md.qtb import QTBParameters, harmonic_energy_per_dof, harmonic_prediction
from dpqtb.units import HBAR, KB
from dpqtb.workflows.oscillators import measure_oscillators, oscillator_crystal, sample_harmonic_equilibrium

# (T K, frequencies THz, damp fs, f_max THz, dt fs); frequencies span 10× per run, ħω/kT 0.1 … 30
RUNS = {
    "1000K": (1000.0, [2.0836, 6.25, 20.836], 1000.0, 60.0, 0.8),
    "100K": (100.0, [2.0836, 6.25, 20.836], 1000.0, 60.0, 0.8),
    "1K": (1.0, [0.0625, 0.20836, 0.625], 33_333.0, 1.8, 26.6),
}
N_PER = 4000


def _run(T, freqs, damp, fmax, dt, classical=False, gamma_t=6.7):
    state, pot, f_atom = oscillator_crystal(freqs, N_PER)
    sample_harmonic_equilibrium(state, pot, T, torch.Generator().manual_seed(1), quantum=not classical)
    integ = QTB(pot, dt, TemperatureSchedule(T), damp, seed=2, f_max_thz=fmax, n_f=100, classical_kernel=classical,
                zero_net_force=False, fd_diagnostic=False)
    n_equil = int(damp / dt)
    return measure_oscillators(integ, state, pot, f_atom, n_steps=n_equil + int(gamma_t * damp / dt), n_equil=n_equil)


@pytest.mark.parametrize("name", list(RUNS))
def test_qtb_harmonic_energies_match_quantum(name):
    T, freqs, damp, fmax, dt = RUNS[name]
    res = _run(T, freqs, damp, fmax, dt)
    params = QTBParameters(T, damp, fmax, 100)
    for i, f in enumerate(res["frequency_THz"]):
        w = 2 * np.pi * f * 1e-3
        x = HBAR * w / (KB * T)
        assert 0.09 < x < 31
        exact = harmonic_energy_per_dof(np.array([w]), T)[0]
        pred_kin, pred_pot = harmonic_prediction(f, params, dt)
        kin, pot = res["kinetic_eV"][i], res["potential_eV"][i]
        err_kin, err_pot = res["kinetic_err_eV"][i], res["potential_err_eV"][i]
        assert err_kin / exact < 0.007 and err_pot / exact < 0.007  # the run is long enough for 2 %
        # implementation vs closed form for this very noise (tight)
        assert abs(kin - pred_kin) < 4 * err_kin + 0.003 * exact, (name, f, kin / exact, pred_kin / exact)
        assert abs(pot - pred_pot) < 4 * err_pot + 0.003 * exact, (name, f, pot / exact, pred_pot / exact)
        # physics: exact quantum energy within 2 % (kinetic after removing the broadening bias)
        assert abs(pot / exact - 1) < 0.02, (name, f, x, pot / exact)
        assert abs((kin - (pred_kin - exact)) / exact - 1) < 0.02, (name, f, x, kin / exact)


def test_classical_kernel_gives_equipartition():
    T, freqs, damp, fmax, dt = RUNS["100K"]
    res = _run(T, freqs, damp, fmax, dt, classical=True, gamma_t=4.0)
    kt2 = 0.5 * KB * T
    params = QTBParameters(T, damp, fmax, 100, classical_kernel=True)
    for i, f in enumerate(res["frequency_THz"]):
        pred_kin, pred_pot = harmonic_prediction(f, params, dt)
        assert abs(pred_kin / kt2 - 1) < 0.005 and abs(pred_pot / kt2 - 1) < 0.005
        assert abs(res["potential_eV"][i] / kt2 - 1) < 4 * res["potential_err_eV"][i] / kt2 + 0.005
        assert abs(res["kinetic_eV"][i] / kt2 - 1) < 4 * res["kinetic_err_eV"][i] / kt2 + 0.005


def test_theta_limits_and_no_overflow_at_1K():
    from dpqtb.md.qtb import theta_qtb

    w = 2 * np.pi * np.array([0.0, 1e-6, 1.0, 200.0]) * 1e-3  # up to 200 THz at 1 K: ħω/kT ≈ 9600
    th = theta_qtb(w, 1.0)
    assert np.all(np.isfinite(th))
    assert th[0] == pytest.approx(KB * 1.0)
    assert th[1] == pytest.approx(KB * 1.0, rel=1e-6)  # classical limit
    assert th[3] == pytest.approx(0.5 * HBAR * w[3], rel=1e-15)  # pure zero-point energy
    assert np.allclose(theta_qtb(w[1:], 0.0), 0.5 * HBAR * w[1:])
