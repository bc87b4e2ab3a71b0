"""adQTB: harmonic systems are left alone, adaptation groups finer than the element, and the run-time
diagnosis when the friction is too small to drain leaking zero-point energy.

* Harmonic crystal (two frequencies, one species): Δ_FD = 0 in theory, so adaptation must leave
  γ_r(ω) ≈ γ where the spectrum has weight, and the potential energies exact ((ħω/4)coth(ħω/2kT), written
  out here): within 4 standard errors + 2 % (the filter's −0.5 % and the γ_r noise).
* Spectator (dpqtb.workflows.fermi, Fermi resonance ω1 = 2ω2, κ = 0.02, 300 pairs + 300 uncoupled He atoms
  at ω2, T = 100 K, γ = 10 ps⁻¹; references: exact diagonalisation of the 2D pair, θ(ω2)/k2 for the
  spectators). Per-species adaptation sees the leaking B atoms and the spectators as one 'He' spectrum and
  cools the spectators instead of the leaking mode; with the B atoms in their own group
  (``adapt_groups = [[B indices]]``) both are right within 5 %. Statistical error of ⟨y²⟩ ≈ 0.5 %.
* Diagnosis: same pairs at γ = 1 ps⁻¹: γ_r of the soft mode pins at its floor and ``QTB.diagnose``
  names the species, the band and a larger γ.
"""

import numpy as np
import pytest
import torch

from dpqtb.md.integrators import QTB, TemperatureSchedule, adaptation_groups
from dpqtb.md.state import MDState, maxwell_boltzmann_momenta
from dpqtb.units import HBAR, KB
from dpqtb.workflows.fermi import FermiModel
from dpqtb.workflows.oscillators import measure_oscillators, oscillator_crystal

T = 100.0


def _theta(w, temp):
    return 0.5 * HBAR * w / np.tanh(0.5 * HBAR * w / (KB * temp))


def test_adqtb_on_harmonic_crystal_keeps_gamma_r_and_exact_energies():
    freqs = [20.0, 40.0]
    state, pot, f_atom = oscillator_crystal(freqs, 800)
    state.momenta = maxwell_boltzmann_momenta(state.masses, T, torch.Generator().manual_seed(3), zero_com=False)
    integ = QTB(pot, 0.5, TemperatureSchedule(T), 100.0, seed=3, f_max_THz=150.0, n_f=100, zero_net_force=False,
                adaptive=True, tau_ad_fs=1000.0)
    res = measure_oscillators(integ, state, pot, f_atom, n_steps=30_000, n_equil=10_000)
    for i, f in enumerate(res["frequency_THz"]):
        exact = 0.5 * _theta(2 * np.pi * f * 1e-3, T)
        assert abs(res["potential_eV"][i] / exact - 1) < 4 * res["potential_err_eV"][i] / exact + 0.02, (f, res)
    avg = integ.bath.fd.averages()
    w = avg["mCvv_eV_fs"][0]
    ratio = integ.bath.noise.gamma_ratio[0]
    weighted = float((w * np.abs(ratio - 1)).sum() / w.sum())
    assert weighted < 0.15, weighted
    assert integ.bath.diagnose() == []


def test_adaptation_groups_sites_and_lists():
    from dpqtb.structures.eos import fm3m_at_pressure

    state = MDState.from_atoms(fm3m_at_pressure(200.0, cell="conventional"))
    groups, names = adaptation_groups(state, "sites")
    counts = sorted(torch.bincount(groups).tolist())
    assert counts == [4, 8, 32]  # La 4a, H 8c, H 32f
    assert sorted(n.split("_")[0] for n in names) == ["H", "H", "La"]
    groups, names = adaptation_groups(state, [[0, 1], [5]])
    assert names[:2] == ["group0", "group1"] and set(names[2:]) == {"La", "H"}
    assert groups[0] == groups[1] == 0 and groups[5] == 1
    from dpqtb import DpqtbError

    with pytest.raises(DpqtbError):
        adaptation_groups(state, [[0, 1], [1]])
    with pytest.raises(DpqtbError):
        adaptation_groups(state, [[44]])


