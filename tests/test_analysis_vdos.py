"""VDOS of harmonic signals (known frequencies), zero-point temperature, energy curves."""

import numpy as np
import pytest

from dpqtb import DpqtbError
from dpqtb.analysis.vdos import VDOSAccumulator, energy_vs_temperature, zero_point_temperature
from dpqtb.units import HPLANCK, KB, THZ


def _harmonic(nu_thz, n_atoms, n_frames, dt, rng):
    """Velocities/positions of independent 3-D harmonic oscillators at frequency nu (THz)."""
    w = 2 * np.pi * nu_thz * THZ
    t = np.arange(n_frames)[:, None, None] * dt
    phase = rng.uniform(0, 2 * np.pi, (1, n_atoms, 3))
    amp = rng.normal(size=(1, n_atoms, 3))
    return -amp * w * np.sin(w * t + phase), amp * np.cos(w * t + phase)


@pytest.mark.parametrize("use_velocities", [True, False])
def test_harmonic_vdos_peaks_and_zero_point_temperature(use_velocities):
    rng = np.random.default_rng(0)
    dt, n = 1.0, 2000
    nu = {"La": 7.3, "H": 41.7}  # THz
    vl, xl = _harmonic(nu["La"], 4, n, dt, rng)
    vh, xh = _harmonic(nu["H"], 40, n, dt, rng)
    v, x = np.concatenate([vl, vh], axis=1), np.concatenate([xl, xh], axis=1)
    acc = VDOSAccumulator(["La"] * 4 + ["H"] * 40, dt, max_lag=400, segment_frames=1000)
    for k in range(n):
        acc.update(v[k] if use_velocities else None, x[k])
    res = acc.result()
    assert res.n_segments == 2
    df = res.freq_THz[1] - res.freq_THz[0]
    for s, f in nu.items():
        assert abs(res.peak_THz(s) - f) <= df  # peak on the grid point nearest to nu
        np.testing.assert_allclose(np.trapezoid(res.g_per_THz[s], res.freq_THz), 1.0, rtol=1e-12)
        # T_zero = h nu / (2 k_B): the Hann-broadened line is symmetric about nu; the residual
        # is the tail of the mirror line at −nu (< 0.5 % for nu·M·dt ≥ 3)
        assert res.zero_point_temperature_K(s) == pytest.approx(HPLANCK * f * THZ / (2 * KB), rel=5e-3)
    # total spectrum is mass-weighted: each line's area is its species' share of Σ m⟨v²⟩, computed here from
    # the arrays with ASE's masses (La 138.9, H 1.008): H 0.70 here; unweighted it would be 0.997, with m² 0.02
    g = res.g_per_THz["total"]
    assert g[np.argmin(np.abs(res.freq_THz - nu["H"]))] > 0.1 * g.max()
    if use_velocities:
        from ase.data import atomic_masses, atomic_numbers

        m = {s: atomic_masses[atomic_numbers[s]] for s in nu}
        ke = {"La": m["La"] * (vl**2).sum(axis=(1, 2)).mean(), "H": m["H"] * (vh**2).sum(axis=(1, 2)).mean()}
        share_h = ke["H"] / (ke["H"] + ke["La"])
        assert 0.6 < share_h < 0.8
        high = res.freq_THz > 0.5 * (nu["La"] + nu["H"])
        # the lines' Hann tails across the midpoint and the mirror tail at −ν hold < 0.5 % of the area
        assert np.trapezoid(g[high], res.freq_THz[high]) == pytest.approx(share_h, abs=5e-3)


def test_zero_point_temperature_of_a_box_spectrum():
    f = np.linspace(0, 100, 10001)
    g = np.where((f >= 20) & (f <= 40), 1.0, 0.0)
    assert zero_point_temperature(f, g) == pytest.approx(HPLANCK * 30 * THZ / (2 * KB), rel=1e-3)


