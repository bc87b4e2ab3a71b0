"""Observers of a Simulation (dpqtb.md.observers): the protocol, and the on-the-fly VACF against exact answers.

* Free particles of two masses under the default Langevin bath (net random impulse removed, mass-weighted):
  the BAOAB O step is p ← c p + noise with c = exp(−γ dt), so ⟨v_i(t)·v_i(t+τ)⟩ = (3 k_B T/m_i)(1 − m_i/M) e^{−γτ}
  exactly (the projection takes the centre-of-mass share m_i/M of each atom's three degrees of freedom).
* The windowed accumulation equals the all-origins estimator computed directly with numpy from the
  velocities written to the trajectory at the same steps.
* A user's observer is called at every step and its state survives a resume.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase import Atoms

from dpqtb.md.integrators import Langevin, TemperatureSchedule
from dpqtb.md.observers import Observer, VACFObserver
from dpqtb.md.run import Simulation
from dpqtb.md.state import MDState, maxwell_boltzmann_momenta
from dpqtb.potential.torchfn import TorchFunctionPotential
from dpqtb.units import KB, MVV2E


def _free_gas(n_heavy=32, n_light=32, seed=0):
    rng = np.random.default_rng(seed)
    n = n_heavy + n_light
    atoms = Atoms(["La"] * n_heavy + ["H"] * n_light, positions=rng.uniform(0, 20, (n, 3)), cell=[20, 20, 20],
                  pbc=True)
    atoms.set_masses([138.905] * n_heavy + [1.008] * n_light)
    state = MDState.from_atoms(atoms, type_map=("La", "H"))
    pot = TorchFunctionPotential(lambda x, h, s: (x * 0.0).sum())  # no forces; translation-invariant by test
    return state, pot


def test_vacf_of_free_particles_is_exact_exponential_with_mixed_masses(tmp_path):
    T, damp, dt, every = 300.0, 40.0, 1.0, 4
    state, pot = _free_gas()
    gen = torch.Generator().manual_seed(5)
    state.momenta = maxwell_boltzmann_momenta(state.masses, T, gen)
    integ = Langevin(pot, dt, TemperatureSchedule(T), damp, seed=9)  # zero_net_force: the default (resolved)
    vacf = VACFObserver(every, 120.0, dt)
    sim = Simulation(state, integ, None, thermo_every=100, progress=False, observers=[vacf])
    sim.run(12000)
    assert integ.bath.zero_momentum  # the default removed the net impulse: the (1 − m/M) factor applies
    table = vacf.table(sim)
    lag = table["lag_fs"]
    m_total = float(state.masses.sum())
    for name, m in (("La", 138.905), ("H", 1.008)):
        c0 = 3 * KB * T / m * (1 - m / m_total) / MVV2E  # Å²/fs²
        exact = c0 * np.exp(-lag / damp)
        got = table[f"vacf_{name}_A2_per_fs2"]
        # C(0) = mean v² over 32 atoms × 3 dof and ~12000/(damp/2) = 600 independent samples of v²:
        # relative s.e. ≈ sqrt(2/(96·600)) = 0.6 %; C(τ) has an absolute s.e. ≲ 0.4 % of C(0); 5 σ
        np.testing.assert_allclose(got, exact, rtol=0.03, atol=0.02 * c0)
    assert table["n_origins"][0] == 12000 // every + 1


def test_vacf_equals_direct_estimate_from_trajectory_velocities(tmp_path):
    from ase.io import read

    T, dt, every = 200.0, 1.0, 2
    state, pot = _free_gas(4, 4, seed=1)
    pot = TorchFunctionPotential(lambda x, h, s: 0.05 * ((x - 10.0) ** 2).sum())  # an Einstein-like trap
    gen = torch.Generator().manual_seed(1)
    state.momenta = maxwell_boltzmann_momenta(state.masses, T, gen)
    integ = Langevin(pot, dt, TemperatureSchedule(T), 30.0, seed=2)
    vacf = VACFObserver(every, 20.0, dt)
    sim = Simulation(state, integ, tmp_path / "run", thermo_every=10, trajectory_every=every,
                     trajectory_velocities=True, progress=False, observers=[vacf])
    sim.run(400)
    frames = read(tmp_path / "run" / "trajectory.extxyz", ":")
    v = np.array([f.arrays["velocities_A_per_fs"] for f in frames])  # (n_samples, N, 3)
    species = np.array([f == "H" for f in frames[0].get_chemical_symbols()])
    table = np.genfromtxt(tmp_path / "run" / "vacf.csv", delimiter=",", names=True)
    n_lags = int(20.0 // (every * dt)) + 1
    for lag in range(n_lags):
        prod = (v[: len(v) - lag] * v[lag:]).sum(-1)  # (origins, N)
        for name, mask in (("La", ~species), ("H", species)):
            direct = prod[:, mask].mean()
            assert table[f"vacf_{name}_A2_per_fs2"][lag] == pytest.approx(direct, rel=1e-6)  # the file's 8 digits
        assert table["n_origins"][lag] == len(v) - lag


class _Counter(Observer):
    name = "counter"

    def __init__(self):
        self.calls = 0
        self.steps = []

    def observe(self, sim):
        self.calls += 1
        if sim.state.step % 10 == 0:
            self.steps.append(sim.state.step)

    def state_dict(self):
        return {"calls": self.calls, "steps": list(self.steps)}

    def load_state_dict(self, d):
        self.calls, self.steps = int(d["calls"]), list(d["steps"])


def test_user_observer_is_called_every_step_and_resumes(tmp_path):
    def build(counter):
        state, pot = _free_gas(2, 2, seed=3)
        state.momenta = maxwell_boltzmann_momenta(state.masses, 100.0, torch.Generator().manual_seed(0))
        integ = Langevin(pot, 1.0, TemperatureSchedule(100.0), 30.0, seed=2)
        return Simulation(state, integ, tmp_path / "run", thermo_every=5, checkpoint_every=20, progress=False,
                          observers=[counter])

    first = _Counter()
    build(first).run(40)
    assert first.calls == 40 and first.steps == [10, 20, 30, 40]  # every step after the start (step 0: start())
    again = _Counter()
    build(again).run(70, resume=True)
    assert again.calls == 70 and again.steps == [10, 20, 30, 40, 50, 60, 70]
    with pytest.raises(Exception, match="distinct names"):
        build_two = Simulation  # two observers with one name are refused
        state, pot = _free_gas(1, 1)
        build_two(state, Langevin(pot, 1.0, TemperatureSchedule(10.0), 10.0, 1), None,
                  observers=[_Counter(), _Counter()])


def test_vacf_bad_options():
    with pytest.raises(Exception, match="vacf_every"):
        VACFObserver(0, 10.0, 1.0)
    with pytest.raises(Exception, match="vacf_max_lag_fs"):
        VACFObserver(1, -1.0, 1.0)
    assert math.isclose(VACFObserver(2, 10.0, 0.5).n_lags, 11)


def test_qtb_raw_species_temperatures_and_a_resume_from_an_older_header(tmp_path, monkeypatch):
    """QTB with the kinetic correction also writes ``temperature_raw_<X>_K`` (what LAMMPS fix qtb reports): the
    species' raw kinetic energies add up to ``kinetic_raw_eV``, and raw / corrected is that species' correction
    factor. A run begun by an older dpqtb without those columns resumes in its own file's columns."""
    from test_md_species_statistics import _system

    from dpqtb.md.baths import QTBBath
    from dpqtb.md.integrators import QTB
    from dpqtb.rundir import read_thermo

    def make():
        state, pot = _system()  # La32H320 in a spring network (species groups La, H)
        return state, QTB(pot, 0.5, TemperatureSchedule(300.0), 100.0, seed=2, n_f=10, fd_skip_segments=0)

    state, integ = make()
    Simulation(state, integ, tmp_path / "fresh", thermo_every=10, progress=False).run(150)
    th = read_thermo(tmp_path / "fresh")
    dof = integ.bath.species_n_dof(state)
    ke_species = sum(0.5 * dof[i] * KB * th[f"temperature_raw_{x}_K"] for i, x in enumerate(state.type_map))
    np.testing.assert_allclose(ke_species, th["kinetic_raw_eV"], rtol=1e-12)
    for g, name in enumerate(integ.bath.group_names):  # the default groups are the species
        assert integ.bath.kin_corr[g] != 1.0  # a Δ_FD segment (2 n_f α = 100 steps) has been averaged
        ratio = th[f"temperature_raw_{name}_K"][-1] / th[f"temperature_{name}_K"][-1]
        assert ratio == pytest.approx(integ.bath.kin_corr[g], rel=1e-12)

    newer = QTBBath.extra_thermo_columns
    monkeypatch.setattr(QTBBath, "extra_thermo_columns", lambda self, tm: [
        c for c in newer(self, tm) if c == "temperature_raw_K" or not c.startswith("temperature_raw_")])
    state, integ = make()
    Simulation(state, integ, tmp_path / "old", thermo_every=10, checkpoint_every=50, progress=False).run(100)
    monkeypatch.undo()
    state, integ = make()
    Simulation(state, integ, tmp_path / "old", thermo_every=10, checkpoint_every=50, progress=False).run(
        150, resume=True)
    lines = (tmp_path / "old" / "thermo.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert "temperature_raw_H_K" not in header and "temperature_raw_K" in header
    assert all(len(line.split(",")) == len(header) for line in lines[1:]) and lines[-1].startswith("150,")
    # the resumed lines are the fresh run's values in the old file's columns
    fresh = (tmp_path / "fresh" / "thermo.csv").read_text().splitlines()
    cols = fresh[0].split(",")
    pick = [cols.index(c) for c in header]
    assert lines[-1].split(",") == [fresh[-1].split(",")[k] for k in pick]
