"""MSD, diffusion (random walk with known D) and the reordered MSD′ (exact matching)."""

import numpy as np
import pytest

from dpqtb import DpqtbError
from dpqtb.analysis.msd import (MSDAccumulator, ReorderedMSD, diffusion_coefficient, msd_from_array,
                                msd_prime_dense)
from dpqtb.structures.lah10 import fm3m, supercell


def _walk(n_atoms=500, n_steps=400, sigma=0.1, seed=0):
    rng = np.random.default_rng(seed)
    steps = rng.normal(scale=sigma, size=(n_steps, n_atoms, 3))
    steps[0] = 0.0
    return np.cumsum(steps, axis=0)


def test_random_walk_msd_and_diffusion_coefficient():
    sigma, dt = 0.1, 1.0
    pos = _walk(sigma=sigma)
    n = pos.shape[1]
    res = msd_from_array(pos, ["H"] * n, dt, max_lag=40, origin_every=5)
    d_true = sigma**2 / (2 * dt)  # Å²/fs
    t = res.time_fs
    expected = 6 * d_true * t
    # per lag: a single origin's mean over N walkers has std 6Dt·sqrt(2/(3N)) (|Δr|²/(2Dt) ~ χ²₃);
    # averaging correlated origins cannot increase it -> 4σ bound
    tol = 4 * expected * np.sqrt(2 / (3 * n))
    assert np.all(np.abs(res.msd_A2[1:, 0] - expected[1:]) <= tol[1:])
    fit = diffusion_coefficient(res, "H", n_blocks=5)
    d_cm2 = d_true * 0.1  # 1 Å²/fs = 0.1 cm²/s
    assert fit.D_err_cm2_per_s > 0
    assert fit.D_err_cm2_per_s < 0.05 * d_cm2  # the error bar is informative
    assert abs(fit.D_cm2_per_s - d_cm2) < 4 * fit.D_err_cm2_per_s + 1e-12
    assert fit.fit_start_fs == pytest.approx(8.0) and fit.fit_end_fs == pytest.approx(32.0)


def test_remove_com_factor_exact():
    # equal masses, removing the centre of mass scales the MSD of every lag by exactly (1 - 1/N)
    pos = _walk(n_atoms=50, n_steps=30, seed=3)
    raw = msd_from_array(pos, ["H"] * 50, 1.0, max_lag=5).msd_A2
    acc = MSDAccumulator(["H"] * 50, 5, remove_com=True)
    for p in pos:
        acc.update(p)
    com = acc.result().msd_A2
    # per origin/lag identity: mean|d - dbar|² = mean|d|² - |dbar|²
    dbar2 = np.mean([[np.sum((pos[k + lag] - pos[k]).mean(axis=0) ** 2) for lag in range(6)]
                     for k in range(25)] + [[np.sum((pos[k + lag] - pos[k]).mean(axis=0) ** 2)
                                               if k + lag < 30 else np.nan for lag in range(6)]
                                              for k in range(25, 30)], axis=0)
    ok = np.isfinite(dbar2)
    np.testing.assert_allclose(com[ok, 0], raw[ok, 0] - dbar2[ok], rtol=1e-10)


def test_permuted_lattice_msd_prime_zero_msd_positive():
    at = supercell(fm3m(5.1, "conventional"), 2)
    h = at.positions[at.numbers == 1]
    cell = at.cell.array
    rng = np.random.default_rng(1)
    perm = rng.permutation(len(h))
    # permuted labels, some atoms moved by whole lattice vectors (unwrapped) -> equivalent sites
    cur = h[perm] + cell[rng.integers(0, 3, len(h))] * rng.integers(-1, 2, (len(h), 1))
    traj = np.stack([h, cur])
    msd = msd_from_array(traj, ["H"] * len(h), 1.0).msd_A2[1, 0]
    assert msd > 1.0
    m = ReorderedMSD(h)(cur, cell)
    assert m.msd_A2 == pytest.approx(0.0, abs=1e-20)
    assert np.array_equal(perm[m.assignment], np.arange(len(h)))


