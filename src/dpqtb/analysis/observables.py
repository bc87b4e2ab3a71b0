"""The observables of ``dpqtb analyze``, fed by one streaming pass over the frames.

Each observable takes the selected frames one at a time (:meth:`Observable.update`), then writes
its CSV tables and returns its entries of ``summary.json`` (:meth:`Observable.write`), and draws its
PNG plots (:meth:`Observable.plot`).  :func:`dpqtb.analysis.pipeline.analyze` builds them, runs the
pass and collects the summary in their order.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from dpqtb import DpqtbError, InputError
from dpqtb.analysis.cage import AngleAccumulator, angle_stats, quadrilateral_angles
from dpqtb.analysis.exchange import SiteTracker, pick_examples, plot_examples
from dpqtb.analysis.msd import MSDAccumulator, ReorderedMSD, diffusion_coefficient, species_indices
from dpqtb.analysis.rdf import RDFAccumulator, plot_rdf
from dpqtb.analysis.trajectory import Frame, Trajectory
from dpqtb.analysis.vdos import ALIAS_LIMIT, VDOSAccumulator, zero_point_temperature
from dpqtb.rundir import QTB_DOS

#: integrators whose velocity spectrum is not the phonon DOS (θ-weighted bath, PIMD centroid)
QUANTUM_INTEGRATORS = ("qtb", "adqtb", "pimd", "trpmd")


def write_csv(path: Path, header: list[str], rows) -> None:
    """A CSV table: ``header``, then ``rows`` with floats to 8 significant digits.

    Parameters
    ----------
    path : path
        The file to write.
    header : list of str
        Column names.
    rows : iterable of sequences
        The rows.
    """
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            w.writerow([f"{v:.8g}" if isinstance(v, (float, np.floating)) else v for v in r])


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


class Observable:
    """One observable of the analysis pass."""

    def update(self, frame: Frame) -> None:
        """Take the next selected frame (called once per frame, in order)."""

    def write(self, out: Path) -> dict:
        """Write the CSV tables into ``out``; return the entries of summary.json."""
        return {}

    def plot(self, out: Path) -> None:
        """Draw the PNG plots into ``out`` (after :meth:`write`)."""


class Displacements(Observable):
    """MSD per species with the Einstein diffusion coefficients (``msd.csv``), and the reordered
    MSD′ of the protons every ``msd_prime_every`` frames (``msd_prime.csv``); ``msd.png``.

    When the cell changes between frames (constant pressure), displacements are taken in scaled
    coordinates mapped to the first frame's cell, so that the barostat's affine rescaling of all
    positions does not count as motion (``msd_cell_rescaling_removed`` in the summary).

    Parameters
    ----------
    first : Frame
        The first selected frame (MSD′ reference positions).
    hydrogen : str
        The species of MSD′ (skipped when absent).
    max_lag : int
        Longest MSD lag (frames).
    origin_every : int
        MSD time-origin spacing (frames).
    msd_prime_every : int
        MSD′ every this many frames.
    """

    def __init__(self, first: Frame, hydrogen: str, max_lag: int, origin_every: int, msd_prime_every: int = 1):
        self.symbols, self.hydrogen, self.every = first.symbols, hydrogen, msd_prime_every
        self.msd = MSDAccumulator(first.symbols, max_lag, origin_every)
        self.prime = ReorderedMSD(first.positions[first.symbols == hydrogen]) if hydrogen in first.symbols else None
        self.prime_rows: list[tuple] = []
        self.k = 0
        self.result = None
        self.cell0 = None if first.cell is None else np.array(first.cell, dtype=float)
        self.cell_varies = False

    def update(self, frame: Frame) -> None:
        pos, cell = frame.positions, frame.cell
        if self.cell0 is not None and cell is not None and not np.array_equal(cell, self.cell0):
            # a run at constant pressure: the barostat's affine rescaling is no displacement. Map each frame to
            # the first frame's cell through scaled coordinates, r h(t)⁻¹ h(0) (fixed cells are left untouched)
            pos = pos @ np.linalg.solve(np.asarray(cell, dtype=float), self.cell0)
            cell = self.cell0
            self.cell_varies = True
        self.msd.update(pos, frame.time_fs)
        if self.prime is not None and self.k % self.every == 0:
            hpos = pos[self.symbols == self.hydrogen]
            m = self.prime(hpos, cell)
            plain = float(np.mean(np.sum((hpos - self.prime.ref) ** 2, axis=1)))  # same origin, labels kept
            self.prime_rows.append((frame.time_fs, m.msd_A2, plain,
                                    int(np.sum(m.assignment != np.arange(len(m.assignment))))))
        self.k += 1

    def write(self, out: Path) -> dict:
        res = self.result = self.msd.result()
        write_csv(out / "msd.csv", ["time_fs", *[f"msd_{s}_A2" for s in res.species]],
                  [(t, *row) for t, row in zip(res.time_fs, res.msd_A2)])
        summary: dict = {"diffusion": {}}
        if self.cell_varies:
            summary["msd_cell_rescaling_removed"] = True
        for s in res.species:
            try:
                summary["diffusion"][s] = asdict(diffusion_coefficient(res, s))
            except DpqtbError as exc:
                summary["diffusion"][s] = {"error": str(exc)}
        if self.prime_rows:
            h = self.hydrogen
            write_csv(out / "msd_prime.csv", ["time_fs", f"msd_prime_{h}_A2", f"msd_origin0_{h}_A2", "n_relabelled"],
                      self.prime_rows)
            summary["msd_prime_final_A2"] = self.prime_rows[-1][1]
        return summary

    def plot(self, out: Path) -> None:
        plt, res = _plt(), self.result
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for s, col in zip(res.species, res.msd_A2.T):
            ax.plot(res.time_fs / 1000, col, label=f"MSD {s}")
        if self.prime_rows:
            r = np.array(self.prime_rows)
            ax.plot(r[:, 0] / 1000, r[:, 2], "--", label=f"MSD {self.hydrogen} (origin 0)")
            ax.plot(r[:, 0] / 1000, r[:, 1], "o", ms=3, label=f"MSD′ {self.hydrogen} (origin 0)")
        ax.set_xlabel("time (ps)")
        ax.set_ylabel("MSD (Å²)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "msd.png", dpi=120)
        plt.close(fig)


class RadialDistribution(Observable):
    """Partial RDFs every ``every`` frames (``rdf.csv``); ``rdf.png`` overlays a second run.

    Parameters
    ----------
    symbols : array of str
        Species of every atom.
    r_max_A, bin_A : float
        Range and bin width (Å).
    every : int
        Use every this many frames.
    label : str
        Name of this run in the plot.
    compare : path, optional
        A second run directory or trajectory for ``rdf.png`` (read when :meth:`write` runs).
    """

    def __init__(self, symbols, r_max_A: float, bin_A: float, every: int = 1, label: str = "",
                 compare: str | Path | None = None):
        self.acc = RDFAccumulator(symbols, r_max_A, bin_A)
        self.r_max_A, self.bin_A, self.every, self.label, self.compare = r_max_A, bin_A, every, label, compare
        self.results: list = []
        self.k = 0

    def update(self, frame: Frame) -> None:
        if self.k % self.every == 0:
            self.acc.update(frame.positions, frame.cell)
        self.k += 1

    def write(self, out: Path) -> dict:
        res = self.acc.result(label=self.label)
        write_csv(out / "rdf.csv", ["r_A", *[f"g_{k}" for k in res.g], *[f"n_{k}" for k in res.g]],
                  [(r, *[res.g[k][b] for k in res.g], *[res.coordination[k][b] for k in res.g])
                   for b, r in enumerate(res.r_A)])
        self.results = [res]
        if self.compare:
            other = Trajectory(self.compare)
            acc = RDFAccumulator(other.symbols, self.r_max_A, self.bin_A)
            for k, fr in enumerate(other):
                if k % self.every == 0:
                    acc.update(fr.positions, fr.cell)
            self.results.append(acc.result(label=Path(self.compare).name))
        return {}

    def plot(self, out: Path) -> None:
        plot_rdf(self.results, out / "rdf.png")


class VibrationalSpectra(Observable):
    """VDOS from the velocity autocorrelation (``vdos.csv``, ``vdos.png``) and, for QTB runs, T_zero
    from the engine's deconvolved phonon DOS (``qtb_dos.csv`` of the run directory).

    Parameters
    ----------
    symbols : array of str
        Species of every atom.
    dt_fs : float
        Time between frames (fs).
    max_lag : int
        VACF window (frames).
    n_frames : int
        Number of frames of the pass (the VDOS needs more than ``max_lag + 1``).
    lag_requested : bool
        The window was asked for: an aliased spectrum is then an error, not a warning.
    integrator : str, optional
        The run's integrator (run.json): a quantum bath's velocity spectrum is not the phonon DOS.
    run_dir : path, optional
        The run directory holding ``qtb_dos.csv``.
    """

    def __init__(self, symbols, dt_fs: float, max_lag: int, n_frames: int, lag_requested: bool = False,
                 integrator: str | None = None, run_dir: Path | None = None):
        self.dt, self.max_lag, self.lag_requested = dt_fs, max_lag, lag_requested
        self.integrator, self.run_dir = integrator, run_dir
        self.acc = (VDOSAccumulator(symbols, dt_fs, max_lag, segment_frames=min(n_frames, 2 * max_lag))
                    if n_frames > max_lag + 1 else None)
        self.result = None

    def update(self, frame: Frame) -> None:
        if self.acc is not None:
            self.acc.update(frame.velocities, frame.positions)

    def _velocity_spectrum(self):
        """The VDOS result, None with the reason when it is skipped (an error if the window was asked for)."""
        if self.acc is None:
            return None, "trajectory too short for the VDOS lag window"
        vres = self.acc.result()
        if vres.alias_fraction() <= ALIAS_LIMIT:
            return vres, None
        nyq = 0.5 / self.dt * 1e3
        error = (f"frames {self.dt:g} fs apart (Nyquist {nyq:.0f} THz) cannot resolve the velocity spectrum: "
                 f"{100 * vres.alias_fraction():.1f} % of it lies in the top 10 % of the band (aliased); "
                 "write frames more often (output.trajectory_every) or use the engine's qtb_dos.csv (QTB runs)")
        if self.lag_requested:
            raise InputError(f"VDOS: {error}")
        print(f"dpqtb: warning: VDOS skipped: {error}", file=sys.stderr)
        return None, error

    def write(self, out: Path) -> dict:
        vres, error = self._velocity_spectrum()
        self.result = vres
        summary: dict = {}
        if self.run_dir is not None and (self.run_dir / QTB_DOS).exists():
            summary["vdos_qtb"] = engine_dos_summary(self.run_dir / QTB_DOS)
        if vres is None:
            summary["vdos"] = {"error": error}
            return summary
        keys = list(vres.g_per_THz)
        write_csv(out / "vdos.csv", ["freq_THz", *[f"g_{k}_per_THz" for k in keys]],
                  [(f, *[vres.g_per_THz[k][b] for k in keys]) for b, f in enumerate(vres.freq_THz)])
        vdos = summary["vdos"] = {"velocities": not self.acc.use_positions, "max_lag_fs": self.max_lag * self.dt,
                                  "segments": vres.n_segments, "alias_fraction": vres.alias_fraction(),
                                  "peak_THz": {k: vres.peak_THz(k) for k in keys}}
        t_zero = {k: vres.zero_point_temperature_K(k) for k in keys}
        if self.integrator in QUANTUM_INTEGRATORS:
            # a quantum bath's velocity spectrum is θ-weighted (QTB) or a centroid's (PIMD), not the phonon
            # DOS of the paper's T_zero: report the integral under another name
            vdos["velocity_spectrum_hnu_half_K"] = t_zero
            vdos["note"] = ("velocity spectrum of a quantum-bath run, not the phonon DOS: T_zero (paper's "
                            "definition) is in vdos_qtb (QTB runs, from the engine's spectra)")
        else:
            vdos["T_zero_K"] = t_zero
        return summary

    def plot(self, out: Path) -> None:
        vres = self.result
        if vres is None:
            return
        plt = _plt()
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for k, g in vres.g_per_THz.items():
            ax.plot(vres.freq_THz, g, label=k)
        cum = np.cumsum(np.abs(vres.g_per_THz["total"]))
        fmax = vres.freq_THz[min(np.searchsorted(cum, 0.999 * cum[-1]) + 1, len(cum) - 1)]
        ax.set_xlim(0, 1.2 * fmax)  # the band holding 99.9 % of the weight
        ax.set_xlabel("frequency (THz)")
        ax.set_ylabel("VDOS (1/THz)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "vdos.png", dpi=120)
        plt.close(fig)


def engine_dos_summary(path: Path) -> dict:
    """T_zero and peak frequency per species from the engine's ``qtb_dos.csv`` (QTB/adQTB runs).

    Parameters
    ----------
    path : path
        The ``qtb_dos.csv`` file.

    Returns
    -------
    dict
        ``source``, ``T_zero_K`` and ``peak_THz`` (per species and total).
    """
    tab = np.genfromtxt(path, delimiter=",", names=True)
    cols = [c for c in tab.dtype.names if c.startswith("g_")]
    return {"source": f"{QTB_DOS}: phonon DOS deconvolved from the engine's QTB spectra (every step, up to f_max)",
            "T_zero_K": {c[2:-len("_per_THz")]: zero_point_temperature(tab["freq_THz"], tab[c]) for c in cols},
            "peak_THz": {c[2:-len("_per_THz")]: float(tab["freq_THz"][np.argmax(tab[c])]) for c in cols}}


class CageAngle(Observable):
    """Cage distortion angle θ every ``every`` frames (``theta.csv``, ``theta.png``) and θ of the
    time-averaged structure (all frames); skipped with the reason when the structure is not a LaH10
    clathrate.

    The time-averaged structure is an average over *sites*, not over labelled atoms: in every frame each
    species' atoms are matched to the sites by the reordered-MSD′ assignment (the minimum of
    Σ|r_P(i) − s_i|², :class:`~dpqtb.analysis.msd.ReorderedMSD`), and the position of the atom on each site
    is averaged in fractional coordinates (the structure: those means in the mean cell). The sites are the
    running site average (the first frame's positions for the first frame): matched against one noisy
    snapshot, the cut between neighbouring sites would follow that snapshot's thermal distortion and bias
    the average toward it. The crystal's drift, followed frame to frame on the ``metal`` atoms (all atoms
    without them), is taken out before matching. A proton that hops to a neighbouring site then adds to
    that site's average, not a point halfway between the two (a labelled average puts a proton that spent
    half the run on each of two sites between them, and a cubic cage with a few hopping protons reads as
    distorted). ``frames_relabelled``: the frames in which some atom sat on another's starting site.

    Parameters
    ----------
    symbols : array of str
        Species of every atom.
    every : int
        θ every this many frames.
    """

    def __init__(self, symbols, every: int = 1, metal: str = "La"):
        self.symbols, self.every = symbols, every
        self.angles = AngleAccumulator(symbols)
        self.error: str | None = None
        self.groups = list(species_indices(symbols).values())
        framework = np.flatnonzero(np.asarray(symbols) == metal)
        self.framework = framework if len(framework) else np.arange(len(symbols))
        self.prev: np.ndarray | None = None  # the framework's fractional positions in the last frame
        self.drift = np.zeros(3)  # its mean displacement since the first frame (fractional, unwrapped)
        self.site_sum, self.cell_sum, self.n = np.zeros((len(symbols), 3)), np.zeros((3, 3)), 0
        self.relabelled = 0

    def update(self, frame: Frame) -> None:
        if self.error is None and self.n % self.every == 0:
            try:
                self.angles.update(frame.positions, frame.cell, frame.time_fs)
            except DpqtbError as exc:  # not a LaH10 clathrate: skip θ, report why
                self.error = str(exc)
        cell = np.asarray(frame.cell, dtype=float)
        frac = np.asarray(frame.positions, dtype=float) @ np.linalg.inv(cell)
        if self.prev is not None:  # the framework moves far less than a site spacing between frames
            step = frac[self.framework] - self.prev
            self.drift += (step - np.round(step)).mean(axis=0)
        self.prev = frac[self.framework]
        frac = frac - self.drift
        ref = frac if self.n == 0 else self.site_sum / self.n  # the sites: their running average
        moved = False
        for idx in self.groups:  # each species' atoms onto its sites (scaled with the cell)
            assign = ReorderedMSD(ref[idx] @ cell)(frac[idx] @ cell, cell).assignment
            d = frac[idx][assign] - ref[idx]
            self.site_sum[idx] += ref[idx] + d - np.round(d)
            moved |= bool(np.any(assign != np.arange(len(idx))))
        self.relabelled += moved
        self.cell_sum += cell
        self.n += 1

    def site_averaged_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions, cell) of the site-averaged structure (Å)."""
        cell = self.cell_sum / self.n
        return (self.site_sum / self.n) @ cell, cell

    def write(self, out: Path) -> dict:
        if self.error:
            return {"cage_angle": {"error": self.error}}
        rows = self.angles.rows
        write_csv(out / "theta.csv", ["time_fs", "theta_mean_deg", "theta_std_deg", "theta_min_deg", "theta_max_deg",
                                      "face_max_mean_deg", "face_min_mean_deg", "deviation_mean_deg"],
                  [(t, *asdict(st).values()) for t, st in rows])
        try:
            avg = asdict(angle_stats(quadrilateral_angles(*self.site_averaged_positions(), self.symbols)))
            avg["frames_relabelled"] = int(self.relabelled)
        except DpqtbError as exc:
            avg = {"error": str(exc)}
        per = np.array([list(asdict(st).values()) for _, st in rows])
        return {"cage_angle": {"frames_mean": dict(zip(asdict(rows[0][1]), per.mean(axis=0).tolist())),
                               "time_averaged_structure": avg}}

    def plot(self, out: Path) -> None:
        ang = self.angles
        if self.error or not ang.rows:
            return
        plt = _plt()
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
        t = np.array([r[0] for r in ang.rows]) / 1000
        a1.plot(t, [r[1].face_max_mean_deg for r in ang.rows], "r.", label="face max")
        a1.plot(t, [r[1].face_min_mean_deg for r in ang.rows], "b.", label="face min")
        a1.axhline(90, color="k", lw=0.5)
        a1.set_xlabel("time (ps)")
        a1.set_ylabel("θ (deg)")
        a1.legend()
        c = 0.5 * (ang.edges[1:] + ang.edges[:-1])
        sel = ang.hist > 0
        a2.bar(c[sel], ang.hist[sel] / ang.hist.sum(), width=ang.edges[1] - ang.edges[0])
        a2.set_xlabel("θ (deg)")
        a2.set_ylabel("fraction")
        fig.tight_layout()
        fig.savefig(out / "theta.png", dpi=120)
        plt.close(fig)


