"""Partial radial distribution functions g_αβ(r) in periodic (triclinic) cells."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dpqtb import InputError
from dpqtb.analysis.msd import species_indices


@dataclass
class RDFResult:
    r_A: np.ndarray  # (B,) bin centres
    edges_A: np.ndarray  # (B+1,)
    g: dict[str, np.ndarray]  # "La-H" -> (B,)
    coordination: dict[str, np.ndarray]  # running coordination number n_αβ(r) at the right edges
    n_frames: int
    label: str = ""
    meta: dict = field(default_factory=dict)


class RDFAccumulator:
    """Histogram of all periodic-image pairs up to ``r_max_A`` (any cutoff, any triclinic cell).

    Normalisation (per frame, then averaged): g_αβ(r) = n_αβ(r) V / (N_α (N_β − δ_αβ) ΔV(r)), with
    n_αβ the number of ordered pairs (i ∈ α, j ∈ β, j ≠ i or a periodic image of i) in the shell
    of volume ΔV = 4π(r₂³ − r₁³)/3, so that g → 1 for an ideal gas and the running coordination
    number (N_β − δ_αβ)/V ∫ g 4πr² dr counts the neighbours exactly.

    Parameters
    ----------
    symbols : array of str
        Species of every atom.
    r_max_A : float
        Range (Å).
    bin_A : float
        Bin width (Å).
    pairs : list of (str, str), optional
        Species pairs (default: every unordered pair).
    """

    def __init__(self, symbols, r_max_A: float = 6.0, bin_A: float = 0.02, pairs=None):
        if r_max_A <= 0 or bin_A <= 0 or bin_A >= r_max_A:
            raise InputError("RDF needs 0 < bin width < r_max (Å)")
        self.symbols = np.asarray(symbols)
        self.groups = species_indices(self.symbols)
        sp = list(self.groups)
        if pairs is None:
            pairs = [(a, b) for k, a in enumerate(sp) for b in sp[k:]]
        for a, b in pairs:
            if a not in self.groups or b not in self.groups:
                raise InputError(f"RDF pair {a}-{b}: species not present ({sp})")
        self.pairs = list(pairs)
        self.code = np.zeros(len(self.symbols), dtype=np.int64)
        for k, s in enumerate(sp):
            self.code[self.groups[s]] = k
        self.sp = sp
        self.edges = np.arange(int(round(r_max_A / bin_A)) + 1) * float(bin_A)
        self.r_max = float(self.edges[-1])
        self.bin_w = float(bin_A)
        self.shell = 4.0 * np.pi / 3.0 * (self.edges[1:] ** 3 - self.edges[:-1] ** 3)
        self.sum = {f"{a}-{b}": np.zeros(len(self.shell)) for a, b in self.pairs}
        self.counts = {f"{a}-{b}": np.zeros(len(self.shell)) for a, b in self.pairs}
        self.n = 0

    def update(self, positions: np.ndarray, cell: np.ndarray) -> None:
        import vesin

        vol = abs(np.linalg.det(cell))
        if vol < 1e-9:
            raise InputError("RDF needs a periodic cell with non-zero volume")
        nl = vesin.NeighborList(cutoff=self.r_max, full_list=True)
        i, j, d = nl.compute(np.ascontiguousarray(positions, dtype=np.float64),
                             np.asarray(cell, dtype=np.float64), True, quantities="ijd")
        nsp = len(self.sp)
        nb = len(self.shell)
        b = (np.asarray(d) / self.bin_w).astype(np.int64)
        ok = b < nb
        key = (self.code[i[ok]] * nsp + self.code[j[ok]]) * nb + b[ok]
        hist = np.bincount(key, minlength=nsp * nsp * nb).reshape(nsp, nsp, nb).astype(float)
        for a, bb in self.pairs:
            ka, kb = self.sp.index(a), self.sp.index(bb)
            h = hist[ka, kb]
            na, nbeta = len(self.groups[a]), len(self.groups[bb]) - (a == bb)
            key = f"{a}-{bb}"
            self.counts[key] += h / na
            self.sum[key] += h * vol / (na * max(nbeta, 1) * self.shell)
        self.n += 1

    def result(self, label: str = "") -> RDFResult:
        if self.n == 0:
            raise InputError("RDF: no frames were accumulated")
        r = 0.5 * (self.edges[1:] + self.edges[:-1])
        g = {k: v / self.n for k, v in self.sum.items()}
        cn = {k: np.cumsum(v / self.n) for k, v in self.counts.items()}
        return RDFResult(r, self.edges, g, cn, self.n, label)


def plot_rdf(results: list[RDFResult], path, pair: str | None = None) -> None:
    """Overlay g(r) of one or more runs (e.g. classical vs quantum, paper Fig. 6).

    Parameters
    ----------
    results : list of RDFResult
        The runs (labelled by their ``label``).
    path : path
        The PNG to write.
    pair : str, optional
        One pair ("La-H"); default one panel per pair.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [pair] if pair else list(results[0].g)
    fig, axes = plt.subplots(len(keys), 1, figsize=(6, 2.6 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        for res in results:
            if key in res.g:
                ax.plot(res.r_A, res.g[key], label=res.label or None)
        ax.set_ylabel(f"g {key}")
        if any(res.label for res in results):
            ax.legend()
    axes[-1, 0].set_xlabel("r (Å)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
