"""Neighbour statistics that fix the descriptor's ``sel`` (maximum neighbours per species).

se_e2_a keeps, for every atom, at most ``sel[t]`` neighbours of species t inside r_cut (the
nearest ones); an atom with more loses neighbours and the energy surface gets discontinuous.  So
``sel`` must exceed the largest count any configuration the model will meet can produce.  We take
the maximum over (i) the training frames and (ii) a reference structure at the high end of the
pressure range (Fm-3m LaH10 at a = 4.75 Å ≈ 300 GPa, the densest cubic cell), add a relative
margin for denser or more disordered MD configurations, and round up to a multiple of 4:

    sel[t] = 4 · ceil(ceil(max_count[t] · (1 + margin)) / 4)

Counts use vesin's periodic neighbour list (any cell, cutoffs larger than the cell included).
"""

from __future__ import annotations

import math

import numpy as np

from dpqtb import InputError

TYPE_MAP = ("La", "H")
#: Lattice constant (Å) of the densest Fm-3m reference cell (≈ 300 GPa by our GPAW EOS).
REFERENCE_A_DEFAULT = 4.75


def neighbour_counts(symbols, positions_A, cell_A, rcut_A: float, type_map=TYPE_MAP) -> np.ndarray:
    """(N, ntypes) number of neighbours of each species within ``rcut_A`` of each atom.

    The atom itself is excluded; its periodic images inside r_cut count, as in DeePMD."""
    import vesin

    pos = np.ascontiguousarray(positions_A, dtype=float)
    box = np.ascontiguousarray(cell_A, dtype=float)
    symbols = np.asarray(symbols)
    types = np.full(len(symbols), -1)
    for t, name in enumerate(type_map):
        types[symbols == name] = t
    if np.any(types < 0):
        bad = sorted(set(symbols[types < 0].tolist()))
        raise InputError(f"species {', '.join(bad)} not in the type map [{', '.join(type_map)}]")
    nl = vesin.NeighborList(cutoff=float(rcut_A), full_list=True)
    i, j = nl.compute(points=pos, box=box, periodic=True, quantities="ij")
    counts = np.zeros((len(symbols), len(type_map)), dtype=int)
    np.add.at(counts, (np.asarray(i, int), types[np.asarray(j, int)]), 1)
    return counts


def sel_from_max(max_counts, margin: float) -> list[int]:
    """sel[t] = ceil(max_count[t]·(1+margin)) rounded up to a multiple of 4."""
    if not (margin >= 0 and math.isfinite(margin)):
        raise InputError(f"sel margin must be >= 0, got {margin}")
    out = []
    for m in max_counts:
        n = math.ceil(round(float(m) * (1.0 + margin), 9))
        out.append(max(4, 4 * math.ceil(n / 4)))
    return out


def sel_statistics(structures, rcut_A: float, margin: float, type_map=TYPE_MAP,
                   reference_a_A: float | None = REFERENCE_A_DEFAULT) -> dict:
    """Neighbour statistics and the resulting ``sel``.

    ``structures``: iterable of (symbols, positions (N,3) Å, cell (3,3) Å) — the training frames.
    The Fm-3m reference cell at ``reference_a_A`` (None: none) is added as its own group.
    """
    groups = {"training_frames": structures}
    if reference_a_A is not None:
        from dpqtb.structures.lah10 import fm3m

        ref = fm3m(reference_a_A, "primitive")
        groups[f"fm3m_a{reference_a_A:g}A"] = [(np.array(ref.get_chemical_symbols()), ref.positions,
                                                ref.cell.array)]
    stats = {"rcut_A": float(rcut_A), "margin": float(margin), "type_map": list(type_map),
             "groups": {}}
    overall = np.zeros(len(type_map), dtype=int)
    n_any = 0
    for name, items in groups.items():
        mx = np.zeros(len(type_map), dtype=int)
        mean = np.zeros(len(type_map))
        n_frames = n_atoms = 0
        dmin = math.inf
        for symbols, pos, cell in items:
            c = neighbour_counts(symbols, pos, cell, rcut_A, type_map)
            mx = np.maximum(mx, c.max(axis=0))
            mean += c.sum(axis=0)
            n_atoms += len(c)
            n_frames += 1
            dmin = min(dmin, _min_distance(pos, cell))
        if n_frames == 0:
            continue
        n_any += n_frames
        overall = np.maximum(overall, mx)
        stats["groups"][name] = {
            "frames": n_frames,
            "max_neighbours": {t: int(v) for t, v in zip(type_map, mx)},
            "mean_neighbours": {t: round(float(v) / n_atoms, 2) for t, v in zip(type_map, mean)},
            "min_distance_A": round(float(dmin), 4),
        }
    if n_any == 0:
        raise InputError("no structures for the neighbour statistics")
    stats["max_neighbours"] = {t: int(v) for t, v in zip(type_map, overall)}
    stats["sel"] = sel_from_max(overall, margin)
    stats["rule"] = "sel[t] = ceil(max_neighbours[t]*(1+margin)) rounded up to a multiple of 4"
    return stats


def _min_distance(pos, cell, r_A: float = 3.0) -> float:
    import vesin

    nl = vesin.NeighborList(cutoff=r_A, full_list=False)
    (d,) = nl.compute(points=np.ascontiguousarray(pos, float), box=np.ascontiguousarray(cell, float),
                      periodic=True, quantities="d")
    return float(np.min(d)) if len(d) else math.inf


def structures_from_systems(systems) -> list:
    """(symbols, positions, cell) for every frame of :func:`dpqtb.train.dataset.read_systems` output."""
    out = []
    for s in systems:
        for k in range(len(s["energy_eV"])):
            out.append((s["symbols"], s["coords_A"][k], s["cells_A"][k]))
    return out
