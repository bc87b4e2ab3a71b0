"""``dpqtb analyze RUN_DIR``: one streaming pass feeding every observable, then CSV/JSON/PNG.

The observables (:mod:`dpqtb.analysis.observables`) take the frames one at a time; before the pass
the first two frames give the frame spacing and a header scan the number of frames (the default
lag windows); after it each observable writes its tables and summary entries, the thermo log adds
the energy and the target temperature, and ``summary.json`` is written last.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dpqtb import InputError
from dpqtb.analysis.observables import (CageAngle, Displacements, Observable, ProtonExchanges, RadialDistribution,
                                        VibrationalSpectra)
from dpqtb.analysis.trajectory import Frame, Trajectory
from dpqtb.analysis.vdos import energy_vs_temperature
from dpqtb.rundir import LAMMPS_LOG, THERMO, atomic_write_json, read_run_json, read_thermo


@dataclass(frozen=True)
class AnalysisOptions:
    """The knobs of :func:`analyze` (its keyword arguments; units in the names)."""

    max_lag_fs: float | None = None
    origin_every_fs: float | None = None
    msd_prime_every: int = 1
    rdf_every: int = 1
    rdf_r_max_A: float = 6.0
    rdf_bin_A: float = 0.02
    vdos_max_lag_fs: float | None = None
    angle_every: int = 1
    compare: str | Path | None = None
    metal: str = "La"
    hydrogen: str = "H"
    reference: str | Path | None = None

    def check(self) -> None:
        """InputError on a lag, spacing or bin that is not a finite number > 0."""
        for name in ("max_lag_fs", "origin_every_fs", "rdf_r_max_A", "rdf_bin_A", "vdos_max_lag_fs"):
            v = getattr(self, name)
            if v is not None and not (np.isfinite(v) and v > 0):
                raise InputError(f"{name} must be a finite number > 0, got {v!r}")


def analyze(run_dir: str | Path, out_dir: str | Path | None = None, *, max_lag_fs: float | None = None,
            origin_every_fs: float | None = None, msd_prime_every: int = 1, rdf_every: int = 1,
            rdf_r_max_A: float = 6.0, rdf_bin_A: float = 0.02, vdos_max_lag_fs: float | None = None,
            angle_every: int = 1, compare: str | Path | None = None, e_ref_eV: float | str = 0.0,
            start: int = 0, stop: int | None = None, stride: int = 1, metal: str = "La",
            hydrogen: str = "H", plots: bool = True, reference: str | Path | None = None,
            frame_dt_fs: float | None = None, summary_extra: dict | None = None) -> dict:
    """Analyse a ``dpqtb md`` run directory or a trajectory file in one pass over its frames.

    Writes ``summary.json``, ``msd.csv``, ``msd_prime.csv``, ``rdf.csv``, ``vdos.csv``,
    ``theta.csv``, ``exchanges.csv``, ``hop_events.csv`` and their PNG plots (docs/analysis.md).

    Parameters
    ----------
    run_dir : path
        Run directory (with ``trajectory.extxyz``, ``thermo.csv``, ``run.json``; or a LAMMPS run of
        ``dpqtb lammps``: ``dump.lammpstrj``, ``log.lammps``, ``dpqtb_lammps.json``), any ASE-readable
        trajectory file or a LAMMPS text dump.
    out_dir : path, optional
        Output directory (default ``RUN_DIR/analysis``, or ``analysis`` next to a file).
    max_lag_fs : float, optional
        Longest MSD lag (fs); default half the run.
    origin_every_fs : float, optional
        MSD time-origin spacing (fs); default the longest lag / 20.
    msd_prime_every, rdf_every, angle_every : int
        Compute MSD′, the RDF, the cage angle every this many frames.
    rdf_r_max_A, rdf_bin_A : float
        RDF range and bin width (Å).
    vdos_max_lag_fs : float, optional
        VACF window (fs); default min(500, frames/4) frames.  When given, an aliased spectrum is an
        error instead of a warning.
    compare : path, optional
        A second run to overlay in ``rdf.png``.
    e_ref_eV : float or "first"
        Energy zero of E/(3N k_B) (eV), or the potential energy of the first thermo row.
    start, stop, stride : int
        Frame selection (indices of the file's frames).
    metal, hydrogen : str
        Species of the cage-angle and proton-exchange analyses (both must be present).
    plots : bool
        Write the PNG plots.
    reference : path, optional
        Ideal structure (same atom order) defining the proton sites; default the first frame.
    frame_dt_fs : float, optional
        Time between stored frames (fs) for files without ``time_fs``.
    summary_extra : dict, optional
        Entries added to ``summary.json`` (e.g. a sweep's analysis version), which is written once.

    Returns
    -------
    dict
        The content of ``summary.json``.

    Raises
    ------
    InputError
        Bad options, an unreadable or inconsistent trajectory, an unwritable output directory.
    """
    opts = AnalysisOptions(max_lag_fs, origin_every_fs, msd_prime_every, rdf_every, rdf_r_max_A, rdf_bin_A,
                           vdos_max_lag_fs, angle_every, compare, metal, hydrogen, reference)
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise InputError(f"run directory {run_dir} does not exist")
    out = Path(out_dir) if out_dir else (run_dir / "analysis" if run_dir.is_dir() else run_dir.parent / "analysis")
    if out.exists() and not out.is_dir():
        raise InputError(f"output directory {out} is a file")
    opts.check()
    if frame_dt_fs is not None and not frame_dt_fs > 0:
        raise InputError("--frame-dt-fs must be positive")
    traj = Trajectory(run_dir, start=start, stop=stop, stride=stride, timestep_fs=frame_dt_fs)
    first, dt = _first_frames(traj)
    observables = _observables(run_dir, traj, first, dt, traj.count(), opts)
    try:  # the input is readable: now the output directory
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output directory {out}: {exc.strerror or exc}") from None

    n_frames = 0
    for frame in traj:  # the one pass
        n_frames += 1
        for obs in observables:
            obs.update(frame)

    species = list(dict.fromkeys(first.symbols.tolist()))
    summary: dict = {"run_dir": str(run_dir), "n_frames": n_frames, "frame_dt_fs": dt,
                     "n_atoms": int(len(first.symbols)),
                     "species": {s: int(np.sum(first.symbols == s)) for s in species}}
    for obs in observables:
        summary.update(obs.write(out))
    summary.update(thermo_summary(run_dir, len(first.symbols), e_ref_eV))
    summary.update(summary_extra or {})
    if plots:
        for obs in observables:
            obs.plot(out)
    atomic_write_json(out / "summary.json", summary, indent=2, default=float)
    return summary


def _first_frames(traj: Trajectory) -> tuple[Frame, float]:
    """The first selected frame and the frame spacing (fs), from the first two frames."""
    head = list(itertools.islice(traj, 2))
    if len(head) < 2:
        raise InputError(f"{traj.path}: need at least 2 frames for time-dependent analysis")
    first = head[0]
    if not np.all(np.abs(np.linalg.det(first.cell)) > 0):
        raise InputError("trajectory has no periodic cell (Lattice missing)")
    return first, head[1].time_fs - first.time_fs


def _observables(run_dir: Path, traj: Trajectory, first: Frame, dt: float, n_total: int,
                 opts: AnalysisOptions) -> list[Observable]:
    """Every observable of the pass, in summary order (their constructors check what they can)."""
    if n_total < 2:
        raise InputError("trajectory has fewer than 2 frames")
    symbols = first.symbols
    max_lag = max(1, int(round(opts.max_lag_fs / dt))) if opts.max_lag_fs else max(1, n_total // 2)
    max_lag = min(max_lag, n_total - 1)
    origin_every = max(1, int(round(opts.origin_every_fs / dt))) if opts.origin_every_fs else max(1, max_lag // 20)
    vmax = max(4, int(round(opts.vdos_max_lag_fs / dt))) if opts.vdos_max_lag_fs else max(4, min(500, n_total // 4))
    meta = read_run_json(run_dir) if run_dir.is_dir() else {}
    if not meta and traj.is_lammps:  # a LAMMPS run: the bath named in the dpqtb lammps sidecar
        from dpqtb.lammps.dump import read_meta

        meta = {"integrator": read_meta(run_dir if run_dir.is_dir() else run_dir.parent).get("integrator")}
    out: list[Observable] = [
        Displacements(first, opts.hydrogen, max_lag, origin_every, opts.msd_prime_every),
        RadialDistribution(symbols, opts.rdf_r_max_A, opts.rdf_bin_A, opts.rdf_every, run_dir.name, opts.compare),
        VibrationalSpectra(symbols, dt, vmax, n_total, bool(opts.vdos_max_lag_fs), meta.get("integrator"),
                           run_dir if run_dir.is_dir() else None)]
    if opts.metal in symbols and opts.hydrogen in symbols:
        out += [CageAngle(symbols, opts.angle_every, opts.metal),
                ProtonExchanges(traj, first, _site_positions(first, opts.reference), opts.metal, opts.hydrogen)]
    return out


def _site_positions(first: Frame, reference: str | Path | None) -> np.ndarray:
    """The proton-site positions: the reference structure's (same species order), else the first frame's."""
    if reference is None:
        return first.positions
    from ase.io import read

    try:
        ref_atoms = read(str(reference))
    except Exception as exc:
        raise InputError(f"cannot read reference structure {reference}: {exc}") from exc
    if ref_atoms.get_chemical_symbols() != first.symbols.tolist():
        raise InputError(f"reference structure {reference} does not have the trajectory's species order")
    return ref_atoms.positions


def thermo_summary(run_dir: Path, n_atoms: int, e_ref_eV: float | str = 0.0) -> dict:
    """E/(3N k_B) over the run's thermo log and its target temperature (``{}`` without a thermo log).

    Parameters
    ----------
    run_dir : path
        The run directory (a trajectory file has no thermo log).
    n_atoms : int
        Number of atoms.
    e_ref_eV : float or "first"
        Energy zero (eV), or the potential energy of the first thermo row (which must be step 0).

    Returns
    -------
    dict
        ``energy`` (:func:`~dpqtb.analysis.vdos.energy_vs_temperature` with ``e_ref_eV``) and
        ``target_temperature_K`` from the ``target_temperature_K`` column: its value when constant,
        ``[first, last]`` for a ramp, None for NVE (no target).
    """
    run_dir = Path(run_dir)
    if run_dir.is_dir() and not (run_dir / THERMO).exists() and (run_dir / LAMMPS_LOG).exists():
        from dpqtb.lammps.dump import read_log_thermo

        th = read_log_thermo(run_dir)  # a LAMMPS run: log.lammps under thermo.csv's names
    elif not (run_dir.is_dir() and (run_dir / THERMO).exists()):
        return {}
    else:
        th = read_thermo(run_dir)
    if e_ref_eV == "first":  # the starting structure's potential energy (static lattice for ideal crystals)
        if th["step"][0] != 0:
            raise InputError(f"--e-ref-eV first: {run_dir}/{THERMO} does not start at step 0")
        e_ref_eV = float(th["potential_eV"][0])
    e = energy_vs_temperature(th, n_atoms, e_ref_eV)
    energy = {k: float(v[0]) for k, v in e.items()}
    energy["e_ref_eV"] = e_ref_eV
    return {"energy": energy, "target_temperature_K": target_temperature(th["target_temperature_K"])}


def target_temperature(column: np.ndarray) -> float | list[float] | None:
    """The target temperature (K) of a thermo log's ``target_temperature_K`` column.

    Parameters
    ----------
    column : array
        The column's values.

    Returns
    -------
    float, [float, float] or None
        The value when constant, ``[first, last]`` for a ramp, None when undefined (NVE: NaN).
    """
    col = np.asarray(column, dtype=float)
    if not np.all(np.isfinite(col)):
        return None
    if np.all(col == col[0]):
        return float(col[0])
    return [float(col[0]), float(col[-1])]
