"""``dpqtb sweep``: P–T (and bath, seed, size) sweeps of MD points, one Dask task per point.

Each point (:mod:`dpqtb.workflows.sweep_spec`) runs in ``DIR/points/<hash>/``, an ordinary ``dpqtb md``
run directory: equilibration and production are one run of ``equilibration_steps + production_steps``
steps whose first part is left out of every average; then :func:`dpqtb.analysis.pipeline.analyze`
on the production frames and block averages of the production thermo rows give the point's
observables, written to ``result.json`` (atomically, last: a point with a ``result.json`` is done).

Nothing is lost, nothing done twice:

* a point with a ``result.json`` of its hash is never run again (the client does not even submit it);
* a point with a checkpoint resumes from it (bitwise, :meth:`dpqtb.md.run.Simulation.run`), so a
  point whose worker was killed reruns on another worker and writes the same bytes: its seed comes
  from its hash, and torch runs single-threaded inside a task;
* ``point.lock`` (an exclusive ``flock``, released by the OS when its holder dies) keeps two tasks
  from ever writing one point directory at once;
* the client alone writes ``DIR/points.csv``, atomically, after every finished point, with the rows in
  the sweep's expansion order (so its bytes do not depend on which worker finished first);
* a client stopped by Ctrl-C or SIGTERM asks every worker to stop this sweep's running points after their
  current step (:func:`stop_points`: a task runs off the worker's main thread, where no signal handler can
  be installed, so the MD loop polls the request), waits for their checkpoints (at most
  :data:`STOP_GRACE_S`), and exits 130 / 143: the same command resumes them where they stopped, as
  ``--serial`` does. A second Ctrl-C stops at once (points then resume from their last periodic checkpoint);
* a *worker* process sent SIGTERM on its own (a batch system ending a job that runs only workers, as
  dask-jobqueue's) stops its running points the same way, each with a checkpoint at the step in flight, then
  exits without reporting them (:func:`_on_worker_sigterm`): the scheduler reruns them on another worker,
  which resumes them bitwise.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

from dpqtb import InputError, RunInterrupted
from dpqtb.analysis.stats import drift, integrated_time, mean_error
from dpqtb.analysis.vdos import energy_per_3NkB, first_corrected_row
from dpqtb.rundir import (CHECKPOINT, POINT_ANALYSIS_DIR, POINT_JSON, POINT_LOCK, POINT_LOG, POINT_RESULT,
                          SWEEP_JSON, SWEEP_LOCK, SWEEP_POINTS_CSV, SWEEP_POINTS_DIR, atomic_write_json,
                          atomic_write_text,
                          read_thermo)
from dpqtb.workflows.sweep_spec import STEP_AXES, Sweep
from dpqtb.workflows.sweep_stop import (_STOP_TOKENS, _WORKER_STOP, PointStopped, SweepInterrupted, _counted,
                                        _park, stop_points)

__all__ = ["run_sweep", "run_point", "stop_points", "points_csv", "csv_columns", "progress_line", "thread_output_to"]

#: the observables of every point, in points.csv order (per-species columns follow, see :func:`csv_columns`)
OBSERVABLES = (
    "T_kin_K", "T_kin_K_err", "E_per_3NkB_K", "E_per_3NkB_K_err", "E_per_3NkB_raw_K", "E_per_3NkB_raw_K_err",
    "P_mean_GPa", "P_mean_GPa_err", "P_target_GPa", "P_dev_GPa", "P_drift_GPa", "P_drift_GPa_err", "P_tau_ps", "P_n_indep", "V_A3", "V_A3_err",
    "a_A", "a_A_err", "b_A", "b_A_err", "c_A", "c_A_err",
    "theta_frames_deg", "theta_frames_deg_err", "distortion_frames_deg", "distortion_frames_deg_err",
    "face_spread_frames_deg", "face_max_frames_deg", "face_max_frames_deg_err", "face_min_frames_deg",
    "face_min_frames_deg_err", "theta_avg_deg", "distortion_avg_deg", "face_spread_avg_deg", "face_max_avg_deg",
    "face_min_avg_deg", "T_zero_K", "T_zero_source", "exchanged_fraction")
#: θ statistics of dpqtb.analysis (AngleStats field) -> points.csv name stem
_CAGE = {"theta_mean_deg": "theta", "deviation_mean_deg": "distortion", "theta_std_deg": "face_spread",
         "face_max_mean_deg": "face_max", "face_min_mean_deg": "face_min"}
_THETA_CSV = "theta.csv"  # written by dpqtb.analysis (CageAngle)
NAN = float("nan")


class _ThreadRouted:
    """A stand-in for sys.stdout / sys.stderr that writes each thread's output where that thread asked
    (:func:`thread_output_to`), else to the original stream. contextlib.redirect_stdout swaps the stream of
    the whole process: with several points in one worker (threads), one point's lines would go to another's
    log, and the second to leave would put back a closed file."""

    def __init__(self, original):
        self.original = original
        self.local = threading.local()

    def _target(self):
        return getattr(self.local, "target", None) or self.original

    def write(self, s):
        return self._target().write(s)

    def writelines(self, lines):
        return self._target().writelines(lines)

    def flush(self):
        return self._target().flush()

    def __getattr__(self, name):
        return getattr(self.original, name)


_ROUTE_LOCK = threading.Lock()


@contextlib.contextmanager
def thread_output_to(stream):
    """This thread's sys.stdout and sys.stderr go to ``stream`` inside the block; other threads' do not."""
    with _ROUTE_LOCK:
        for name in ("stdout", "stderr"):
            if getattr(sys, name) is not None and not isinstance(getattr(sys, name), _ThreadRouted):
                setattr(sys, name, _ThreadRouted(getattr(sys, name)))
        routers = tuple(r for r in (sys.stdout, sys.stderr) if isinstance(r, _ThreadRouted))
    previous = [getattr(r.local, "target", None) for r in routers]
    for r in routers:
        r.local.target = stream
    try:
        yield
    finally:
        for r, p in zip(routers, previous):
            r.local.target = p


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive flock on ``path`` for the block (released by the OS if the holder dies)."""
    import fcntl

    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _one_client(out: Path):
    """This process is the one client of the sweep directory ``out`` for the block (an exclusive non-blocking
    flock on DIR/sweep.lock, released by the OS if it dies), else one InputError naming the holder. Two clients
    would each rewrite points.csv and sweep.json from their own view (the last writer wins)."""
    import fcntl

    path = out / SWEEP_LOCK
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise InputError(f"{out} is being run by another `dpqtb sweep` ({holder}); wait for it or stop it "
                             "(its points resume), then run this command again") from None
        except OSError:  # a file system without flock: go on as before (the point locks still hold)
            locked = False
        if not locked:
            yield
            return
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"{socket.gethostname()} pid {os.getpid()}\n")
            fh.flush()
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_result(point_dir: Path, point_hash: str) -> dict | None:
    """The finished point's result.json, or None (absent, unreadable, another hash)."""
    from dpqtb.workflows.sweep_status import _read_json  # the one reader of the sweep's JSON files

    res = _read_json(Path(point_dir) / POINT_RESULT)
    return res if res is not None and res.get("hash") == point_hash and res.get("status") == "done" else None


