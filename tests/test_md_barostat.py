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
from dpqtb.potential.base import Potential, PotentialOutput

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


# ----------------------------------------------------------------------------- target stress (stress_GPa)
def _strain_energy_cell_virial(h: torch.Tensor, h0: torch.Tensor, dev_ev_a3: np.ndarray) -> float:
    """V₀ tr(S E) with E = ½(h₀⁻¹ h hᵀ h₀⁻ᵀ − I) (numpy, independent of the barostat's code)."""
    m = np.linalg.solve(h0.numpy(), h.numpy())
    return float(abs(np.linalg.det(h0.numpy())) * (dev_ev_a3 * 0.5 * (m @ m.T - np.eye(3))).sum())


#: the non-hydrostatic target of the exact-density tests below (GPa; Voigt xx yy zz yz xz xy), P₀ = 1.5 GPa
SHEAR_SIGMA = [1.0, 1.0, 2.5, 0.0, 0.0, 0.5]


def _exact_stress_cell_means(n: int, kt: float, sigma: list, length: float):
    """The exact ⟨a_x⟩, ⟨b_y⟩, ⟨c_z⟩, ⟨b_x⟩, ⟨c_y²⟩ of an N-particle ideal gas in a flexible cell held by the
    cell springs of :func:`_cell_virial` under the target ``sigma`` (first cell L₀ I), and the hydrostatic
    (same P₀, no deviator) ⟨a_x⟩, ⟨b_y⟩, ⟨c_z⟩. See the test below for the derivation."""
    p_gpa = sum(sigma[:3]) / 3
    s_dev = np.zeros((3, 3))
    s_dev[0, 0], s_dev[1, 1], s_dev[2, 2] = (x - p_gpa for x in sigma[:3])
    s_dev[0, 1] = s_dev[1, 0] = sigma[5]
    s_dev *= GPA_IN_EV_PER_A3
    q = length**3 / (2 * length**2)
    k_b, k_c = KS + 2 * q * s_dev[1, 1], KS + 2 * q * s_dev[2, 2]
    lin = 2 * q * s_dev[0, 1]  # coefficient of a_x b_x
    x = np.linspace(0.3, max(9.0, 4.0 * length), 200)
    ax, by, cz = np.meshgrid(x, x, x, indexing="ij")
    vol = ax * by * cz

    def diag_means(s):
        e = (p_gpa * GPA_IN_EV_PER_A3 * vol + 0.5 * KA * ((ax - by) ** 2 + (by - cz) ** 2)
             + q * (s[0, 0] * ax**2 + s[1, 1] * by**2 + s[2, 2] * cz**2) - (lin * ax) ** 2 / (2 * k_b) * (s is s_dev))
        w = vol ** (n - 2) * ax**2 * by * np.exp(-(e - e.min()) / kt)
        w /= w.sum()
        assert w[-1].sum() + w[:, -1].sum() + w[:, :, -1].sum() < 1e-8  # the grid holds the density
        return (w * ax).sum(), (w * by).sum(), (w * cz).sum()

    exact_diag = diag_means(s_dev)
    return [*exact_diag, -lin / k_b * exact_diag[0], kt / k_c], diag_means(np.zeros((3, 3))), s_dev


