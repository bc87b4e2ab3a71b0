"""Observers: what a :class:`~dpqtb.md.run.Simulation` records as it runs, one component per output.

An observer is called by the runner at fixed points of a run and owns its file(s) in the run directory:

    start(sim)              a fresh run, after the first force call: headers, first values
    observe(sim)            after every step (the observer decides by ``sim.state.step`` whether to act)
    flush(sim)              at every checkpoint (and at the end): files rewritten from accumulated data
    offsets(sim) / truncate(sim, offsets)
                            appended files: their sizes at a checkpoint, and the cut back to them on resume
    state_dict() / load_state_dict(d)
                            accumulators that a resumed run needs (kept in the checkpoint)

The runner itself knows only this protocol: :class:`ThermoObserver` (thermo.csv), :class:`TrajectoryObserver`
(trajectory.extxyz), :class:`BeadTrajectoryObserver` (trajectory_beads.extxyz, every bead of a ring polymer),
:class:`QTBSpectraObserver` (the quantum bath's Δ_FD spectra and phonon DOS) and
:class:`VACFObserver` (velocity autocorrelation per species, on the fly) and :class:`ModelDeviationObserver`
(the model deviation of a Deep Potential ensemble) are the built-in ones; a user's observer is any object with
these methods (derive from :class:`Observer`). An observer with ``thermo_columns`` (a tuple of names) and
``thermo_values(sim)`` (a dict) adds those columns to thermo.csv.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import torch

from dpqtb import InputError
from dpqtb.rundir import (BEAD_TRAJECTORY, MODEL_DEVI_CSV, QTB_DOS, QTB_FD_GLOB, THERMO, THERMO_COLUMNS, TRAJECTORY,
                          VACF, ThermoRow, atomic_write_text, qtb_fd_name, thermo_header, thermo_line)
from dpqtb.units import KB


def write_table(path: Path, columns: list[str], data: np.ndarray) -> None:
    """A CSV table (header line, values to 8 digits) written atomically."""
    buf = io.StringIO()
    np.savetxt(buf, data, delimiter=",", header=",".join(columns), comments="", fmt="%.8g")
    atomic_write_text(path, buf.getvalue())


class Observer:
    """The observer protocol, every method a no-op (see the module docstring)."""

    #: a name unique among a simulation's observers (the key of its state in the checkpoint)
    name = "observer"
    #: files (names or glob patterns) of the run directory this observer owns: removed on a fresh start
    files: tuple[str, ...] = ()

    def start(self, sim) -> None:
        pass

    def observe(self, sim) -> None:
        pass

    def flush(self, sim) -> None:
        pass

    def offsets(self, sim) -> dict:
        return {}

    def truncate(self, sim, offsets: dict) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, d: dict) -> None:
        pass


class _AppendedFile(Observer):
    """An observer that appends to one file: its size is recorded at checkpoints and cut back on resume."""

    filename = ""
    offset_key = ""

    def offsets(self, sim) -> dict:
        if sim.dir is None:
            return {}
        path = sim.dir / self.filename
        return {self.offset_key: path.stat().st_size if path.exists() else 0}

    def _write_header(self, sim, columns) -> None:
        """Start the file (a fresh run) with the header line of ``columns``."""
        if sim.dir is not None:
            (sim.dir / self.filename).write_text(thermo_header(columns))

    def _append(self, sim, line: str) -> None:
        if sim.dir is not None:
            with open(sim.dir / self.filename, "a") as fh:
                fh.write(line)

    def truncate(self, sim, offsets: dict) -> None:
        path = sim.dir / self.filename
        if path.exists() and self.offset_key in offsets:
            with open(path, "r+b") as fh:
                fh.truncate(int(offsets[self.offset_key]))


class ThermoObserver(_AppendedFile):
    """thermo.csv: one :class:`~dpqtb.rundir.ThermoRow` every ``every`` steps (the columns of
    :data:`~dpqtb.rundir.THERMO_COLUMNS` and then the integrator's own); ``callback`` gets every row."""

    name = "thermo"
    filename = THERMO
    offset_key = "thermo"
    files = (THERMO,)

    def __init__(self, every: int = 10, callback=None):
        if int(every) < 1:
            raise InputError(f"output.thermo_every must be >= 1, got {every}")
        self.every = int(every)
        self.callback = callback
        self.last: ThermoRow | None = None
        self.file_columns: tuple | None = None  # a resumed file's header, when it differs from columns(sim)

    @staticmethod
    def columns(sim) -> tuple:
        """THERMO_COLUMNS, the integrator's own columns, then those of observers with ``thermo_columns``."""
        own = tuple(c for o in getattr(sim, "observers", ()) for c in getattr(o, "thermo_columns", ()))
        return THERMO_COLUMNS + tuple(sim.integrator.extra_thermo_columns(sim.state.type_map)) + own

    @classmethod
    def row(cls, sim) -> ThermoRow:
        s, integ = sim.state, sim.integrator
        columns = cls.columns(sim)
        ke = integ.kinetic_energy(s)  # for PIMD the centroid-virial estimator
        pe = float(s.energy)
        vol = s.volume if all(s.pbc) else float("nan")
        temp = 2.0 * ke / (integ.n_dof(s) * KB)
        extra = integ.extra_thermo(s)
        for o in getattr(sim, "observers", ()):
            if getattr(o, "thermo_columns", ()):
                extra.update(o.thermo_values(sim))
        return ThermoRow((s.step, s.time_fs, temp, integ.target_temperature(s.step), ke, pe, ke + pe,
                          integ.conserved_energy(s), integ.pressure_GPa(s), vol,
                          *(extra[c] for c in columns[len(THERMO_COLUMNS):])), columns)

    def start(self, sim) -> None:
        self.file_columns = None
        self._write_header(sim, self.columns(sim))
        self.observe(sim)

    def truncate(self, sim, offsets: dict) -> None:
        """Cut back to the checkpoint, and keep the file's own header: a run started by an older dpqtb
        that wrote fewer (or other) columns goes on in that file's columns (new ones left out, vanished
        ones NaN), so that every line of the resumed file matches its header."""
        super().truncate(sim, offsets)
        path = sim.dir / self.filename
        self.file_columns = None
        if path.exists():
            with open(path) as fh:
                head = tuple(fh.readline().strip().split(","))
            if head != self.columns(sim):
                self.file_columns = head

    def observe(self, sim) -> None:
        if sim.state.step % self.every:
            return
        row = self.row(sim)
        self.last = row
        if self.callback is not None:
            self.callback(row)
        if self.file_columns is None:
            self._append(sim, thermo_line(row))
        else:
            have = dict(zip(row.columns, row))
            self._append(sim, thermo_line(tuple(have.get(c, float("nan")) for c in self.file_columns)))


class TrajectoryObserver(_AppendedFile):
    """trajectory.extxyz: unwrapped positions (Å), cell, step, time and energy every ``every`` steps
    (0: none); with ``velocities`` also ``velocities_A_per_fs``."""

    name = "trajectory"
    filename = TRAJECTORY
    offset_key = "trajectory"
    files = (TRAJECTORY,)

    def __init__(self, every: int = 100, velocities: bool = False):
        self.every = int(every)
        self.velocities = bool(velocities)

    def start(self, sim) -> None:
        self.observe(sim)

    def observe(self, sim) -> None:
        if sim.dir is None or not self.every or sim.state.step % self.every:
            return
        from ase.io import write

        s = sim.state
        atoms = s.to_atoms(include_velocities=False)
        atoms.info.update(step=s.step, time_fs=s.time_fs, energy_eV=float(s.energy))
        if self.velocities:
            atoms.new_array("velocities_A_per_fs", s.velocities.detach().cpu().numpy())
        with open(sim.dir / TRAJECTORY, "a") as fh:
            write(fh, atoms, format="extxyz")


class BeadTrajectoryObserver(_AppendedFile):
    """trajectory_beads.extxyz (PIMD/TRPMD): every bead's configuration every ``every`` steps, P frames per
    sample in bead order, each with ``step``, ``time_fs``, ``bead`` (0 … P−1), ``beads`` (P) and ``energy_eV``
    (the model's energy of that bead) in its comment line; positions unwrapped (Å), the shared cell.

    Each bead is a configuration the potential is evaluated on: the path-integral frames a data set or a
    held-out set takes (``dpqtb label --store S trajectory_beads.extxyz``), as i-PI's per-bead ``positions{…}``
    output. trajectory.extxyz holds the centroids."""

    name = "bead_trajectory"
    filename = BEAD_TRAJECTORY
    offset_key = "bead_trajectory"
    files = (BEAD_TRAJECTORY,)

    def __init__(self, every: int):
        if int(every) < 1:
            raise InputError(f"output.bead_trajectory_every must be >= 1, got {every}")
        self.every = int(every)

    def start(self, sim) -> None:
        self.observe(sim)

    def truncate(self, sim, offsets: dict) -> None:
        """Cut back to the checkpoint; a file the checkpoint did not record (the option switched on at
        ``--resume``, or left by another run) is refused rather than continued with a gap."""
        path = sim.dir / self.filename
        if self.offset_key not in offsets and path.exists() and path.stat().st_size:
            raise InputError(f"{path} exists but the checkpoint in {sim.dir} did not record it "
                             "(output.bead_trajectory_every switched on at --resume?): move it away, or start "
                             "again with --overwrite")
        super().truncate(sim, offsets)

    def observe(self, sim) -> None:
        ring = getattr(sim.state, "ring", None)
        if sim.dir is None or ring is None or sim.state.step % self.every:
            return
        from ase.io import write

        s = sim.state
        base = s.to_atoms(include_velocities=False)  # symbols, cell, pbc, masses: the centroid frame's
        q = ring.q.detach().cpu().numpy()
        energies = ring.e.detach().cpu().numpy() if ring.e is not None else np.full(ring.beads, np.nan)
        frames = []
        for j in range(ring.beads):
            atoms = base.copy()
            atoms.positions = q[j]
            atoms.info.update(step=s.step, time_fs=s.time_fs, bead=j, beads=ring.beads, energy_eV=float(energies[j]))
            frames.append(atoms)
        with open(sim.dir / self.filename, "a") as fh:
            write(fh, frames, format="extxyz")


class QTBSpectraObserver(Observer):
    """The quantum bath's Δ_FD(ω) per adaptation group (qtb_fd_<group>.csv) and the phonon DOS deconvolved
    from its spectra (qtb_dos.csv), rewritten at every checkpoint; the bath's diagnostics (leakage,
    resolution) printed once each as warnings. Its accumulators belong to the bath (its ``state_dict``)."""

    name = "qtb_spectra"
    files = (QTB_FD_GLOB, QTB_DOS)

    def __init__(self, bath):
        self.bath = bath

    def flush(self, sim) -> None:
        bath = self.bath
        if sim.dir is None or getattr(bath, "fd", None) is None or bath.fd.n_segments == 0:
            return
        for name, table in bath.fd_table(sim.state.type_map).items():
            cols = list(table)
            write_table(sim.dir / qtb_fd_name(name), cols, np.column_stack([table[c] for c in cols]))
        dos = bath.phonon_dos()
        cols = ["freq_THz"] + [f"g_{k}_per_THz" for k in dos if k != "freq_THz"]
        write_table(sim.dir / QTB_DOS, cols, np.column_stack(list(dos.values())))
        for msg in bath.diagnose():
            key = msg.split(":")[0]
            if key not in bath.reported:
                bath.reported.add(key)
                print(f"dpqtb: warning: {msg}", file=sys.stderr)


class VACFObserver(Observer):
    """Velocity autocorrelation per species on the fly, C_X(τ) = ⟨v_i(t)·v_i(t+τ)⟩ over the atoms i of
    species X and every time origin t (Å²/fs²), sampled every ``every`` steps up to ``max_lag_fs``; written
    to vacf.csv at checkpoints (columns ``lag_fs``, ``vacf_<X>_A2_per_fs2``, ``n_origins``). For a ring
    polymer the velocities are the centroid's. Memory: one window of (max_lag/every + 1) velocity frames.

    C_X(0) = 3 k_B T_X/m_X classically; its Fourier transform is the species' vibrational DOS without a
    trajectory of velocities on disk.
    """

    name = "vacf"
    files = (VACF,)

    def __init__(self, every: int, max_lag_fs: float, dt_fs: float):
        if int(every) < 1:
            raise InputError(f"output.vacf_every must be >= 1, got {every}")
        if not max_lag_fs > 0:
            raise InputError(f"output.vacf_max_lag_fs must be > 0, got {max_lag_fs}")
        self.every = int(every)
        self.dt_fs = float(dt_fs)
        self.n_lags = int(max_lag_fs // (self.every * self.dt_fs)) + 1
        self.window: torch.Tensor | None = None  # (n_lags, N, 3): the latest samples, newest at index count % n_lags
        self.count = 0  # samples taken
        self.sums: np.ndarray | None = None  # (n_lags, n_species): Σ over origins of Σ_{i∈X} v_i(t)·v_i(t+τ)
        self.origins = np.zeros(self.n_lags, dtype=np.int64)

    def _species_sum(self, sim, dots: torch.Tensor) -> np.ndarray:
        """(L, N) dot products → (L, n_species) sums per species."""
        s = sim.state
        out = torch.zeros(dots.shape[0], len(s.type_map), dtype=torch.float64, device=dots.device)
        out.index_add_(1, s.species, dots.double())
        return out.cpu().numpy()

    def start(self, sim) -> None:
        self.observe(sim)

    def observe(self, sim) -> None:
        s = sim.state
        if s.step % self.every:
            return
        v = s.velocities.detach()
        if self.window is not None and self.window.device != v.device:  # restored from a checkpoint (CPU)
            self.window = self.window.to(device=v.device, dtype=v.dtype)
        if self.window is None:
            self.window = torch.zeros((self.n_lags,) + tuple(v.shape), dtype=v.dtype, device=v.device)
            self.sums = np.zeros((self.n_lags, len(s.type_map)))
        n = min(self.count + 1, self.n_lags)  # lags 0 .. n-1 have an origin in the window
        slot = self.count % self.n_lags
        self.window[slot] = v
        idx = [(slot - lag) % self.n_lags for lag in range(n)]
        dots = (self.window[idx] * v[None]).sum(-1)  # (n, N): v(t−τ)·v(t)
        self.sums[:n] += self._species_sum(sim, dots)
        self.origins[:n] += 1
        self.count += 1

    def table(self, sim) -> dict[str, np.ndarray]:
        s = sim.state
        counts = np.bincount(s.species.cpu().numpy(), minlength=len(s.type_map))
        n = int((self.origins > 0).sum())
        out = {"lag_fs": np.arange(n) * self.every * self.dt_fs}
        for k, name in enumerate(s.type_map):
            out[f"vacf_{name}_A2_per_fs2"] = self.sums[:n, k] / (self.origins[:n] * max(counts[k], 1))
        out["n_origins"] = self.origins[:n].astype(float)
        return out

    def flush(self, sim) -> None:
        if sim.dir is None or self.count == 0:
            return
        table = self.table(sim)
        write_table(sim.dir / VACF, list(table), np.column_stack(list(table.values())))

    def state_dict(self) -> dict:
        return {"window": None if self.window is None else self.window.clone(), "count": self.count,
                "sums": self.sums, "origins": self.origins.copy(), "every": self.every, "n_lags": self.n_lags}

    def load_state_dict(self, d: dict) -> None:
        if int(d["every"]) != self.every or int(d["n_lags"]) != self.n_lags:
            raise InputError("the checkpoint's VACF sampling (vacf_every, vacf_max_lag_fs) differs from this run's")
        self.window = d["window"]
        self.count = int(d["count"])
        self.sums = d["sums"]
        self.origins = np.asarray(d["origins"], dtype=np.int64)


class ModelDeviationObserver(_AppendedFile):
    """The model deviation of a Deep Potential ensemble along the run (DP-GEN's definition,
    :func:`dpqtb.potential.ensemble.model_deviation`), every ``every`` steps (a multiple of the thermo
    interval): thermo.csv gets ``max_force_dev_eV_A`` (NaN on rows without a deviation), model_devi.csv
    the four DP-GEN measures, and the run warns on stderr when the deviation reaches ``trust_hi``.

    The ensemble is the driving potential plus ``members``: the driver's forces and energy are those the
    integrator already has (no extra call), each member is evaluated once at the same positions and
    cell. For a ring polymer every bead is a configuration the model sees: the members are evaluated on
    all beads in one batch and the run's values are the worst bead's (max over beads of max_devi_f and
    devi_e; min and mean over beads of min/avg_devi_f). Nothing here touches the dynamics.

    Parameters
    ----------
    members : sequence of Potential
        The other members (at least one), bound to the run's type map on first use.
    every : int
        Steps between deviations.
    trust_hi_eV_per_A : float
        Warn when max_devi_f reaches this (eV/Å): the configuration has left the ensemble's trust region.
    max_warnings : int
        Warnings printed (one per excursion above ``trust_hi``) before they are only counted.
    """

    name = "model_devi"
    filename = MODEL_DEVI_CSV
    offset_key = "model_devi"
    files = (MODEL_DEVI_CSV,)
    thermo_columns = ("max_force_dev_eV_A",)

    def __init__(self, members, every: int, trust_hi_eV_per_A: float, max_warnings: int = 10):
        from dpqtb.potential.ensemble import DEVIATION_COLUMNS

        if len(members) < 1:
            raise InputError("potential.ensemble needs at least one model beside potential.model")
        if int(every) < 1:
            raise InputError(f"potential.deviation_every must be >= 1, got {every}")
        if not trust_hi_eV_per_A > 0:
            raise InputError(f"potential.trust_hi_eV_per_A must be > 0, got {trust_hi_eV_per_A}")
        self.members = list(members)
        self.every = int(every)
        self.trust_hi = float(trust_hi_eV_per_A)
        self.max_warnings = int(max_warnings)
        self.columns = ("step", "time_fs", *DEVIATION_COLUMNS)
        self._bound = False
        self._cache: tuple[int, dict] | None = None
        self.outside = False  # the last deviation was at or above trust_hi
        self.excursions = 0  # entries into the region above trust_hi
        self.samples_outside = 0
        self.samples = 0
        self.max_seen = 0.0  # the largest max_devi_f so far (eV/Å)

    def deviation(self, sim) -> dict[str, float]:
        """The deviation at the current step (computed once per step)."""
        from dpqtb.potential.ensemble import model_deviation

        s = sim.state
        if self._cache is not None and self._cache[0] == s.step:
            return self._cache[1]
        if not self._bound:
            for m in self.members:
                m.bind(tuple(s.type_map))
            self._bound = True
        ring = getattr(s, "ring", None)
        if ring is not None:
            pos, e0, f0 = ring.q, ring.e, ring.f  # (P, N, 3), (P,), (P, N, 3)
        else:
            pos, e0, f0 = s.positions, s.energy, s.forces
        outs = [m(pos.detach(), s.cell, s.species, s.pbc) for m in self.members]  # (models take their own grads)
        energies = torch.stack([e0] + [o.energy.reshape(e0.shape) for o in outs]).detach()
        forces = torch.stack([f0] + [o.forces.reshape(f0.shape) for o in outs]).detach()
        d = model_deviation(energies.double(), forces.double())
        if ring is not None:  # the worst bead
            d = {"max_devi_f_eV_per_A": d["max_devi_f_eV_per_A"].max(), "min_devi_f_eV_per_A": d["min_devi_f_eV_per_A"].min(),
                 "avg_devi_f_eV_per_A": d["avg_devi_f_eV_per_A"].mean(), "devi_e_eV_per_atom": d["devi_e_eV_per_atom"].max()}
        out = {k: float(v) for k, v in d.items()}
        self._cache = (s.step, out)
        return out

    def thermo_values(self, sim) -> dict[str, float]:
        if sim.state.step % self.every:
            return {"max_force_dev_eV_A": float("nan")}
        return {"max_force_dev_eV_A": self.deviation(sim)["max_devi_f_eV_per_A"]}

    def start(self, sim) -> None:
        self._write_header(sim, self.columns)
        self.observe(sim)

    def observe(self, sim) -> None:
        s = sim.state
        if s.step % self.every:
            return
        d = self.deviation(sim)
        self._append(sim, thermo_line((s.step, s.time_fs, *(d[c] for c in self.columns[2:]))))
        self.samples += 1
        self.max_seen = max(self.max_seen, d["max_devi_f_eV_per_A"])
        above = not d["max_devi_f_eV_per_A"] < self.trust_hi
        if above:
            self.samples_outside += 1
            if not self.outside:
                self.excursions += 1
                if self.excursions <= self.max_warnings:
                    more = " (further excursions are only counted)" if self.excursions == self.max_warnings else ""
                    print(f"dpqtb: warning: step {s.step}: max force deviation {d['max_devi_f_eV_per_A']:.3g} eV/Å "
                          f">= potential.trust_hi_eV_per_A = {self.trust_hi:g}: the run has left the ensemble's trust "
                          f"region ({self.samples_outside} of {self.samples} samples so far); its forces there are "
                          f"extrapolated{more}", file=sys.stderr)
        self.outside = above

    def summary(self) -> dict:
        """Counts so far: samples, samples at or above trust_hi, excursions, the largest max_devi_f."""
        return {"samples": self.samples, "samples_outside": self.samples_outside, "excursions": self.excursions,
                "max_devi_f_eV_per_A": self.max_seen, "trust_hi_eV_per_A": self.trust_hi}

    def summary_line(self) -> str:
        """One line for the end of a run."""
        return (f"model deviation: {self.samples} samples, largest max_devi_f {self.max_seen:.3g} eV/Å, "
                f"{self.samples_outside} at or above trust_hi {self.trust_hi:g} eV/Å ({self.excursions} excursions)")

    def state_dict(self) -> dict:
        return {"every": self.every, "outside": self.outside, "excursions": self.excursions,
                "samples_outside": self.samples_outside, "samples": self.samples, "max_seen": self.max_seen}

    def load_state_dict(self, d: dict) -> None:
        if int(d["every"]) != self.every:
            raise InputError("the checkpoint's model deviation interval (potential.deviation_every) differs from "
                             "this run's")
        self.outside = bool(d["outside"])
        self.excursions, self.samples_outside, self.samples = (int(d[k]) for k in
                                                               ("excursions", "samples_outside", "samples"))
        self.max_seen = float(d["max_seen"])


__all__ = ["Observer", "ThermoObserver", "TrajectoryObserver", "QTBSpectraObserver", "VACFObserver",
           "ModelDeviationObserver", "write_table"]