def run_point(spec: dict) -> dict:
    """Run, resume or skip one point; returns its result (the content of result.json).

    The Dask task of a sweep (also called in-process by ``--serial``).  Idempotent: a finished point
    is read back, an interrupted one continues from its checkpoint.

    Parameters
    ----------
    spec : dict
        :meth:`dpqtb.workflows.sweep_spec.Point.spec`.

    Returns
    -------
    dict
        ``hash``, ``status`` ("done"), ``axes``, ``md_seed``, ``n_atoms``, ``observables``, ``timing``.
    """
    import torch

    token = spec.get("stop_token")
    if token is not None and token in _STOP_TOKENS:
        raise PointStopped(f"point {spec['hash'][:16]} not started: its sweep was stopped")
    if token is not None and _WORKER_STOP.is_set():  # this worker is ending: let the scheduler rerun it elsewhere
        _park(counted=False)
    torch.set_num_threads(1)  # bitwise-reproducible reductions, one core per point
    d = Path(spec["dir"])
    d.mkdir(parents=True, exist_ok=True)
    with _locked(d / POINT_LOCK), _counted():
        done = read_result(d, spec["hash"])
        if done is not None:
            return done
        with open(d / POINT_LOG, "a") as log, thread_output_to(log):
            trim = malloc_trim_warning()
            if trim:
                print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} warning: {trim}", file=log, flush=True)
            stop = (lambda: token in _STOP_TOKENS or _WORKER_STOP.is_set()) if token is not None else None
            try:
                return _run_locked(spec, d, log, stop)
            except RunInterrupted as exc:
                ending = stop is not None and token not in _STOP_TOKENS and _WORKER_STOP.is_set()
                by = signal.Signals(exc.signum).name if stop is None else \
                    ("SIGTERM to its worker; it reruns elsewhere" if ending else "by the sweep client")
                print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} stopped at step {exc.step} ({by}); "
                      "checkpoint written", file=log, flush=True)
                if ending:
                    _park(counted=True)
                if stop is not None:  # a plain error in the worker: a KeyboardInterrupt would end its thread
                    raise PointStopped(f"point {spec['hash'][:16]} stopped at step {exc.step} with a checkpoint",
                                       exc.step) from None
                raise
            except Exception as exc:
                print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} failed: {_one_line(exc)}", file=log, flush=True)
                raise


