"""Deep Potential force provider: a frozen DeePMD-kit (PyTorch backend) model behind dpqtb's
potential interface.

dpqtb builds the neighbour list itself (vesin, a Verlet list with a skin that is reused until an
atom moved more than skin/2), turns periodic images into explicit *ghost* atoms, and calls the
model's ``forward_lower`` — the same entry point LAMMPS uses — on the local atoms plus their
ghosts.  Ghost forces are folded back onto the atoms they image.  The atoms are processed in
chunks of at most ``chunk_atoms`` local atoms (each chunk with its own ghost shell), so memory
stays bounded for any cell size; the energy, forces and virial are sums over chunks and do not
depend on the chunking (for descriptors without message passing, e.g. se_e2_a; models with
message passing are evaluated in one piece).

The neighbour list handed to the model holds, for every atom, the neighbours within r_cut split
by species into blocks of ``sel[t]`` slots.  If an atom has more than ``sel[t]`` neighbours of
species t, the nearest ``sel[t]`` are kept — what ``DeepPot.eval`` does — and the event is
counted in :attr:`DeepPotential.n_sel_overflow` (the energy surface is then not smooth: retrain
with a larger sel).

Units: eV, Å; the virial W_ab = -∂E/∂ε_ab (eV), the convention of the rest of the engine.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from dpqtb import InputError
from dpqtb.potential.base import Potential, PotentialOutput
from dpqtb.potential.neighbors import (DEFAULT_SKIN_A, VerletList, decode_image_key, image_key, index_dtype,
                                       shift_dtype)


#: TorchScript's graph executor optimisation for the model calls; off, so that every call returns the
#: same numbers. With it on (torch's default), the profiling executor runs the first call of a loaded
#: model on the unoptimised graph (autograd's own derivative formulas) and from the second call on an
#: optimised plan whose prim::DifferentiableGraph nodes take their derivatives from TorchScript's
#: symbolic autodiff (linear, tanh, matmul): the forces, computed by torch.autograd.grad inside
#: forward_lower, then round differently in float32 (~5e-7 eV/Å on the shipped model), so a run
#: resumed in a fresh process left the uninterrupted one at its first step, and the numbers depended
#: on the call history (guard failures on new ghost counts switch plans). Cost: none measured — QTB
#: MD of the 44-atom cell with builtin:lah10, 1 CPU thread: 29.5 ms/step unoptimised vs 32.6 optimised
#: (medians of 3 × 300 steps, 2026-12-06).
_JIT_OPTIMIZE = False


def _load_deepmd_ops() -> None:
    """Import DeePMD-kit's PyTorch backend so that the custom ops of frozen models are registered."""
    try:
        import importlib

        importlib.import_module("deepmd.pt")
        importlib.import_module("deepmd.pt.cxx_op")  # the tabulate ops of compressed models
    except ImportError as exc:
        raise InputError("DeePMD-kit (PyTorch backend) is not installed: run scripts/install_deepmd.sh") from exc


