"""Verlet neighbour lists built with vesin (half lists, periodic shifts), rebuilt on demand.

The list is built with cutoff + skin and reused until an atom moved more than skin/2 or the cell
changed; distances are then recomputed in torch from the stored pair indices and cell shifts, so
unwrapped positions are fine (the shifts are relative to the positions used at build time).
"""

from __future__ import annotations

import numpy as np
import torch

from dpqtb import DpqtbError


class VerletList:
    def __init__(self, cutoff: float, skin: float = 0.5, full: bool = False):
        if cutoff <= 0:
            raise DpqtbError("neighbour-list cutoff must be > 0 Å")
        if skin < 0:
            raise DpqtbError("neighbour-list skin must be >= 0 Å")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.full = full
        self._ref_pos = None
        self._ref_cell = None
        self.i = self.j = self.shifts = None
        self.n_builds = 0

    def _needs_rebuild(self, positions, cell) -> bool:
        if self._ref_pos is None or self._ref_pos.shape != positions.shape:
            return True
        if not torch.equal(cell, self._ref_cell):
            return True
        disp = (positions - self._ref_pos).norm(dim=-1).max()
        return bool(disp > 0.5 * self.skin)

    def update(self, positions: torch.Tensor, cell: torch.Tensor, pbc) -> None:
        if not self._needs_rebuild(positions, cell):
            return
        from vesin import NeighborList

        pos = positions.detach().cpu().numpy().astype(np.float64)
        box = cell.detach().cpu().numpy().astype(np.float64)
        periodic = [bool(p) for p in pbc]
        if not any(periodic):
            box = np.zeros((3, 3))
        nl = NeighborList(cutoff=self.cutoff + self.skin, full_list=self.full)
        i, j, s = nl.compute(points=pos, box=box, periodic=periodic, quantities="ijS")
        # Canonical order (i < j, then lexicographic in i, j, shift) so that force sums do not depend
        # on when or from which positions the list was built: restarts stay bitwise exact.
        i, j, s = i.astype(np.int64), j.astype(np.int64), s.astype(np.int64)
        if not self.full:
            # (i, j, S) and (j, i, -S) are the same pair; keep i < j, and for self-images of one atom the
            # shift whose first non-zero component is positive.
            nz = s != 0
            first = s[np.arange(len(s)), np.argmax(nz, axis=1)] if len(s) else np.zeros(0, dtype=np.int64)
            swap = (i > j) | ((i == j) & (first < 0))
            i, j = np.where(swap, j, i), np.where(swap, i, j)
            s = np.where(swap[:, None], -s, s)
        order = np.lexsort((s[:, 2], s[:, 1], s[:, 0], j, i))
        i, j, s = i[order], j[order], s[order]
        dev = positions.device
        self.i = torch.as_tensor(i.astype(np.int64), device=dev)
        self.j = torch.as_tensor(j.astype(np.int64), device=dev)
        self.shifts = torch.as_tensor(s.astype(np.float64), dtype=positions.dtype, device=dev)
        self._ref_pos = positions.detach().clone()
        self._ref_cell = cell.detach().clone()
        self.n_builds += 1

    def vectors(self, positions: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """r_ij = x_j - x_i + S_ij·cell for every stored pair (Å)."""
        return positions[self.j] - positions[self.i] + self.shifts @ cell