def _run_locked(spec: dict, d: Path, log, stop=None) -> dict:
    from dpqtb.md.build import build_simulation
    from dpqtb.md.config import validate
    from dpqtb.md.run import model_sha256

    t0, c0 = time.perf_counter(), time.process_time()
    where = f"{socket.gethostname()} pid {os.getpid()}"
    if not (d / POINT_JSON).exists():
        atomic_write_json(d / POINT_JSON, {k: v for k, v in spec.items() if k not in ("dir", "stop_token")}, indent=2)
    cfg = validate(spec["config"], base_dir=spec["base_dir"])
    eq, prod = spec["equilibration_steps"], spec["production_steps"]
    resume = (d / CHECKPOINT).is_file()
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {'resume' if resume else 'start'} on {where}", file=log, flush=True)
    sim = build_simulation(cfg, output_dir=d, progress=False)
    # straight to this point's log (as every line run_point writes)
    sim.on_progress = lambda event, step, target: print(progress_line(event, step, target), file=log, flush=True)
    sim.run(eq + prod, resume=resume, overwrite=not resume, stop=stop)
    t_md = time.perf_counter() - t0
    n_atoms, obs = analyze_point(spec, d, d / POINT_ANALYSIS_DIR)
    wall = time.perf_counter() - t0
    result = {"hash": spec["hash"], "status": "done", "axes": spec["axes"], "md_seed": spec["md_seed"],
              "n_atoms": n_atoms, "equilibration_steps": eq, "production_steps": prod,
              "analysis_version": ANALYSIS_VERSION, "observables": obs,
              "model_sha256": model_sha256(sim.physics_config),
              "timing": {"wall_s": wall, "cpu_s": time.process_time() - c0, "md_s": t_md,
                         "analysis_s": wall - t_md, "where": where, "resumed": resume}}
    atomic_write_json(d / POINT_RESULT, result, indent=2)
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} done in {wall:.1f} s (MD {t_md:.1f} s)", file=log, flush=True)
    log.flush()
    return result


#: the version of a point's analysis, stored in result.json (``analysis_version``; absent: 1). A point analysed
#: by an older version is brought up to date by ``dpqtb sweep --reanalyze DIR``, from its run files, without MD.
#: 2: the production frames start after step ``equilibration_steps`` (1 took the frame at that step too).
#: 3: D of every species and the exchanged fraction of H in the observables (the numbers of 2 unchanged).
#: 4: the pressure drift over production, P_drift_GPa (the numbers of 3 unchanged).
#: 5: error bars of time averages no smaller than the correlation-time error (dpqtb.analysis.stats; the block
#:    error alone was too small where a block is shorter than the series' correlation time), P_tau_ps.
#: 6: the time-averaged structure (the *_avg_deg columns) averages sites, not labelled atoms (protons that change
#:    site no longer distort it; dpqtb.analysis.observables.CageAngle), in fractional coordinates (NPT).
#: 7: (review of 5-6) the sites matched against their running average, not the first frame (which biased the
#:    average toward that frame's thermal distortion), the drift followed on the metal atoms; τ_int corrected
#:    for the variance of the sample mean, the variance for N/(N − τ_int); P_n_indep.
#: 8: that τ_int correction applied once: iterated to self-consistency (7) it diverged on barostat pressures
#:    (τ_int → N/2, P_n_indep = 2, error bars as wide as the fluctuations).
#: 9: E_per_3NkB_raw_K (QTB: the uncorrected kinetic energy, as fix qtb reports it); production rows from the first
#:    kinetically corrected one (no committed point changes: their productions start after it).
#: 10: sheared cells read right: the extxyz fast path returned every non-diagonal cell transposed (flexible-cell
#:    runs: cage angles, site averages, minimum images; cubic and isotropic runs were unaffected).
ANALYSIS_VERSION = 10