def _check_stress_cell_samples(samples: list, exact: list, hydro: tuple) -> None:
    """Means of (a_x, b_y, c_z, b_x, c_y²) within 4σ of ``exact`` (20 blocks); the deviator and the shear
    resolved (> 5σ) from the hydrostatic answer."""
    a = np.array(samples[len(samples) // 10:])
    blocks = a[: len(a) // 20 * 20].reshape(20, -1, a.shape[1]).mean(1)  # 20 blocks ≫ τ ≈ 0.1 ps
    mean, err = a.mean(0), blocks.std(0, ddof=1) / math.sqrt(20)
    for name, mu, e, ref in zip(("a_x", "b_y", "c_z", "b_x", "c_y²"), mean, err, exact):
        assert abs(mu - ref) < 4 * e, (name, mu, e, ref)
    assert abs((exact[1] - exact[2]) - (hydro[1] - hydro[2])) > 5 * math.hypot(err[1], err[2])
    assert abs(exact[3]) > 5 * err[3]


def _cell_sample(h: torch.Tensor) -> list:
    return [float(h[0, 0]), float(h[1, 1]), float(h[2, 2]), float(h[1, 0]), float(h[2, 1]) ** 2]


@pytest.mark.slow
def test_flexible_cell_under_a_shear_and_uniaxial_stress_samples_the_exact_density():
    """As the MTK test above, with a non-hydrostatic target σ = (1, 1, 2.5 | yz 0, xz 0, xy 0.5) GPa (P₀ = 1.5 GPa).
    The density of the cell is then V^(N-2) a_x² b_y exp(-(P₀V + V₀ tr(S E) + U)/kT), S = σ − P₀I, E the
    Green–Lagrange strain from the first cell h₀ = L₀ I, so V₀ tr(S E) = q[S_xx a_x² + S_yy(b_x² + b_y²)
    + S_zz(c_x² + c_y² + c_z²) + 2 S_xy a_x b_x] + const with q = V₀/2L₀². Exact: b_x is Gaussian given a_x with
    mean −(2qS_xy/k_b) a_x, k_b = k_s + 2qS_yy, so ⟨b_x⟩ = −(2qS_xy/k_b)⟨a_x⟩; c_y is Gaussian with
    ⟨c_y²⟩ = kT/(k_s + 2qS_zz); the diagonal means come from a 3D quadrature that includes the factor
    exp((2qS_xy a_x)²/(2k_b kT)) of the integrated b_x. A wrong sign of the shear target flips ⟨b_x⟩ (−0.6 Å,
    ~15σ); the deviatoric target moves ⟨b_y⟩ − ⟨c_z⟩ by 0.65 Å from the hydrostatic one (8σ; asserted > 5σ).
    All five within 4σ (errors ~0.06 Å); 99 s on 2 cores shared at load ~5."""
    n, t_k, dt = 4, 300.0, 1.0
    sigma = SHEAR_SIGMA
    p_gpa = sum(sigma[:3]) / 3
    kt = KB_EV * t_k
    g = torch.Generator().manual_seed(7)
    m = torch.full((n,), 1.008, dtype=torch.float64)
    sd = torch.sqrt(m * kt / AMU_A2_PER_FS2_IN_EV)[:, None]
    length = ((n + 1) * kt / (p_gpa * GPA_IN_EV_PER_A3)) ** (1 / 3)
    state = MDState(positions=torch.zeros(n, 3, dtype=torch.float64), momenta=torch.randn((n, 3), generator=g,
                    dtype=torch.float64) * sd, masses=m, cell=torch.eye(3, dtype=torch.float64) * length,
                    species=torch.zeros(n, dtype=torch.long), type_map=("H",))
    h0 = state.cell.clone()
    baro = StochasticCellRescaling(p_gpa, damp_fs=100.0, compressibility_per_GPa=1.0 / p_gpa, seed=8, cell="flexible",
                                   stress_GPa=sigma)
    baro.setup(state)
    c = math.exp(-0.01 * dt)
    kick_sd = math.sqrt(1 - c * c) * sd
    samples = []
    for k in range(40_000):
        state.momenta.mul_(c).add_(torch.randn((n, 3), generator=g, dtype=torch.float64) * kick_sd)
        state.virial = _cell_virial(state.cell)
        baro.move(state, dt, t_k)
        if k % 10 == 0:
            samples.append(_cell_sample(state.cell))
    exact, hydro, s_dev = _exact_stress_cell_means(n, kt, sigma, length)
    _check_stress_cell_samples(samples, exact, hydro)
    # the barostat's own Φ: V₀ tr(S E) at the last cell, against the numpy formula
    assert baro.enthalpy_term(state) == pytest.approx(
        p_gpa * GPA_IN_EV_PER_A3 * state.volume + _strain_energy_cell_virial(state.cell, h0, s_dev), rel=1e-6)


class _CellSprings(Potential):
    """U(h) of :func:`_cell_virial` on every configuration: no forces on the atoms, the cell's virial."""

    def _compute(self, positions, cell, species, pbc):
        ax, bx, by, cx, cy, cz = cell[0, 0], cell[1, 0], cell[1, 1], cell[2, 0], cell[2, 1], cell[2, 2]
        energy = 0.5 * KS * (bx**2 + cx**2 + cy**2) + 0.5 * KA * ((ax - by) ** 2 + (by - cz) ** 2)
        return PotentialOutput(energy, torch.zeros_like(positions), _cell_virial(cell))


@pytest.mark.slow
@pytest.mark.parametrize("bath", ["pimd", "langevin-La-H"])
def test_integrator_under_a_shear_and_uniaxial_stress_samples_the_exact_density(bath):
    """The same ideal gas, cell springs and target σ as the test above, run by the integrators users run:
    - ``pimd``: 8 H atoms, 4 beads, PILE, barostat.stress_GPa through the centroid move. Free ring polymers'
      internal modes do not depend on the cell (unwrapped beads), so the cell's density is the classical one
      of N centroids, exactly, for any bead number;
    - ``langevin-La-H``: 2 La + 6 H atoms under the white-noise bath (BAOAB, the barostat after the drift):
      the ideal gas's cell density does not depend on the masses, so mixed masses must give the same answer.
    zero_net_force = false: the closed form is that of N free particles (with the default the net momentum is
    not thermostatted and, without forces, never changes). N = 8, not 4: with 4 the smallest cells (V^(N-2)
    gives them weight) make a single Euler–Maruyama step of the cell's noise, ∝ V^(-1/2), large enough to
    collapse an axis within 40,000 steps. Measured (pimd): all five means within 1.6σ, the deviator resolved
    from the hydrostatic answer at 15σ, the shear at 10σ; ~2 min on one loaded core."""
    from dpqtb.md.integrators import Langevin, TemperatureSchedule
    from dpqtb.md.pimd import PIMD

    n, t_k, dt, beads = 8, 300.0, 1.0, 4
    sigma = SHEAR_SIGMA
    p_gpa = sum(sigma[:3]) / 3
    kt = KB_EV * t_k
    length = ((n + 1) * kt / (p_gpa * GPA_IN_EV_PER_A3)) ** (1 / 3)
    species = torch.zeros(n, dtype=torch.long)
    if bath == "pimd":
        m, type_map = torch.full((n,), 1.008, dtype=torch.float64), ("H",)
    else:
        species[:2] = 1
        m, type_map = torch.where(species == 1, 138.905, 1.008).to(torch.float64), ("H", "La")
    g = torch.Generator().manual_seed(17)
    sd = torch.sqrt(m * kt / AMU_A2_PER_FS2_IN_EV)[:, None]
    state = MDState(positions=torch.rand((n, 3), generator=g, dtype=torch.float64) * length,
                    momenta=torch.randn((n, 3), generator=g, dtype=torch.float64) * sd, masses=m,
                    cell=torch.eye(3, dtype=torch.float64) * length, species=species, type_map=type_map)
    baro = StochasticCellRescaling(p_gpa, damp_fs=100.0, compressibility_per_GPa=1.0 / p_gpa, seed=18, cell="flexible",
                                   stress_GPa=sigma)
    if bath == "pimd":
        integ = PIMD(_CellSprings(), dt, TemperatureSchedule(t_k), beads, 100.0, 19, zero_net_force=False,
                     barostat=baro)
    else:
        integ = Langevin(_CellSprings(), dt, TemperatureSchedule(t_k), 100.0, 19, zero_net_force=False, barostat=baro)
    integ.setup(state)
    samples = []
    for k in range(40_000):
        integ.step(state)
        if k % 10 == 0:
            samples.append(_cell_sample(state.cell))
    exact, hydro, _ = _exact_stress_cell_means(n, kt, sigma, length)
    _check_stress_cell_samples(samples, exact, hydro)


def test_stress_forms_agree_and_the_target_is_sigma_at_the_reference_cell():
    """Six Voigt numbers (xx, yy, zz, yz, xz, xy) and the symmetric 3×3 give one target; at the reference
    cell (the first one) the drift's target is σ itself, elsewhere P₀I + (V₀/V) hᵀh₀⁻ᵀ S h₀⁻¹h."""
    voigt = [2.0, 3.0, 4.0, 0.3, -0.2, 0.1]
    full = [[2.0, 0.1, -0.2], [0.1, 3.0, 0.3], [-0.2, 0.3, 4.0]]
    s = _tiny_state()
    a = StochasticCellRescaling(3.0, cell="flexible", stress_GPa=voigt)
    b = StochasticCellRescaling(3.0, cell="flexible", stress_GPa=full)
    assert torch.equal(a.stress_GPa, b.stress_GPa)
    a.setup(s)
    assert torch.allclose(a.target_tensor_GPa(s.cell), torch.tensor(full, dtype=torch.float64), atol=1e-12)
    h = torch.tensor([[3.1, 0, 0], [0.2, 2.9, 0], [-0.1, 0.3, 3.05]], dtype=torch.float64)
    m = np.linalg.solve(s.cell.numpy(), h.numpy())
    dev = np.array(full) - 3.0 * np.eye(3)
    ref = 3.0 * np.eye(3) + np.linalg.det(s.cell.numpy()) / np.linalg.det(h.numpy()) * m.T @ dev @ m
    assert np.allclose(a.target_tensor_GPa(h).numpy(), ref, atol=1e-12)
    # without stress_GPa the target is P₀ I (the original drift)
    c = StochasticCellRescaling(3.0, cell="flexible")
    c.setup(_tiny_state())
    assert torch.equal(c.target_tensor_GPa(h), 3.0 * torch.eye(3, dtype=torch.float64))


def test_stress_heat_counts_the_work_against_the_deviatoric_stress():
    """Free particles (no forces, no thermostat): every energy change is the barostat's, so
    K + Φ + barostat_energy is constant to round-off, with Φ = P₀V + V₀ tr(S E) (E from the first cell);
    the work of the deviatoric part alone is not (it is what a P₀V-only bookkeeping would miss)."""
    s = _tiny_state()
    s.virial = torch.zeros(3, 3, dtype=torch.float64)
    h0 = s.cell.clone()
    sigma = [2.0, 3.0, 6.0, 0.5, 0.0, -1.0]
    baro = StochasticCellRescaling(11.0 / 3.0, damp_fs=20.0, compressibility_per_GPa=0.05, seed=4, cell="flexible",
                                   stress_GPa=sigma)
    baro.setup(s)
    total0 = float(s.kinetic_energy()) + baro.enthalpy_term(s) + baro.barostat_energy
    for _ in range(200):
        baro.move(s, 1.0, 300.0)
        baro.after_forces(s.virial)
    total = float(s.kinetic_energy()) + baro.enthalpy_term(s) + baro.barostat_energy
    dev = np.diag([2.0, 3.0, 6.0]) - 11.0 / 3.0 * np.eye(3)
    dev[1, 2] = dev[2, 1] = 0.5
    dev[0, 1] = dev[1, 0] = -1.0
    w_dev = _strain_energy_cell_virial(s.cell, h0, dev * GPA_IN_EV_PER_A3)
    # round-off only: exp(tr dε) against det(matrix_exp(dε)) (~1e-10 eV here, as for a hydrostatic target)
    assert abs(total - total0) < 1e-8, (total, total0)
    assert abs(w_dev) > 1e5 * abs(total - total0) and abs(w_dev) > 1e-3  # the deviatoric work is not negligible


def test_ring_polymer_stress_heat_is_exact_for_free_particles():
    """PIMD under a non-hydrostatic target stress: with no forces every step is exact (free ring polymer in
    normal modes, the O step's heat counted, the cell move's virial zero), so H_P + P·Φ + the heats is
    constant to round-off; the P·ΔΦ of the deviatoric part is what it would miss without it."""
    from dpqtb.md.pimd import PIMD
    from dpqtb.md.schedule import TemperatureSchedule
    from dpqtb.potential.torchfn import TorchFunctionPotential

    s = _tiny_state()
    s.masses = torch.tensor([1.008, 4.0], dtype=torch.float64)
    pot = TorchFunctionPotential(lambda x, h, sp: (x * 0.0).sum((-1, -2)), batched=True)
    baro = StochasticCellRescaling(11.0 / 3.0, damp_fs=20.0, compressibility_per_GPa=0.05, seed=4, cell="flexible",
                                   stress_GPa=[2.0, 3.0, 6.0, 0.5, 0.0, -1.0])
    integ = PIMD(pot, 0.5, TemperatureSchedule(300.0), 4, 50.0, seed=2, barostat=baro)
    integ.setup(s)
    e0, phi0 = integ.conserved_energy(s), baro.deviatoric_enthalpy(s.cell)
    for _ in range(300):
        integ.step(s)
    assert abs(integ.conserved_energy(s) - e0) < 1e-8
    assert abs(4 * (baro.deviatoric_enthalpy(s.cell) - phi0)) > 1e-4  # the deviatoric work is counted, not zero


def test_stress_checkpoint_keeps_the_reference_cell():
    """A resumed run takes h₀ from the checkpoint, not from its (strained) current cell; a checkpoint and a
    barostat that disagree about stress_GPa are refused."""
    a, b = _tiny_state(), _tiny_state()
    ba = StochasticCellRescaling(2.0, damp_fs=20.0, seed=3, cell="flexible", stress_GPa=[1, 2, 3, 0, 0, 0])
    ba.setup(a)
    for _ in range(20):
        ba.move(a, 1.0, 300.0)
    saved = ba.state_dict()
    b.positions, b.cell, b.momenta = a.positions.clone(), a.cell.clone(), a.momenta.clone()
    bb = StochasticCellRescaling(2.0, damp_fs=20.0, seed=3, cell="flexible", stress_GPa=[1, 2, 3, 0, 0, 0])
    bb.setup(b)
    bb.load_state_dict(saved)
    assert torch.equal(bb.reference_cell, torch.eye(3, dtype=torch.float64) * 3.0)
    for _ in range(5):
        ba.move(a, 1.0, 300.0)
        bb.move(b, 1.0, 300.0)
    assert torch.equal(a.cell, b.cell) and ba.barostat_energy == bb.barostat_energy
    plain = StochasticCellRescaling(2.0, seed=3, cell="flexible")
    plain.setup(_tiny_state())
    with pytest.raises(InputError, match="stress_GPa"):
        plain.load_state_dict(saved)
    with pytest.raises(InputError, match="stress_GPa"):
        bb.load_state_dict(plain.state_dict())


@pytest.mark.parametrize("kw, match", [
    ({"cell": "isotropic", "stress_GPa": [1, 1, 1, 0, 0, 0]}, "flexible"),
    ({"cell": "z", "stress_GPa": [1, 1, 1, 0, 0, 0]}, "flexible"),
    ({"cell": "anisotropic", "stress_GPa": [1, 1, 1, 0, 0, 0.5]}, "shear"),
    ({"cell": "flexible", "stress_GPa": [[1, 0.5, 0], [0, 1, 0], [0, 0, 1]]}, "symmetric"),
    ({"cell": "flexible", "stress_GPa": [1, 1, float("inf"), 0, 0, 0]}, "finite"),
    ({"cell": "flexible", "stress_GPa": [1, 1, 1]}, "six numbers"),
    ({"cell": "flexible", "stress_GPa": "1 1 1 0 0 0"}, "six numbers"),
    ({"cell": "flexible", "stress_GPa": [2, 2, 2, 0, 0, 0]}, "hydrostatic part"),
])
def test_bad_stress(kw, match):
    with pytest.raises(InputError, match=match):
        StochasticCellRescaling(1.0, **kw)


def test_stress_config_round_trips_and_leaves_hydrostatic_tables_alone():
    from dpqtb.md.config import MDConfig, validate

    base = {"system": {"structure": "builtin:fcc", "lattice_A": 3.6},
            "potential": {"kind": "einstein", "frequency_THz": {"H": 5.0}}, "md": {"timestep_fs": 1.0, "steps": 1},
            "thermostat": {"kind": "langevin", "temperature_K": 300.0}}
    hydro = validate({**base, "barostat": {"pressure_GPa": 2.0}})
    assert list(hydro.to_dict()["barostat"]) == ["pressure_GPa", "cell", "damp_fs", "compressibility_per_GPa"]
    voigt = validate({**base, "barostat": {"cell": "flexible", "stress_GPa": [1, 2, 3, 0, 0.5, 0]}})
    full = validate({**base, "barostat": {"cell": "flexible", "pressure_GPa": 2.0,
                                          "stress_GPa": [[1, 0, 0.5], [0, 2, 0], [0.5, 0, 3]]}})
    assert voigt == full and voigt.barostat.pressure_GPa == 2.0 and voigt.barostat.enabled
    assert voigt.to_dict()["barostat"]["stress_GPa"] == [1.0, 2.0, 3.0, 0.0, 0.5, 0.0]
    assert MDConfig.from_dict(voigt.to_dict()) == voigt
    aniso = validate({**base, "barostat": {"cell": "anisotropic", "stress_GPa": [1, 2, 3, 0, 0, 0]}})
    assert aniso.barostat.stress_GPa == (1.0, 2.0, 3.0, 0.0, 0.0, 0.0)