def test_energy_vs_temperature_ramp_and_plateau():
    n = 10
    tt = np.linspace(0, 300, 301)
    e = 3 * n * KB * (tt + 100.0) - 5.0  # E/(3N k_B) = T + 100 K above e_ref = -5 eV
    th = {"target_temperature_K": tt, "temperature_K": tt, "total_eV": e}
    ramp = energy_vs_temperature(th, n, e_ref_eV=-5.0, n_bins=10)
    np.testing.assert_allclose(ramp["E_per_3NkB_K"], ramp["target_temperature_K"] + 100, rtol=1e-9)
    one = energy_vs_temperature(th, n, e_ref_eV=-5.0)
    assert one["E_per_3NkB_K"][0] == pytest.approx(one["target_temperature_K"][0] + 100)
    with pytest.raises(DpqtbError):
        energy_vs_temperature({"total_eV": e}, n)


def test_vdos_bad_input():
    with pytest.raises(DpqtbError):
        VDOSAccumulator(["H"], 0.0)
    acc = VDOSAccumulator(["H"], 1.0, max_lag=10)
    acc.update(np.zeros((1, 3)))
    with pytest.raises(DpqtbError):
        acc.result()


def test_energy_curve_from_run_directories(tmp_path):
    import json

    from dpqtb.analysis.vdos import energy_curve

    cols = "step,time_fs,temperature_K,target_temperature_K,kinetic_eV,potential_eV,total_eV,conserved_eV,pressure_GPa,volume_A3"
    n = 11
    for T in (300.0, 100.0):
        d = tmp_path / f"T{int(T)}"
        d.mkdir()
        (d / "run.json").write_text(json.dumps({"n_atoms": n}))
        e = 3 * n * KB * T  # classical harmonic: E = 3 N k_B T
        rows = [f"{k},{k},{T},{T},0,0,{e},0,0,0" for k in range(50)]
        (d / "thermo.csv").write_text(cols + "\n" + "\n".join(rows) + "\n")
    c = energy_curve([tmp_path / "T300", tmp_path / "T100"])
    np.testing.assert_allclose(c["target_temperature_K"], [100, 300])
    np.testing.assert_allclose(c["E_per_3NkB_K"], [100, 300], rtol=1e-12)


def _ring_polymer_energy(beta, omega, beads, h=1e-6):
    """E = -d ln Z_P / dβ of a P-bead harmonic ring polymer (m = ħ = 1) from the determinant of its
    quadratic form, by central differences: independent of the normal-mode sum being tested."""
    lap = 2 * np.eye(beads) - np.roll(np.eye(beads), 1, 0) - np.roll(np.eye(beads), -1, 0)
    if beads == 1:
        lap = np.zeros((1, 1))

    def ln_z(b):
        wp = beads / b                                  # ω_P = P/(βħ)
        a = (b / beads) * (wp ** 2 * lap + omega ** 2 * np.eye(beads))   # β_P × quadratic form
        # Z_P = (P/(2πβ))^{P/2} ∫ dx exp(-x·A·x/2) = (P/(2πβ))^{P/2} (2π)^{P/2} det(A)^{-1/2}
        return 0.5 * beads * np.log(beads / b) - 0.5 * np.linalg.slogdet(a)[1]

    return -(ln_z(beta + h) - ln_z(beta - h)) / (2 * h)


