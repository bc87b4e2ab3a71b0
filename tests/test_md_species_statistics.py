"""Per-species statistics of the baths in LaH10's mixed-mass cells, with the options users run.

Model: the Fm-3m LaH10 cell at 200 GPa (2×2×2 conventional cells: 32 La + 320 H) with linear springs on the
H–H (< 1.25 Å) and La–H (< 2.2 Å) bond vectors (:class:`dpqtb.potential.HarmonicNetwork`). It is
translation-invariant like a real potential (total momentum conserved), and exactly harmonic, so the
exact answers come from diagonalising its dynamical matrix with numpy here, independently of the engine:
modes at 9 THz (La) and 35–84 THz (H).

Exact per-species values (the 3 zero modes excluded: the default ``zero_net_force`` keeps the total
momentum at zero): with mass-weighted eigenvectors v_k and w_kX = Σ_{i∈X} v_ik²,
  classical:  T_X = T over 3N_X − 3 Σ_{i∈X} m_i/M degrees of freedom,
  quantum:    ⟨E_kin,X⟩ = ⟨E_pot,X⟩ = (3/2) Σ_k w_kX θ(ω_k),   θ = (ħω/2) coth(ħω/2kT),
with E_pot,X = −½ Σ_{i∈X} u_i·F_i (the harmonic energy split by atom).

Tolerances: 4 standard errors from 20 blocks, plus for QTB a 1.5 % systematic budget: the 200-tap
noise filter puts the potential energy of the H modes 0.5 % low (closed form of the filter), and the
time step (ω dt ≤ 0.13) moves the H kinetic energy by < 1 % (halving dt moved it by 0.9 % at ω dt = 0.26).
The subtraction of the *unweighted* mean kick (the former default, as LAMMPS fix qtb) heats H by
+3.5 % in this cell (+26 % in the 44-atom one): > 7 standard errors, so the first test catches it.
"""

import numpy as np
import pytest
import torch

from dpqtb.md import baths
from dpqtb.md.integrators import QTB, Langevin, TemperatureSchedule
from dpqtb.md.run import Simulation
from dpqtb.md.state import MDState, maxwell_boltzmann_momenta
from dpqtb.potential import HarmonicNetwork
from dpqtb.units import HBAR, KB, MVV2E

T = 300.0


def _system():
    from dpqtb.structures.eos import fm3m_at_pressure

    atoms = fm3m_at_pressure(200.0, cell="conventional").repeat(2)
    state = MDState.from_atoms(atoms)
    pot = HarmonicNetwork(state.positions, state.cell, state.species, state.type_map,
                          {("H", "H"): 3.0, ("La", "H"): 1.5}, {("H", "H"): 1.25, ("La", "H"): 2.2})
    state.momenta = maxwell_boltzmann_momenta(state.masses, T, torch.Generator().manual_seed(1))
    return state, pot


def _exact_quantum(state, pot):
    """(3/2) Σ_k w_kX θ(ω_k) per species, from numpy's eigendecomposition of the dynamical matrix."""
    m = state.masses.numpy()
    dyn = pot.laplacian() / np.sqrt(np.outer(m, m)) / MVV2E  # (rad/fs)²
    w2, v = np.linalg.eigh(dyn)
    keep = w2 > 1e-10 * w2.max()
    assert keep.sum() == state.n_atoms - 1  # one translation (×3 directions)
    w, v = np.sqrt(w2[keep]), v[:, keep]
    x = HBAR * w / (KB * T)
    theta = 0.5 * HBAR * w / np.tanh(0.5 * x)
    return {name: 1.5 * float((theta * (v[(state.species == s).numpy()] ** 2).sum(0)).sum())
            for s, name in enumerate(state.type_map)}


