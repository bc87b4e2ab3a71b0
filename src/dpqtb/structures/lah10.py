"""LaH10 crystal structures: the Fm-3m clathrate and its symmetry-lowered relatives.

Fm-3m LaH10 (space group 225), origin on La:

* La on 4a (0, 0, 0)
* H1 on 8c (1/4, 1/4, 1/4)
* H2 on 32f (x, x, x), x ≈ 0.379  (equivalently La 4b with x ≈ 0.121)

Each La sits in an H32 cage (8 H1 at a·√3/4, 24 H2 at a·√(2(1/2-x)² + x²)) made of 6 squares
and 12 hexagons.  The default ``x`` follows from the DFT bond lengths of Table I of the paper
(a = 4.749 Å, H1–H2 = 1.0645 Å = √3 (x − 1/4) a), i.e. x = 0.3794.

The low-symmetry phases (C2, P-1) and the rhombohedral R-3m distortion are built here by
*symmetry-lowering* the Fm-3m structure: a random displacement field and a random strain are
projected onto the invariant subspace of a chosen subgroup of the cubic point group (operations
about the La site at the origin), so the result has exactly that subgroup's symmetry (generic
amplitudes).  No literature coordinate file is used; these cells are starting points for
symmetry-constrained relaxations (``dpqtb.dft.relax``) and for sampling.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from ase import Atoms

from dpqtb import InputError

#: Default Wyckoff parameter of H on 32f (La on 4a), from Table I of the paper (see module doc).
X32F_DEFAULT: float = 0.25 + 1.0645 / (math.sqrt(3.0) * 4.749)

# Fractional positions (conventional cubic cell) of the F-centering translations.
_FCC_T = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])


def _check_a(a: float) -> None:
    if not (np.isfinite(a) and 3.0 < a < 7.0):
        raise InputError(f"LaH10 lattice constant a={a} Å is outside the physical range 3–7 Å")


def conventional_basis(x: float = X32F_DEFAULT) -> tuple[list[str], np.ndarray]:
    """Symbols and fractional coordinates of the 44-atom conventional Fm-3m cell."""
    if not 0.3 < x < 0.45:
        raise InputError(f"32f parameter x={x} is outside 0.30–0.45 (La on 4a setting)")
    orbit_8c = [(0.25, 0.25, 0.25), (0.75, 0.75, 0.75)]
    orbit_32f = []
    for sx, sy, sz in itertools.product((1, -1), repeat=3):
        if sx * sy * sz == 1:  # (x,x,x), (x,-x,-x), (-x,x,-x), (-x,-x,x)
            orbit_32f.append((sx * x, sy * x, sz * x))
    for sx, sy, sz in itertools.product((1, -1), repeat=3):
        if sx * sy * sz == -1:  # (-x,-x,-x), ...
            orbit_32f.append((sx * x, sy * x, sz * x))
    orbit_32f = orbit_32f[:8]
    symbols: list[str] = []
    frac: list[np.ndarray] = []
    for t in _FCC_T:
        symbols.append("La")
        frac.append(t)
    for t in _FCC_T:
        for p in orbit_8c[:1]:
            symbols.append("H")
            frac.append(np.asarray(p) + t)
        for p in orbit_8c[1:]:
            symbols.append("H")
            frac.append(np.asarray(p) + t)
    for t in _FCC_T:
        for p in orbit_32f:
            symbols.append("H")
            frac.append(np.asarray(p) + t)
    frac_arr = np.mod(np.array(frac, dtype=float), 1.0)
    return symbols, frac_arr


def fm3m(a: float, cell: str = "primitive", x: float = X32F_DEFAULT) -> Atoms:
    """Fm-3m LaH10 with cubic lattice constant ``a`` (Å).

    ``cell='primitive'`` gives the 11-atom fcc primitive cell, ``'conventional'`` the 44-atom cube.
    """
    _check_a(a)
    symbols, frac = conventional_basis(x)
    conv = Atoms(symbols, scaled_positions=frac, cell=np.eye(3) * a, pbc=True)
    if cell == "conventional":
        return conv
    if cell != "primitive":
        raise InputError(f"unknown cell {cell!r}: use 'primitive' or 'conventional'")
    pcell = 0.5 * a * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    sp = np.linalg.solve(pcell.T, conv.positions.T).T
    sp = np.mod(np.round(sp, 10), 1.0)
    keep: list[int] = []
    seen: list[np.ndarray] = []
    for i, s in enumerate(sp):
        if not any(np.allclose(_wrap(s - t), 0.0, atol=1e-6) for t in seen):
            seen.append(s)
            keep.append(i)
    prim = Atoms([symbols[i] for i in keep], scaled_positions=sp[keep], cell=pcell, pbc=True)
    assert len(prim) == 11
    return prim


def _wrap(d: np.ndarray) -> np.ndarray:
    return d - np.round(d)


# ----------------------------------------------------------------------------------------------
# Symmetry lowering


def _closure(generators: list[np.ndarray]) -> list[np.ndarray]:
    group = [np.eye(3, dtype=int)]
    frontier = [np.eye(3, dtype=int)]
    gens = [np.asarray(g, dtype=int) for g in generators]
    while frontier:
        new = []
        for h in frontier:
            for g in gens:
                m = g @ h
                if not any(np.array_equal(m, q) for q in group):
                    group.append(m)
                    new.append(m)
        frontier = new
    return group


_INV = -np.eye(3, dtype=int)
_C2_110 = np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1]])  # 2-fold about [110]
_C2_1m10 = np.array([[0, -1, 0], [-1, 0, 0], [0, 0, -1]])  # 2-fold about [1-10]
_C3_111 = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]])  # 3-fold about [111]

#: Point subgroups of m-3m (Cartesian, cubic axes, about the La at the origin) for each target.
SUBGROUPS: dict[str, list[np.ndarray]] = {
    "C2": _closure([_C2_110]),  # monoclinic, unique axis [110]
    "P-1": _closure([_INV]),
    "R-3m": _closure([_C3_111, _C2_1m10, _INV]),  # D3d about [111]
}

#: International space-group number of each symmetry-lowered phase (checked by spglib in tests).
SPACE_GROUP_NUMBER = {"Fm-3m": 225, "C2": 5, "P-1": 2, "R-3m": 166}


def _atom_permutation(atoms: Atoms, rot: np.ndarray, tol: float = 1e-4) -> np.ndarray:
    """Index j of the image of each atom i under the Cartesian rotation ``rot`` (about origin)."""
    cell = atoms.cell.array
    new_cart = atoms.positions @ rot.T
    new_frac = np.linalg.solve(cell.T, new_cart.T).T
    frac = atoms.get_scaled_positions(wrap=True)
    perm = np.empty(len(atoms), dtype=int)
    for i, f in enumerate(new_frac):
        d = _wrap(frac - f)
        dist = np.linalg.norm(d @ cell, axis=1)
        j = int(np.argmin(dist))
        if dist[j] > tol or atoms.numbers[j] != atoms.numbers[i]:
            raise InputError("cell is not invariant under the requested point operation")
        perm[i] = j
    return perm


def symmetrize_displacements(atoms: Atoms, disp: np.ndarray, group: list[np.ndarray]) -> np.ndarray:
    """Project a displacement field (N, 3) onto the subspace invariant under ``group``.

    ``atoms`` must be the undistorted (parent) structure, invariant under each operation.
    """
    out = np.zeros_like(disp, dtype=float)
    for rot in group:
        perm = _atom_permutation(atoms, rot)
        out[perm] += disp @ np.asarray(rot, dtype=float).T
    return out / len(group)


def symmetrize_strain(strain: np.ndarray, group: list[np.ndarray]) -> np.ndarray:
    """Average of R ε Rᵀ over ``group`` (symmetric 3×3 Cartesian strain)."""
    s = 0.5 * (strain + strain.T)
    return sum(np.asarray(r, float) @ s @ np.asarray(r, float).T for r in group) / len(group)


def apply_strain(atoms: Atoms, strain: np.ndarray) -> Atoms:
    """Homogeneously deform ``atoms`` by the symmetric strain ε: r → (1 + ε) r."""
    f = np.eye(3) + strain
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ f.T, scale_atoms=True)
    return out


def lowered(
    parent: Atoms,
    phase: str,
    amplitude: float = 0.08,
    strain: float = 0.01,
    rng: np.random.Generator | int | None = None,
) -> Atoms:
    """A generic structure of symmetry ``phase`` (C2, P-1 or R-3m) derived from a cubic parent.

    The H atoms get a random displacement of RMS ``amplitude`` Å (La one tenth of it) and the cell
    a random strain of size ``strain``, both projected onto the subgroup's invariant subspace.
    ``parent`` must be Fm-3m LaH10 with a La at the origin (as from :func:`fm3m`, any supercell).
    """
    if phase not in SUBGROUPS:
        raise InputError(f"unknown phase {phase!r}: choose from {sorted(SUBGROUPS)}")
    rng = np.random.default_rng(rng)
    group = SUBGROUPS[phase]
    scale = np.where(parent.numbers == 1, amplitude, 0.1 * amplitude)[:, None]
    u = symmetrize_displacements(parent, rng.normal(size=(len(parent), 3)) * scale, group)
    eps = symmetrize_strain(rng.normal(size=(3, 3)) * strain, group)
    if phase == "R-3m":  # make sure the trigonal strain is not accidentally tiny
        eps = eps + strain * (np.ones((3, 3)) - np.eye(3)) / 2.0
    out = parent.copy()
    out.positions = out.positions + u
    return apply_strain(out, eps)


def cage_neighbours(atoms: Atoms, la_index: int, cutoff: float) -> np.ndarray:
    """Sorted distances (Å) from La ``la_index`` to all H within ``cutoff`` (periodic images)."""
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, cutoff)
    sel = (i == la_index) & (atoms.numbers[j] == 1)
    return np.sort(d[sel])


#: The primitive fcc cell of :func:`fm3m` (rows a/2·(0,1,1), a/2·(1,0,1), a/2·(1,1,0)) to the conventional
#: cube: ``make_supercell(primitive, PRIMITIVE_TO_CONVENTIONAL)`` has rows a·x, a·y, a·z (11 -> 44 atoms).
PRIMITIVE_TO_CONVENTIONAL = np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]])


def to_conventional(atoms: Atoms) -> Atoms:
    """The same crystal in the 44-atom conventional cell, from an 11-atom cell built on the primitive
    fcc cell of :func:`fm3m` (distortions and strain kept; the atoms come as 4 copies of the 11)."""
    from ase.build import make_supercell

    if len(atoms) != 11:
        raise InputError(f"to_conventional expects an 11-atom primitive cell, got {len(atoms)} atoms")
    return make_supercell(atoms, PRIMITIVE_TO_CONVENTIONAL)


def supercell(atoms: Atoms, n: int | tuple[int, int, int]) -> Atoms:
    """An n×n×n (or n1×n2×n3) repetition of ``atoms`` (e.g. 10×10×10 conventional = 44,000)."""
    reps = (n, n, n) if np.isscalar(n) else tuple(n)
    if len(reps) != 3 or any(int(r) != r or r < 1 for r in reps):
        raise InputError(f"supercell repetitions must be positive integers, got {n!r}")
    return atoms.repeat(tuple(int(r) for r in reps))