def analysis_version(result: dict) -> int:
    """The analysis version of a point's result (1 where result.json predates the versions)."""
    v = result.get("analysis_version", 1)
    return v if isinstance(v, int) and not isinstance(v, bool) else 1


def production_start_frame(eq: int, trajectory_every: int) -> int:
    """The index of the first production frame in trajectory.extxyz: frame k is step k·trajectory_every (frame
    0 is step 0), so the frame at step ``eq`` (the last of equilibration) is left out, as the thermo row of
    step ``eq`` is."""
    return eq // trajectory_every + 1


def analyze_point(spec: dict, run_dir: Path, analysis_dir: Path) -> tuple[int, dict]:
    """Analyse the production part of a finished point's run directory into ``analysis_dir``: the number
    of atoms and :func:`point_observables`."""
    from dpqtb.analysis.pipeline import analyze
    from dpqtb.md.config import validate

    cfg = validate(spec["config"], base_dir=spec["base_dir"])
    eq, a, every = int(spec["equilibration_steps"]), spec["analysis"], cfg.output.trajectory_every
    # the version beside result.json's too: a reader can tell a mismatch
    summary = analyze(run_dir, analysis_dir, start=production_start_frame(eq, every), plots=False,
                      metal=a["metal"], hydrogen=a["hydrogen"], summary_extra={"analysis_version": ANALYSIS_VERSION})
    expected = (eq + int(spec["production_steps"])) // every - eq // every
    if summary["n_frames"] != expected:
        raise InputError(f"{run_dir}: {summary['n_frames']} production frames in the trajectory, expected "
                         f"{expected} (a truncated or foreign trajectory)")
    return int(summary["n_atoms"]), point_observables(run_dir, cfg, eq, a["blocks"], summary, analysis_dir)


def progress_line(event: str, step: int, target: int) -> str:
    """A point.log line ``<local time with UTC offset> step <step>/<target> (<event>)``: what ``dpqtb sweep
    --status`` reads (the offset makes the time mean the same on a login node in another zone)."""
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} step {step}/{target} ({event})"


