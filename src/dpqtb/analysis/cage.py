"""Cage distortion angle θ of LaH10 (paper Fig. 2) over trajectories.

The definition (the interior angles of the six H4 faces of each La's H32 cage, faces found per frame from
the La framework) and the geometry of one structure live in :mod:`dpqtb.structures.cage`; see also
docs/analysis.md. This module accumulates them frame by frame.
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