class ProtonExchanges(Observable):
    """Proton hops and exchanges on the lattice sites (``exchanges.csv``, ``hop_events.csv``) and
    ``exchange_examples.png``, whose few example paths are read back with
    :meth:`~dpqtb.analysis.trajectory.Trajectory.iter_atoms` (only those atoms' lines).

    Parameters
    ----------
    traj : Trajectory
        The analysed trajectory (for the example paths of the plot).
    first : Frame
        Its first selected frame.
    site_positions : (N, 3) array
        Positions defining the proton sites (Å; the first frame or a reference structure).
    metal, hydrogen : str
        The two species.
    """

    def __init__(self, traj: Trajectory, first: Frame, site_positions: np.ndarray, metal: str = "La",
                 hydrogen: str = "H"):
        self.traj, self.first, self.metal = traj, first, metal
        self.tracker = SiteTracker(site_positions, first.symbols, first.cell, metal, hydrogen)
        self.result = None

    def update(self, frame: Frame) -> None:
        self.tracker.update(frame.positions, frame.cell, frame.time_fs)

    def write(self, out: Path) -> dict:
        res = self.result = self.tracker.result()
        write_csv(out / "exchanges.csv", ["time_fs", "n_off_initial_site", "n_pair_exchanges", "n_ring_protons"],
                  zip(res.time_fs, res.n_off_initial, res.n_pair_exchanges, res.n_ring_protons))
        write_csv(out / "hop_events.csv", ["frame", "proton", "from_site", "to_site"], res.events)
        return {"exchanges": {"capture_radius_A": self.tracker.r_capture, "n_hops": int(res.hops.sum()),
                              "classes": res.class_counts(), "final_pair_exchanges": int(res.n_pair_exchanges[-1])}}

    def plot(self, out: Path) -> None:
        from dpqtb.analysis.neighbors import min_image

        ex = pick_examples(self.result)
        if not ex:
            return
        first, la = self.first, self.tracker.la
        picks, shift = {}, {}
        for name, p in ex.items():
            atom = int(self.tracker.h[p])
            raw = first.positions[la] - first.positions[atom]
            dvec = min_image(raw, first.cell)
            d = np.linalg.norm(dvec, axis=1)
            sel = d <= 1.3 * d.min()
            near = la[sel]
            for j, sh in zip(near, (dvec - raw)[sel]):
                shift[(name, int(j))] = sh  # draw each La in the periodic image next to the proton
            picks[name] = (atom, near)
        wanted = sorted({int(a) for a, _ in picks.values()} | {int(j) for _, nr in picks.values() for j in nr})
        col = {a: k for k, a in enumerate(wanted)}
        track = np.array([pos for _, pos in self.traj.iter_atoms(wanted)])  # (T, len(wanted), 3)
        paths = {name: (track[:, col[atom]], {int(j): track[:, col[int(j)]] + shift[(name, int(j))] for j in near})
                 for name, (atom, near) in picks.items()}
        plot_examples({n: (np.array(h), [np.array(v) for v in las.values()]) for n, (h, las) in paths.items()},
                      out / "exchange_examples.png")
