"""Periodic cross-neighbour search between two point sets (triclinic cells), built on vesin."""

from __future__ import annotations

import numpy as np

from dpqtb import InputError
from dpqtb.structures.periodic import cell_heights, cross_pairs, min_image

__all__ = ["cell_heights", "cross_pairs", "min_image", "nearest"]  # the first three live in structures.periodic


def nearest(a: np.ndarray, b: np.ndarray, cell: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Index in ``b`` of the nearest point to each point of ``a`` and its squared distance.

    The search radius starts at ``cutoff`` and doubles until every point has a neighbour.
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