def point_observables(run_dir: Path, cfg, eq: int, blocks: int, summary: dict,
                      analysis_dir: Path | None = None) -> dict:
    """The observables of one finished point: production averages with block errors (NaN where
    an observable does not apply, e.g. the cage angle of a non-clathrate).

    Parameters
    ----------
    run_dir : path
        The point's run directory.
    cfg : MDConfig
        Its config.
    eq : int
        Equilibration steps (rows and frames before it are left out).
    blocks : int
        Blocks for the standard errors.
    summary : dict
        :func:`dpqtb.analysis.pipeline.analyze`'s summary of the production frames.
    analysis_dir : path, optional
        Where that analysis wrote its files (default: ``run_dir/analysis``).

    Returns
    -------
    dict
        :data:`OBSERVABLES` plus ``T_<X>_K``/``T_<X>_K_err``, ``T_zero_<X>_K`` and
        ``D_<X>_cm2_per_s``/``D_<X>_cm2_per_s_err`` per species.
    """
    from dpqtb.analysis.trajectory import Trajectory

    th = read_thermo(run_dir)
    n_atoms = int(summary["n_atoms"])
    prod = th["step"] > eq
    # QTB with the kinetic correction: production rows start at the first corrected one (an equilibration
    # shorter than two noise segments would otherwise mix uncorrected energies into the means)
    prod &= np.arange(len(prod)) >= first_corrected_row(th)
    out: dict = {}
    out["T_kin_K"], out["T_kin_K_err"] = mean_error(th["temperature_K"][prod], blocks)[:2]
    # from the starting structure's static energy (step 0); QTB with the kinetic correction: also with the
    # uncorrected kinetic energy (LAMMPS fix qtb: the paper's Fig. 3a); NaN for the other baths
    e, e_raw = energy_per_3NkB(th, n_atoms, float(th["potential_eV"][0]))
    out["E_per_3NkB_K"], out["E_per_3NkB_K_err"] = mean_error(e[prod], blocks)[:2]
    if e_raw is not None:
        out["E_per_3NkB_raw_K"], out["E_per_3NkB_raw_K_err"] = mean_error(e_raw[prod], blocks)[:2]
    else:
        out["E_per_3NkB_raw_K"], out["E_per_3NkB_raw_K_err"] = NAN, NAN
    out["P_mean_GPa"], out["P_mean_GPa_err"] = mean_error(th["pressure_GPa"][prod], blocks)[:2]
    out["P_drift_GPa"], out["P_drift_GPa_err"] = drift(th["pressure_GPa"][prod], blocks)
    # the pressure's correlation time and the independent samples it leaves: below ~50 the error bars of
    # the means are too small (dpqtb.analysis.stats.mean_error: ~1.3x at 10)
    dt_ps = cfg.md.timestep_fs * cfg.output.thermo_every / 1000.0
    tau = integrated_time(th["pressure_GPa"][prod]) if prod.sum() > 1 else NAN
    out["P_tau_ps"], out["P_n_indep"] = tau * dt_ps, float(prod.sum()) / tau
    target = cfg.barostat.pressure_GPa if cfg.barostat.enabled else NAN
    out["P_target_GPa"] = float(target)
    out["P_dev_GPa"] = out["P_mean_GPa"] - float(target)
    out["V_A3"], out["V_A3_err"] = mean_error(th["volume_A3"][prod], blocks)[:2]
    sc = np.asarray(cfg.system.supercell, dtype=float)
    frames = Trajectory(run_dir, start=production_start_frame(eq, cfg.output.trajectory_every))
    lengths = np.array([np.linalg.norm(f.cell, axis=1) / sc for f in frames]).reshape(-1, 3)
    for k, name in enumerate("abc"):
        out[f"{name}_A"], out[f"{name}_A_err"] = mean_error(lengths[:, k], blocks)[:2]
    _cage(out, Path(analysis_dir) if analysis_dir is not None else run_dir / POINT_ANALYSIS_DIR, summary, blocks)
    _t_zero(out, summary)
    _diffusion(out, summary)
    for sp in summary.get("species", {}):
        col = f"temperature_{sp}_K"
        out[f"T_{sp}_K"], out[f"T_{sp}_K_err"] = mean_error(th[col][prod], blocks)[:2] if col in th else (NAN, NAN)
    return out


def _cage(out: dict, analysis_dir: Path, summary: dict, blocks: int) -> None:
    cage = summary.get("cage_angle") or {}
    frames, avg = cage.get("frames_mean") or {}, cage.get("time_averaged_structure") or {}
    per = {}
    path = analysis_dir / _THETA_CSV
    if frames and path.exists():
        tab = np.genfromtxt(path, delimiter=",", names=True)
        per = {k: np.atleast_1d(tab[k]) for k in _CAGE if k in tab.dtype.names}
    for key, stem in _CAGE.items():
        if stem == "face_spread":
            out[f"{stem}_frames_deg"] = float(frames.get(key, NAN))
        elif key in per:
            out[f"{stem}_frames_deg"], out[f"{stem}_frames_deg_err"] = mean_error(per[key], blocks)[:2]
        else:
            out[f"{stem}_frames_deg"], out[f"{stem}_frames_deg_err"] = NAN, NAN
        out[f"{stem}_avg_deg"] = float(avg.get(key, NAN)) if "error" not in avg else NAN


