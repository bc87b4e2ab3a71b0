"""Proton hops and exchanges on the ideal-lattice sites defined by the La framework (Fig. 4).

Sites: the H positions of a reference frame (by default the first frame, i.e. the starting
structure, normally the ideal lattice).  Every frame the sites are carried along with the La
framework by the affine map (least squares, unwrapped La positions) that takes the reference La
positions to the current ones — this follows drift and homogeneous strain of the cell.

Assignment with hysteresis: a proton is assigned to its nearest site (minimum image) only when it
lies within the capture radius r_c = ``capture_fraction`` × (shortest site–site distance) of it;
otherwise it keeps its previous site.  A *hop* is a change of assigned site.  Protons are
classified by their number of hops as in the paper's Fig. 4: "none", "one", "several" (≥ 2).
*Pair exchanges* at time t are the 2-cycles of the map initial site → current site over protons
(proton p left site s for s′ and the proton that started on s′ is now on s); protons in longer
cycles are counted as ring exchanges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dpqtb import InputError
from dpqtb.analysis.neighbors import cross_pairs, nearest

CLASSES = ("none", "one", "several")


@dataclass
class ExchangeResult:
    time_fs: np.ndarray
    n_off_initial: np.ndarray  # protons not on their initial site
    n_pair_exchanges: np.ndarray  # 2-cycles
    n_ring_protons: np.ndarray  # protons in cycles of length >= 3
    hops: np.ndarray  # (N_H,) hop count per proton
    events: list = field(default_factory=list)  # (frame, proton, from_site, to_site)
    h_index: np.ndarray | None = None  # atom index of each proton

    def classes(self) -> np.ndarray:
        return np.array([CLASSES[min(h, 2)] for h in self.hops])

    def class_counts(self) -> dict[str, int]:
        c = self.classes()
        return {k: int(np.sum(c == k)) for k in CLASSES}


def cycle_counts(start_site: np.ndarray, site: np.ndarray) -> tuple[int, int]:
    """(number of 2-cycles, number of protons in longer cycles) of the map start → current.

    Parameters
    ----------
    start_site, site : int arrays
        Initial and current site of every proton.

    Returns
    -------
    (int, int)
    """
    f = {int(s0): int(s1) for s0, s1 in zip(start_site, site)}
    pairs, ring = 0, 0
    seen = set()
    for s0 in f:
        if s0 in seen or f[s0] == s0:
            continue
        path = [s0]
        cur = f[s0]
        while cur in f and cur != s0 and cur not in seen and len(path) <= len(f):
            path.append(cur)
            cur = f[cur]
        seen.update(path)
        if cur == s0:
            if len(path) == 2:
                pairs += 1
            else:
                ring += len(path)
    return pairs, ring


class SiteTracker:
    """Site of every proton frame by frame, with hops and exchanges (see the module docstring).

    Parameters
    ----------
    ref_positions : (N, 3) array
        Positions defining the sites (Å; all atoms, the trajectory's order).
    symbols : array of str
        Species of every atom.
    cell : (3, 3) array
        Lattice vectors of the reference (Å).
    metal, hydrogen : str
        The framework and proton species.
    capture_fraction : float
        Capture radius as a fraction of the shortest site–site distance, in (0, 0.5].
    """

    def __init__(self, ref_positions: np.ndarray, symbols, cell: np.ndarray, metal: str = "La",
                 hydrogen: str = "H", capture_fraction: float = 0.35):
        symbols = np.asarray(symbols)
        self.la = np.flatnonzero(symbols == metal)
        self.h = np.flatnonzero(symbols == hydrogen)
        if len(self.la) < 4 or len(self.h) == 0:
            raise InputError(f"exchange analysis needs >= 4 {metal} and some {hydrogen} atoms")
        if not 0 < capture_fraction <= 0.5:
            raise InputError("capture_fraction must be in (0, 0.5]")
        ref = np.asarray(ref_positions, dtype=float)
        self.la_ref = np.c_[ref[self.la], np.ones(len(self.la))]
        self.sites_ref = np.c_[ref[self.h], np.ones(len(self.h))]
        _, _, d2 = cross_pairs(ref[self.h], ref[self.h], cell, 3.0)
        d2 = d2[d2 > 1e-12]
        if len(d2) == 0:
            raise InputError("cannot determine the site spacing (no H–H pair within 3 Å)")
        self.r_capture = capture_fraction * float(np.sqrt(d2.min()))
        self.site = np.arange(len(self.h))
        self.start = self.site.copy()
        self.hops = np.zeros(len(self.h), dtype=np.int64)
        self.events: list[tuple[int, int, int, int]] = []
        self.rows: list[tuple[float, int, int, int]] = []
        self.n = 0

    def sites(self, positions: np.ndarray) -> np.ndarray:
        X, *_ = np.linalg.lstsq(self.la_ref, positions[self.la], rcond=None)
        return self.sites_ref @ X

    def update(self, positions: np.ndarray, cell: np.ndarray, time_fs: float) -> None:
        sites = self.sites(positions)
        j, d2 = nearest(positions[self.h], sites, cell, max(self.r_capture, 0.5))
        move = (j != self.site) & (d2 <= self.r_capture ** 2)
        for p in np.flatnonzero(move):
            self.events.append((self.n, int(p), int(self.site[p]), int(j[p])))
        self.hops += move
        self.site = np.where(move, j, self.site)
        pairs, ring = cycle_counts(self.start, self.site)
        self.rows.append((time_fs, int(np.sum(self.site != self.start)), pairs, ring))
        self.n += 1

    def result(self) -> ExchangeResult:
        if not self.rows:
            raise InputError("exchange analysis: no frames")
        r = np.array(self.rows)
        return ExchangeResult(r[:, 0], r[:, 1].astype(int), r[:, 2].astype(int), r[:, 3].astype(int),
                              self.hops.copy(), list(self.events), self.h)


def pick_examples(res: ExchangeResult) -> dict[str, int]:
    """One proton (H-index) per class: the one with the most hops for 'several'.

    Parameters
    ----------
    res : ExchangeResult

    Returns
    -------
    dict of str to int
        Class name to proton index (classes without a proton are absent).
    """
    out = {}
    cls = res.classes()
    for k in CLASSES:
        idx = np.flatnonzero(cls == k)
        if len(idx):
            out[k] = int(idx[np.argmax(res.hops[idx])]) if k == "several" else int(idx[0])
    return out


def plot_examples(paths: dict[str, tuple[np.ndarray, np.ndarray]], out_png) -> None:
    """3-D trajectories of example protons (red) with their La neighbours (grey).

    Parameters
    ----------
    paths : dict
        Class name to (proton path (T, 3), list of La paths (T, 3)) in Å.
    out_png : path
        The PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(4.2 * max(len(paths), 1), 4.2))
    for k, (name, (hpath, lapaths)) in enumerate(paths.items()):
        ax = fig.add_subplot(1, max(len(paths), 1), k + 1, projection="3d")
        for lp in lapaths:
            ax.plot(lp[:, 0], lp[:, 1], lp[:, 2], color="0.5", lw=0.8)
            ax.scatter(*lp.mean(axis=0), color="0.3", s=40)
        ax.plot(hpath[:, 0], hpath[:, 1], hpath[:, 2], color="tab:red", lw=0.8)
        ax.set_title({"none": "no exchange", "one": "one exchange", "several": "several exchanges"}.get(name, name))
        ax.set_xlabel("x (Å)")
        ax.set_ylabel("y (Å)")
        ax.set_zlabel("z (Å)")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
