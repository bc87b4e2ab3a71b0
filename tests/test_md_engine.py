"""Engine validation: NVE energy conservation, Langevin equipartition, ramps, exact restart."""

import math

import numpy as np
import pytest
import torch
from ase.build import bulk

from dpqtb.md.integrators import NVE, QTB, Langevin, TemperatureSchedule
from dpqtb.md.run import Simulation
from dpqtb.md.state import MDState, maxwell_boltzmann_momenta
from dpqtb.potential import Morse
from dpqtb.units import KB
from dpqtb.workflows.oscillators import measure_oscillators, oscillator_crystal, sample_harmonic_equilibrium


def test_nve_harmonic_energy_conservation():
    """Velocity Verlet on oscillators of 10 THz with ωdt = 0.126: the shadow-energy fluctuation of each
    oscillator is bounded by (ωdt)²/8 of its energy; no secular drift."""
    state, pot, _ = oscillator_crystal([10.0], 200)
    sample_harmonic_equilibrium(state, pot, 300.0, torch.Generator().manual_seed(0), quantum=False)
    integ = NVE(pot, 2.0)
    integ.setup(state)
    e = []
    for _ in range(2000):
        integ.step(state)
        e.append(float(state.kinetic_energy() + state.energy))
    e = np.array(e)
    e0 = e[0]
    w_dt = 2 * math.pi * 10e-3 * 2.0
    assert np.abs(e - e0).max() / e0 < w_dt ** 2 / 8
    slope = np.polyfit(np.arange(e.size), e, 1)[0] * e.size / e0
    assert abs(slope) < 1e-4  # relative drift over the run