def _t_zero(out: dict, summary: dict) -> None:
    """T_zero: the engine's deconvolved DOS for QTB/adQTB, the trajectory's VDOS for classical runs."""
    src, tz = "", {}
    if "T_zero_K" in (summary.get("vdos_qtb") or {}):
        src, tz = "qtb_dos", summary["vdos_qtb"]["T_zero_K"]
    elif "T_zero_K" in (summary.get("vdos") or {}):
        src, tz = "vdos", summary["vdos"]["T_zero_K"]
    out["T_zero_K"] = float(tz.get("total", NAN))
    out["T_zero_source"] = src
    for sp in summary.get("species", {}):
        out[f"T_zero_{sp}_K"] = float(tz.get(sp, NAN))


def _diffusion(out: dict, summary: dict) -> None:
    """D of every species (Einstein fit with its block error, cm²/s) and the fraction of the hydrogen atoms
    that changed site at least once (``exchanged_fraction``): where protons diffuse, the time-averaged
    structure, and with it the cage distortion of Fig. 2a, is not a structure."""
    for sp in summary.get("species", {}):
        d = (summary.get("diffusion") or {}).get(sp) or {}
        out[f"D_{sp}_cm2_per_s"] = float(d.get("D_cm2_per_s", NAN))
        out[f"D_{sp}_cm2_per_s_err"] = float(d.get("D_err_cm2_per_s", NAN))
    classes = (summary.get("exchanges") or {}).get("classes") or {}
    n = sum(classes.values())
    out["exchanged_fraction"] = (n - classes.get("none", 0)) / n if n else NAN


# ------------------------------------------------------------------------------------ points.csv
def csv_columns(axis_names: list[str], rows: list[dict]) -> list[str]:
    """The columns of points.csv: hash, status, the axes, the point's numbers, :data:`OBSERVABLES`,
    the per-species columns of every species in the sweep, ``error``."""
    species = sorted({k for r in rows for k in (r.get("observables") or {}) if k not in OBSERVABLES})
    axis_names = [a for a in axis_names if a not in STEP_AXES]  # their own columns below
    return ["hash", "status", *axis_names, "md_seed", "n_atoms", "equilibration_steps", "production_steps",
            *OBSERVABLES, *species, "error"]


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.10g}"
    if isinstance(v, (list, tuple)):
        return "x".join(_fmt(x) for x in v)
    s = str(v)
    if any(c in s for c in ',"\r\n'):  # RFC 4180: quoted, inner quotes doubled
        return '"' + s.replace('"', '""') + '"'
    return s


def points_csv(axis_names: list[str], rows: list[dict]) -> str:
    """The text of points.csv for ``rows`` (results of finished points, stubs of the others)."""
    cols = csv_columns(axis_names, rows)
    lines = [",".join(cols)]
    for r in rows:
        obs = r.get("observables") or {}
        vals = {**{a: r["axes"].get(a) for a in axis_names}, **obs, "hash": r["hash"], "status": r["status"],
                "md_seed": r.get("md_seed"), "n_atoms": r.get("n_atoms"), "error": r.get("error"),
                "equilibration_steps": r.get("equilibration_steps"), "production_steps": r.get("production_steps")}
        lines.append(",".join(_fmt(vals.get(c)) for c in cols))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ the sweep
def _stub(spec: dict, status: str, error: str | None = None) -> dict:
    return {"hash": spec["hash"], "status": status, "axes": spec["axes"], "md_seed": spec["md_seed"],
            "equilibration_steps": spec["equilibration_steps"], "production_steps": spec["production_steps"],
            "error": error}


def run_sweep(sweep: Sweep, out: str | Path, *, workers: int | None = None, scheduler: str | None = None,
              scheduler_file: str | None = None, serial: bool = False, progress: bool = True,
              plots: bool = True, client=None) -> dict:
    """Run every unfinished point of ``sweep`` into ``out`` and write points.csv (and the figures).

    Parameters
    ----------
    sweep : Sweep
        :func:`dpqtb.workflows.sweep_spec.load_sweep`.
    out : path
        The sweep directory.
    workers : int, optional
        Worker processes of the LocalCluster (one thread each; default: one per core).
    scheduler, scheduler_file : str, optional
        Address or scheduler file of an existing Dask cluster instead of a LocalCluster.
    serial : bool
        Run the points one after the other in this process (no Dask).
    client : dask.distributed.Client, optional
        Submit to this client (left open) instead of making one.
    progress : bool
        A progress bar over points.
    plots : bool
        Write the figures at the end.

    Returns
    -------
    dict
        ``n_points``, ``skipped`` (finished before), ``done``, ``failed``, ``stopped``, ``wall_s``, ``points_csv``.

    Raises
    ------
    InputError
        Another client runs the same directory (DIR/sweep.lock).
    """
    out = Path(out).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create sweep directory {out}: {exc.strerror or exc}") from None
    with _one_client(out):
        return _run_sweep(sweep, out, workers, scheduler, scheduler_file, serial, progress, plots, client)