def load_frozen_model(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load a frozen DeePMD-kit PyTorch model (``dp --pt freeze`` / ``compress`` output, *.pth).

    Parameters
    ----------
    path : str or os.PathLike
        The model file.
    device : str or torch.device
        Device to load it on.

    Returns
    -------
    torch.jit.ScriptModule
        The model, in eval mode, with ``forward_lower``.

    Raises
    ------
    InputError
        Missing, not *.pth, unreadable, or not an energy model; DeePMD-kit not installed.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Deep Potential model file not found: {path}")
    if path.suffix != ".pth":
        raise InputError(f"{path}: expected a frozen DeePMD-kit PyTorch model (*.pth from `dp --pt freeze`)")
    _load_deepmd_ops()
    try:
        model = torch.jit.load(str(path), map_location=torch.device(device))
    except Exception as exc:  # torch raises RuntimeError/ValueError/zip errors for corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not a readable frozen DeePMD-kit PyTorch model ({first})") from exc
    for attr in ("forward_lower", "get_rcut", "get_sel", "get_type_map"):
        if not hasattr(model, attr):
            raise InputError(f"{path}: not a DeePMD-kit energy model (no {attr})")
    model.eval()
    return model


class DeepPotential(Potential):
    """A frozen DeePMD-kit model as a dpqtb potential.

    Call :meth:`bind` with the system's type map once, then call the potential with positions
    (N, 3) or (B, N, 3) (Å), the cell (3, 3) or (B, 3, 3) (Å, rows are lattice vectors), species
    indices (N,) into that type map and the periodicity; it returns a
    :class:`~dpqtb.potential.base.PotentialOutput` (energy eV, forces eV/Å, virial eV) in the
    positions' dtype, on the model's device.  Each replica of a batch keeps its own Verlet list.

    Parameters
    ----------
    model : str or os.PathLike
        Path of a frozen DeePMD-kit PyTorch model (*.pth); see :func:`dpqtb.potential.builtin.resolve`
        for ``builtin:NAME``.
    device : str or torch.device
        Torch device the model and the state live on ("cpu", "cuda", ...).
    skin_A : float
        Verlet skin of the neighbour list (Å); the results do not depend on it.
    chunk_atoms : int or None
        At most this many local atoms per model call (None: all at once).
    neighbour_backend : str or None
        Where the neighbour list is built ("auto": vesin-torch on the model's device for CUDA,
        vesin on the host for CPU; or "vesin" / "vesin-torch"; None: $DPQTB_NL_BACKEND or "auto");
        the list is the same.

    Raises
    ------
    InputError
        A missing or unreadable model file, a model with frame/atomic parameters, a bad
        ``chunk_atoms`` or backend.
    """

    batched = False

    def __init__(self, model: str | os.PathLike, device: str | torch.device = "cpu", skin_A: float = DEFAULT_SKIN_A,
                 chunk_atoms: int | None = None, neighbour_backend: str | None = None):
        if neighbour_backend is None:  # the list is the same whatever builds it; DPQTB_NL_BACKEND picks
            neighbour_backend = os.environ.get("DPQTB_NL_BACKEND", "auto")
        self.neighbour_backend = VerletList.check_backend(neighbour_backend)  # fail at construction
        self.path = Path(model)
        self.device = torch.device(device)
        self.model = load_frozen_model(self.path, self.device)
        self.rcut = float(self.model.get_rcut())
        self.sel = [int(s) for s in self.model.get_sel()]
        self.type_map = tuple(str(t) for t in self.model.get_type_map())
        if self.model.get_dim_fparam() or self.model.get_dim_aparam():
            raise InputError(f"{self.path}: models with frame/atomic parameters are not supported")
        self.message_passing = bool(self.model.has_message_passing()) if hasattr(self.model, "has_message_passing") \
            else True
        if chunk_atoms is not None and chunk_atoms < 1:
            raise InputError(f"chunk_atoms must be >= 1, got {chunk_atoms}")
        if chunk_atoms is not None and self.message_passing:
            raise InputError(f"{self.path}: the model's descriptor passes messages between atoms; it cannot be "
                             "evaluated in chunks (set chunk_atoms to none)")
        self.chunk_atoms = chunk_atoms
        self.skin = float(skin_A)
        self._model_type: torch.Tensor | None = None  # system species index -> model type index
        self._lists: list[_GhostList] = []
        self.n_sel_overflow = 0

    # ------------------------------------------------------------------ interface
    def bind(self, type_map: tuple[str, ...]) -> None:
        """Map the system's species (``type_map``, names) to the model's types.

        Parameters
        ----------
        type_map : tuple of str
            Species names; the ``species`` indices of later calls index this tuple.

        Raises
        ------
        InputError
            A species the model does not know.
        """
        missing = [s for s in type_map if s not in self.type_map]
        if missing:
            raise InputError(f"the Deep Potential {self.path.name} has no species {missing} "
                             f"(its type map is {list(self.type_map)})")
        self._model_type = torch.tensor([self.type_map.index(s) for s in type_map], dtype=torch.int64,
                                        device=self.device)

    def __call__(self, positions, cell, species, pbc=(True, True, True)) -> PotentialOutput:
        if self._model_type is None:
            raise InputError("DeepPotential.bind(type_map) must be called before evaluating it")
        if positions.dim() == 2:
            return self._compute(positions, cell, species, pbc, 0)
        b = positions.shape[0]
        cells = cell if cell.dim() == 3 else cell.expand(b, 3, 3)
        outs = [self._compute(positions[k], cells[k], species, pbc, k) for k in range(b)]
        return PotentialOutput(torch.stack([o.energy for o in outs]), torch.stack([o.forces for o in outs]),
                               torch.stack([o.virial for o in outs]))

    # ------------------------------------------------------------------ evaluation
    def _compute(self, positions, cell, species, pbc, replica: int) -> PotentialOutput:
        while len(self._lists) <= replica:
            self._lists.append(_GhostList(self.rcut, self.skin, self.sel, self.neighbour_backend))
        gl = self._lists[replica]
        mtype = self._model_type[species]
        n = positions.shape[0]
        chunk = n if (self.chunk_atoms is None or self.message_passing) else self.chunk_atoms
        gl.update(positions, cell, pbc, mtype, chunk)
        ext_pos = gl.extended_positions(positions, cell)
        energy = torch.zeros((), dtype=positions.dtype, device=positions.device)
        forces = torch.zeros_like(positions)
        # virial per local atom (Σ over an atom's images of F ⊗ r), summed over the atoms at the end: a sum
        # of fixed length in a fixed order, so W does not depend on which ghost atoms the Verlet list
        # holds (the model's own virial sums over all extended atoms, whose number and order depend on
        # where the list was last built: a resumed run would differ in the last bits of the pressure)
        atom_virial = torch.zeros(positions.shape[0], 9, dtype=positions.dtype, device=positions.device)
        for c in gl.chunks:
            coord = gl.chunk_coords(c, ext_pos)
            atype = gl.chunk_types(c)
            nlist, overflow = gl.chunk_nlist(c, coord, atype, positions)
            if overflow:
                if self.n_sel_overflow == 0:
                    warnings.warn(f"Deep Potential: an atom has more neighbours of one species within "
                                  f"{self.rcut} Å than the model's sel {self.sel}; the nearest are kept "
                                  "(as DeepPot.eval does) but the energy surface is not smooth", stacklevel=2)
                self.n_sel_overflow += int(overflow)
            ext_atom = gl.chunk_mapping(c)
            mapping = ext_atom.unsqueeze(0) if self.message_passing else None
            with torch.jit.optimized_execution(_JIT_OPTIMIZE):  # see _JIT_OPTIMIZE: the same numbers every call
                out = self.model.forward_lower(coord.unsqueeze(0), atype.unsqueeze(0), nlist.unsqueeze(0), mapping)
            # detach: the energy carries the chunk's autograd graph (forces come from it); keeping it
            # alive across chunks would hold every chunk's activations at once
            energy = energy + out["energy"].detach().reshape(()).to(positions.dtype)
            f_ext = out["extended_force"].detach()[0].to(positions.dtype)
            forces.index_add_(0, ext_atom, f_ext)
            atom_virial.index_add_(0, ext_atom, (f_ext[:, :, None] * coord[:, None, :]).reshape(-1, 9))
            del out
        # W_ab = Σ F_a r_b over the extended atoms = -∂E/∂ε_ab (DeePMD's virial, to 1e-13 relative);
        # symmetrise the round-off of the per-atom sum so that W is exactly symmetric.
        virial = atom_virial.sum(0).reshape(3, 3)
        virial = 0.5 * (virial + virial.T)
        return PotentialOutput(energy.detach(), forces.detach(), virial.detach())


#: pairs per block when _GhostList processes the whole Verlet list piecewise (bounds the temporaries)
_PAIR_BLOCK = 1 << 19


class _GhostList:
    """A full Verlet list with periodic images turned into explicit ghost atoms, split in chunks.

    At each rebuild: the unique (atom, cell shift) images that appear as neighbours become ghost
    atoms (extended index N + g); pairs are ordered by (i, species of j) so that the per-species
    slots of DeePMD's neighbour list follow from a running count; every chunk of local atoms gets
    the list of extended atoms it needs (its own atoms first, as forward_lower requires).

    Storage is compact, for million-atom cells (a full list with r_cut 6 Å + skin holds ~450 pairs
    per atom): the only per-pair array kept is each chunk's ``local`` (chunk-local extended index
    of j, int32); i follows from the per-atom pair offsets ``p_start`` and the species of j from
    ``ext_type``, so the per-(i, species) ranks, slots and sel bounds are recomputed per chunk from
    integers (exactly the values a stored copy would hold).  Cell shifts are kept once per ghost
    atom as int8 (int16/int32 if a shift exceeds 127 cells), atom indices as int32 below 2^31; the
    Verlet list's own pair arrays (int32 i, j, int8 shifts) are released once consumed, and they
    are consumed block by block and chunk by chunk, so the build needs no full-size temporaries.
    Small lists (:attr:`cache_pairs_max`) also keep the per-pair integers of :meth:`chunk_nlist`
    between rebuilds, which only leaves the distances to compute per step.
    """

    #: lists with at most this many pairs keep their per-pair integers between rebuilds (56 B per pair:
    #: 235 MB at this bound, ~9,000 atoms of LaH10 with r_cut 6 Å); larger lists recompute them per call
    cache_pairs_max = 1 << 22

    def __init__(self, rcut: float, skin: float, sel: list[int], backend: str = "auto"):
        self.rcut = rcut
        self.sel = sel
        self.sel_offset = [0] + list(np.cumsum(sel)[:-1])
        self.vl = VerletList(rcut, skin, full=True, backend=backend)
        self._built = -1
        self.chunks: list[dict] = []
        self._chunk_size = None
        self.n_pairs = 0

    def update(self, positions, cell, pbc, mtype, chunk_size: int) -> None:
        self.vl.update(positions, cell, pbc)
        if self.vl.n_builds == self._built:
            if chunk_size == self._chunk_size:
                return
            # the global pair arrays are not kept (only per-chunk ones): re-chunking needs a rebuild
            self.vl.invalidate()
            self.vl.update(positions, cell, pbc)
        self._built, self._chunk_size = self.vl.n_builds, chunk_size
        self.chunks = []
        dev = positions.device
        n = positions.shape[0]
        # the Verlet list's pair arrays (int32 i, j, int8 shifts, canonical order) are not needed
        # again (rebuilds only test positions and cell): take them over and release them here, so
        # that only the compact arrays below stay alive; everything per pair is done blockwise
        i, j, s = self.vl.take_pairs()
        self.n_pairs = int(i.shape[0])
        # i is sorted (canonical order), so the pairs of atom k are p_start[k]:p_start[k+1]
        per_atom = torch.bincount(i, minlength=n)
        del i
        self.p_start = torch.cat([torch.zeros(1, dtype=torch.int64, device=dev), torch.cumsum(per_atom, 0)])
        del per_atom
        # ghost atoms: the unique (j, shift) with a non-zero shift, numbered in (j, shift) order;
        # image_key(j, shift) with the same bound m on every axis (m: largest |shift|)
        m = 0
        for a in range(0, self.n_pairs, _PAIR_BLOCK):
            m = max(m, int(s[a:a + _PAIR_BLOCK].abs().max()))
        base = 2 * m + 1
        ukey = self._ghost_keys(j, s, n, m, base)
        g_atom, g_shift = decode_image_key(ukey, [m] * 3, [base] * 3)
        n_ext = n + int(g_atom.shape[0])
        idx_t = index_dtype(n_ext, torch_dtype=True)
        self.ext_atom = torch.cat([torch.arange(n, device=dev), g_atom]).to(idx_t)  # extended -> local atom
        self.ext_shift = torch.cat([torch.zeros(n, 3, dtype=torch.int64, device=dev), g_shift]).to(
            shift_dtype(m, torch_dtype=True))
        ntypes = len(self.sel)
        self.ext_type = mtype[self.ext_atom].to(torch.int8 if ntypes <= 127 else torch.int64)
        del g_atom, g_shift
        self._t_slot0 = torch.tensor(self.sel_offset, dtype=torch.int64, device=dev)
        self._t_sel = torch.tensor(self.sel, dtype=torch.int64, device=dev)
        # chunks of consecutive local atoms; each chunk is a pair range, processed in blocks of
        # whole atoms (~_PAIR_BLOCK pairs), so a chunk of all atoms needs no full-size temporaries
        for a in range(0, n, chunk_size):
            b = min(a + chunk_size, n)
            pa, pb = int(self.p_start[a]), int(self.p_start[b])
            blocks = self._atom_blocks(a, b)
            # extended index of each pair's neighbour (j itself, or the ghost atom of (j, shift)),
            # the pairs of each atom ordered by species of j; stable, so the canonical order of the
            # list is kept inside (the order one stable sort of the whole list by (i, species) gives)
            nb = torch.empty(pb - pa, dtype=idx_t, device=dev)
            for a0, b0 in blocks:
                q0, q1 = int(self.p_start[a0]), int(self.p_start[b0])
                jc = j[q0:q1].to(torch.int64)
                sc = s[q0:q1].to(torch.int64)
                pair_ext = jc.clone()
                is_img = (sc != 0).any(dim=1)
                sc = sc[is_img]
                key = image_key(jc[is_img], sc, [m] * 3, [base] * 3)
                pair_ext[is_img] = n + torch.searchsorted(ukey, key)
                del sc, is_img, key
                p_il = torch.repeat_interleave(torch.arange(b0 - a0, device=dev),
                                               self.p_start[a0 + 1:b0 + 1] - self.p_start[a0:b0])
                perm = torch.argsort(p_il * ntypes + mtype[jc], stable=True)
                nb[q0 - pa:q1 - pa] = pair_ext[perm].to(idx_t)
                del jc, pair_ext, p_il, perm
            # the chunk's other extended atoms (sorted): a marker per extended atom for chunks with
            # more pairs than extended atoms, else the unique neighbours outside the chunk
            if pb - pa > n_ext:
                mark = torch.zeros(n_ext, dtype=torch.bool, device=dev)
                for a0, b0 in blocks:
                    x = nb[int(self.p_start[a0]) - pa:int(self.p_start[b0]) - pa].to(torch.int64)
                    mark[x[(x < a) | (x >= b)]] = True
                    del x
                other = torch.nonzero(mark).flatten()
                del mark
            else:
                other = torch.unique(nb[(nb < a) | (nb >= b)].to(torch.int64))
            # chunk-local extended index of every neighbour, in place: own atoms first, then `other`
            for a0, b0 in blocks:
                lo, hi = int(self.p_start[a0]) - pa, int(self.p_start[b0]) - pa
                x = nb[lo:hi].to(torch.int64)
                own = (x >= a) & (x < b)
                nb[lo:hi] = torch.where(own, x - a, (b - a) + torch.searchsorted(other, x)).to(idx_t)
                del x, own
            local = nb
            del nb
            if a == 0 and b == n and int(other.shape[0]) == n_ext - n:
                ext_ids = None  # one chunk holding every extended atom: the identity
            else:
                ext_ids = torch.cat([torch.arange(a, b, device=dev), other]).to(idx_t)
            self.chunks.append({"a": a, "b": b, "pa": pa, "pb": pb, "ext_ids": ext_ids, "local": local})
            del local, other
        del j, s

    def _atom_blocks(self, a: int, b: int) -> list[tuple[int, int]]:
        """Ranges of whole atoms covering a:b with about _PAIR_BLOCK pairs each (at least one atom)."""
        out = []
        while a < b:
            stop = int(torch.searchsorted(self.p_start, self.p_start[a] + _PAIR_BLOCK, right=True)) - 1
            stop = min(max(stop, a + 1), b)
            out.append((a, stop))
            a = stop
        return out

    @staticmethod
    def _ghost_keys(j, s, n, m, base, dense: bool | None = None):
        """Sorted unique keys :func:`~dpqtb.potential.neighbors.image_key` (j, shift) of the pairs with a non-zero shift (blockwise: a
        marker per possible key when that table is small, else unique keys merged per block)."""
        dev = j.device
        n_keys = n * base**3
        if dense is None:
            dense = n_keys <= max(1 << 24, 2 * int(j.shape[0]))
        mark = torch.zeros(n_keys, dtype=torch.bool, device=dev) if dense else None
        found = torch.zeros(0, dtype=torch.int64, device=dev)
        for a in range(0, int(j.shape[0]), _PAIR_BLOCK):
            sc = s[a:a + _PAIR_BLOCK].to(torch.int64)
            is_img = (sc != 0).any(dim=1)
            sc = sc[is_img]
            key = image_key(j[a:a + _PAIR_BLOCK][is_img].to(torch.int64), sc, [m] * 3, [base] * 3)
            if dense:
                mark[key] = True
            else:
                found = torch.unique(torch.cat([found, torch.unique(key)]))
            del sc, is_img, key
        return torch.nonzero(mark).flatten() if dense else found

    def extended_positions(self, positions, cell):
        return positions[self.ext_atom] + self.ext_shift.to(positions.dtype) @ cell

    def chunk_coords(self, c, ext_pos):
        """Positions of the chunk's extended atoms (its own atoms first)."""
        return ext_pos if c["ext_ids"] is None else ext_pos[c["ext_ids"]]

    def chunk_types(self, c):
        """Model types (int64) of the chunk's extended atoms."""
        t = self.ext_type if c["ext_ids"] is None else self.ext_type[c["ext_ids"]]
        return t.to(torch.int64)

    def chunk_mapping(self, c):
        """Local atom (int64) of each of the chunk's extended atoms."""
        m = self.ext_atom if c["ext_ids"] is None else self.ext_atom[c["ext_ids"]]
        return m.to(torch.int64)

    def chunk_nlist(self, c, coord, ext_type, positions):
        """DeePMD neighbour list (nloc, Σsel) of a chunk, -1 padded; and the number of overflowing slots.

        ``coord`` and ``ext_type`` are the chunk's extended positions and model types
        (:meth:`chunk_coords`, :meth:`chunk_types`)."""
        a, b = c["a"], c["b"]
        dev = positions.device
        nsel = sum(self.sel)
        ntypes = len(self.sel)
        pairs = c.get("pairs") or self._chunk_pairs(c, ext_type)
        local, p_il, p_t, first, sel = pairs["local"], pairs["p_il"], pairs["p_t"], pairs["first"], pairs["sel"]
        rij = coord[local] - positions[pairs["i"]]
        r = rij.norm(dim=1)
        inside = r <= self.rcut
        ins = inside.to(torch.int64)
        c_excl = torch.cumsum(ins, 0) - ins
        rank = c_excl - c_excl[first]
        overflow = inside & (rank >= sel)
        n_over = int(overflow.sum())
        if n_over:
            # DeePMD's rule (DeepPot.eval and forward_lower alike): keep the Σsel nearest neighbours,
            # then, among those, the sel[t] nearest of each species t
            rr = torch.where(inside, r, torch.full_like(r, float("inf")))
            by_r = torch.argsort(rr, stable=True)
            by_atom = by_r[torch.argsort(p_il[by_r], stable=True)]
            counts = torch.bincount(p_il, minlength=b - a)
            start = torch.cumsum(counts, 0) - counts
            overall = torch.empty_like(rank)
            overall[by_atom] = torch.arange(p_il.shape[0], device=dev) - start[p_il[by_atom]]
            inside = inside & (overall < nsel)
            ins = inside.to(torch.int64)
            rr = torch.where(inside, r, torch.full_like(r, float("inf")))
            order = torch.argsort(rr, stable=True)
            order = order[torch.argsort((p_il * ntypes + p_t)[order], stable=True)]
            ins_o = ins[order]
            c_o = torch.cumsum(ins_o, 0) - ins_o
            first_o = first[order]
            rank = torch.empty_like(rank)
            rank[order] = c_o - c_o[first_o]
        valid = inside & (rank < sel)
        nlist = torch.full((b - a, nsel), -1, dtype=torch.int64, device=dev)
        nlist[p_il[valid], (pairs["slot0"] + rank)[valid]] = local[valid]
        return nlist, n_over

    def _chunk_pairs(self, c, ext_type) -> dict:
        """The per-pair integers of a chunk that only change at a rebuild: neighbour (chunk-local extended
        index), i (chunk-local and global), species of j, first pair of each (i, species) group, sel and
        slot offset of that species.  Kept in the chunk (so they are recomputed only after a rebuild) when
        the whole list is small enough (:attr:`cache_pairs_max`: 56 B per pair); else recomputed per call,
        which keeps million-atom lists compact."""
        a, b = c["a"], c["b"]
        dev = c["local"].device
        ntypes = len(self.sel)
        local = c["local"].to(torch.int64)
        p_il = torch.repeat_interleave(torch.arange(b - a, device=dev), self.p_start[a + 1:b + 1] - self.p_start[a:b])
        p_t = ext_type[local]
        # pairs are sorted by (i, species of j): index (in the chunk) of the first pair of each group
        gkey = p_il * ntypes + p_t
        counts = torch.bincount(gkey, minlength=(b - a) * ntypes)
        first = (torch.cumsum(counts, 0) - counts)[gkey]
        pairs = {"local": local, "p_il": p_il, "i": p_il + a, "p_t": p_t, "first": first,
                 "sel": self._t_sel[p_t], "slot0": self._t_slot0[p_t]}
        if self.n_pairs <= self.cache_pairs_max:
            c["pairs"] = pairs
        return pairs
