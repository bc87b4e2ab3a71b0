"""Stochastic cell rescaling (md/barostat.py) against the exact isobaric ideal gas.

For N non-interacting particles at temperature T and pressure P the isothermal–isobaric density of the
volume is ∝ V^N exp(-PV/kT), so ⟨V⟩ = (N+1) kT/P and Var V = (N+1) (kT/P)² exactly. The barostat is
driven here by a Langevin bath on the momenta (BAOAB with zero force), written out in the test; the
reference does not use any dpqtb function. With N = 4 a spurious k_BT/V term in the barostat's drift
(which samples V^{N+1}) would move ⟨V⟩ by 20 %: the test resolves ~1.5 %.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dpqtb import InputError
from dpqtb.md.barostat import StochasticCellRescaling
from dpqtb.md.state import MDState

# independent constants (CODATA 2018), not dpqtb.units
KB_EV = 8.617333262e-5           # eV/K
GPA_IN_EV_PER_A3 = 1.0 / 160.21766208  # 1 GPa in eV/Å³
AMU_A2_PER_FS2_IN_EV = 1.66053906660e-27 * 1e10 / 1.602176634e-19  # amu·Å²/fs² in eV


def _ideal_gas(n, temperature_K, pressure_GPa, steps, seed, dt_fs=1.0, tau_p_fs=100.0, gamma_per_fs=0.01):
    g = torch.Generator().manual_seed(seed)
    m = torch.full((n,), 1.008, dtype=torch.float64)
    kt = KB_EV * temperature_K
    v_ref = (n + 1) * kt / (pressure_GPa * GPA_IN_EV_PER_A3)
    length = v_ref ** (1 / 3)
    sd = torch.sqrt(m * kt / AMU_A2_PER_FS2_IN_EV)[:, None]
    state = MDState(positions=torch.rand((n, 3), generator=g, dtype=torch.float64) * length,
                    momenta=torch.randn((n, 3), generator=g, dtype=torch.float64) * sd, masses=m,
                    cell=torch.eye(3, dtype=torch.float64) * length, species=torch.zeros(n, dtype=torch.long),
                    type_map=("H",))
    state.virial = torch.zeros(3, 3, dtype=torch.float64)  # no interactions
    baro = StochasticCellRescaling(pressure_GPa, damp_fs=tau_p_fs, compressibility_per_GPa=1.0 / pressure_GPa,
                                   seed=seed + 1)
    baro.setup(state)
    c = math.exp(-gamma_per_fs * dt_fs)
    kick_sd = math.sqrt(1.0 - c * c) * sd
    volumes = np.empty(steps // 10)
    for k in range(steps):
        state.positions.add_(state.momenta / m[:, None], alpha=0.5 * dt_fs)
        state.momenta.mul_(c).add_(torch.randn((n, 3), generator=g, dtype=torch.float64) * kick_sd)
        state.positions.add_(state.momenta / m[:, None], alpha=0.5 * dt_fs)
        baro.move(state, dt_fs, temperature_K)
        if k % 10 == 0:
            volumes[k // 10] = state.volume
    return volumes[volumes.size // 10:], kt / (pressure_GPa * GPA_IN_EV_PER_A3)


@pytest.mark.slow
def test_ideal_gas_volume_mean_and_variance_exact():
    n = 4
    v, kt_over_p = _ideal_gas(n, 300.0, 1.0, steps=200_000, seed=11)
    blocks = v[: v.size // 40 * 40].reshape(40, -1)   # blocks of 450 samples (4.5 ps ≫ τ_p = 0.1 ps)
    err = blocks.mean(1).std(ddof=1) / math.sqrt(40)
    var_err = blocks.var(1).std(ddof=1) / math.sqrt(40)
    assert abs(v.mean() - (n + 1) * kt_over_p) < 4 * err, (v.mean(), err, (n + 1) * kt_over_p)
    assert abs(v.mean() - (n + 2) * kt_over_p) > 8 * err  # the V^{N+1} density is excluded
    assert abs(v.var() - (n + 1) * kt_over_p**2) < 4 * var_err, (v.var(), var_err)


def _tiny_state():
    m = torch.ones(2, dtype=torch.float64)
    s = MDState(positions=torch.tensor([[0.0, 0, 0], [1.0, 1, 1]], dtype=torch.float64),
                momenta=torch.tensor([[0.01, 0, 0], [-0.01, 0.02, 0]], dtype=torch.float64), masses=m,
                cell=torch.eye(3, dtype=torch.float64) * 3.0, species=torch.zeros(2, dtype=torch.long), type_map=("H",))
    s.virial = torch.diag(torch.tensor([0.3, -0.1, 0.2], dtype=torch.float64))
    return s


def test_restart_is_bitwise():
    a, b = _tiny_state(), _tiny_state()
    ba = StochasticCellRescaling(10.0, damp_fs=50.0, seed=3)
    ba.setup(a)
    for _ in range(5):
        ba.move(a, 0.5, 100.0)
    saved = ba.state_dict()
    b.positions, b.cell, b.momenta = a.positions.clone(), a.cell.clone(), a.momenta.clone()
    bb = StochasticCellRescaling(10.0, damp_fs=50.0, seed=99)
    bb.setup(b)
    bb.load_state_dict(saved)
    for _ in range(5):
        ba.move(a, 0.5, 100.0)
        bb.move(b, 0.5, 100.0)
    assert torch.equal(a.cell, b.cell) and torch.equal(a.positions, b.positions) and torch.equal(a.momenta, b.momenta)
    assert ba.barostat_energy == bb.barostat_energy


def test_move_scales_cell_positions_and_momenta_consistently():
    s = _tiny_state()
    p0, x0, v0 = s.momenta.clone(), s.positions.clone(), s.volume
    baro = StochasticCellRescaling(10.0, seed=1)
    baro.setup(s)
    d_eps = float(torch.trace(baro.move(s, 1.0, 300.0)))
    lam = math.exp(d_eps / 3)
    assert s.volume == pytest.approx(v0 * math.exp(d_eps), rel=1e-12)
    assert torch.allclose(s.positions, x0 * lam, rtol=1e-14) and torch.allclose(s.momenta, p0 / lam, rtol=1e-14)


@pytest.mark.parametrize("kw, match", [
    ({"pressure_GPa": float("nan")}, "pressure_GPa"),
    ({"pressure_GPa": 1.0, "damp_fs": 0.0}, "damp_fs"),
    ({"pressure_GPa": 1.0, "compressibility_per_GPa": -1.0}, "compressibility"),
])
def test_bad_parameters(kw, match):
    with pytest.raises(InputError, match=match):
        StochasticCellRescaling(**kw)


def test_needs_a_periodic_cell():
    s = _tiny_state()
    s.pbc = (True, True, False)
    with pytest.raises(InputError, match="periodic"):
        StochasticCellRescaling(1.0).setup(s)


# ----------------------------------------------------------------------------- flexible cell
KS = KA = 0.05  # eV/Å²: shear and axis-mismatch springs of the cell-only potential below


def _cell_virial(h: torch.Tensor) -> torch.Tensor:
    """W = -hᵀ ∂U/∂h for U = ½k_s(b_x² + c_x² + c_y²) + ½k_a[(a_x - b_y)² + (b_y - c_z)²] (row-vector cell)."""
    g = torch.zeros(3, 3, dtype=torch.float64)
    ax, bx, by, cx, cy, cz = h[0, 0], h[1, 0], h[1, 1], h[2, 0], h[2, 1], h[2, 2]
    g[1, 0], g[2, 0], g[2, 1] = KS * bx, KS * cx, KS * cy
    g[0, 0], g[1, 1], g[2, 2] = KA * (ax - by), -KA * (ax - by) + KA * (by - cz), -KA * (by - cz)
    return -h.T @ g


@pytest.mark.slow
def test_flexible_cell_samples_the_mtk_density():
    """Ideal gas (N = 4) in a flexible cell held by a cell-only potential U(h): the exact density of the
    lower-triangular cell (a_x, b_x, b_y, c_x, c_y, c_z) is V^(N-2) a_x² b_y exp(-(P V + U)/kT) (MTK measure
    [det h]^(1-d) dh after removing rotations). Shears are Gaussian, ⟨b_x²⟩ = kT/k_s; the diagonal means
    come from a 3D quadrature. The measure makes ⟨a_x⟩ > ⟨b_y⟩ > ⟨c_z⟩ by ~0.2 Å each, resolved here.
    Rates are ≤ 1 % of 1/dt, so the Euler–Maruyama bias (~1 %) is below the statistical error."""
    n, t_k, p_gpa, dt = 4, 300.0, 1.0, 1.0
    kt = KB_EV * t_k
    g = torch.Generator().manual_seed(5)
    m = torch.full((n,), 1.008, dtype=torch.float64)
    sd = torch.sqrt(m * kt / AMU_A2_PER_FS2_IN_EV)[:, None]
    length = ((n + 1) * kt / (p_gpa * GPA_IN_EV_PER_A3)) ** (1 / 3)
    state = MDState(positions=torch.zeros(n, 3, dtype=torch.float64), momenta=torch.randn((n, 3), generator=g,
                    dtype=torch.float64) * sd, masses=m, cell=torch.eye(3, dtype=torch.float64) * length,
                    species=torch.zeros(n, dtype=torch.long), type_map=("H",))
    baro = StochasticCellRescaling(p_gpa, damp_fs=100.0, compressibility_per_GPa=1.0 / p_gpa, seed=6, cell="flexible")
    baro.setup(state)
    c = math.exp(-0.01 * dt)
    kick_sd = math.sqrt(1 - c * c) * sd
    samples = []
    for k in range(150_000):
        state.momenta.mul_(c).add_(torch.randn((n, 3), generator=g, dtype=torch.float64) * kick_sd)
        state.virial = _cell_virial(state.cell)
        baro.move(state, dt, t_k)
        if k % 10 == 0:
            h = state.cell
            samples.append([float(h[0, 0]), float(h[1, 1]), float(h[2, 2]), float(h[1, 0]) ** 2, float(h[2, 1]) ** 2])
        assert float(state.cell[0, 1]) == 0.0 and float(state.cell[0, 2]) == 0.0 and float(state.cell[1, 2]) == 0.0
    a = np.array(samples[len(samples) // 10:])
    blocks = a[: len(a) // 20 * 20].reshape(20, -1, a.shape[1]).mean(1)  # 20 blocks of 6.75 ps ≫ τ ≈ 0.1 ps
    mean, err = a.mean(0), blocks.std(0, ddof=1) / math.sqrt(20)
    # exact: quadrature of the diagonal density on a grid (the shears factor out)
    x = np.linspace(0.3, 9.0, 200)
    ax, by, cz = np.meshgrid(x, x, x, indexing="ij")
    vol = ax * by * cz
    w = vol ** (n - 2) * ax**2 * by * np.exp(-(p_gpa * GPA_IN_EV_PER_A3 * vol
                                                 + 0.5 * KA * ((ax - by) ** 2 + (by - cz) ** 2)) / kt)
    w /= w.sum()
    exact = [(w * ax).sum(), (w * by).sum(), (w * cz).sum(), kt / KS, kt / KS]
    for name, mu, e, ref in zip(("a_x", "b_y", "c_z", "b_x²", "c_y²"), mean, err, exact):
        assert abs(mu - ref) < 4 * e, (name, mu, e, ref)
    assert exact[0] - exact[2] > 8 * max(err[0], err[2])  # the measure's asymmetry is resolved


def test_flexible_cell_needs_lower_triangular_cell():
    s = _tiny_state()
    s.cell = torch.tensor([[3.0, 0.5, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]], dtype=torch.float64)
    with pytest.raises(InputError, match="lower-triangular"):
        StochasticCellRescaling(1.0, cell="flexible").setup(s)
    StochasticCellRescaling(1.0, cell="isotropic").setup(s)  # isotropic scaling keeps any shape
