"""The exact reference of the leakage tests (dpqtb.workflows.fermi.FermiModel.exact) checked on its own:
uncoupled, it is two quantum harmonic oscillators (closed form written here with scipy's constants); coupled,
its averages are the same in a smaller product basis (converged at the default 24 × 48)."""

from __future__ import annotations

import math

import pytest
import scipy.constants as C

from dpqtb.workflows.fermi import FermiModel

HBAR_EV_FS = C.hbar / C.e * 1e15
AMU_A2_PER_FS2_EV = C.atomic_mass * 1e-20 / 1e-30 / C.e


@pytest.mark.parametrize("temperature", [100.0, 1000.0])
def test_uncoupled_model_is_two_quantum_harmonic_oscillators(temperature):
    model = FermiModel(60.0, 30.0, 1.008, 138.90547)  # no coupling; H and La masses
    ex = model.exact(temperature)
    kt = C.k * temperature / C.e
    for f, m, kin, x2 in ((60.0, 1.008, "kinetic_x_eV", "x2_A2"), (30.0, 138.90547, "kinetic_y_eV", "y2_A2")):
        w = 2 * math.pi * f * 1e-3  # rad/fs
        coth = 1.0 / math.tanh(HBAR_EV_FS * w / (2 * kt))
        assert ex[kin] == pytest.approx(HBAR_EV_FS * w / 4 * coth, rel=1e-6)
        # ⟨x²⟩ = ħ/(2mω) coth(ħω/2kT), m in eV fs²/Å²
        assert ex[x2] == pytest.approx(HBAR_EV_FS / (2 * m * AMU_A2_PER_FS2_EV * w) * coth, rel=1e-6)


def test_fermi_resonance_averages_are_basis_converged():
    model = FermiModel.resonant(60.0, 1.008, 0.02)  # the leakage test's model
    a, b = model.exact(100.0), model.exact(100.0, n1=20, n2=40)  # the default basis against a smaller one
    for key in ("kinetic_x_eV", "kinetic_y_eV", "x2_A2", "y2_A2"):
        assert a[key] == pytest.approx(b[key], rel=1e-6), key