def test_nve_morse_energy_conservation():
    """fcc Morse crystal (Cu parameters) at ~600 K, 1 fs steps for 4 ps: drift of the total energy below
    1e-5 of the kinetic energy scale per ps; fluctuations below 1e-3 of it."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)
    state = MDState.from_atoms(atoms)
    state.momenta = maxwell_boltzmann_momenta(state.masses, 600.0, torch.Generator().manual_seed(1))
    integ = NVE(Morse(0.3429, 1.3588, 2.866, 5.0, skin_A=0.5), 1.0)
    integ.setup(state)
    ke0 = float(state.kinetic_energy())
    e = []
    for _ in range(4000):
        integ.step(state)
        e.append(integ.conserved_energy(state))
    e = np.array(e)
    assert np.abs(e - e[0]).max() < 1e-3 * ke0
    drift_per_ps = abs(np.polyfit(np.arange(e.size) * 1e-3, e, 1)[0])
    assert drift_per_ps < 1e-5 * ke0 * 4
    assert integ.potential.nlist.n_builds > 1  # the list was rebuilt during the run and stayed exact


def test_langevin_equipartition_harmonic_crystal():
    """Classical Langevin (BAOAB): ⟨E_kin⟩ = kT/2 per degree of freedom and ⟨E_pot⟩ = kT/2 exactly for a
    harmonic system (BAOAB's configurational sampling is exact; its kinetic bias is O((ωdt)²/4) ≈ 0.1% here).
    Tolerance: 4 standard errors of independent oscillators + the stated bias."""
    T = 300.0
    state, pot, freqs = oscillator_crystal([5.0, 15.0], 1500)
    sample_harmonic_equilibrium(state, pot, T, torch.Generator().manual_seed(2), quantum=False)
    integ = Langevin(pot, 1.0, TemperatureSchedule(T), damp_fs=100.0, seed=3, zero_net_force=False)
    res = measure_oscillators(integ, state, pot, freqs, n_steps=3000, n_equil=200)
    kt2 = 0.5 * KB * T
    for i, f in enumerate(res["frequency_THz"]):
        bias = (2 * math.pi * f * 1e-3) ** 2 / 4
        assert abs(res["potential_eV"][i] / kt2 - 1) < 4 * res["potential_err_eV"][i] / kt2
        assert abs(res["kinetic_eV"][i] / kt2 - 1) < 4 * res["kinetic_err_eV"][i] / kt2 + bias


def test_langevin_temperature_ramp_follows_target():
    state, pot, freqs = oscillator_crystal([10.0], 2000)
    integ = Langevin(pot, 1.0, TemperatureSchedule(50.0, 450.0, 4000), damp_fs=50.0, seed=4, zero_net_force=False)
    rows = []
    sim = Simulation(state, integ, None, thermo_every=100, progress=False, thermo_callback=rows.append)
    sim.run(4000)
    rows = np.array(rows)
    # a 50 fs bath tracks a 0.1 K/fs ramp with a lag of ~damp: T(t) ≈ T_target(t - damp) (thermostat lag)
    late = rows[rows[:, 0] >= 1000]
    lagged = 50.0 + 400.0 * (late[:, 0] - 50.0) / 4000
    dev = late[:, 2] / lagged - 1
    assert np.abs(dev).max() < 0.08  # 6000 dof: 1σ of T is 1.8 %
    # the mean over the 31 rows (100 fs apart: ~independent) is good to 1.8 %/√31 = 0.32 %; a lag of 2·damp would
    # move it by ~2 % (the target then 5 K lower, at 150-450 K)
    assert abs(dev.mean()) < 4 * 0.018 / math.sqrt(len(dev))
    assert late[-1, 3] == pytest.approx(450.0)


class _CrashingPotential:
    """Delegates to a potential and raises after a number of force calls (a killed job)."""

    def __init__(self, inner, n_calls):
        self.inner, self.n_calls, self.n = inner, n_calls, 0
        self.type_map = inner.type_map

    def bind(self, type_map):
        self.inner.bind(type_map)

    def __call__(self, *args):
        self.n += 1
        if self.n > self.n_calls:
            raise KeyboardInterrupt("simulated crash")
        return self.inner(*args)


def _make(kind, potential, n_f=8):
    sched = TemperatureSchedule(200.0, 400.0, 120)
    if kind in ("pimd", "trpmd"):
        from dpqtb.md.pimd import PIMD

        return PIMD(potential, 1.0, TemperatureSchedule(300.0), 4, 100.0, seed=7, trpmd=(kind == "trpmd"))
    if kind == "langevin":
        return Langevin(potential, 1.0, sched, 200.0, seed=7)
    return QTB(potential, 1.0, sched, 200.0, seed=7, f_max_THz=100.0, n_f=n_f, adaptive=(kind == "adqtb"),
               tau_ad_fs=50.0, fd_skip_segments=0)


@pytest.mark.parametrize("kind", ["langevin", "qtb", "adqtb", "pimd", "trpmd"])
def test_restart_is_bitwise_exact(tmp_path, kind):
    """Stop a run mid-way (after the checkpoint at step 40), resume it, and compare every output byte
    with an uninterrupted run. adQTB segments (2 n_f periods of α = 5 steps = 80 steps) complete inside
    the run, so the adaptation state crosses the checkpoint too."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)

    def fresh_state():
        s = MDState.from_atoms(atoms)
        s.momenta = maxwell_boltzmann_momenta(s.masses, 300.0, torch.Generator().manual_seed(5))
        return s

    def morse():
        return Morse(0.3429, 1.3588, 2.866, 5.0)

    ref = Simulation(fresh_state(), _make(kind, morse()), tmp_path / "ref", thermo_every=5, trajectory_every=10,
                     trajectory_velocities=True, checkpoint_every=40, progress=False)
    ref.run(120)

    out = tmp_path / "crash"
    crashing = _CrashingPotential(morse(), 1 + 57)  # setup call + 57 steps, then "killed"
    sim = Simulation(fresh_state(), _make(kind, crashing), out, thermo_every=5, trajectory_every=10,
                     trajectory_velocities=True, checkpoint_every=40, progress=False)
    with pytest.raises(KeyboardInterrupt):
        sim.run(120)
    assert sim.state.step == 57
    resumed = Simulation(fresh_state(), _make(kind, morse()), out, thermo_every=5, trajectory_every=10,
                         trajectory_velocities=True, checkpoint_every=40, progress=False)
    resumed.run(resume=True)
    assert resumed.state.step == 120
    for name in ("thermo.csv", "trajectory.extxyz"):
        assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
    assert torch.equal(resumed.state.positions, ref.state.positions)
    assert torch.equal(resumed.state.momenta, ref.state.momenta)
    if kind == "adqtb":
        assert resumed.integrator.bath.fd.n_segments >= 1
        assert np.array_equal(resumed.integrator.bath.noise.gamma_ratio, ref.integrator.bath.noise.gamma_ratio)
        assert not np.all(ref.integrator.bath.noise.gamma_ratio == 1.0)


def test_existing_outputs_are_not_overwritten(tmp_path):
    from dpqtb import DpqtbError

    state, pot, _ = oscillator_crystal([10.0], 8)
    sim = Simulation(state, NVE(pot, 1.0), tmp_path, progress=False)
    sim.run(10)
    before = (tmp_path / "thermo.csv").read_bytes()
    state2, pot2, _ = oscillator_crystal([10.0], 8)
    with pytest.raises(DpqtbError, match="--resume"):
        Simulation(state2, NVE(pot2, 1.0), tmp_path, progress=False).run(10)
    assert (tmp_path / "thermo.csv").read_bytes() == before


def test_trajectory_is_ase_readable_with_unwrapped_positions(tmp_path):
    from ase.io import read

    state, pot, _ = oscillator_crystal([10.0], 8)
    state.positions += 100.0  # far outside the cell: must be written as is
    pot = type(pot)(state.positions.clone(), state.cell.clone(), k_per_atom=pot.k_per_atom)
    sim = Simulation(state, Langevin(pot, 1.0, TemperatureSchedule(100.0), 100.0, 1), tmp_path, trajectory_every=5,
                     trajectory_velocities=True, progress=False)
    sim.run(20)
    frames = read(tmp_path / "trajectory.extxyz", index=":")
    assert len(frames) == 5
    assert np.allclose(frames[-1].positions, sim.state.positions.numpy())
    assert np.allclose(frames[-1].arrays["velocities_A_per_fs"], sim.state.velocities.numpy())
    assert frames[-1].info["step"] == 20


def test_qtb_temperature_ramp_follows_quantum_curve():
    """QTB ramp 50 K → 1000 K over 8 ps on 6,000 H oscillators at 20 THz (ħω/kT from 19 to 1): the filter is
    rebuilt at every noise period, so the potential energy per dof tracks (ħω/4)coth(ħω/2kT(t − lag)), with
    the bath lag = 1/γ = 100 fs. Checked in 1-ps windows (linear in T inside a window to < 0.5 %); 1σ ≈ 1 % per
    window: each within 4σ, and their mean within 4σ/√8 (a lag twice as long would shift it by ~2 %). The reference is
    written here with scipy's constants, not taken from the engine's θ, which shapes the noise, and includes the
    finite-γ broadening of any QTB (the continuous-time response ½∫θ(ω)(2γ/π) ω0²/((ω0² − ω²)² + γ²ω²) dω up to
    f_max: −2.6 % at 100 K, −0.2 % at 930 K), so that the mean residual is the bath's error, not that bias."""
    import scipy.constants as C
    from scipy.integrate import quad

    def broadened(temp):  # ⟨½kx²⟩ per dof (eV) under noise 2mγθ(ω) up to f_max: the harmonic QTB closed form
        def theta(w):
            return C.hbar * w / C.e * (0.5 + 1 / math.expm1(C.hbar * w / (C.k * temp)))

        w0, g, wc = 2 * math.pi * 20e12, 1e15 / damp, 2 * math.pi * 60e12  # rad/s
        pts = [1e3, w0 - 50 * g, w0, w0 + 50 * g, wc]
        return 0.5 * sum(quad(lambda w: theta(w) * (2 * g / math.pi) * w0**2 / ((w0**2 - w**2) ** 2 + g**2 * w**2),
                              a, b, limit=500)[0] for a, b in zip(pts[:-1], pts[1:]))

    n_steps, dt, damp = 8000, 1.0, 100.0
    state, pot, freqs = oscillator_crystal([20.0], 6000)
    sample_harmonic_equilibrium(state, pot, 50.0, torch.Generator().manual_seed(9), quantum=True)
    integ = QTB(pot, dt, TemperatureSchedule(50.0, 1000.0, n_steps), damp, seed=9, f_max_THz=60.0, n_f=50,
                zero_net_force=False, fd_diagnostic=False)
    integ.setup(state)
    window, acc, residuals = 1000, 0.0, []
    for i in range(1, n_steps + 1):
        integ.step(state)
        acc += float(state.energy) / (3 * state.n_atoms)
        if i % window == 0:
            t_mid = (i - window / 2 - damp / dt)
            temp = 50.0 + 950.0 * t_mid / n_steps
            residuals.append(acc / window / broadened(temp) - 1)
            assert abs(residuals[-1]) < 0.04, (i, temp, residuals[-1])
            acc = 0.0
    assert len(residuals) == 8 and abs(np.mean(residuals)) < 0.04 / math.sqrt(8), residuals


def test_resume_under_other_threads_says_it_is_not_bitwise(tmp_path, capsys):
    """The checkpoint and run.json record the numerical environment (torch threads, version, device, CPU model
    and dispatch); a resume under another thread count warns on one line that the continuation is not bit for bit
    the uninterrupted run, a resume under the same one says nothing, and a checkpoint without the record (before
    this) resumes without a warning."""
    import json

    from dpqtb.md import checkpoint as checkpoint_io
    from dpqtb.md.run import environment_change, numerics_environment

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)

    def sim(n_steps=None):
        s = MDState.from_atoms(atoms)
        s.momenta = maxwell_boltzmann_momenta(s.masses, 300.0, torch.Generator().manual_seed(5))
        return Simulation(s, Langevin(Morse(0.3429, 1.3588, 2.866, 5.0), 1.0, TemperatureSchedule(300.0), 100.0, seed=7),
                          tmp_path / "run", thermo_every=5, checkpoint_every=10, progress=False)

    threads = torch.get_num_threads()
    sim().run(10)
    env = json.loads((tmp_path / "run" / "run.json").read_text())["environment"]
    assert env == numerics_environment(torch.device("cpu")) and env["torch_threads"] == threads
    assert checkpoint_io.load(tmp_path / "run" / "checkpoint.pt")["environment"] == env
    capsys.readouterr()
    sim().run(20, resume=True)
    assert "numerical environment" not in capsys.readouterr().err
    other = 2 if threads == 1 else 1
    torch.set_num_threads(other)
    try:
        sim().run(30, resume=True)
    finally:
        torch.set_num_threads(threads)
    err = [ln for ln in capsys.readouterr().err.splitlines() if "numerical environment" in ln]
    assert len(err) == 1 and f"torch_threads {threads} -> {other}" in err[0] and "not bit for bit" in err[0]
    assert environment_change(None, env) is None and environment_change(env, dict(env)) is None
