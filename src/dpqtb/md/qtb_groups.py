"""Adaptation groups of the quantum thermal bath: which atoms share a noise filter and (adQTB) an adapted
γ_r(ω) — by species, by symmetry-equivalent site of the starting structure, or given as atom-index lists."""

from __future__ import annotations

import numpy as np
import torch

from dpqtb import InputError
from dpqtb.md.state import MDState


def adaptation_groups(state: MDState, spec) -> tuple[torch.Tensor, list[str]]:
    """The adaptation group of each atom and the groups' names.

    Parameters
    ----------
    state
        The system (species, positions and cell of the starting structure for ``"sites"``).
    spec
        ``"species"`` (or None), ``"sites"`` (symmetry-equivalent sites, via spglib) or a list of atom-index
        lists (0-based; atoms not listed keep one group per species).

    Returns
    -------
    tuple
        (group index of each atom, shape (N,), on the state's device; group names).
    """
    n = state.n_atoms
    species = state.species.cpu().numpy()
    names = list(state.type_map)
    if spec is None or spec == "species":
        present = sorted(set(species.tolist()))
        remap = {s: i for i, s in enumerate(present)}
        groups = np.array([remap[s] for s in species])
        return torch.as_tensor(groups, device=state.device), [names[s] for s in present]
    if spec == "sites":
        try:
            import spglib
        except ImportError:  # pragma: no cover - spglib comes with the DFT extras
            raise InputError("thermostat.adapt_groups = 'sites' needs spglib (pip install spglib)") from None
        if not all(state.pbc):
            raise InputError("thermostat.adapt_groups = 'sites' needs a periodic structure")
        cell = state.cell.detach().cpu().numpy()
        frac = np.linalg.solve(cell.T, state.positions.detach().cpu().numpy().T).T % 1.0
        ds = spglib.get_symmetry_dataset((cell, frac, species), symprec=1e-3)
        if ds is None:
            raise InputError("thermostat.adapt_groups = 'sites': spglib found no symmetry for the structure")
        equiv = np.asarray(ds.equivalent_atoms if hasattr(ds, "equivalent_atoms") else ds["equivalent_atoms"])
        if len(set(equiv.tolist())) > max(8, n // 4):
            raise InputError(f"thermostat.adapt_groups = 'sites': spglib finds {len(set(equiv.tolist()))} distinct "
                             f"sites among {n} atoms (symprec 1e-3 Å; the structure is not symmetric enough): "
                             "give the groups as lists of atom indices")
        wyck = list(ds.wyckoffs if hasattr(ds, "wyckoffs") else ds["wyckoffs"])
        reps = sorted(set(equiv.tolist()))
        remap = {r: i for i, r in enumerate(reps)}
        groups = np.array([remap[e] for e in equiv])
        return torch.as_tensor(groups, device=state.device), [f"{names[species[r]]}_{wyck[r]}{r}" for r in reps]
    if isinstance(spec, (list, tuple)):
        groups = np.full(n, -1)
        for gi, atoms in enumerate(spec):
            idx = np.asarray(atoms, dtype=np.int64)
            if idx.size == 0 or idx.min() < 0 or idx.max() >= n:
                raise InputError(f"thermostat.adapt_groups[{gi}] must list atom indices 0..{n - 1}")
            if np.any(groups[idx] >= 0) or len(set(idx.tolist())) != idx.size:
                raise InputError(f"thermostat.adapt_groups: atom(s) listed twice (group {gi})")
            groups[idx] = gi
        out_names = [f"group{gi}" for gi in range(len(spec))]
        rest = groups < 0
        for s in sorted(set(species[rest].tolist())):
            groups[rest & (species == s)] = len(out_names)
            out_names.append(names[s])
        return torch.as_tensor(groups, device=state.device), out_names
    raise InputError(f"thermostat.adapt_groups must be 'species', 'sites' or a list of atom-index lists, got {spec!r}")
