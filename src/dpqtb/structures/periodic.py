"""Periodic geometry of point sets in triclinic cells: cell heights, minimum images, and the
cross-neighbour pairs of two point sets (built on vesin).

The lowest layer that serves both the analysis of trajectories (``dpqtb.analysis``) and the
structure code the DFT layer uses (``dpqtb.structures.cage``).
"""

from __future__ import annotations

import numpy as np

from dpqtb import InputError


def cell_heights(cell: np.ndarray) -> np.ndarray:
    """Distances (Å) between opposite faces of the cell spanned by the rows of ``cell``.

    Parameters
    ----------
    cell : (3, 3) array
        Lattice vectors as rows (Å).

    Returns
    -------
    (3,) array
        Height along each axis (Å).
    """
    cell = np.asarray(cell, dtype=float)
    vol = abs(np.linalg.det(cell))
    if not np.isfinite(vol) or vol < 1e-12:
        raise InputError("the simulation cell is singular (zero volume)")
    return np.array([vol / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)])


def min_image(d: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Minimum-image version of Cartesian displacements ``d`` (..., 3).

    Exact for any vector whose minimum image is shorter than half the smallest cell height;
    otherwise the 27 neighbouring images of the rounded fractional vector are searched.

    Parameters
    ----------
    d : (..., 3) array
        Cartesian displacements (Å).
    cell : (3, 3) array
        Lattice vectors as rows (Å).

    Returns
    -------
    (..., 3) array
        The shortest periodic image of each displacement (Å).
    """
    cell = np.asarray(cell, dtype=float)
    inv = np.linalg.inv(cell)
    f = d @ inv
    f = f - np.round(f)
    out = f @ cell
    half = 0.5 * cell_heights(cell).min()
    bad = np.linalg.norm(out, axis=-1) > half
    if np.any(bad):
        shifts = np.array(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij")).reshape(3, -1).T
        cand = out[bad][:, None, :] + (shifts @ cell)[None]
        k = np.argmin(np.einsum("nkx,nkx->nk", cand, cand), axis=1)
        out[bad] = cand[np.arange(len(k)), k]
    return out


def cross_pairs(a: np.ndarray, b: np.ndarray, cell: np.ndarray, cutoff: float,
                pbc: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i in ``a``, j in ``b``) closer than ``cutoff`` (minimum image).

    Parameters
    ----------
    a, b : (Na, 3), (Nb, 3) arrays
        Cartesian positions (Å).
    cell : (3, 3) array
        Lattice vectors as rows (Å).
    cutoff : float
        Pair cutoff (Å).
    pbc : bool
        Periodic along all axes (False: open boundaries).

    Returns
    -------
    i, j, d2 : arrays
        Index into ``a``, index into ``b`` and the squared minimum-image distance (Å²); each
        (i, j) appears once even when several periodic images fall inside the cutoff (the
        closest one is kept).
    """
    import vesin

    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    na = len(a)
    pts = np.concatenate([a, b])
    box = np.asarray(cell, dtype=np.float64) if pbc else np.zeros((3, 3))
    nl = vesin.NeighborList(cutoff=float(cutoff), full_list=False)
    i, j, d = nl.compute(pts, box, bool(pbc), quantities="ijd")
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    d2 = np.asarray(d, dtype=np.float64) ** 2
    # half list: a pair appears once in either order -> orient it as (a-index, b-index)
    ab = (i < na) & (j >= na)
    ba = (j < na) & (i >= na)
    ii = np.concatenate([i[ab], j[ba]])
    jj = np.concatenate([j[ab], i[ba]]) - na
    dd = np.concatenate([d2[ab], d2[ba]])
    # identical points (distance 0) inside the same image are reported by vesin; periodic images
    # of the same pair may be reported several times: keep the minimum for each (i, j)
    if len(ii):
        key = ii * len(b) + jj
        order = np.lexsort((dd, key))
        key = key[order]
        first = np.ones(len(key), dtype=bool)
        first[1:] = key[1:] != key[:-1]
        sel = order[first]
        ii, jj, dd = ii[sel], jj[sel], dd[sel]
    return ii, jj, dd
