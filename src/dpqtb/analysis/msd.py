"""Mean-square displacements: standard MSD (many time origins), the reordered MSD′ of the paper's
Eq. (3) (exact minimum-weight bipartite matching on a sparse candidate graph) and the Einstein
diffusion coefficient with a block error bar.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from dpqtb import CalculationError, InputError
from dpqtb.analysis.neighbors import cross_pairs, min_image

#: 1 Å²/fs in cm²/s.
A2_PER_FS_TO_CM2_PER_S = 1e-16 / 1e-15
#: a D below this is "no diffusion" whatever its error bar (cm²/s; 1/35 of the LaH10 paper's 3.5e-5; over
#: 10 ps it is an MSD growth of 0.6 Å², comparable to the vibrational MSD plateau)
D_MIN_CM2_PER_S = 1.0e-6
#: a D is resolved ("diffusive") when D > D_MIN and D > N_SIGMA standard errors
N_SIGMA = 3.0


def diffusive(d: float, err: float) -> bool:
    """Whether a diffusion coefficient is resolved (docs/paper.md, rule 2): D > :data:`D_MIN_CM2_PER_S` and
    D > :data:`N_SIGMA`·σ (a missing σ counts as unresolved)."""
    ok = all(isinstance(x, (int, float)) and np.isfinite(x) for x in (d, err))
    return bool(ok and d > D_MIN_CM2_PER_S and d > N_SIGMA * err)


def species_indices(symbols, species: list[str] | None = None) -> dict[str, np.ndarray]:
    """Atom indices of each species.

    Parameters
    ----------
    symbols : array of str
        Species of every atom.
    species : list of str, optional
        The species wanted, in this order (default: all, in order of first appearance).

    Returns
    -------
    dict of str to int array

    Raises
    ------
    InputError
        A wanted species has no atom.
    """
    symbols = np.asarray(symbols)
    if species is None:
        species = list(dict.fromkeys(symbols.tolist()))
    out = {}
    for s in species:
        idx = np.flatnonzero(symbols == s)
        if len(idx) == 0:
            raise InputError(f"species {s!r} is not in the trajectory (has {sorted(set(symbols.tolist()))})")
        out[s] = idx
    return out


# ----------------------------------------------------------------------------------------------
# Standard MSD


@dataclass
class MSDResult:
    species: list[str]
    time_fs: np.ndarray  # (L,) lag times
    msd_A2: np.ndarray  # (L, S) mean over origins
    per_origin_A2: np.ndarray  # (O, L, S), NaN where an origin did not reach the lag
    origin_time_fs: np.ndarray  # (O,)

    def counts(self) -> np.ndarray:
        return np.sum(np.isfinite(self.per_origin_A2[:, :, 0]), axis=0)


class MSDAccumulator:
    """Streaming MSD per species, averaged over time origins every ``origin_every`` frames.

    Needs unwrapped positions.  Keeps one position copy per active origin
    (``max_lag // origin_every + 1`` of them).  With ``remove_com`` the mass-weighted centre-of-mass
    displacement of the whole system is subtracted (the thermostat lets the total momentum drift);
    for N equal-mass independent walkers this multiplies the MSD by exactly (1 − 1/N).

    Parameters
    ----------
    symbols : array of str
        Species of every atom.
    max_lag : int
        Longest lag (frames).
    origin_every : int
        Frames between time origins.
    remove_com : bool
        Subtract the centre-of-mass displacement.
    masses : (N,) array, optional
        Masses (amu); default ASE's standard masses of ``symbols``.
    species : list of str, optional
        Species to report (default: all).
    """

    def __init__(self, symbols, max_lag: int, origin_every: int = 1, remove_com: bool = True,
                 masses: np.ndarray | None = None, species: list[str] | None = None):
        if max_lag < 1 or origin_every < 1:
            raise InputError("MSD needs max_lag >= 1 frame and origin_every >= 1 frame")
        self.groups = species_indices(symbols, species)
        self.species = list(self.groups)
        self.max_lag = int(max_lag)
        self.origin_every = int(origin_every)
        self.remove_com = remove_com
        if masses is None:
            from ase.data import atomic_masses, atomic_numbers

            masses = np.array([atomic_masses[atomic_numbers[str(s)]] for s in symbols])
        self.w = np.asarray(masses, dtype=float) / np.sum(masses)
        self.active: list[tuple[int, np.ndarray, np.ndarray]] = []  # (origin frame, pos, com)
        self.rows: list[np.ndarray] = []
        self.origin_frames: list[int] = []
        self.n = 0
        self.times: list[float] = []

    def update(self, positions: np.ndarray, time_fs: float | None = None) -> None:
        k = self.n
        com = self.w @ positions if self.remove_com else np.zeros(3)
        if k % self.origin_every == 0:
            row = np.full((self.max_lag + 1, len(self.species)), np.nan)
            self.rows.append(row)
            self.origin_frames.append(k)
            self.active.append((k, positions.copy(), com, row))
        keep = []
        for o in self.active:
            k0, p0, c0, row = o
            lag = k - k0
            d = positions - p0 - (com - c0)
            d2 = np.einsum("ij,ij->i", d, d)
            for s, idx in enumerate(self.groups.values()):
                row[lag, s] = d2[idx].mean()
            if lag < self.max_lag:
                keep.append(o)
        self.active = keep
        self.times.append(float(time_fs) if time_fs is not None else float(k))
        self.n += 1

    def result(self) -> MSDResult:
        if self.n < 2:
            raise InputError("MSD needs at least 2 frames")
        per = np.array(self.rows)
        nl = min(self.max_lag, self.n - 1) + 1
        per = per[:, :nl]
        t = np.asarray(self.times)
        dt = t[1] - t[0]
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(per, axis=0)
        return MSDResult(self.species, np.arange(nl) * dt, mean, per,
                         t[np.asarray(self.origin_frames)])


def msd_from_array(positions: np.ndarray, symbols, dt_fs: float, max_lag: int | None = None,
                   origin_every: int = 1, remove_com: bool = False) -> MSDResult:
    """MSD of an in-memory (T, N, 3) unwrapped trajectory (convenience wrapper).

    Parameters
    ----------
    positions : (T, N, 3) array
        Unwrapped positions (Å), T >= 2.
    symbols : array of str
        Species of every atom.
    dt_fs : float
        Time between frames (fs).
    max_lag : int, optional
        Longest lag (frames; default T − 1).
    origin_every : int
        Frames between time origins.
    remove_com : bool
        Subtract the centre-of-mass displacement.

    Returns
    -------
    MSDResult
    """
    positions = np.asarray(positions, dtype=float)
    if positions.ndim != 3 or positions.shape[0] < 2:
        raise InputError("positions must have shape (frames >= 2, atoms, 3)")
    acc = MSDAccumulator(symbols, max_lag or positions.shape[0] - 1, origin_every, remove_com)
    for k, p in enumerate(positions):
        acc.update(p, k * dt_fs)
    return acc.result()


# ----------------------------------------------------------------------------------------------
# Diffusion coefficient


@dataclass
class DiffusionFit:
    species: str
    D_cm2_per_s: float
    D_err_cm2_per_s: float
    fit_start_fs: float
    fit_end_fs: float
    n_blocks: int
    slope_A2_per_fs: float
    intercept_A2: float


def _fit_slope(t: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    ok = np.isfinite(y)
    if ok.sum() < 2:
        return float("nan"), float("nan")
    p = np.polyfit(t[ok], y[ok], 1)
    return float(p[0]), float(p[1])


def diffusion_coefficient(res: MSDResult, species: str, fit_start_fraction: float = 0.2,
                          fit_end_fraction: float = 0.8, n_blocks: int = 5) -> DiffusionFit:
    """Einstein relation MSD(t) = 6 D t + b, least-squares over a fit window.

    Fit-window rule: lag times in [fit_start_fraction, fit_end_fraction] × the longest lag — the
    start skips the ballistic/vibrational transient, the end skips the long lags averaged over few
    origins.  Error bar: the time origins are split into ``n_blocks`` contiguous blocks, the
    block-mean MSD of each is fitted over the same window, and the standard error of the block
    slopes is reported (σ_D = std(D_b)/√n_blocks; blocks are independent when a block spans more
    than the longest lag).

    Parameters
    ----------
    res : MSDResult
        The MSD.
    species : str
        The species to fit.
    fit_start_fraction, fit_end_fraction : float
        Fit window as fractions of the longest lag.
    n_blocks : int
        Blocks of time origins for the error bar.

    Returns
    -------
    DiffusionFit
        D and its error (cm²/s), the window (fs), the slope (Å²/fs) and intercept (Å²).
    """
    if species not in res.species:
        raise InputError(f"species {species!r} not in the MSD result ({res.species})")
    if not 0 <= fit_start_fraction < fit_end_fraction <= 1:
        raise InputError("fit window must satisfy 0 <= start < end <= 1 (fractions of the longest lag)")
    s = res.species.index(species)
    t = res.time_fs
    tmax = t[-1]
    win = (t >= fit_start_fraction * tmax) & (t <= fit_end_fraction * tmax)
    if win.sum() < 2:
        raise InputError("the diffusion fit window contains fewer than 2 lag times; use a longer trajectory")
    slope, icpt = _fit_slope(t[win], res.msd_A2[win, s])
    per = res.per_origin_A2[:, :, s]
    # only origins that reach the end of the window take part in the blocks
    full = np.all(np.isfinite(per[:, win]), axis=1)
    origins = np.flatnonzero(full)
    nb = min(n_blocks, len(origins))
    err = float("nan")
    if nb >= 2:
        slopes = [_fit_slope(t[win], per[b][:, win].mean(axis=0))[0]
                  for b in np.array_split(origins, nb)]
        err = float(np.std(slopes, ddof=1) / np.sqrt(nb))
    conv = A2_PER_FS_TO_CM2_PER_S / 6.0
    return DiffusionFit(species, slope * conv, err * conv, float(t[win][0]), float(t[win][-1]), nb,
                        slope, icpt)


# ----------------------------------------------------------------------------------------------
# Reordered MSD′ (paper Eq. 3)


@dataclass
class MatchResult:
    msd_A2: float
    assignment: np.ndarray  # assignment[i] = index j of the current atom matched to reference i
    cutoff_A: float
    n_edges: int
    rounds: int = 0  # column-generation rounds that added edges


def msd_prime_dense(ref: np.ndarray, cur: np.ndarray, cell: np.ndarray) -> MatchResult:
    """Reference implementation: Hungarian algorithm on the full N×N minimum-image cost matrix.

    Parameters
    ----------
    ref, cur : (N, 3) arrays
        Reference and current positions (Å).
    cell : (3, 3) array
        Lattice vectors as rows (Å).

    Returns
    -------
    MatchResult
    """
    d = min_image(cur[None, :, :] - ref[:, None, :], cell)
    cost = np.einsum("ijx,ijx->ij", d, d)
    r, c = linear_sum_assignment(cost)
    return MatchResult(float(cost[r, c].mean()), c, float("inf"), cost.size)


class ReorderedMSD:
    """MSD′(t) = (1/N) min_P Σ_i |r_P(i)(t) − r_i(0)|² with minimum-image displacements.

    Solved exactly as a minimum-weight perfect bipartite matching (LAPJVsp,
    ``scipy.sparse.csgraph.min_weight_full_bipartite_matching``) on a sparse candidate graph:

    1. all pairs closer than a cutoff c (grown ×1.5 until a perfect matching exists);
    2. after each solve, LP duals from shortest paths in the residual graph (u_i + v_j ≤ w_ij on
       every candidate edge, equality on matched edges).  A pair absent from the graph weighs
       w_ij ≥ c², so it can only violate dual feasibility (u_i + v_j > w_ij) if row i has
       u_i + max v > c² *and* column j has max u + v_j > c².  Those pairs (few) are searched
       explicitly; violating ones are added to the graph and the matching is re-solved
       (column generation).  When none is left the duals are feasible for the complete N×N
       problem, which proves the sparse matching globally optimal.

    Parameters
    ----------
    ref_positions : (N, 3) array
        Reference positions (Å).
    cutoff_A : float
        First candidate-graph cutoff (Å); grown as needed.

    Calling it with ``(positions, cell)`` of a frame returns the :class:`MatchResult`.
    """

    def __init__(self, ref_positions: np.ndarray, cutoff_A: float = 1.0):
        self.ref = np.ascontiguousarray(ref_positions, dtype=float)
        if self.ref.ndim != 2 or self.ref.shape[1] != 3 or len(self.ref) == 0:
            raise InputError("MSD′ reference positions must be a non-empty (N, 3) array")
        if cutoff_A <= 0:
            raise InputError("MSD′ cutoff must be positive (Å)")
        self.cutoff = float(cutoff_A)
        self.max_rounds = 50

    def __call__(self, positions: np.ndarray, cell: np.ndarray) -> MatchResult:
        cur = np.ascontiguousarray(positions, dtype=float)
        if cur.shape != self.ref.shape:
            raise InputError(f"MSD′: frame has {len(cur)} atoms of this species, reference has {len(self.ref)}")
        n = len(cur)
        c = self.cutoff
        limit = 2.0 * np.linalg.norm(np.asarray(cell).sum(axis=0)) + 2.0
        while True:  # grow the cutoff until a perfect matching exists
            i, j, d2 = cross_pairs(self.ref, cur, cell, c)
            sol = _solve(i, j, d2, n) if (len(np.unique(i)) == n and len(np.unique(j)) == n) else None
            if sol is not None:
                break
            if c > limit:
                raise InputError("MSD′: no perfect matching found (inconsistent atom sets)")
            c *= 1.5
        for rounds in range(self.max_rounds):
            assign, total = sol
            u, v = _duals(i, j, d2, assign, n)
            umax, vmax = u.max(), v.max()
            bad_r = np.flatnonzero(u + vmax > c * c * (1 + 1e-12))
            bad_c = np.flatnonzero(umax + v > c * c * (1 + 1e-12))
            if len(bad_r) == 0 or len(bad_c) == 0:
                return MatchResult(max(total, 0.0) / n, assign, c, len(i), rounds)
            radius = float(np.sqrt(max(u[bad_r].max() + v[bad_c].max(), 0.0))) * (1 + 1e-9) + 1e-9
            bi, bj, bd = cross_pairs(self.ref[bad_r], cur[bad_c], cell, radius)
            bi, bj = bad_r[bi], bad_c[bj]
            viol = u[bi] + v[bj] > bd * (1 + 1e-12) + 1e-15
            if not np.any(viol):
                return MatchResult(max(total, 0.0) / n, assign, c, len(i), rounds)
            key = set((i * n + j).tolist())
            new = np.array([k not in key for k in (bi * n + bj)[viol].tolist()], dtype=bool)
            if not np.any(new):  # numerical ties only
                return MatchResult(max(total, 0.0) / n, assign, c, len(i), rounds)
            i = np.concatenate([i, bi[viol][new]])
            j = np.concatenate([j, bj[viol][new]])
            d2 = np.concatenate([d2, bd[viol][new]])
            sol = _solve(i, j, d2, n)
        raise CalculationError("MSD′: column generation did not converge")  # pragma: no cover


def _solve(i, j, d2, n):
    g = csr_matrix((d2 + 1.0, (i, j)), shape=(n, n))  # +1: zero weights would not be edges
    try:
        r, col = min_weight_full_bipartite_matching(g)
    except ValueError:
        return None
    assign = np.empty(n, dtype=np.int64)
    assign[r] = col
    return assign, float(np.asarray(g[r, col]).ravel().sum() - n)


def _duals(i: np.ndarray, j: np.ndarray, w: np.ndarray, assign: np.ndarray, n: int):
    """LP duals (u, v) of an optimal perfect matching ``assign`` on the edges (i, j, w).

    Bellman–Ford (vectorised, from a virtual source joined to every node) on the residual graph:
    row→column along unmatched edges with weight w, column→row along matched edges with −w.
    With d the distances, u_i = −d(row i) and v_j = d(column j) satisfy u_i + v_j ≤ w_ij on all
    candidate edges and equality on matched ones.
    """
    matched = assign[i] == j
    fi, fj, fw = i[~matched], j[~matched], w[~matched]
    bi, bj, bw = i[matched], j[matched], w[matched]
    drow = np.zeros(n)
    dcol = np.zeros(n)
    for _ in range(2 * n + 2):
        new_col = dcol.copy()
        np.minimum.at(new_col, fj, drow[fi] + fw)
        new_row = drow.copy()
        np.minimum.at(new_row, bi, new_col[bj] - bw)
        if np.array_equal(new_col, dcol) and np.array_equal(new_row, drow):
            break
        dcol, drow = new_col, new_row
    else:  # pragma: no cover - cannot happen for an optimal matching (no negative cycle)
        raise InputError("MSD′: negative cycle in the residual graph (matching not optimal)")
    return -drow, dcol
