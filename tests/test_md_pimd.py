"""Path-integral MD against exact answers: harmonic finite-P closed form and bead convergence, a Morse
oscillator against exact diagonalisation, estimator consistency, exact restart, config."""

import math

import numpy as np
import pytest
import torch

from dpqtb.md.integrators import TemperatureSchedule
from dpqtb.md.pimd import PIMD, free_ring_frequencies, harmonic_pimd_potential_energy, normal_mode_matrix
from dpqtb.md.qtb import harmonic_energy_per_dof
from dpqtb.md.state import MDState
from dpqtb.potential import TorchFunctionPotential
from dpqtb.units import HBAR, KB, MVV2E
from dpqtb.workflows.oscillators import oscillator_crystal


def _block_mean_err(x, n_blocks=10):
    x = np.asarray(x)
    b = x[: len(x) // n_blocks * n_blocks].reshape(n_blocks, -1).mean(1)
    return b.mean(), b.std(ddof=1) / math.sqrt(n_blocks)


def test_normal_modes_orthogonal_and_frequencies():
    for p in (1, 2, 5, 8):
        c = normal_mode_matrix(p)
        assert np.allclose(c.T @ c, np.eye(p), atol=1e-13)
    # the free ring polymer's spring matrix is diagonalised by C with eigenvalues ω_k²
    p, t = 6, 300.0
    wp = p * KB * t / HBAR
    k = 2 * np.eye(p) - np.roll(np.eye(p), 1, 0) - np.roll(np.eye(p), -1, 0)
    c = normal_mode_matrix(p)
    assert np.allclose(np.diag(c.T @ (wp**2 * k) @ c), free_ring_frequencies(p, t) ** 2)
    assert np.allclose(c.T @ (wp**2 * k) @ c, np.diag(free_ring_frequencies(p, t) ** 2), atol=1e-10 * wp**2)


def test_harmonic_bead_convergence_closed_form():
    """ħω/kT = 10: the finite-P energy ½kT Σ_k ω²/(ω²+ω_k²) is within 1 % of (ħω/4)coth(ħω/2kT) from P = 48."""
    w = 2 * math.pi * 20.8363e-3
    exact = harmonic_energy_per_dof(np.array([w]), 100.0)[0]
    errs = {p: harmonic_pimd_potential_energy(w, 100.0, p) / exact - 1 for p in (8, 16, 32, 48, 64)}
    assert abs(errs[48]) < 0.01 and abs(errs[64]) < abs(errs[48]) < abs(errs[32]) < abs(errs[16]) < abs(errs[8])
    assert harmonic_pimd_potential_energy(w, 100.0, 1) == pytest.approx(0.5 * KB * 100.0)  # P = 1 is classical


def test_pimd_harmonic_matches_exact_finite_p_and_quantum():
    """P = 48 at ħω/kT = 10 (20.8 THz, 100 K): V̄, K_cv and K_prim equal the exact finite-P value within 4σ
    (block errors), which is itself within 1 % (−0.54 %) of the exact quantum energy."""
    T, P, f = 100.0, 48, 20.8363
    state, pot, _ = oscillator_crystal([f], 300)
    integ = PIMD(pot, 0.5, TemperatureSchedule(T), P, centroid_damp_fs=50.0, seed=1)
    integ.setup(state)
    w = 2 * math.pi * f * 1e-3
    # the exact P-bead value, written out here (not the engine's helper): (k_BT/2) Σ_k ω²/(ω² + ω_k²),
    # ω_k = 2 (P k_BT/ħ) sin(kπ/P), with scipy's constants
    import scipy.constants as C

    kt = C.k * T / C.e
    wk = 2 * P * kt / (C.hbar / C.e * 1e15) * np.sin(np.arange(P) * np.pi / P)
    ref = 0.5 * kt * float(np.sum(w**2 / (w**2 + wk**2)))
    assert ref == pytest.approx(harmonic_pimd_potential_energy(w, T, P), rel=1e-6)  # the helper agrees
    ndof = 3 * state.n_atoms
    V, K, Kp = [], [], []
    for i in range(3000):
        integ.step(state)
        if i >= 400:
            V.append(float(state.energy) / ndof)
            K.append(integ.kinetic_energy(state) / ndof)
            Kp.append(integ.primitive_kinetic_energy(state) / ndof)
    for series in (V, K, Kp):
        m, e = _block_mean_err(series)
        assert abs(m - ref) < 4 * e + 1e-4 * ref, (m / ref - 1, e / ref)
    assert abs(ref / harmonic_energy_per_dof(np.array([w]), T)[0] - 1) < 0.01


class _SeparableMorse:
    """V = Σ_i Σ_d D (1 − exp(−a (x_id − x⁰_id)))², each Cartesian dof an independent 1D Morse oscillator."""

    def __init__(self, sites, D=0.5, a=3.0):
        self.sites, self.D, self.a = sites, D, a

    def __call__(self, x, cell, species):
        u = x - self.sites
        return (self.D * (1 - torch.exp(-self.a * u)) ** 2).sum((-1, -2))

    def exact(self, mass, temperature, n=1500, lo=-0.6, hi=2.0):
        """Thermal ⟨V⟩ and ⟨K⟩ of the 1D oscillator by finite-difference diagonalisation (eV)."""
        x = np.linspace(lo, hi, n)
        h = x[1] - x[0]
        t = HBAR**2 / (2 * mass * MVV2E) / h**2
        v = self.D * (1 - np.exp(-self.a * x)) ** 2
        H = np.diag(v + 2 * t) - t * np.eye(n, k=1) - t * np.eye(n, k=-1)
        e, psi = np.linalg.eigh(H)
        wts = np.exp(-(e - e[0]) / (KB * temperature))
        wts /= wts.sum()
        vexp = (psi**2 * v[:, None]).sum(0)
        return float(wts @ vexp), float(wts @ (e - vexp))


def test_pimd_morse_oscillator_matches_exact_diagonalisation():
    """1D Morse oscillators (D = 0.5 eV, a = 3 Å⁻¹, H mass: ν0 = 46.7 THz, ħω0/kT = 7.5 at 300 K, anharmonicity
    ħω0/4D = 10 %: exact ⟨K⟩ is 9.5 % below the harmonic value), P = 48. Tolerance: 4 block-σ + the finite-P
    error of the harmonic oscillator of the same ω0 (0.3 %), an upper estimate of the bead-discretisation
    error here."""
    T, P, m = 300.0, 48, 1.008
    state, _, _ = oscillator_crystal([1.0], 200, mass_amu=m)
    fn = _SeparableMorse(state.positions.clone())
    integ = PIMD(TorchFunctionPotential(fn, batched=True), 0.5, TemperatureSchedule(T), P, centroid_damp_fs=50.0,
                 seed=2)
    integ.setup(state)
    v_ex, k_ex = fn.exact(m, T)
    w0 = fn.a * math.sqrt(2 * fn.D / (m * MVV2E))
    p_err = abs(harmonic_pimd_potential_energy(w0, T, P) / harmonic_energy_per_dof(np.array([w0]), T)[0] - 1)
    assert p_err < 0.005
    ndof = 3 * state.n_atoms
    V, K = [], []
    for i in range(3000):
        integ.step(state)
        if i >= 400:
            V.append(float(state.energy) / ndof)
            K.append(integ.kinetic_energy(state) / ndof)
    harm = harmonic_energy_per_dof(np.array([w0]), T)[0]
    for (mean, err), exact in ((_block_mean_err(V), v_ex), (_block_mean_err(K), k_ex)):
        tol = 4 * err + p_err * exact
        assert abs(mean - exact) < tol, (mean / exact - 1, err / exact)
    # the harmonic kinetic energy lies far outside the tolerance: the anharmonicity is resolved
    assert abs(harm - k_ex) > 2 * tol, (harm / k_ex - 1, tol / k_ex)


#: a Morse copper PIMD run of 20 steps (the CLI tests below)
MORSE_PIMD = """
[system]
structure = "builtin:fcc"
element = "Cu"
lattice_A = 3.61
[potential]
kind = "morse"
D_eV = 0.3429
a_per_A = 1.3588
r0_A = 2.866
cutoff_A = 5.0
[md]
timestep_fs = 1.0
steps = 20
[thermostat]
kind = "pimd"
temperature_K = 100
beads = {beads}
damp_fs = 100
[output]
progress = false
"""


def test_pimd_config_and_errors(tmp_path):
    from dpqtb import DpqtbError
    from dpqtb.cli import main

    cfg = tmp_path / "p.toml"
    base = MORSE_PIMD.format(beads=4)
    cfg.write_text(base)
    assert main(["md", str(cfg), "--output", str(tmp_path / "o")]) == 0
    rows = (tmp_path / "o" / "thermo.csv").read_text().splitlines()
    assert len(rows) == 1 + 3  # header, steps 0, 10, 20
    cfg.write_text(base.replace("beads = 4", "beads = 1"))
    assert main(["md", str(cfg), "--output", str(tmp_path / "o2")]) == 2
    cfg.write_text(base.replace('kind = "pimd"', 'kind = "qtb"'))
    assert main(["md", str(cfg), "--output", str(tmp_path / "o3")]) == 2
    cfg.write_text(base.replace('kind = "pimd"', 'kind = "langevin"').replace("beads = 4\n", "")
                   + "bead_trajectory_every = 5\n")  # every bead of a run without beads
    assert main(["md", str(cfg), "--output", str(tmp_path / "o4")]) == 2
    cfg.write_text(base + "bead_trajectory_every = -1\n")
    assert main(["md", str(cfg), "--output", str(tmp_path / "o5")]) == 2
    state, pot, _ = oscillator_crystal([10.0], 2)
    with pytest.raises(DpqtbError, match="ramps"):
        PIMD(pot, 1.0, TemperatureSchedule(10.0, 20.0, 10), 4, 100.0, 1)


def test_pimd_exact_where_qtb_leaks():
    """The stiff/soft Fermi-resonance model of the QTB tests (κ = 0.02) at 300 K: PIMD (P = 32) reproduces the
    exact diagonalisation for both modes — tolerance 4 block-σ + the finite-P error of a harmonic mode of the
    same frequency (1.1 % at 60 THz, 0.3 % at 30 THz) — while plain QTB on the same model and bath heats the
    soft mode by > 10 %."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import test_md_adqtb_leakage as leak

    T, P = 300.0, 32
    model = leak._model(kappa=0.02)
    exact = model.exact(T)
    ref = np.array([exact["kinetic_x_eV"], exact["kinetic_y_eV"], exact["x2_A2"], exact["y2_A2"]])
    state, pot, sites = model.build(200)
    integ = PIMD(pot, 0.5, TemperatureSchedule(T), P, centroid_damp_fs=100.0, seed=3)
    integ.setup(state)
    acc = []
    for i in range(3500):
        integ.step(state)
        if i >= 500 and i % 5 == 0:
            ring = state.ring
            d = ring.q - sites
            kcv = 1.5 * KB * T - 0.5 / P * ((ring.q - ring.q.mean(0)) * ring.f).sum((0, 2))
            acc.append([kcv[0::2].mean().item() / 3, kcv[1::2].mean().item() / 3, (d[:, 0::2] ** 2).mean().item(),
                        (d[:, 1::2] ** 2).mean().item()])
    acc = np.array(acc)
    blocks = acc[: len(acc) // 10 * 10].reshape(10, -1, 4).mean(1)
    err = blocks.std(0, ddof=1) / math.sqrt(10)
    p_err = []
    for f in (leak.F1, leak.F2):
        w = 2 * math.pi * f * 1e-3
        p_err.append(abs(harmonic_pimd_potential_energy(w, T, P) / harmonic_energy_per_dof(np.array([w]), T)[0] - 1))
    p_err = np.array([p_err[0], p_err[1], p_err[0], p_err[1]])
    dev = np.abs(acc.mean(0) - ref)
    assert np.all(dev < 4 * err + p_err * ref), (acc.mean(0) / ref - 1, err / ref)

    qtb_values, _ = leak._run(model, adaptive=False, n_equil=2000, n_prod=4000, temperature=T)  # same bath
    assert qtb_values[1] / ref[1] - 1 > 0.10 and qtb_values[3] / ref[3] - 1 > 0.10


def test_bead_trajectory_holds_the_ring_polymer_of_a_mixed_mass_harmonic_crystal(tmp_path):
    """output.bead_trajectory_every: trajectory_beads.extxyz holds every bead (P frames per sample). Checked
    against things computed here, not by the engine: (1) each bead's energy_eV is ½ k |q_j − site|² summed
    over atoms; (2) the mean of the P bead frames is the centroid frame of trajectory.extxyz at that step;
    (3) the spread of the beads about their centroid per species, ⟨Σ_d (q_jd − q̄_d)²⟩ averaged over beads,
    is the exact value for a harmonic ring polymer: 3 Σ_{k=1}^{P−1} 1/(β (κ + m ω_k²)) with
    ω_k = 2 (P k_B T/ħ) sin(πk/P) (normal modes of the discretised path integral), in LaH10 (4 La, 40 H)
    with the same spring κ on both, so ħω/k_BT = 5.6 for H and 0.47 for La at 300 K. Tolerance 4 block
    errors (10 blocks of the sampled frames)."""
    from ase.io import read

    from dpqtb.cli import main

    P, T, kappa = 4, 300.0, 5.0
    cfg = tmp_path / "beads.toml"
    cfg.write_text(f"""
[system]
structure = "builtin:lah10"
lattice_A = 5.0
[potential]
kind = "einstein"
k_eV_per_A2 = {{ La = {kappa}, H = {kappa} }}
[md]
timestep_fs = 0.5
steps = 3000
seed = 5
[thermostat]
kind = "pimd"
temperature_K = {T}
beads = {P}
damp_fs = 50
[output]
progress = false
trajectory_every = 10
bead_trajectory_every = 10
""")
    assert main(["--threads", "1", "md", str(cfg), "--output", str(tmp_path / "o")]) == 0
    beads = read(tmp_path / "o" / "trajectory_beads.extxyz", index=":")
    cents = read(tmp_path / "o" / "trajectory.extxyz", index=":")
    assert len(beads) == P * len(cents) == P * 301
    assert [a.info["bead"] for a in beads[:P]] == list(range(P)) and beads[0].info["beads"] == P
    sites = cents[0].get_positions()  # step 0: the beads start on the centroid, the centroid on the sites
    assert np.allclose([a.get_positions() for a in beads[:P]], sites, atol=1e-12)
    for n in (7, 150, 300):
        frames = beads[P * n: P * (n + 1)]
        assert {a.info["step"] for a in frames} == {cents[n].info["step"]} == {10 * n}
        q = np.array([a.get_positions() for a in frames])
        assert np.allclose(q.mean(0), cents[n].get_positions(), atol=2e-8)  # extxyz: 8 decimals
        for a in frames:
            assert a.info["energy_eV"] == pytest.approx(0.5 * kappa * ((a.get_positions() - sites) ** 2).sum(), rel=1e-6)
    symbols = np.array(beads[0].get_chemical_symbols())
    masses = {"H": 1.008, "La": 138.90547}
    assert {s: beads[0].get_masses()[symbols == s][0] for s in masses} == pytest.approx(masses, rel=1e-4)
    beta = 1.0 / (KB * T)
    wp = P * KB * T / HBAR
    q = np.array([a.get_positions() for a in beads]).reshape(-1, P, len(symbols), 3)[50:]  # drop 250 fs
    spread = ((q - q.mean(1, keepdims=True)) ** 2).sum(-1).mean(1)  # (samples, atoms)
    for s, m in masses.items():
        exact = 3 * sum(1.0 / (beta * (kappa + m * MVV2E * (2 * wp * math.sin(math.pi * k / P)) ** 2))
                        for k in range(1, P))
        mean, err = _block_mean_err(spread[:, symbols == s].mean(1))
        assert abs(mean - exact) < 4 * err, (s, mean, exact, err)
        assert err < 0.05 * exact, (s, err / exact)


def test_bead_trajectory_never_continues_a_file_its_checkpoint_did_not_record(tmp_path, capsys):
    """A fresh run removes a trajectory_beads.extxyz left by another run; switching the option on at
    --resume with such a file present is a one-line error (exit 2), not a file with a gap."""
    from dpqtb.cli import main

    cfg = tmp_path / "p.toml"
    base = MORSE_PIMD.format(beads=2)
    out = tmp_path / "o"
    out.mkdir()
    (out / "trajectory_beads.extxyz").write_text("stale")
    cfg.write_text(base)
    assert main(["md", str(cfg), "--output", str(out), "--overwrite"]) == 0
    assert not (out / "trajectory_beads.extxyz").exists()  # the other run's file is gone
    (out / "trajectory_beads.extxyz").write_text("stale")
    cfg.write_text(base.replace("steps = 20", "steps = 30") + "bead_trajectory_every = 5\n")
    assert main(["md", str(cfg), "--output", str(out), "--resume"]) == 2
    assert "did not record it" in capsys.readouterr().err
    assert (out / "trajectory_beads.extxyz").read_text() == "stale"
