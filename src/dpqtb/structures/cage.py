"""Cage distortion angle θ of LaH10 (paper Fig. 2): the geometry of one structure.

Definition used here (see docs/analysis.md): every La sits in an H32 cage with 6 quadrilateral
(square) faces, one facing each of the 6 second-neighbour La atoms (±a along the cubic axes).
θ is the set of *interior angles of these H4 quadrilaterals*: at each vertex, the angle between
the two edges to its cyclic neighbours (3D vectors, minimum image).  In ideal Fm-3m every face is
a square and all 24 angles per cage are exactly 90°; a homogeneous deformation F turns the face
with edges along e_i, e_j into a parallelogram with angles φ and 180° − φ,
cos φ = (F e_i · F e_j)/(|F e_i| |F e_j|).  The paper's Fig. 2b "maximum and minimum cell angle
of the H quadrilateral" are the per-face maximum and minimum interior angles.

Face identification (per frame, from the current La framework, so it survives proton hops):
the 6 second-neighbour La vectors D_k of each La are found (shell between 0.85a and 1.12a with
a = (4V/N_La)^{1/3}); the face centre is La + x·D_k (x = the 32f parameter, 0.379); its 4
vertices are the 4 H nearest to that centre (0.17a away, next H at ≥ 0.30a); they are ordered
cyclically by their polar angle about D_k.

Lives in ``structures`` (not ``analysis``) so that the DFT layer (``dpqtb.dft.relax``) can read the
angles of a relaxed cell; ``dpqtb.analysis.cage`` accumulates them over trajectories.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dpqtb import InputError
from dpqtb.structures.lah10 import X32F_DEFAULT
from dpqtb.structures.periodic import cross_pairs, min_image


def _la_second_shell(la: np.ndarray, cell: np.ndarray, a: float) -> np.ndarray:
    import vesin

    nl = vesin.NeighborList(cutoff=1.12 * a, full_list=True)
    i, d, D = nl.compute(np.ascontiguousarray(la, dtype=np.float64), np.asarray(cell, np.float64),
                         True, quantities="idD")
    sel = d > 0.85 * a
    i, D = i[sel], D[sel]
    counts = np.bincount(i, minlength=len(la))
    if np.any(counts != 6):
        raise InputError("cage angle: the La framework is not fcc-like (need 6 second-neighbour La "
                         f"per La, found {sorted(set(counts.tolist()))})")
    order = np.argsort(i, kind="stable")
    return D[order].reshape(len(la), 6, 3)


def quadrilateral_angles(positions: np.ndarray, cell: np.ndarray, symbols, x: float = X32F_DEFAULT,
                         metal: str = "La", hydrogen: str = "H") -> np.ndarray:
    """Interior angles (degrees) of the 6 quadrilateral faces of every La cage.

    Parameters
    ----------
    positions : (N, 3) array
        Cartesian positions (Å).
    cell : (3, 3) array
        Lattice vectors as rows (Å); periodic.
    symbols : sequence of str
        Chemical symbol of every atom.
    x : float
        The 32f parameter placing each face centre at La + x·D (D: second-neighbour La vector).
    metal, hydrogen : str
        Symbols of the cage centres and the cage atoms.

    Returns
    -------
    (n_La, 6, 4) array
        Angles (degrees), vertices in cyclic order.
    """
    symbols = np.asarray(symbols)
    cell = np.asarray(cell, dtype=float)
    la = positions[symbols == metal]
    h = positions[symbols == hydrogen]
    if len(la) == 0 or len(h) == 0:
        raise InputError(f"cage angle needs both {metal} and {hydrogen} atoms")
    vol = abs(np.linalg.det(cell))
    if vol < 1e-9:
        raise InputError("cage angle needs a periodic cell")
    a = (4.0 * vol / len(la)) ** (1.0 / 3.0)
    D = _la_second_shell(la, cell, a)  # (nLa, 6, 3)
    centres = la[:, None, :] + x * D  # (nLa, 6, 3)
    c = centres.reshape(-1, 3)
    cut = 0.4 * a  # take the 4 nearest H within this radius (ideal: 0.17a, next 0.30a)
    i, j, d2 = cross_pairs(c, h, cell, cut)
    order = np.lexsort((d2, i))
    i, j = i[order], j[order]
    counts = np.bincount(i, minlength=len(c))
    if np.any(counts < 4):
        raise InputError("cage angle: a quadrilateral face has fewer than 4 H near its centre "
                         "(structure too far from the LaH10 clathrate)")
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    take = (start[:, None] + np.arange(4)[None, :]).ravel()
    verts = h[j[take]].reshape(len(c), 4, 3)
    rel = min_image(verts - c[:, None, :], cell)  # (F, 4, 3)
    n = D.reshape(-1, 3)
    n = n / np.linalg.norm(n, axis=1, keepdims=True)
    ref = rel[:, 0] - np.einsum("fx,fx->f", rel[:, 0], n)[:, None] * n
    e1 = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    e2 = np.cross(n, e1)
    phi = np.arctan2(np.einsum("fvx,fx->fv", rel, e2), np.einsum("fvx,fx->fv", rel, e1))
    ordv = np.argsort(phi, axis=1)
    rel = np.take_along_axis(rel, ordv[:, :, None], axis=1)
    prev = np.roll(rel, 1, axis=1) - rel
    nxt = np.roll(rel, -1, axis=1) - rel
    cosang = np.einsum("fvx,fvx->fv", prev, nxt) / (np.linalg.norm(prev, axis=2) * np.linalg.norm(nxt, axis=2))
    ang = np.degrees(np.arccos(np.clip(cosang, -1.0, 1.0)))
    return ang.reshape(len(la), 6, 4)


def strained_face_angles(F: np.ndarray) -> np.ndarray:
    """Analytic interior angles (deg) of the faces normal to x, y, z after the deformation F:
    rows (φ, 180 − φ) with cos φ = F e_i·F e_j/(|F e_i||F e_j|)."""
    F = np.asarray(F, dtype=float)
    out = []
    for k in range(3):
        i, j = [m for m in range(3) if m != k]
        u, v = F[:, i], F[:, j]
        phi = np.degrees(np.arccos(u @ v / (np.linalg.norm(u) * np.linalg.norm(v))))
        out.append((phi, 180.0 - phi))
    return np.array(out)


@dataclass
class AngleStats:
    theta_mean_deg: float
    theta_std_deg: float
    theta_min_deg: float
    theta_max_deg: float
    face_max_mean_deg: float  # mean over faces of the largest interior angle (Fig. 2b, red)
    face_min_mean_deg: float  # mean over faces of the smallest interior angle (Fig. 2b, blue)
    deviation_mean_deg: float  # mean |θ − 90°|


def angle_stats(angles: np.ndarray) -> AngleStats:
    """Summary of face angles (degrees) of :func:`quadrilateral_angles` (last axis: a face's 4 angles).

    Parameters
    ----------
    angles : (..., 4) array
        Interior angles (degrees).

    Returns
    -------
    AngleStats
    """
    a = np.asarray(angles, dtype=float)
    return AngleStats(float(a.mean()), float(a.std()), float(a.min()), float(a.max()),
                      float(a.max(axis=-1).mean()), float(a.min(axis=-1).mean()),
                      float(np.abs(a - 90.0).mean()))