def _run_sweep(sweep, out, workers, scheduler, scheduler_file, serial, progress, plots, client) -> dict:
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    specs = [p.spec(out / SWEEP_POINTS_DIR / p.hash) for p in sweep.points]
    atomic_write_json(out / SWEEP_JSON, {"source": sweep.source, "axes": sweep.axis_names, "plots": sweep.plots,
                                         "points": [{"hash": s["hash"], "axes": s["axes"]} for s in specs]},
                      indent=2)
    rows = {}
    for s in specs:
        rows[s["hash"]] = read_result(Path(s["dir"]), s["hash"]) or _stub(s, "pending")
    todo = [s for s in specs if rows[s["hash"]]["status"] != "done"]
    skipped = len(specs) - len(todo)

    def write() -> None:
        atomic_write_text(out / SWEEP_POINTS_CSV, points_csv(sweep.axis_names, [rows[s["hash"]] for s in specs]))

    write()
    bar = tqdm(total=len(specs), initial=skipped, unit="point", desc="sweep", disable=not progress,
               dynamic_ncols=True, file=sys.stderr)

    def finish(spec: dict, result: dict | None, error: BaseException | None) -> None:
        status = "stopped" if isinstance(error, PointStopped) else "failed"
        rows[spec["hash"]] = result if error is None else _stub(spec, status, _one_line(error))
        write()
        bar.update(1)

    try:
        if not todo:
            pass
        elif serial:
            for s in todo:
                try:
                    finish(s, run_point(s), None)
                except RunInterrupted as exc:
                    raise SweepInterrupted(exc.signum, f"sweep interrupted by {signal.Signals(exc.signum).name}: "
                                           f"point {s['hash'][:16]} stopped at step {exc.step} with a checkpoint; "
                                           "the same command resumes it") from None
                except Exception as exc:  # noqa: BLE001 - the point failed (as a Dask task would): the sweep goes on
                    finish(s, None, exc)
        else:
            from dpqtb.workflows.sweep_dask import _run_dask

            _run_dask(todo, finish, workers, scheduler, scheduler_file, client)
    finally:
        bar.close()
    failed = sum(r["status"] == "failed" for r in rows.values())
    stopped = sum(r["status"] == "stopped" for r in rows.values())
    if plots:
        from dpqtb.workflows.sweep_plots import plot_sweep

        plot_sweep(out)
    return {"n_points": len(specs), "skipped": skipped, "done": len(todo) - failed - stopped, "failed": failed,
            "stopped": stopped,
            "wall_s": time.perf_counter() - t0, "points_csv": str(out / SWEEP_POINTS_CSV)}


#: below this MALLOC_TRIM_THRESHOLD_ (bytes) a worker returns torch's step buffers to the OS every step
MALLOC_TRIM_SLOW_BYTES = 1 << 24


def malloc_trim_warning(environ=None) -> str | None:
    """The warning for a worker started with a small ``MALLOC_TRIM_THRESHOLD_`` (Dask's nanny sets 65536 on
    workers it spawns, also on clusters dpqtb does not start), else None. glibc reads it at process start,
    so the worker has to be started without it: ``--serial`` and dpqtb's own LocalCluster already are."""
    v = (os.environ if environ is None else environ).get("MALLOC_TRIM_THRESHOLD_")
    try:
        small = v is not None and int(v) < MALLOC_TRIM_SLOW_BYTES
    except ValueError:
        return None
    if not small:
        return None
    return (f"MALLOC_TRIM_THRESHOLD_={v} in this worker (Dask's default) makes a torch MD point 1.25-2x slower; "
            "start the workers with MALLOC_TRIM_THRESHOLD_=16777216 in their environment (docs/sweep.md)")


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: " + " ".join(str(exc).split())
