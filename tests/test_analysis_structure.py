"""pRDF of ideal lattices and the cage distortion angle θ."""

import numpy as np
import pytest

from dpqtb import DpqtbError
from dpqtb.analysis.cage import angle_stats, quadrilateral_angles, strained_face_angles
from dpqtb.analysis.rdf import RDFAccumulator, plot_rdf
from dpqtb.structures.lah10 import X32F_DEFAULT, fm3m, lowered, supercell

A = 5.1


def _rdf(atoms, r_max=4.0, bin_A=0.01):
    acc = RDFAccumulator(atoms.get_chemical_symbols(), r_max, bin_A)
    acc.update(atoms.positions, atoms.cell.array)
    return acc.result()


def test_rdf_ideal_lattice_coordination_shells():
    res = _rdf(fm3m(A, "conventional"), r_max=5.5)
    x = X32F_DEFAULT
    d_8c, d_32f = A * np.sqrt(3) / 4, A * np.sqrt(x**2 + 2 * (0.5 - x) ** 2)
    n = res.coordination["La-H"]
    # exact neighbour counts: 24 H (32f) then 8 H (8c) around each La
    r_edges = res.edges_A[1:]
    assert n[r_edges < min(d_8c, d_32f) - 0.02][-1] == 0
    assert n[r_edges > max(d_8c, d_32f) + 0.02][0] == pytest.approx(32.0)
    assert n[(r_edges > d_32f + 0.02) & (r_edges < d_8c - 0.02)][0] == pytest.approx(24.0)
    # La–La: 12 fcc neighbours at a/√2, 6 at a (periodic images of a 4-La cell)
    nll = res.coordination["La-La"]
    assert nll[np.searchsorted(r_edges, A / np.sqrt(2) + 0.02)] == pytest.approx(12.0)
    assert nll[np.searchsorted(r_edges, A + 0.02)] == pytest.approx(18.0)
    # normalisation: g integrates to the coordination number with ρ = (N_β − δ)/V
    vol = A**3
    shell = 4 * np.pi / 3 * (res.edges_A[1:] ** 3 - res.edges_A[:-1] ** 3)
    np.testing.assert_allclose(np.cumsum(res.g["La-H"] * shell) * 40 / vol, n, rtol=1e-12)


def test_rdf_triclinic_primitive_equals_conventional(tmp_path):
    a = _rdf(fm3m(A, "primitive"), r_max=6.0)
    b = _rdf(supercell(fm3m(A, "conventional"), 1), r_max=6.0)
    for key in ("La-H", "H-H", "La-La"):
        np.testing.assert_allclose(a.coordination[key], b.coordination[key], atol=1e-9)
        # g differs only by the (N_β − δ) self-exclusion factor for like pairs
        fac = {"La-H": 1.0, "H-H": (40 - 1) / (10 - 1) * 10 / 40, "La-La": 1.0}[key]
        if key != "La-La":
            np.testing.assert_allclose(a.g[key], b.g[key] * fac, rtol=1e-9, atol=1e-9)
    a.label, b.label = "primitive", "conventional"
    plot_rdf([a, b], tmp_path / "rdf.png")
    assert (tmp_path / "rdf.png").stat().st_size > 1000


def test_rdf_ideal_gas_normalisation():
    rng = np.random.default_rng(0)
    n, L = 4000, 30.0
    acc = RDFAccumulator(["H"] * n, 6.0, 0.5)
    acc.update(rng.random((n, 3)) * L, np.eye(3) * L)
    g = acc.result().g["H-H"]
    # Poisson counts: relative std of a shell = 1/sqrt(expected pairs per shell)
    exp_pairs = n * (n - 1) / L**3 * acc.shell
    assert np.all(np.abs(g - 1) < 5 / np.sqrt(exp_pairs))


