"""Cage distortion angle θ of LaH10 (paper Fig. 2).

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
"""

from __future__ import annotations

import numpy as np

from dpqtb.structures.cage import X32F_DEFAULT, AngleStats, angle_stats, quadrilateral_angles, strained_face_angles

__all__ = ["AngleAccumulator", "AngleStats", "angle_stats", "quadrilateral_angles", "strained_face_angles"]


class AngleAccumulator:
    """Per-frame statistics and a histogram (0.5° bins) of θ over frames."""

    def __init__(self, symbols, x: float = X32F_DEFAULT, bin_deg: float = 0.5):
        self.symbols = np.asarray(symbols)
        self.x = x
        self.edges = np.arange(0.0, 180.0 + bin_deg / 2, bin_deg)
        self.hist = np.zeros(len(self.edges) - 1)
        self.rows: list[tuple[float, AngleStats]] = []

    def update(self, positions, cell, time_fs: float) -> AngleStats:
        ang = quadrilateral_angles(positions, cell, self.symbols, self.x)
        self.hist += np.histogram(ang, bins=self.edges)[0]
        st = angle_stats(ang)
        self.rows.append((time_fs, st))
        return st