def _blocks(a, nb=20):
    a = np.asarray(a)
    b = a[: len(a) // nb * nb].reshape(nb, -1, *a.shape[1:]).mean(1)
    return a.mean(0), b.std(0, ddof=1) / np.sqrt(nb)


def _classical_species_temperatures(tmp_path):
    state, pot = _system()
    integ = Langevin(pot, 0.25, TemperatureSchedule(T), damp_fs=50.0, seed=3)  # zero_net_force: default
    sim = Simulation(state, integ, tmp_path, thermo_every=5, trajectory_every=0, checkpoint_every=0, progress=False)
    sim.run(20_000)
    assert integ.bath.zero_net_force is None and integ.zero_momentum  # the default resolved: the network conserves momentum
    data = np.genfromtxt(tmp_path / "thermo.csv", delimiter=",", names=True)
    data = data[len(data) // 5:]
    return {x: _blocks(data[f"temperature_{x}_K"]) for x in ("La", "H")}, data


def test_classical_langevin_equipartition_per_species_default_options(tmp_path):
    temps, data = _classical_species_temperatures(tmp_path)
    for name, (mean, err) in temps.items():
        assert err / T < 0.02
        assert abs(mean - T) < 4 * err + 0.003 * T, (name, mean, err)  # + BAOAB kinetic error (ω dt ≤ 0.13)
    # total momentum stays zero and the overall temperature agrees too (3N − 3 degrees of freedom)
    mean, err = _blocks(data["temperature_K"])
    assert abs(mean - T) < 4 * err + 0.003 * T


def test_unweighted_mean_kick_would_be_caught(tmp_path, monkeypatch):
    """The former default (subtract the plain mean kick) must fail the test above."""
    monkeypatch.setattr(baths, "remove_net_impulse", lambda kick, masses: kick - kick.mean(0))
    temps, _ = _classical_species_temperatures(tmp_path)
    mean, err = temps["H"]
    assert mean - T > 5 * err + 0.003 * T


def _sample_and_check(integ, state, pot, ref, n_steps, n_equil):
    """Run, then assert the corrected kinetic and the potential energy per species against the exact quantum
    values (4 block errors + 1.5 %); returns the means (kinetic, potential, raw kinetic per species) and the exact."""
    rows = []
    for n in range(n_steps):
        integ.step(state)
        if n >= n_equil and n % 5 == 0:
            kin = integ.kinetic_energy_by_species(state)
            e_atom = -0.5 * ((state.positions - ref) * state.forces).sum(1)
            pot_sp = [float(e_atom[state.species == s].sum()) for s in range(2)]
            raw = [float((0.5 * MVV2E * state.momenta[state.species == s].pow(2).sum(1)
                          / state.masses[state.species == s]).sum()) for s in range(2)]
            rows.append([*kin, *pot_sp, *raw])
    mean, err = _blocks(rows)
    exact = _exact_quantum(state, pot)
    for s, name in enumerate(state.type_map):
        e = exact[name]
        kin, kin_err, epot, epot_err, raw = mean[s] / e, err[s] / e, mean[2 + s] / e, err[2 + s] / e, mean[4 + s] / e
        assert kin_err < 0.025 and epot_err < 0.025
        assert abs(kin - 1) < 4 * kin_err + 0.015, (name, kin, kin_err, raw)
        assert abs(epot - 1) < 4 * epot_err + 0.015, (name, epot, epot_err)
    return mean, exact


def test_qtb_per_species_energies_match_exact_quantum_default_options():
    state, pot = _system()
    ref = state.positions.clone()
    integ = QTB(pot, 0.25, TemperatureSchedule(T), damp_fs=200.0, seed=3)  # defaults: zero_net_force, correction
    integ.setup(state)
    assert integ.zero_momentum and integ.bath.kinetic_correction
    mean, exact = _sample_and_check(integ, state, pot, ref, 40_000, 8_000)
    assert abs(float(state.momenta.sum(0).abs().max())) < 1e-9  # total momentum conserved
    # the La modes (9 THz, γ = 5 ps⁻¹) carry the broadening bias the correction removes
    assert mean[4] / exact["La"] - 1 > 0.04 and integ.bath.kin_corr[0] > 1.04


def test_adqtb_per_species_energies_match_exact_quantum_default_options():
    """adQTB as a user runs it (``kind = "adqtb"`` and nothing else: damp 100 fs, τ_ad 5 ps, n_f 100, groups by
    species, zero_net_force and the kinetic correction on) on the La/H harmonic network: a harmonic system does
    not leak, so the adaptation must leave the exact quantum energies per species in place (the review finding:
    adQTB was tested only with equal masses, τ_ad = 1 ps and zero_net_force off). 6 ps after 4 ps (0.8 τ_ad) of
    adaptation; tolerances as for QTB above (4 block errors + 1.5 %)."""
    from dpqtb.md.build import build_integrator
    from dpqtb.md.config import validate

    state, pot = _system()
    ref = state.positions.clone()
    cfg = validate({"system": {"structure": "builtin:fcc", "element": "Cu", "lattice_A": 3.61},
                    "potential": {"kind": "einstein", "frequency_THz": {"Cu": 5.0}},
                    "md": {"timestep_fs": 0.25, "steps": 0, "seed": 3},
                    "thermostat": {"kind": "adqtb", "temperature_K": T}})
    assert cfg.thermostat.damp_fs == 100.0 and cfg.thermostat.tau_ad_fs == 5000.0
    integ = build_integrator(cfg, pot)
    integ.setup(state)
    assert integ.zero_momentum and integ.bath.kinetic_correction
    _sample_and_check(integ, state, pot, ref, 48_000, 16_000)
