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

from dpqtb import DpqtbError
from dpqtb.potential.base import Potential, PotentialOutput
from dpqtb.potential.neighbors import VerletList


def _load_deepmd_ops() -> None:
    """Import DeePMD-kit's PyTorch backend so that the custom ops of frozen models are registered."""
    try:
        import deepmd.pt  # noqa: F401
        import deepmd.pt.cxx_op  # noqa: F401  (tabulate ops of compressed models)
    except ImportError as exc:
        raise DpqtbError("DeePMD-kit (PyTorch backend) is not installed: run scripts/install_deepmd.sh") from exc


def load_frozen_model(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load a frozen DeePMD-kit PyTorch model (``dp --pt freeze`` / ``compress`` output, *.pth)."""
    path = Path(path)
    if not path.is_file():
        raise DpqtbError(f"Deep Potential model file not found: {path}")
    if path.suffix != ".pth":
        raise DpqtbError(f"{path}: expected a frozen DeePMD-kit PyTorch model (*.pth from `dp --pt freeze`)")
    _load_deepmd_ops()
    try:
        model = torch.jit.load(str(path), map_location=torch.device(device))
    except Exception as exc:  # torch raises RuntimeError/ValueError/zip errors for corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DpqtbError(f"{path}: not a readable frozen DeePMD-kit PyTorch model ({first})") from exc
    for attr in ("forward_lower", "get_rcut", "get_sel", "get_type_map"):
        if not hasattr(model, attr):
            raise DpqtbError(f"{path}: not a DeePMD-kit energy model (no {attr})")
    model.eval()
    return model


class DeepPotential(Potential):
    """A frozen DeePMD-kit model as a dpqtb potential.

    Parameters
    ----------
    model : path of a frozen model (*.pth)
    device : torch device the model and the state live on ("cpu", "cuda", ...)
    skin_A : Verlet skin of the neighbour list (Å)
    chunk_atoms : at most this many local atoms per model call (None: all at once)
    """

    batched = False

    def __init__(self, model: str | os.PathLike, device: str | torch.device = "cpu", skin_A: float = 1.0,
                 chunk_atoms: int | None = None):
        self.path = Path(model)
        self.device = torch.device(device)
        self.model = load_frozen_model(self.path, self.device)
        self.rcut = float(self.model.get_rcut())
        self.sel = [int(s) for s in self.model.get_sel()]
        self.type_map = tuple(str(t) for t in self.model.get_type_map())
        if self.model.get_dim_fparam() or self.model.get_dim_aparam():
            raise DpqtbError(f"{self.path}: models with frame/atomic parameters are not supported")
        self.message_passing = bool(self.model.has_message_passing()) if hasattr(self.model, "has_message_passing") \
            else True
        if chunk_atoms is not None and chunk_atoms < 1:
            raise DpqtbError(f"chunk_atoms must be >= 1, got {chunk_atoms}")
        if chunk_atoms is not None and self.message_passing:
            raise DpqtbError(f"{self.path}: the model's descriptor passes messages between atoms; it cannot be "
                             "evaluated in chunks (set chunk_atoms to none)")
        self.chunk_atoms = chunk_atoms
        self.skin = float(skin_A)
        self._model_type: torch.Tensor | None = None  # system species index -> model type index
        self._lists: list[_GhostList] = []
        self.n_sel_overflow = 0

    # ------------------------------------------------------------------ interface
    def bind(self, type_map: tuple[str, ...]) -> None:
        missing = [s for s in type_map if s not in self.type_map]
        if missing:
            raise DpqtbError(f"the Deep Potential {self.path.name} has no species {missing} "
                             f"(its type map is {list(self.type_map)})")
        self._model_type = torch.tensor([self.type_map.index(s) for s in type_map], dtype=torch.int64,
                                        device=self.device)

    def __call__(self, positions, cell, species, pbc=(True, True, True)) -> PotentialOutput:
        if self._model_type is None:
            raise DpqtbError("DeepPotential.bind(type_map) must be called before evaluating it")
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
            self._lists.append(_GhostList(self.rcut, self.skin, self.sel))
        gl = self._lists[replica]
        mtype = self._model_type[species]
        n = positions.shape[0]
        chunk = n if (self.chunk_atoms is None or self.message_passing) else self.chunk_atoms
        gl.update(positions, cell, pbc, mtype, chunk)
        ext_pos = gl.extended_positions(positions, cell)
        energy = torch.zeros((), dtype=positions.dtype, device=positions.device)
        forces = torch.zeros_like(positions)
        virial = torch.zeros(3, 3, dtype=positions.dtype, device=positions.device)
        for c in gl.chunks:
            nlist, overflow = gl.chunk_nlist(c, ext_pos, positions)
            if overflow:
                if self.n_sel_overflow == 0:
                    warnings.warn(f"Deep Potential: an atom has more neighbours of one species within "
                                  f"{self.rcut} Å than the model's sel {self.sel}; the nearest are kept "
                                  "(as DeepPot.eval does) but the energy surface is not smooth", stacklevel=2)
                self.n_sel_overflow += int(overflow)
            ext_ids = c["ext_ids"]
            coord = ext_pos[ext_ids].unsqueeze(0)
            atype = gl.ext_type[ext_ids].unsqueeze(0)
            mapping = gl.ext_atom[ext_ids].unsqueeze(0) if self.message_passing else None
            out = self.model.forward_lower(coord, atype, nlist.unsqueeze(0), mapping)
            # detach: the energy carries the chunk's autograd graph (forces come from it); keeping it
            # alive across chunks would hold every chunk's activations at once
            energy = energy + out["energy"].detach().reshape(()).to(positions.dtype)
            forces.index_add_(0, gl.ext_atom[ext_ids], out["extended_force"].detach()[0].to(positions.dtype))
            virial = virial + out["virial"].detach().reshape(3, 3).to(positions.dtype)
            del out
        # DeePMD's virial is -Σ r ⊗ ∂E/∂r over the extended atoms, i.e. W_ab = -∂E/∂ε_ab already;
        # symmetrise the round-off of the per-atom sum so that W is exactly symmetric.
        virial = 0.5 * (virial + virial.T)
        return PotentialOutput(energy.detach(), forces.detach(), virial.detach())


class _GhostList:
    """A full Verlet list with periodic images turned into explicit ghost atoms, split in chunks.

    At each rebuild: the unique (atom, cell shift) images that appear as neighbours become ghost
    atoms (extended index N + g); pairs are ordered by (i, species of j) so that the per-species
    slots of DeePMD's neighbour list follow from a running count; every chunk of local atoms gets
    the list of extended atoms it needs (its own atoms first, as forward_lower requires).
    """

    def __init__(self, rcut: float, skin: float, sel: list[int]):
        self.rcut = rcut
        self.sel = sel
        self.sel_offset = [0] + list(np.cumsum(sel)[:-1])
        self.vl = VerletList(rcut, skin, full=True)
        self._built = -1
        self.chunks: list[dict] = []
        self._chunk_size = None

    def update(self, positions, cell, pbc, mtype, chunk_size: int) -> None:
        self.vl.update(positions, cell, pbc)
        if self.vl.n_builds == self._built and chunk_size == self._chunk_size:
            return
        self._built, self._chunk_size = self.vl.n_builds, chunk_size
        dev = positions.device
        n = positions.shape[0]
        i, j = self.vl.i, self.vl.j
        s = self.vl.shifts.round().to(torch.int64)
        # ghost atoms: unique (j, shift) with a non-zero shift
        is_img = (s != 0).any(dim=1)
        m = int(s.abs().max()) if s.numel() else 0
        base = 2 * m + 1
        code = ((s[:, 0] + m) * base + (s[:, 1] + m)) * base + (s[:, 2] + m)
        key = j * base**3 + code
        ukey, inv = torch.unique(key[is_img], return_inverse=True)
        g_atom = torch.div(ukey, base**3, rounding_mode="floor")
        g_code = ukey - g_atom * base**3
        g_shift = torch.stack([torch.div(g_code, base * base, rounding_mode="floor") - m,
                               torch.div(g_code, base, rounding_mode="floor") % base - m,
                               g_code % base - m], dim=1)
        self.ext_atom = torch.cat([torch.arange(n, device=dev), g_atom])  # extended -> local atom
        self.ext_shift = torch.cat([torch.zeros(n, 3, dtype=torch.int64, device=dev), g_shift]).to(positions.dtype)
        self.ext_type = mtype[self.ext_atom]
        pair_ext = j.clone()
        pair_ext[is_img] = n + inv
        # order pairs by (i, species of j); stable, so the canonical order of the list is kept inside
        tj = mtype[j]
        ntypes = len(self.sel)
        gkey = i * ntypes + tj
        perm = torch.argsort(gkey, stable=True)
        self.p_i, self.p_ext, self.p_t = i[perm], pair_ext[perm], tj[perm]
        gk = gkey[perm]
        counts = torch.bincount(gk, minlength=n * ntypes)
        first = torch.cumsum(counts, 0) - counts
        self.p_first = first[gk]  # index of the first pair of the same (i, type) group
        self.p_slot0 = torch.tensor(self.sel_offset, device=dev)[self.p_t]
        self.p_sel = torch.tensor(self.sel, device=dev)[self.p_t]
        # chunks of consecutive local atoms; pairs are sorted by i so each chunk is a pair range
        per_atom = torch.bincount(self.p_i, minlength=n)
        pstart = torch.cumsum(per_atom, 0) - per_atom
        self.chunks = []
        for a in range(0, n, chunk_size):
            b = min(a + chunk_size, n)
            pa = int(pstart[a])
            pb = int(pstart[b]) if b < n else int(self.p_i.shape[0])
            nb = self.p_ext[pa:pb]
            own = torch.arange(a, b, device=dev)
            other = torch.unique(nb[(nb < a) | (nb >= b)])
            ext_ids = torch.cat([own, other])
            # chunk-local extended index of every neighbour of the chunk's pairs
            local = torch.empty_like(nb)
            in_own = (nb >= a) & (nb < b)
            local[in_own] = nb[in_own] - a
            local[~in_own] = (b - a) + torch.searchsorted(other, nb[~in_own])
            self.chunks.append({"a": a, "b": b, "pa": pa, "pb": pb, "ext_ids": ext_ids, "local": local})

    def extended_positions(self, positions, cell):
        return positions[self.ext_atom] + self.ext_shift @ cell

    def chunk_nlist(self, c, ext_pos, positions):
        """DeePMD neighbour list (nloc, Σsel) of a chunk, -1 padded; and the number of overflowing slots."""
        pa, pb, a, b = c["pa"], c["pb"], c["a"], c["b"]
        dev = positions.device
        nsel = sum(self.sel)
        p_i = self.p_i[pa:pb]
        rij = ext_pos[self.p_ext[pa:pb]] - positions[p_i]
        r = rij.norm(dim=1)
        inside = r <= self.rcut
        ins = inside.to(torch.int64)
        c_excl = torch.cumsum(ins, 0) - ins
        rank = c_excl - c_excl[self.p_first[pa:pb] - pa]
        sel = self.p_sel[pa:pb]
        overflow = inside & (rank >= sel)
        n_over = int(overflow.sum())
        if n_over:
            # DeePMD's rule (DeepPot.eval and forward_lower alike): keep the Σsel nearest neighbours,
            # then, among those, the sel[t] nearest of each species t
            rr = torch.where(inside, r, torch.full_like(r, float("inf")))
            by_r = torch.argsort(rr, stable=True)
            by_atom = by_r[torch.argsort(p_i[by_r], stable=True)]
            counts = torch.bincount(p_i - a, minlength=b - a)
            start = torch.cumsum(counts, 0) - counts
            overall = torch.empty_like(rank)
            overall[by_atom] = torch.arange(p_i.shape[0], device=dev) - start[p_i[by_atom] - a]
            inside = inside & (overall < nsel)
            ins = inside.to(torch.int64)
            gkey = p_i * len(self.sel) + self.p_t[pa:pb]
            rr = torch.where(inside, r, torch.full_like(r, float("inf")))
            order = torch.argsort(rr, stable=True)
            order = order[torch.argsort(gkey[order], stable=True)]
            ins_o = ins[order]
            c_o = torch.cumsum(ins_o, 0) - ins_o
            first_o = self.p_first[pa:pb][order] - pa
            rank = torch.empty_like(rank)
            rank[order] = c_o - c_o[first_o]
        valid = inside & (rank < sel)
        nlist = torch.full((b - a, nsel), -1, dtype=torch.int64, device=dev)
        nlist[p_i[valid] - a, (self.p_slot0[pa:pb] + rank)[valid]] = c["local"][valid]
        return nlist, n_over