@pytest.mark.parametrize("seed,scale,triclinic", [(0, 0.15, False), (1, 0.35, True), (2, 0.6, True)])
def test_sparse_matching_equals_dense_hungarian(seed, scale, triclinic):
    rng = np.random.default_rng(seed)
    at = supercell(fm3m(5.0, "primitive" if triclinic else "conventional"), 3 if triclinic else 2)
    h = at.positions[at.numbers == 1]
    cell = at.cell.array
    cur = h[rng.permutation(len(h))] + rng.normal(scale=scale, size=h.shape)
    sparse = ReorderedMSD(h, cutoff_A=0.3)(cur, cell)  # small start: the cutoff must grow
    dense = msd_prime_dense(h, cur, cell)
    assert sparse.msd_A2 == pytest.approx(dense.msd_A2, rel=1e-12, abs=1e-14)
    assert sparse.cutoff_A > 0.3


def test_msd_prime_bad_input():
    with pytest.raises(DpqtbError):
        ReorderedMSD(np.zeros((0, 3)))
    m = ReorderedMSD(np.zeros((3, 3)))
    with pytest.raises(DpqtbError):
        m(np.zeros((4, 3)), np.eye(3) * 5)
    with pytest.raises(DpqtbError):
        msd_from_array(np.zeros((1, 2, 3)), ["H", "H"], 1.0)


def test_column_generation_adds_long_edges_and_stays_exact():
    # perfect matchings exist inside the cutoff but the optimum needs longer pairs: the dual
    # check must find them (rounds >= 1) and the result must equal the dense optimum
    rng = np.random.default_rng(3)
    at = supercell(fm3m(5.0, "conventional"), 2)
    h = at.positions[at.numbers == 1]
    cell = at.cell.array
    cur = h[rng.permutation(len(h))] + rng.normal(scale=0.45, size=h.shape)
    sparse = ReorderedMSD(h, cutoff_A=1.0)(cur, cell)
    assert sparse.rounds >= 1
    assert sparse.msd_A2 == pytest.approx(msd_prime_dense(h, cur, cell).msd_A2, rel=1e-12)


def test_constant_pressure_cell_rescaling_is_not_displacement(tmp_path):
    """A crystal whose cell (and, affinely, every position) is rescaled frame to frame — what a barostat
    does — has not moved: the MSD is taken in scaled coordinates mapped to the first frame's cell. Raw
    Cartesian displacements would give ~(Δλ)² r² ≈ 1e-2 Å² here, i.e. fake diffusion of a static lattice."""
    from ase.io import write

    from dpqtb.analysis.pipeline import analyze

    atoms = supercell(fm3m(5.1, cell="conventional"), 2)
    rng = np.random.default_rng(3)
    frames = []
    for k in range(40):
        lam = 1.0 + 0.01 * rng.standard_normal()
        a = atoms.copy()
        a.set_cell(atoms.cell[:] * lam, scale_atoms=True)
        a.info["time_fs"] = 10.0 * k
        frames.append(a)
    traj = tmp_path / "npt.extxyz"
    write(traj, frames, format="extxyz")
    summary = analyze(traj, tmp_path / "out", frame_dt_fs=10.0, plots=False)
    assert summary["msd_cell_rescaling_removed"] is True
    msd = np.loadtxt(tmp_path / "out" / "msd.csv", delimiter=",", skiprows=1)
    assert np.abs(msd[:, 1:]).max() < 1e-12  # the extxyz's printed precision (~1e-8 Å), squared
    assert summary["msd_prime_final_A2"] < 1e-12
    raw = np.mean([np.sum((f.positions - frames[0].positions) ** 2, axis=1).mean() for f in frames[1:]])
    assert raw > 1e-3  # what the Cartesian displacements would have said
