"""Verlet neighbour lists built with vesin (half or full lists, periodic shifts), rebuilt on demand.

Built where the positions live: on the host with vesin for CPU tensors (in slabs, lean in memory, as
below), on the device with vesin-torch for CUDA tensors (one piece; no host round trip). Both give
the same canonical list (``tests/test_neighbors.py::test_device_backend_equals_host_build``).

The list is built with cutoff + skin and reused until an atom moved more than skin/2 or the cell
changed; distances are then recomputed in torch from the stored pair indices and cell shifts, so
unwrapped positions are fine (the shifts are relative to the positions used at build time).

Storage and build are compact, for million-atom cells (~450 pairs per atom in a full list at
r_cut 6 Å + skin 1 Å in LaH10): ``i`` and ``j`` are int32 (int64 from 2^31 atoms on), the integer
cell shifts ``shifts`` int8 (int16/int32 when a shift exceeds 127 cells), i.e. 11 bytes per pair.
The canonical order (see :meth:`VerletList.update`) comes from one in-place sort of a single int64
key per pair that encodes (i, j, shift); large lists are built in slabs of atoms (a slab of the
cell along one periodic axis plus a halo of one cutoff), so vesin's own output (28 bytes per pair
of the slab and its halo) never exists for the whole list at once.  Peak build memory is then
about 15 bytes per pair (the key; then the key, i and the shifts while j is decoded into the key's
buffer) where the cell is large against the cutoff, and up to ~20 where the halo is wide.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from dpqtb import InputError

#: Verlet skin (Å) of every neighbour list unless given: the config's ``potential.skin_A`` default.
DEFAULT_SKIN_A = 0.5

#: pairs per block when vesin's output or the key is processed piecewise (bounds the temporaries)
_BLOCK = 1 << 19

#: Verlet skin (Å) wherever none is given: the neighbour lists of every potential and the MD config
#: default.  The lists (and so the energies and forces) do not depend on it; the skin only trades
#: list size against rebuild frequency.
DEFAULT_SKIN_A = 0.5


class VerletList:
    """Verlet list of all pairs closer than ``cutoff + skin`` (Å), with periodic images.

    After :meth:`update`: ``i``, ``j`` (integer tensors, int32 below 2^31 atoms) and ``shifts``
    (integer cell shifts, int8 unless a shift exceeds 127 cells) such that the pair vector is
    ``x[j] - x[i] + shifts @ cell``.  ``full=False`` keeps every pair once (i < j, and for the
    self-images of one atom the shift whose first non-zero component is positive); ``full=True``
    keeps both directions.

    ``slabs``: number of slabs the build is split into (None: chosen from the expected pair count,
    1 below ``slab_min_pairs`` pairs); only the memory and time of the build depend on it, never
    the list.
    """

    #: lists expected to hold fewer pairs than this are built in one piece
    slab_min_pairs = 1 << 22
    #: at most this many slabs (each slab's halo costs vesin time)
    max_slabs = 16

    #: build backends: "vesin" (host, numpy; built in slabs, lean in memory), "vesin-torch" (on the
    #: positions' device, e.g. CUDA; one piece), "auto" (vesin-torch for non-CPU tensors, else vesin)
    BACKENDS = ("auto", "vesin", "vesin-torch")

    def __init__(self, cutoff: float, skin: float = DEFAULT_SKIN_A, full: bool = False, slabs: int | None = None,
                 backend: str = "auto"):
        if cutoff <= 0:
            raise InputError("neighbour-list cutoff must be > 0 Å")
        if skin < 0:
            raise InputError("neighbour-list skin must be >= 0 Å")
        if slabs is not None and slabs < 1:
            raise InputError(f"neighbour-list slabs must be >= 1, got {slabs}")
        self.backend = self.check_backend(backend)
        self.backend_used = None
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.full = full
        self.slabs = slabs
        self._ref_pos = None
        self._ref_cell = None
        self.i = self.j = self.shifts = None
        self.n_builds = 0
        self.n_slabs_used = 0

    @classmethod
    def check_backend(cls, backend: str) -> str:
        if backend not in cls.BACKENDS:
            raise InputError(f"neighbour-list backend must be one of {', '.join(cls.BACKENDS)}, got {backend!r}")
        return backend

    def invalidate(self) -> None:
        """Force a rebuild at the next :meth:`update` (whatever the positions)."""
        self._ref_pos = None
        self._ref_cell = None

    def take_pairs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Hand over the pair arrays ``(i, j, shifts)`` of the current list and release them here
        (for a consumer that keeps its own compact copy); the list stays valid for the rebuild test,
        so the next :meth:`update` rebuilds only when an atom moved more than skin/2.  Call
        :meth:`invalidate` first to get the arrays again without motion."""
        if self.i is None:
            raise RuntimeError("VerletList.take_pairs: no pairs held (update() first, once per build)")
        out = (self.i, self.j, self.shifts)
        self.i = self.j = self.shifts = None
        return out

    def _needs_rebuild(self, positions, cell) -> bool:
        """Whether a pair closer than ``cutoff`` may be missing from the list built at (r0, h0).

        Fixed cell: when an atom moved more than skin/2.  Changed cell h (a barostat): the positions are
        carried into the old cell's frame, r' = r h⁻¹ h0 (same fractional coordinates), and with
        D = max |r' - r0| and M = h0⁻¹ h every pair vector obeys |d| >= (|d0| - 2D) σ_min(M), where
        |d0| >= cutoff + skin for every pair left out of the list; so the list is still complete while
        (cutoff + skin - 2D) σ_min(M) > cutoff (for h = h0 this is the fixed-cell rule).  A singular
        cell (an open axis without a vector) rebuilds on any change."""
        if self._ref_pos is None or self._ref_pos.shape != positions.shape:
            return True
        if torch.equal(cell, self._ref_cell):
            disp = (positions - self._ref_pos).norm(dim=-1).max()
            return bool(disp > 0.5 * self.skin)
        h0, h = self._ref_cell.to(positions.dtype), cell.to(positions.dtype)
        try:
            to_old = torch.linalg.solve(h, h0)              # h⁻¹ h0: r' = r h⁻¹ h0
            sigma_min = torch.linalg.svdvals(torch.linalg.solve(h0, h))[-1]
        except RuntimeError:                                # singular cell
            return True
        if not (torch.isfinite(to_old).all() and torch.isfinite(sigma_min)):
            return True
        disp = (positions @ to_old - self._ref_pos).norm(dim=-1).max()
        return bool((self.cutoff + self.skin - 2.0 * disp) * sigma_min <= self.cutoff)

    def update(self, positions: torch.Tensor, cell: torch.Tensor, pbc) -> None:
        """Rebuild the list if needed.  The pairs are in canonical order — lexicographic in
        (i, j, shift) — so that force sums do not depend on when or from which positions the list
        was built: restarts stay bitwise exact."""
        if not self._needs_rebuild(positions, cell):
            return
        backend = self.backend
        if backend == "auto":
            backend = "vesin" if positions.device.type == "cpu" else "vesin-torch"
        self.i = self.j = self.shifts = None  # release the previous list before building the next one
        if backend == "vesin-torch":
            # the same canonical list, built on the positions' device (no host round trip)
            self.i, self.j, self.shifts = _build_torch(positions.detach(), cell.detach(),
                                                       [bool(p) for p in pbc], self.cutoff + self.skin, self.full)
            self.n_slabs_used = 1
        else:
            self._build_host(positions, cell, pbc)
        self.backend_used = backend
        self._ref_pos = positions.detach().clone()
        self._ref_cell = cell.detach().clone()
        self.n_builds += 1

    def _build_host(self, positions, cell, pbc) -> None:
        pos = positions.detach().cpu().numpy().astype(np.float64)
        box = cell.detach().cpu().numpy().astype(np.float64)
        periodic = [bool(p) for p in pbc]
        if not any(periodic):
            box = np.zeros((3, 3))
        i, j, s = _build(pos, box, periodic, self.cutoff + self.skin, self.full, self.slabs,
                         self.slab_min_pairs, self.max_slabs, self)
        dev = positions.device
        self.i = torch.from_numpy(i).to(dev)
        self.j = torch.from_numpy(j).to(dev)
        self.shifts = torch.from_numpy(s).to(dev)

    def vectors(self, positions: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """r_ij = x_j - x_i + S_ij·cell for every stored pair (Å)."""
        return positions[self.j] - positions[self.i] + self.shifts.to(positions.dtype) @ cell


# ---------------------------------------------------------------------------------------------- build
# ---------------------------------------------------------------- pair keys and orientation
# The one home of the integer encodings shared by the list build here and the ghost atoms of
# potential/deepmd.py; every function takes numpy arrays or torch tensors (int64) alike.


def shift_dtype(max_abs: int, torch_dtype: bool = False):
    """Smallest signed integer dtype holding cell shifts of magnitude up to ``max_abs``.

    Parameters
    ----------
    max_abs : int
        Largest |shift| (cells) to hold.
    torch_dtype : bool
        Return the torch dtype instead of the numpy one.

    Returns
    -------
    numpy or torch dtype
        int8, int16, int32 or int64.
    """
    dt = np.int64
    for cand in (np.int8, np.int16, np.int32):
        if max_abs <= np.iinfo(cand).max:
            dt = cand
            break
    return getattr(torch, np.dtype(dt).name) if torch_dtype else dt


def index_dtype(n: int, torch_dtype: bool = False):
    """Smallest index dtype holding 0..n-1: int32 below 2^31 entries, else int64 (numpy or torch)."""
    if torch_dtype:
        return torch.int32 if n < 2**31 else torch.int64
    return np.int32 if n < 2**31 else np.int64


def image_key(atom, shifts, m, bases):
    """int64 key of periodic images (atom, integer cell shift).

    ``key = ((atom·B0 + S0+m0)·B1 + S1+m1)·B2 + S2+m2`` with ``B_a = 2 m_a + 1``: unique for
    |S_a| <= m_a, and ordered like (atom, S0, S1, S2) lexicographically.  A pair (i, j, S) of an
    n-atom list is the image key of atom ``i·n + j``.

    Parameters
    ----------
    atom : int64 array or tensor (P,)
        Atom (or pair) index.
    shifts : int64 array or tensor (P, 3)
        Integer cell shifts.
    m : sequence of 3 int
        Largest |shift| per axis.
    bases : sequence of 3 int
        ``2 m_a + 1``.

    Returns
    -------
    int64 array or tensor (P,)
    """
    b0, b1, b2 = bases
    return ((atom * b0 + (shifts[:, 0] + m[0])) * b1 + (shifts[:, 1] + m[1])) * b2 + (shifts[:, 2] + m[2])


def decode_image_key(key, m, bases):
    """Inverse of :func:`image_key`: ``(atom, shifts)`` as int64 (numpy or torch, like ``key``).

    Parameters
    ----------
    key : int64 array or tensor (P,)
        Non-negative keys of :func:`image_key`.
    m, bases : sequences of 3 int
        As given to :func:`image_key`.

    Returns
    -------
    atom : int64 (P,)
    shifts : int64 (P, 3)
    """
    b0, b1, b2 = bases
    b12 = b1 * b2
    atom, r = key // (b0 * b12), key % (b0 * b12)
    cols = [r // b12 - m[0], (r // b2) % b1 - m[1], r % b2 - m[2]]
    shifts = torch.stack(cols, dim=1) if isinstance(key, torch.Tensor) else np.stack(cols, axis=1)
    return atom, shifts


def canonical_half(i, j, s):
    """Canonical orientation of half-list pairs: (i, j, S) and (j, i, -S) are the same pair; keep
    i < j, and for the self-images of one atom the shift whose first non-zero component is positive.

    Parameters
    ----------
    i, j : int arrays or tensors (P,)
    s : int array or tensor (P, 3)

    Returns
    -------
    (i, j, s) oriented, same kinds as the inputs.
    """
    xp = torch if isinstance(i, torch.Tensor) else np
    first = xp.where(s[:, 0] != 0, s[:, 0], xp.where(s[:, 1] != 0, s[:, 1], s[:, 2]))
    swap = (i > j) | ((i == j) & (first < 0))
    return xp.where(swap, j, i), xp.where(swap, i, j), xp.where(swap[:, None], -s, s)




def _inverse(box, periodic):
    """Inverse of the cell matrix, or None (no periodic axis, or a singular cell)."""
    if not any(periodic):
        return None
    try:
        inv = np.linalg.inv(box)
    except np.linalg.LinAlgError:
        return None
    return inv if np.all(np.isfinite(inv)) else None


def _choose_slabs(n, box, inv, periodic, rc, full, slabs, slab_min_pairs, max_slabs):
    """(number of slabs, slab axis, halo width in fractional units of that axis)."""
    if inv is None or n < 2:
        return 1, 0, 1.0
    # rc / spacing of the lattice planes normal to each periodic axis
    widths = [rc * float(np.linalg.norm(inv[:, a])) if periodic[a] else np.inf for a in range(3)]
    axis = int(np.argmin(widths))
    delta = widths[axis]
    if not np.isfinite(delta):
        return 1, 0, 1.0
    if slabs is not None:
        return int(slabs), axis, delta
    est_pairs = n * n * 4.0 / 3.0 * math.pi * rc**3 / abs(float(np.linalg.det(box))) * (1.0 if full else 0.5)
    if est_pairs < slab_min_pairs or delta >= 0.25:
        return 1, axis, delta
    # vesin's output for a slab is 28 (full list) or 14 (half list) bytes per pair of the slab and
    # its halo, next to the keys (8 bytes per pair of the whole list): aim at <= 7 bytes per pair,
    # i.e. no more than the decode needs (8 + 4 + 3), with the halo work at most twice the slab
    # work (time <= ~3x one build of the whole list)
    room = 7.0 / (28.0 if full else 14.0) - 2.0 * delta
    k = max_slabs if room <= 1.0 / max_slabs else math.ceil(1.0 / room)
    return max(1, min(k, max_slabs, int(1.0 / delta))), axis, delta


def _build(pos, box, periodic, rc, full, slabs, slab_min_pairs, max_slabs, owner):
    from vesin import NeighborList

    n = len(pos)
    inv = _inverse(box, periodic)
    k, axis, delta = _choose_slabs(n, box, inv, periodic, rc, full, slabs, slab_min_pairs, max_slabs)
    owner.n_slabs_used = k
    nl = NeighborList(cutoff=rc, full_list=full)
    if k == 1:
        P, S = nl.compute(points=pos, box=box, periodic=periodic, quantities="PS", copy=False)
        m = [0, 0, 0]
        for a in range(0, len(S), _BLOCK):  # the largest |shift| per axis
            m = np.maximum(m, np.abs(S[a:a + _BLOCK]).max(axis=0)).tolist()
        bases = [2 * int(x) + 1 for x in m]
        if n * n * bases[0] * bases[1] * bases[2] >= 2**63:
            i, j, s = (np.asarray(x, dtype=np.int64) for x in (P[:, 0], P[:, 1], S))
            del P, S, nl
            return _lexsort(i, j, s, n, full)
        key = _slab_keys(P, S, None, None, n, m, bases, full)
        del P, S
    else:
        # per-axis bound on |shift| of any pair closer than rc, from the fractional extent of the
        # (possibly unwrapped) positions: S = f(r) - (f_j - f_i) with |f(r)_a| <= rc / d_a
        frac = pos @ inv
        m = [int(math.floor(rc * float(np.linalg.norm(inv[:, a])) + float(np.ptp(frac[:, a])))) + 1
             if periodic[a] else 0 for a in range(3)]
        bases = [2 * x + 1 for x in m]
        if n * n * bases[0] * bases[1] * bases[2] >= 2**63:
            del nl
            owner.n_slabs_used = 1
            return _build(pos, box, periodic, rc, full, 1, slab_min_pairs, max_slabs, owner)
        u = frac[:, axis] - np.floor(frac[:, axis])  # wrapped fractional coordinate along the slab axis
        del frac
        keys = []
        for s in range(k):
            lo, hi = s / k, (s + 1) / k
            own = (u >= lo) & (u < hi) if s < k - 1 else (u >= lo)
            # halo: atoms within delta (periodically) of [lo, hi) along the axis; vesin then sees
            # every neighbour of the slab's atoms
            dist = np.where(own, 0.0, np.minimum(np.mod(lo - u, 1.0), np.mod(u - hi, 1.0)))
            ids = np.flatnonzero(own | (dist <= delta + 1e-9))
            P, S = nl.compute(points=np.ascontiguousarray(pos[ids]), box=box, periodic=periodic,
                              quantities="PS", copy=False)
            keys.append(_slab_keys(P, S, ids, own[ids], n, m, bases, full))
            del own, dist, ids, P, S
        key = np.empty(sum(len(x) for x in keys), dtype=np.int64)
        at = 0
        while keys:  # copy slab by slab, releasing each slab's keys at once
            x = keys.pop(0)
            key[at:at + len(x)] = x
            at += len(x)
            del x
    del nl  # vesin's buffers
    key.sort()  # in place; the keys are unique, so this is the canonical (i, j, shift) order
    return _decode(key, n, m, bases)


def _build_torch(positions, cell, periodic, rc, full):
    """The canonical list of :func:`_build` computed with vesin-torch on the positions' device.

    vesin's pairs are put in canonical orientation and sorted by the same int64 key, so the result
    equals the host build exactly (same pairs, same order, same dtypes).  Temporaries: vesin's
    output (int64 pairs and int32 shifts, 28 bytes per pair) plus the key and the sort (16 bytes per
    pair); not split into slabs."""
    try:
        from vesin_torch import NeighborList
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise InputError("neighbour-list backend 'vesin-torch' needs the vesin-torch package") from exc
    dev = positions.device
    n = positions.shape[0]
    if n == 0:
        return (torch.empty(0, dtype=torch.int32, device=dev), torch.empty(0, dtype=torch.int32, device=dev),
                torch.empty((0, 3), dtype=torch.int8, device=dev))
    box = cell.to(torch.float64)
    if not any(periodic):
        box = torch.zeros((3, 3), dtype=torch.float64, device=dev)
    # vesin's CUDA kernel writes into a fixed buffer of pairs per point (VESIN_CUDA_MAX_PAIRS_PER_POINT,
    # by default ~rc³, too small for dense hydrides: ~520 per atom within 7 Å in LaH10): size it from
    # the density with a margin, and double it if vesin still reports an overflow
    vol = abs(float(torch.linalg.det(box))) if all(periodic) else 0.0
    per_point = n if vol == 0.0 else 4.0 / 3.0 * math.pi * rc**3 * n / vol
    capacity = max(128, int(1.5 * per_point) + 32)
    user_cap = os.environ.get("VESIN_CUDA_MAX_PAIRS_PER_POINT")
    for _ in range(6):
        if user_cap is None and dev.type == "cuda":
            os.environ["VESIN_CUDA_MAX_PAIRS_PER_POINT"] = str(capacity)
        nl = NeighborList(cutoff=rc, full_list=full)
        try:
            P, S = nl.compute(points=positions.to(torch.float64).contiguous(), box=box.contiguous(),
                              periodic=torch.tensor(periodic, device=dev), quantities="PS", copy=True)
            break
        except RuntimeError as exc:
            if "maximum capacity" not in str(exc) or user_cap is not None:
                raise
            capacity *= 2
        finally:
            del nl
    else:
        raise InputError(f"vesin-torch: more than {capacity // 2} pairs per atom; use neighbour backend 'vesin'")
    i, j, s = P[:, 0].to(torch.int64), P[:, 1].to(torch.int64), S.to(torch.int64)
    del P, S
    if not full:
        i, j, s = canonical_half(i, j, s)
    m = s.abs().amax(dim=0).tolist() if len(s) else [0, 0, 0]
    bases = [2 * int(x) + 1 for x in m]
    idx_t = index_dtype(n, torch_dtype=True)
    sh_t = shift_dtype(max(m), torch_dtype=True)
    if n * n * bases[0] * bases[1] * bases[2] >= 2**63:  # no single int64 key: stable sorts, last key first
        order = torch.arange(len(i), device=dev)
        for col in (s[:, 2], s[:, 1], s[:, 0], j, i):
            order = order[torch.sort(col[order], stable=True).indices]
        return i[order].to(idx_t), j[order].to(idx_t), s[order].to(sh_t)
    key = image_key(i * n + j, s, m, bases)
    del i, j, s
    key = torch.sort(key).values
    q, s = decode_image_key(key, m, bases)
    del key
    i, j = (q // n).to(idx_t), (q % n).to(idx_t)
    del q
    return i, j, s.to(sh_t)


def _slab_keys(P, S, ids, own, n, m, bases, full):
    """int64 keys ((i·n + j)·B0 + S0+m0)·B1 + S1+m1)·B2 + S2+m2 of vesin's pairs (P, S), in
    canonical orientation, whose first atom is one of the slab's own atoms.

    ids: global indices of the points handed to vesin (ascending; None: all atoms, all own);
    own: which of them belong to the slab."""
    npairs = len(P)
    if ids is not None:
        keep = np.empty(npairs, dtype=bool)
        for a in range(0, npairs, _BLOCK):
            p = P[a:a + _BLOCK].astype(np.int64)
            # canonical first atom: i (full list) or min(i, j) (half list; ids ascending keeps the order)
            keep[a:a + _BLOCK] = own[p[:, 0] if full else p.min(axis=1)]
            del p
        count = int(keep.sum())
    else:
        keep, count = None, npairs
    out = np.empty(count, dtype=np.int64)
    at = 0
    for a in range(0, npairs, _BLOCK):
        p = P[a:a + _BLOCK].astype(np.int64)
        s = S[a:a + _BLOCK].astype(np.int64)
        if keep is not None:
            kk = keep[a:a + _BLOCK]
            p, s = p[kk], s[kk]
            p = ids[p]
        i, j = p[:, 0], p[:, 1]
        if not full:
            i, j, s = canonical_half(i, j, s)
        if len(s) and (np.abs(s).max(axis=0) > m).any():
            raise InputError("neighbour list: a cell shift exceeds its bound (internal error)")
        key = image_key(i * n + j, s, m, bases)
        out[at:at + len(key)] = key
        at += len(key)
        del p, s, i, j, key
    return out


def _decode(key, n, m, bases):
    """i, j (int32 below 2^31 atoms) and integer shifts from the sorted keys.

    Below 2^31 atoms j is decoded in place into the first half of the key's own buffer (block by
    block: a block's int32 outputs only overwrite keys already read), which is then shrunk, so the
    decode needs 8 + 4 + 3 bytes per pair at most instead of 8 + 11."""
    npairs = len(key)
    small = n < 2**31
    i = np.empty(npairs, dtype=index_dtype(n))
    j = key.view(np.int32)[:npairs] if small else np.empty(npairs, dtype=np.int64)
    s = np.empty((npairs, 3), dtype=shift_dtype(max(m)))
    for a in range(0, npairs, _BLOCK):
        q, sb = decode_image_key(key[a:a + _BLOCK], m, bases)  # new arrays: the block is read before j is written
        i[a:a + _BLOCK], j[a:a + _BLOCK] = np.divmod(q, n)
        s[a:a + _BLOCK] = sb
        del q, sb
    if small:
        del j  # the only view of key: the buffer may be shrunk now
        key.resize((npairs + 1) // 2, refcheck=False)  # realloc: releases the second half
        j = key.view(np.int32)[:npairs]
    return i, j, s


def _lexsort(i, j, s, n, full):
    """Fallback when (i, j, shift) does not fit one int64 key (astronomically unwrapped positions
    in a tiny cell): int64 arrays and a lexsort."""
    if not full:
        i, j, s = canonical_half(i, j, s)
    order = np.lexsort((s[:, 2], s[:, 1], s[:, 0], j, i))
    idx_t = index_dtype(n)
    smax = int(np.abs(s).max()) if len(s) else 0
    return i[order].astype(idx_t), j[order].astype(idx_t), s[order].astype(shift_dtype(smax))