def _fermi_run(groups, damp, n_spect, n_equil=24_000, n_prod=16_000, kappa=0.02):
    model = FermiModel.resonant(60.0, 1.008, kappa)
    n_pairs = 300
    state, pot, sites = model.build(n_pairs, n_spectators=n_spect)
    state.momenta = maxwell_boltzmann_momenta(state.masses, T, torch.Generator().manual_seed(11), zero_com=False)
    n2 = 2 * n_pairs
    spec = [list(range(1, n2, 2))] if groups == "split" else "species"
    integ = QTB(pot, 0.5, TemperatureSchedule(T), damp, seed=11, f_max_THz=150.0, n_f=200, zero_net_force=False,
                adaptive=True, tau_ad_fs=1000.0, adapt_groups=spec)
    integ.setup(state)
    for _ in range(n_equil):
        integ.step(state)
    acc, n = np.zeros(2), 0
    for i in range(n_prod):
        integ.step(state)
        if i % 10 == 0:
            d = state.positions - sites
            acc += [(d[1:n2:2] ** 2).mean().item(), (d[n2:] ** 2).mean().item() if n_spect else 0.0]
            n += 1
    acc /= n
    y2_exact = model.exact(T)["y2_A2"]
    spect_exact = _theta(2 * np.pi * 30e-3, T) / model.k2
    return acc[0] / y2_exact - 1, (acc[1] / spect_exact - 1) if n_spect else None, integ


def test_spectator_needs_its_own_adaptation_group():
    y_sp, spect_sp, _ = _fermi_run("species", 100.0, 300)
    y_gr, spect_gr, _ = _fermi_run("split", 100.0, 300)
    # per species: the spectators are cooled (and the leaking mode not fully cured)
    assert spect_sp < -0.10, (y_sp, spect_sp)
    # own group: both right
    assert abs(y_gr) < 0.05 and abs(spect_gr) < 0.05, (y_gr, spect_gr)


def test_diagnosis_when_gamma_is_too_small():
    y, _, integ = _fermi_run("species", 1000.0, 0, n_equil=16_000, n_prod=4_000)
    msgs = integ.bath.diagnose()
    assert y > 0.10  # not cured
    assert any("He" in m and "damp_fs <=" in m for m in msgs), msgs


def test_fd_subset_takes_whole_atoms():
    """fd_max_dof bounds the spectra's memory by taking a strided subset of whole atoms: all three
    Cartesian components of each (a stride over degrees of freedom of 3 would keep only x)."""
    from dpqtb.md.qtb import ColoredNoise, FDSpectra, QTBParameters

    n = 5000
    masses = torch.full((n,), 1.008, dtype=torch.float64)
    noise = ColoredNoise(QTBParameters(100.0, 100.0, 150.0, 10), 0.5, masses, torch.zeros(n, dtype=torch.long), 1,
                         torch.Generator().manual_seed(1))
    fd = FDSpectra(noise, masses, fd_max_dof=6000)
    dofs = fd.subset[0]
    assert 0 < dofs.numel() <= 6000
    assert torch.bincount(dofs % 3, minlength=3).tolist() == [dofs.numel() // 3] * 3


def test_sites_groups_survive_resume_bitwise(tmp_path):
    """The groups are those of the starting structure: a resumed run (thermalised positions, no symmetry
    left) restores them from the checkpoint and continues bit for bit."""
    from dpqtb.md.run import Simulation
    from test_md_species_statistics import _system

    def make():
        state, pot = _system()
        return state, QTB(pot, 0.5, TemperatureSchedule(300.0), 100.0, seed=2, n_f=20, adaptive=True,
                          tau_ad_fs=200.0, adapt_groups="sites", fd_skip_segments=0)

    state, integ = make()
    Simulation(state, integ, tmp_path / "ref", thermo_every=10, trajectory_every=50, checkpoint_every=0,
               progress=False).run(400)
    assert len(integ.bath.group_names) == 3
    state, integ = make()
    Simulation(state, integ, tmp_path / "cut", thermo_every=10, trajectory_every=50, checkpoint_every=0,
               progress=False).run(250)
    state, integ = make()
    Simulation(state, integ, tmp_path / "cut", thermo_every=10, trajectory_every=50, checkpoint_every=0,
               progress=False).run(400, resume=True)
    for name in ("thermo.csv", "trajectory.extxyz"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()


def test_sites_refused_without_symmetry():
    from dpqtb import DpqtbError
    from dpqtb.structures.eos import fm3m_at_pressure

    atoms = fm3m_at_pressure(200.0, cell="conventional")
    atoms.rattle(0.01, seed=1)
    with pytest.raises(DpqtbError, match="lists of atom indices"):
        adaptation_groups(MDState.from_atoms(atoms), "sites")
