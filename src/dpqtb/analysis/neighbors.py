"""Periodic cross-neighbour search between two point sets (triclinic cells), built on vesin."""

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
        The three face-to-face heights (Å).
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
        Displacements (Å).
    cell : (3, 3) array
        Lattice vectors as rows (Å).

    Returns
    -------
    (..., 3) array
        The shortest periodic images of ``d`` (Å).
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

    Returns ``(i, j, d2)`` with d2 the squared minimum-image distance (Å²); each (i, j) appears
    once even when several periodic images fall inside the cutoff (the closest one is kept).
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


def nearest(a: np.ndarray, b: np.ndarray, cell: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Index in ``b`` of the nearest point to each point of ``a`` and its squared distance.

    The search radius starts at ``cutoff`` and doubles until every point has a neighbour.

    Parameters
    ----------
    a, b : (Na, 3), (Nb, 3) arrays
        Query and target points (Å).
    cell : (3, 3) array
        Lattice vectors as rows (Å).
    cutoff : float
        First search radius (Å).

    Returns
    -------
    index : (Na,) int array
        Index in ``b`` of each point's nearest target.
    d2 : (Na,) array
        Its squared minimum-image distance (Å²).
    """
    na = len(a)
    best = np.full(na, -1, dtype=np.int64)
    bd2 = np.full(na, np.inf)
    todo = np.arange(na)
    r = float(cutoff)
    rmax = 2.0 * np.linalg.norm(np.asarray(cell, dtype=float).sum(axis=0)) + 1.0
    while len(todo):
        i, j, d2 = cross_pairs(a[todo], b, cell, r)
        order = np.lexsort((d2, i))
        i, j, d2 = i[order], j[order], d2[order]
        first = np.ones(len(i), dtype=bool)
        first[1:] = i[1:] != i[:-1]
        best[todo[i[first]]] = j[first]
        bd2[todo[i[first]]] = d2[first]
        todo = todo[best[todo] < 0]
        if r > rmax:
            if len(todo):
                raise InputError("nearest-neighbour search failed (empty target set?)")
            break
        r *= 2.0
    return best, bd2
