"""Checks every structure entering dpqtb passes (``dpqtb md`` and ``dpqtb label`` alike)."""

from __future__ import annotations

import numpy as np

from dpqtb import InputError

#: Two atoms closer than this (Å) overlap: no physical structure has them, not even at 300 GPa
#: (the shortest H–H distance in LaH10 there is ~1.1 Å; the H2 bond is 0.74 Å).
MIN_DISTANCE_A = 0.5


def check_min_distance(atoms, where: str = "structure", min_distance_A: float = MIN_DISTANCE_A) -> None:
    """A one-line DpqtbError if two atoms (periodic images included) are closer than ``min_distance_A``."""
    if not np.all(np.isfinite(atoms.positions)):
        raise InputError(f"{where}: non-finite atomic positions")
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, min_distance_A)
    if len(d):
        k = int(np.argmin(d))
        raise InputError(f"{where}: atoms {i[k]} and {j[k]} overlap (distance {d[k]:.3f} Å "
                         f"< {min_distance_A} Å)")