@pytest.mark.parametrize("cell", ["primitive", "conventional"])
def test_theta_ideal_is_90(cell):
    at = supercell(fm3m(A, cell), 2)
    ang = quadrilateral_angles(at.positions, at.cell.array, at.get_chemical_symbols())
    assert ang.shape == (len(at) // 11, 6, 4)
    np.testing.assert_allclose(ang, 90.0, atol=1e-6)


@pytest.mark.parametrize("F", [
    np.eye(3) + np.array([[0.0, 0.04, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),  # simple shear
    np.eye(3) + 0.03 * (np.ones((3, 3)) - np.eye(3)) / 2,  # trigonal (R-3m-like) strain
    np.eye(3) + np.array([[0.02, 0.03, 0.0], [0.03, -0.01, 0.0], [0.0, 0.0, 0.01]]),  # C2-like
    np.eye(3) + np.array([[0.02, 0.05, -0.01], [0.0, -0.01, 0.03], [0.0, 0.0, 0.01]]),  # general
])
def test_theta_under_homogeneous_strain_matches_analytic(F):
    at = supercell(fm3m(A, "conventional"), 2)
    at.set_cell(at.cell.array @ F.T, scale_atoms=True)
    ang = quadrilateral_angles(at.positions, at.cell.array, at.get_chemical_symbols())
    exp = strained_face_angles(F)  # (3, 2): faces normal to x, y, z
    got = np.sort(ang, axis=-1)  # (nLa, 6, 4)
    for faces in got:
        rows = {tuple(np.round(r, 8)) for r in faces}
        want = {tuple(np.round(sorted([e[0], e[0], e[1], e[1]]), 8)) for e in exp}
        assert rows == want
    if np.allclose(F, np.eye(3) + np.array([[0, 0.04, 0], [0, 0, 0], [0, 0, 0]])):
        st = angle_stats(ang)
        assert st.theta_max_deg == pytest.approx(90 + np.degrees(np.arctan(0.04)), abs=1e-9)
        assert st.theta_min_deg == pytest.approx(90 - np.degrees(np.arctan(0.04)), abs=1e-9)


def test_theta_rhombic_face_distortion_known_angle():
    # squeeze one diagonal of every square by (1−s), stretch the other by (1+s): a rhombus with
    # interior angles 2·atan((1−s)/(1+s)) and 180° minus that
    at = fm3m(A, "conventional")
    s = 0.1
    la = at.positions[at.numbers == 57]
    pos = at.positions.copy()
    x = X32F_DEFAULT
    for i in np.flatnonzero(at.numbers == 1):
        rel = pos[i] - la[0]
        rel -= A * np.round(rel / A)
        ax = np.argmax(np.abs(rel))
        if abs(abs(rel[ax]) - x * A) < 1e-6:  # 32f vertex of the face normal to axis `ax`
            u = [m for m in range(3) if m != ax]
            diag = np.sign(rel[u[0]]) * np.sign(rel[u[1]])
            pos[i, u] = la[0, u] + rel[u] * (1 - s if diag > 0 else 1 + s)
    # only the faces of the La at the origin were made rhombic (all 6 of them)
    ang = quadrilateral_angles(pos, at.cell.array, at.get_chemical_symbols())[0]
    phi = np.degrees(2 * np.arctan((1 - s) / (1 + s)))
    np.testing.assert_allclose(np.sort(ang, axis=-1), np.broadcast_to([phi, phi, 180 - phi, 180 - phi], ang.shape),
                               atol=1e-9)


@pytest.mark.parametrize("phase,equal_faces", [("R-3m", 6), ("C2", 2), ("P-1", 2)])
def test_theta_lowered_phases_symmetry(phase, equal_faces):
    at = lowered(fm3m(A, "conventional"), phase, rng=7)
    ang = quadrilateral_angles(at.positions, at.cell.array, at.get_chemical_symbols())
    assert np.abs(ang - 90).max() > 0.5  # clearly not cubic
    # the subgroup acts about the La at the origin (atom 0; fcc translations are not kept):
    # its symmetry-equivalent faces (C3 + inversion for R-3m; the 2-fold or inversion
    # otherwise) have identical angle sets
    assert np.allclose(at.positions[0], 0.0, atol=0.01)
    _, counts = np.unique(np.round(np.sort(ang[0], axis=-1), 6), axis=0, return_counts=True)
    assert np.all(counts % equal_faces == 0)


def test_theta_bad_input():
    at = fm3m(A, "conventional")
    with pytest.raises(DpqtbError):
        quadrilateral_angles(at.positions[:4], at.cell.array, at.get_chemical_symbols()[:4])


def test_time_averaged_cage_is_a_site_average_under_hops_strain_and_drift():
    """CageAngle's time-averaged structure averages sites, not labelled atoms. Frames of Fm-3m (exact: every
    face angle 90°) with 0.05 Å of antithetic noise (frame pairs +e, −e in fractional coordinates, so that it
    averages to zero exactly), a cell breathing by ±1 % (NPT), the crystal drifting by 0.8 Å (more than half
    the H–H spacing), and from frame 100 on a 2-cycle (two neighbouring protons swapped) and a 3-ring of
    protons: the site average is Fm-3m exactly, while the labelled average of the same frames is distorted by
    the hoppers. 100 frames are relabelled."""
    from dpqtb.analysis.observables import CageAngle
    from dpqtb.analysis.trajectory import Frame
    from dpqtb.structures.periodic import min_image

    at = fm3m(A, "conventional")
    symbols = np.array(at.get_chemical_symbols())
    cell0, frac0 = at.cell.array, at.get_scaled_positions()
    h = np.flatnonzero(symbols == "H")
    d = np.linalg.norm(min_image(at.positions[h][:, None] - at.positions[h][None], cell0), axis=-1)
    d[np.diag_indices_from(d)] = np.inf

    def nearest(q, but=()):  # the proton site nearest to site q (indices into h), other than ``but``
        return int(np.argmin(np.where(np.isin(np.arange(len(h)), but), np.inf, d[q])))

    i, j = int(h[0]), int(h[nearest(0)])
    r1 = nearest(5, [0, nearest(0)])
    r2 = nearest(r1, [0, nearest(0), 5])
    ring = [int(h[5]), int(h[r1]), int(h[r2])]
    assert len({i, j, *ring}) == 5
    rng = np.random.default_rng(11)
    obs, labelled, n = CageAngle(symbols), np.zeros((len(at), 3)), 200
    for t in range(n):
        cell = cell0 * (1.0 + 0.01 * np.sin(0.3 * t))
        frac = frac0.copy()
        if t >= 100:  # protons i <-> j swapped; ring[0] -> ring[1] -> ring[2] -> ring[0]
            frac[[i, j]] = frac0[[j, i]]
            frac[ring] = frac0[np.roll(ring, -1)]
        if t % 2 == 0:  # antithetic noise (+e, then -e): its average is zero, so the site average is exact
            e = rng.normal(0.0, 0.05 / A, (len(at), 3))
        pos = (frac + (e if t % 2 == 0 else -e)) @ cell + np.array([0.004 * t, 0.0, 0.0])
        labelled += pos @ np.linalg.inv(cell)
        obs.update(Frame(t, symbols, pos, cell, float(t)))
    pos, cell = obs.site_averaged_positions()
    site = quadrilateral_angles(pos, cell, symbols)
    np.testing.assert_allclose(site, 90.0, atol=1e-6)
    lab = quadrilateral_angles(labelled / n @ (cell0), cell0, symbols)
    assert np.abs(lab - 90.0).max() > 5.0  # the labelled average: the hoppers' cages distorted
    assert obs.relabelled == 100


def test_site_average_is_unbiased_under_large_thermal_noise():
    """Without hops the labelled average is the plain mean, the unbiased reference. Frames of Fm-3m with
    independent 0.25 Å Gaussian noise (H's quantum spread at 5 K under QTB; 40–50 frames re-match some
    protons to a neighbouring site): the site average equals the labelled one to 0.02° (measured ≤ 0.004°),
    where matching against the first, noisy frame biased it toward that frame's distortion (0.39–0.69° against
    0.31–0.34° in review)."""
    from dpqtb.analysis.observables import CageAngle
    from dpqtb.analysis.trajectory import Frame

    at = fm3m(A, "conventional")
    symbols, cell = np.array(at.get_chemical_symbols()), at.cell.array
    rng = np.random.default_rng(1)
    obs, labelled, n = CageAngle(symbols, every=10**9), np.zeros((len(at), 3)), 1500
    for t in range(n):
        pos = at.positions + rng.normal(0.0, 0.25, (len(at), 3))
        labelled += pos
        obs.update(Frame(t, symbols, pos, cell, float(t)))
    site = np.abs(quadrilateral_angles(*obs.site_averaged_positions(), symbols) - 90.0)
    lab = np.abs(quadrilateral_angles(labelled / n, cell, symbols) - 90.0)
    assert obs.relabelled > 10  # the matching did act
    assert site.mean() == pytest.approx(lab.mean(), abs=0.02) and site.max() == pytest.approx(lab.max(), abs=0.1)