@pytest.mark.parametrize("x", [0.5, 4.0, 14.0])       # ħω/k_BT: classical-like, LaH10 H at 600 K and 200 K
def test_ring_polymer_kinetic_fraction_of_one_mode_is_the_discretised_path_integral(x):
    """A narrow spectrum at ν0: the share of the exact quantum kinetic energy recovered by P beads equals
    E_P/E_∞ of one harmonic mode, E_P from the ring polymer's partition function (determinant) and E_∞ =
    (ħω/2) coth(ħω/2k_BT); P = 1 is the classical k_BT/(2 K_∞)."""
    from dpqtb.analysis.vdos import ring_polymer_kinetic_energy, ring_polymer_kinetic_fraction
    nu0 = 40.0                                          # THz
    temp = HPLANCK * nu0 * THZ / (x * KB)
    f = np.linspace(nu0 - 0.05, nu0 + 0.05, 2001)
    g = np.exp(-0.5 * ((f - nu0) / 0.002) ** 2)
    e_inf = 0.5 * x / np.tanh(0.5 * x)                  # E_∞/k_BT at βħω = x
    for beads in (1, 2, 3, 8, 32):
        expected = _ring_polymer_energy(1.0, x, beads) / e_inf     # β = 1, ω = x (m = ħ = 1)
        got = ring_polymer_kinetic_fraction(f, g, temp, beads)
        assert abs(got - expected) < 2e-5, (x, beads, got, expected)
    assert abs(ring_polymer_kinetic_fraction(f, g, temp, 1) - 1.0 / e_inf) < 2e-5
    kt = KB * temp                                      # the absolute kinetic energy per degree of freedom
    for beads in (1, 8, 32):                            # K = E/2 (virial theorem), E from the determinant
        k = ring_polymer_kinetic_energy(f, g, temp, beads)
        assert abs(k / kt - 0.5 * _ring_polymer_energy(1.0, x, beads)) < 2e-5 * e_inf, (x, beads, k)
    assert abs(ring_polymer_kinetic_energy(f, g, temp, None) / kt - 0.5 * e_inf) < 2e-5 * e_inf
    assert ring_polymer_kinetic_fraction(f, g, temp, 4096) > 1 - 1e-4
    with pytest.raises(DpqtbError, match="beads"):
        ring_polymer_kinetic_fraction(f, g, temp, 0)
    with pytest.raises(DpqtbError, match="temperature"):
        ring_polymer_kinetic_fraction(f, g, -1.0, 4)


def test_energy_average_starts_where_the_qtb_kinetic_correction_does():
    """Before two noise segments have completed, a QTB run's kinetic correction factor is exactly 1
    (kinetic_eV == kinetic_raw_eV); the corrected mean starts at the first corrected row, not at the 20 %
    discard, and the uncorrected energy (what fix qtb reports) is given beside it, over the same rows."""
    from dpqtb.analysis.vdos import first_corrected_row

    n, rows = 10, 100
    k_raw = np.full(rows, 1.0)
    k_cor = np.where(np.arange(rows) < 40, 1.0, 0.9)  # corrected from row 40 (past the 20 % discard)
    pot = np.full(rows, -5.0)
    th = {"target_temperature_K": np.full(rows, 100.0), "temperature_K": np.full(rows, 100.0),
          "total_eV": pot + k_cor, "kinetic_eV": k_cor, "kinetic_raw_eV": k_raw}
    assert first_corrected_row(th) == 40
    out = energy_vs_temperature(th, n, e_ref_eV=-5.0)
    assert out["E_per_3NkB_K"][0] == pytest.approx(0.9 / (3 * n * KB), rel=1e-12)
    assert out["E_per_3NkB_raw_K"][0] == pytest.approx(1.0 / (3 * n * KB), rel=1e-12)
    ramp = energy_vs_temperature({**th, "target_temperature_K": np.linspace(0, 99, rows)}, n, -5.0, n_bins=5)
    np.testing.assert_allclose(ramp["E_per_3NkB_K"], 0.9 / (3 * n * KB), rtol=1e-12)  # bins 0-1 hold no row
    assert len(ramp["E_per_3NkB_K"]) == 3
    # no correction in the run (or never active): every row, and no raw column
    plain = {k: v for k, v in th.items() if k != "kinetic_raw_eV"}
    assert first_corrected_row(plain) == 0 and "E_per_3NkB_raw_K" not in energy_vs_temperature(plain, n, -5.0)
    assert first_corrected_row({**th, "kinetic_eV": k_raw, "total_eV": pot + k_raw}) == 0
