"""Running a simulation: output files, exact checkpoint/restart, progress bar.

Output directory layout (file names and the thermo table: :mod:`dpqtb.rundir`):
    thermo.csv            step, time_fs, temperature_K, ... (units in every column name)
    trajectory.extxyz     unwrapped positions (Å), cell, energy; optional velocities_A_per_fs
    qtb_fd_<species>.csv  Δ_FD(ω) diagnostic per species (QTB/adQTB)
    qtb_dos.csv           phonon DOS deconvolved from the QTB spectra (QTB/adQTB)
    vacf.csv              velocity autocorrelation per species (output.vacf_every > 0)
    model_devi.csv        model deviation of a Deep Potential ensemble (potential.ensemble)
    checkpoint.pt         everything needed to continue bit for bit (written atomically)
    run.json              configuration, versions, the model file's SHA-256 and the numerical environment of the
                          fresh start (:func:`numerics_environment`; the checkpoint carries the latest)

Each output is an observer (:mod:`dpqtb.md.observers`); the runner knows only their protocol. A resumed
run first truncates thermo.csv and trajectory.extxyz back to the byte offsets recorded in the checkpoint,
so the outputs of an interrupted-and-resumed run are identical to those of an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import signal
import time
from pathlib import Path

import torch

from dpqtb import InputError, RunInterrupted, SimulationUnstable, __version__
from dpqtb.md import checkpoint as checkpoint_io
from dpqtb.md.state import MDState
from dpqtb.md.observers import Observer, QTBSpectraObserver, ThermoObserver, TrajectoryObserver
from dpqtb.rundir import (BEAD_TRAJECTORY, CHECKPOINT, QTB_DOS, QTB_FD_GLOB, RUN_JSON, ThermoRow, atomic_write_text,
                          read_thermo_rows)
from dpqtb.units import KB

#: Stability bounds (see docs/config.md, "Exit status and stability guard"): the run stops when the
#: kinetic temperature exceeds TEMPERATURE_FACTOR × T_ref + TEMPERATURE_OFFSET_K, or (NVE) when the
#: conserved energy moved by more than DRIFT_EV_PER_ATOM × N from its value at the start.
TEMPERATURE_FACTOR = 20.0
TEMPERATURE_OFFSET_K = 1000.0
DRIFT_EV_PER_ATOM = 1.0

CHECKPOINT_FORMAT = 2


def numerics_environment(device: torch.device) -> dict:
    """What decides a run's floating-point reductions besides its config: torch's version and intra-op threads,
    and the device (the CPU's model and the instruction set torch dispatches to, or the GPU's name). Under another
    one a resumed run continues a valid trajectory but not bit for bit the uninterrupted one: DeePMD-kit's
    float64 energy of a 44-atom LaH10 cell moves by ~2e-8 relative between 1 and 2 threads, and MD is chaotic."""
    env = {"torch_version": str(torch.__version__), "torch_threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        return env
    model = None
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), None)
    except OSError:
        pass
    env["cpu"] = model if model is not None else (platform.processor() or "")
    env["cpu_capability"] = str(torch.backends.cpu.get_cpu_capability())
    return env


def environment_change(old: dict | None, new: dict) -> str | None:
    """A one-line warning when a checkpoint written under ``old`` (:func:`numerics_environment`) is resumed under
    ``new``; None when they agree or the checkpoint predates the record."""
    if not old:
        return None
    diff = [f"{k} {old.get(k)} -> {new.get(k)}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if not diff:
        return None
    return ("resuming under another numerical environment than the checkpoint's (" + "; ".join(diff) + "): the "
            "continuation is a valid trajectory but not bit for bit the uninterrupted run (same threads and "
            "machine type for that)")


def reference_temperature(integrator) -> float | None:
    """T_ref of the temperature guard (K): the target temperature; for QTB/adQTB at least
    h·f_max/(2 k_B), the zero-point energy per degree of freedom the bath can give at its cutoff
    (a 5 K QTB run of a hydride has a kinetic temperature of ~1000 K); None for NVE (no target)."""
    if not integrator.has_temperature:
        return None
    t = float(integrator.target_temperature(0))
    bath = getattr(integrator, "bath", integrator)  # PIMD is its own bath
    sch = getattr(bath, "schedule", None)
    if sch is not None:  # a ramp: its hotter end
        t = max(t, float(sch.start), float(sch.stop))
    params = getattr(bath, "params", None)
    if params is not None and getattr(params, "f_max_THz", None):
        from dpqtb.units import HBAR

        omega = 2.0 * math.pi * float(params.f_max_THz) * 1e-3  # rad/fs
        t = max(t, HBAR * omega / (2.0 * KB))
    return t


def physics_hash(config: dict | None) -> str | None:
    if config is None:
        return None
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def model_sha256(config: dict | None) -> str | None:
    """The SHA-256 of the model file in a physics config (:func:`dpqtb.md.build.physics_config` writes a Deep
    Potential's ``potential.model`` as ``sha256:<hex>``); None for an analytic potential or no config."""
    model = ((config or {}).get("potential") or {}).get("model")
    return model[len("sha256:"):] if isinstance(model, str) and model.startswith("sha256:") else None


def checkpoint_physics_config(path: str | os.PathLike) -> dict | None:
    """The physics config stored in the checkpoint at ``path`` (:func:`model_sha256` of it tells which model
    made a run whose run.json predates the record); None where the checkpoint stores none."""
    stored = checkpoint_io.load(path).get("physics_config")
    try:
        cfg = json.loads(stored) if isinstance(stored, str) else None
    except ValueError:
        raise InputError(f"checkpoint {path}: its physics config is not JSON") from None
    return cfg if isinstance(cfg, dict) else None


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts."""
    out = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        name = f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, name + ".")
        elif a != b:
            out.append(f"{name} ({a!r} -> {b!r})")
    return out


def _upgrade_ring_polymer(ckpt: dict) -> None:
    """A PIMD checkpoint written before the beads were state (dpqtb ≤ session 14) kept them with the
    integrator ("q", "p"): move them to the state's ring polymer, where the integrator now finds them."""
    integ, state = ckpt.get("integrator") or {}, ckpt.get("state") or {}
    if "q" in integ and "p" in integ and "ring" not in state:
        cfg = json.loads(ckpt["physics_config"]) if ckpt.get("physics_config") else {}
        temps = (cfg.get("thermostat") or {}).get("temperature_K")
        T = temps[0] if isinstance(temps, (list, tuple)) else temps
        if T is None:
            raise InputError("an old-format PIMD checkpoint without its config cannot be resumed; rerun with --overwrite")
        state["ring"] = {"q": integ.pop("q"), "p": integ.pop("p"), "temperature_K": float(T)}


class Simulation:
    """Runs an integrator on a state, writing thermo.csv, trajectory.extxyz and checkpoints.

    The rows themselves are not kept in memory: :attr:`last_thermo` holds the latest
    (a :class:`~dpqtb.rundir.ThermoRow`), :attr:`thermo_rows` and :func:`dpqtb.rundir.read_thermo`
    read thermo.csv back.

    Parameters
    ----------
    state : MDState
        Positions, momenta, cell and step counter; advanced in place.
    integrator : Integrator
        NVE, Langevin, QTB, adQTB or PIMD (``dpqtb.md.integrators``, ``dpqtb.md.pimd``).
    output_dir : path or None
        The run directory (:mod:`dpqtb.rundir` names its files); None writes nothing
        (collect rows with ``thermo_callback``).
    thermo_every : int
        Steps between thermo rows.
    trajectory_every : int
        Steps between trajectory frames (0: none).
    trajectory_velocities : bool
        Also write ``velocities_A_per_fs`` in the trajectory.
    checkpoint_every : int
        Steps between checkpoints (0: only at the start, the end and on a signal).
    checkpoint_every_min : float
        Also write a checkpoint at the first thermo step that ends this many wall-clock minutes after the
        last checkpoint (0: off), so that a run killed without warning (SIGKILL, a node lost, a batch
        walltime) loses at most about this much time whatever a step costs. Where checkpoints fall does
        not change any output: a resumed run is the uninterrupted one byte for byte.
    progress : bool
        Show a progress bar.
    metadata : dict, optional
        Extra entries for run.json (the CLI stores the config there).
    physics_config : dict, optional
        The part of the run's config that defines the trajectory (everything but the step target
        and output bookkeeping); stored in the checkpoint, and a resume with another one is refused.
    thermo_callback : callable, optional
        Called with every :class:`~dpqtb.rundir.ThermoRow`.
    observers : sequence of Observer, optional
        More observers (:mod:`dpqtb.md.observers`, e.g. :class:`~dpqtb.md.observers.VACFObserver`) after
        the built-in ones: thermo.csv, trajectory.extxyz and, with a quantum bath, its spectra.
    """

    def __init__(self, state: MDState, integrator, output_dir: str | Path | None, thermo_every: int = 10,
                 trajectory_every: int = 100, trajectory_velocities: bool = False, checkpoint_every: int = 1000,
                 checkpoint_every_min: float = 0.0, progress: bool = True, metadata: dict | None = None, physics_config: dict | None = None,
                 thermo_callback=None, observers=()):
        self.state = state
        self.integrator = integrator
        self.dir = None if output_dir is None else Path(output_dir)
        self.checkpoint_every = int(checkpoint_every)
        if not checkpoint_every_min >= 0:
            raise InputError(f"checkpoint_every_min must be >= 0, got {checkpoint_every_min}")
        self._checkpoint_every_s = 60.0 * float(checkpoint_every_min)
        self._checkpoint_time = time.monotonic()
        self.progress = progress
        self.metadata = metadata or {}
        self.physics_config = physics_config
        self._thermo = ThermoObserver(thermo_every, thermo_callback)
        self.observers: list[Observer] = [self._thermo, TrajectoryObserver(trajectory_every, trajectory_velocities)]
        bath = getattr(integrator, "bath", None)
        if hasattr(bath, "fd_table"):  # a quantum bath: its Δ_FD spectra and phonon DOS
            self.observers.append(QTBSpectraObserver(bath))
        self.observers += list(observers)
        names = [o.name for o in self.observers]
        if len(set(names)) != len(names):
            raise InputError(f"observers need distinct names, got {names}")
        self._setup_done = False
        self._signal: int | None = None
        self._stop = None
        self._guard: dict = {}
        self._checkpoint_step: int | None = None
        #: called as ``on_progress(event, step, target)`` with event "started" or "resumed" just before the
        #: first step, and "checkpoint" after every checkpoint (the sweep's point.log lines)
        self.on_progress = None

    @property
    def last_thermo(self) -> ThermoRow | None:
        """The latest thermo row (:class:`~dpqtb.rundir.ThermoRow`), None before the first."""
        return self._thermo.last

    @property
    def thermo_rows(self) -> list[ThermoRow]:
        """The rows of thermo.csv, read back from the file (nothing grows in memory with the run;
        values to the file's 15 significant digits). Without an output directory, collect rows with
        ``thermo_callback=rows.append``."""
        if self.dir is None:
            raise AttributeError("a Simulation without an output directory keeps no thermo rows: "
                                 "pass thermo_callback=rows.append")
        return read_thermo_rows(self.dir)

    # ------------------------------------------------------------------ files
    def _check_directory(self) -> None:
        """A one-line error if the output directory cannot hold the run (a file, unwritable, unreachable)."""
        d = self.dir
        if d.exists() and not d.is_dir():
            raise InputError(f"output directory {d} is a file, not a directory")
        probe = d
        while not probe.exists():
            parent = probe.parent
            if parent == probe:
                break
            probe = parent
        if not probe.is_dir():
            raise InputError(f"output directory {d} cannot be created: {probe} is not a directory")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise InputError(f"output directory {d} is not writable ({probe}: permission denied)")

    def _check_fresh(self, overwrite: bool) -> None:
        """Everything a fresh start checks before it touches the directory."""
        if self.dir is None:
            return
        self._check_directory()
        existing = [p.name for p in (*self._observer_files(), self.dir / CHECKPOINT) if p.exists()]
        if existing and not overwrite:
            raise InputError(f"output directory {self.dir} already holds {', '.join(existing)}; "
                             "use --resume to continue it or --overwrite to start again")

    def _prepare_fresh(self) -> None:
        """Clear the outputs of a previous run and write the headers (after setup succeeded)."""
        if self.dir is None:
            return
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            for p in (*self._observer_files(), self.dir / CHECKPOINT, *self.dir.glob(QTB_FD_GLOB), self.dir / QTB_DOS,
                      self.dir / BEAD_TRAJECTORY):  # optional outputs a previous run may have left
                if p.exists():
                    p.unlink()
            meta = {"dpqtb_version": __version__, "torch_version": torch.__version__,
                    "python": platform.python_version(), "integrator": self.integrator.name,
                    "n_atoms": self.state.n_atoms, "type_map": list(self.state.type_map),
                    "environment": numerics_environment(self.state.device), **self.metadata}
            sha = model_sha256(self.physics_config)
            if sha:
                meta["model_sha256"] = sha  # the file behind potential.model
            bath = getattr(self.integrator, "bath", None)
            zn = getattr(bath, "zero_net_force_used", getattr(bath, "zero_momentum", None))
            if self.integrator.has_temperature and zn is not None:
                meta["zero_net_force_used"] = bool(zn)  # the config's default (None) resolved from the potential
            atomic_write_text(self.dir / RUN_JSON, json.dumps(meta, indent=2, default=str) + "\n")
        except OSError as exc:
            raise InputError(f"cannot write to output directory {self.dir}: {exc.strerror or exc}") from None

    def _observer_files(self) -> list[Path]:
        """The files the observers own in the run directory (glob patterns expanded)."""
        out = []
        for o in self.observers:
            for name in o.files:
                out += sorted(self.dir.glob(name)) if any(c in name for c in "*?[") else [self.dir / name]
        return out

    def _file_offsets(self) -> dict:
        out = {}
        for o in self.observers:
            out.update(o.offsets(self))
        return out

    # ------------------------------------------------------------------ observables
    def thermo_columns(self) -> tuple:
        """THERMO_COLUMNS, then the integrator's own (per-species temperatures; raw QTB values)."""
        return ThermoObserver.columns(self)

    def thermo_row(self) -> ThermoRow:
        """The current values of every thermo.csv column (:meth:`thermo_columns`)."""
        return ThermoObserver.row(self)

    def _observe(self) -> None:
        for o in self.observers:
            o.observe(self)

    def _flush(self) -> None:
        for o in self.observers:
            o.flush(self)

    # ------------------------------------------------------------------ stability guard
    def _check_finite(self) -> None:
        """Every step: positions, momenta, forces and energy finite (one reduction)."""
        s = self.state
        probe = s.energy.sum() + s.positions.sum() + s.momenta.sum() + s.forces.sum()
        if bool(torch.isfinite(probe)):
            return
        bad = [name for name, t in (("positions", s.positions), ("momenta", s.momenta), ("forces", s.forces),
                                    ("energy", s.energy)) if not bool(torch.isfinite(t).all())]
        self._unstable(f"non-finite {', '.join(bad) or 'values'}")

    def _check_bounds(self) -> None:
        """At thermo/checkpoint steps: the kinetic temperature and (NVE) the conserved-energy drift."""
        s, integ = self.state, self.integrator
        t_ref = self._guard.get("t_ref")
        if t_ref is not None:
            temp = s.temperature()  # from the atoms' momenta (PIMD: the centroid's, classical at T)
            bound = TEMPERATURE_FACTOR * t_ref + TEMPERATURE_OFFSET_K
            if not temp <= bound:
                self._unstable(f"kinetic temperature {temp:.4g} K exceeds the bound {bound:.4g} K "
                               f"({TEMPERATURE_FACTOR:g} × {t_ref:.4g} K + {TEMPERATURE_OFFSET_K:g} K)")
        e0 = self._guard.get("conserved_eV")
        if e0 is not None:
            drift = abs(float(integ.conserved_energy(s)) - e0)
            bound = DRIFT_EV_PER_ATOM * s.n_atoms
            if not drift <= bound:
                self._unstable(f"conserved energy drifted by {drift:.4g} eV (bound {DRIFT_EV_PER_ATOM:g} eV "
                               f"per atom = {bound:.4g} eV)")

    def _unstable(self, what: str) -> None:
        where = ""
        if self.dir is not None and self._checkpoint_step is not None:
            where = f"; the last good checkpoint (step {self._checkpoint_step}) in {self.dir} is kept"
        raise SimulationUnstable(f"simulation unstable at step {self.state.step}: {what}; the time step is "
                                 f"probably too large or the structure/potential unphysical{where}")

    def _init_guard(self) -> None:
        """Reference values of the guard at the start of a fresh run (kept in the checkpoint)."""
        self._guard = {"t_ref": reference_temperature(self.integrator),
                       "conserved_eV": None if self.integrator.has_temperature
                       else float(self.integrator.conserved_energy(self.state))}

    # ------------------------------------------------------------------ checkpoint
    def checkpoint(self, target_steps: int) -> None:
        if self.dir is None:
            return
        self._flush()
        ckpt = {"format": CHECKPOINT_FORMAT, "dpqtb_version": __version__, "target_steps": int(target_steps),
                "state": self.state.tensors_state_dict(), "integrator_name": self.integrator.name,
                "integrator": self.integrator.state_dict(), "offsets": self._file_offsets(),
                "guard": dict(self._guard),
                "observers": {o.name: o.state_dict() for o in self.observers if o.state_dict()},
                "physics_config": None if self.physics_config is None else json.dumps(self.physics_config,
                                                                                      sort_keys=True),
                "physics_sha256": physics_hash(self.physics_config),
                "environment": numerics_environment(self.state.device)}
        try:
            checkpoint_io.save(ckpt, self.dir / CHECKPOINT)
        except OSError as exc:
            raise InputError(f"cannot write checkpoint in {self.dir}: {exc.strerror or exc}") from None
        self._checkpoint_step = self.state.step
        self._checkpoint_time = time.monotonic()
        if self.on_progress is not None:
            self.on_progress("checkpoint", self.state.step, int(target_steps))

    def _checkpoint_due(self) -> bool:
        """The wall-clock checkpoint interval (``checkpoint_every_min``) has passed since the last one."""
        return self._checkpoint_every_s > 0 and time.monotonic() - self._checkpoint_time >= self._checkpoint_every_s

    def _load_checkpoint(self) -> dict:
        ckpt_path = self.dir / CHECKPOINT
        if self.dir.exists() and not self.dir.is_dir():
            raise InputError(f"output directory {self.dir} is a file, not a directory")
        if not ckpt_path.exists():
            raise InputError(f"no checkpoint to resume in {self.dir}")
        ckpt = checkpoint_io.load(ckpt_path)
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise InputError(f"checkpoint {ckpt_path} has format {ckpt.get('format')!r}, this dpqtb reads format "
                             f"{CHECKPOINT_FORMAT}; rerun with --overwrite")
        if ckpt.get("integrator_name") != self.integrator.name:
            raise InputError(f"checkpoint was written by integrator '{ckpt.get('integrator_name')}', "
                             f"this run uses '{self.integrator.name}'")
        stored = ckpt.get("physics_config")
        if stored is not None and self.physics_config is not None:
            old = json.loads(stored)
            new = json.loads(json.dumps(self.physics_config, sort_keys=True, default=str))
            diff = config_differences(old, new)
            if diff:
                raise InputError(f"the config differs from the one of the checkpoint in {self.dir} (only the step "
                                 f"target may change on --resume): {'; '.join(diff)}")
        return ckpt

    def _check_outputs_for_resume(self, ckpt: dict) -> None:
        """thermo.csv and trajectory.extxyz must still hold at least what the checkpoint recorded."""
        step = int(ckpt["state"]["step"])
        for o in self.observers:
            name, key = getattr(o, "filename", None), getattr(o, "offset_key", None)
            if not name or key not in ckpt["offsets"]:
                continue
            path, need = self.dir / name, int(ckpt["offsets"][key])
            if need == 0:
                continue
            if not path.is_file():
                raise InputError(f"{path} is missing; the checkpoint at step {step} needs its first {need} bytes: "
                                 "restore it, or start again with --overwrite")
            size = path.stat().st_size
            if size < need:
                raise InputError(f"{path} holds {size} bytes, fewer than the {need} the checkpoint at step {step} "
                                 "recorded (truncated or replaced): restore it, or start again with --overwrite")

    def _resume(self, n_steps: int | None) -> int:
        ckpt = self._load_checkpoint()
        damaged = _damaged_checkpoint(self.dir / CHECKPOINT)
        with damaged:
            step = int(ckpt["state"]["step"])
            target = int(ckpt["target_steps"]) if n_steps is None else int(n_steps)
            if target < step:
                raise InputError(f"the step target {target} is below the checkpoint's step {step} in {self.dir}")
            self._check_outputs_for_resume(ckpt)
            env = ckpt.get("environment")
            self._resume_warning = environment_change(env if isinstance(env, dict) else None,
                                                      numerics_environment(self.state.device))
            _upgrade_ring_polymer(ckpt)
            self.state.load_tensors_state_dict(ckpt["state"])
        self.integrator.setup(self.state)  # forces at the checkpointed positions, fresh objects
        with damaged:
            self.integrator.load_state_dict(ckpt["integrator"])
            self._guard = dict(ckpt.get("guard") or {})
            self._checkpoint_step = self.state.step
            stored = ckpt.get("observers") or {}
            for o in self.observers:
                if o.name in stored:
                    o.load_state_dict(stored[o.name])
                elif o.state_dict():
                    raise InputError(f"the checkpoint in {self.dir} has no state of the {o.name!r} observer this "
                                     "run has (added after the start?); rerun with --overwrite")
                o.truncate(self, ckpt["offsets"])
        return target

    # ------------------------------------------------------------------ signals
    def _on_signal(self, signum, frame) -> None:
        if self._signal is None:
            self._signal = signum  # acted on at the end of the current step
        else:  # a second Ctrl-C while the checkpoint is written: stop at once
            raise KeyboardInterrupt

    # ------------------------------------------------------------------ main loop
    def run(self, n_steps: int | None = None, resume: bool = False, overwrite: bool = False,
            warnings=(), stop=None) -> MDState:
        """Run until ``state.step`` reaches the target (``n_steps`` from a fresh start; with ``resume``,
        the total step count, default the checkpoint's target). ``warnings`` (one line each) are printed
        to stderr once every check has passed, just before the first step. ``stop``: a callable asked
        after every step; True stops the run as SIGTERM does (for runs off the main thread, where no
        signal handler can be installed: a sweep's Dask worker).

        Raises :class:`~dpqtb.SimulationUnstable` when the guard trips (nothing of the bad step is
        written, the last good checkpoint is kept) and :class:`~dpqtb.RunInterrupted` on SIGINT/SIGTERM
        (or ``stop``), after a checkpoint at the current step (exactly resumable)."""
        from dpqtb.signals import handling, interrupt_handling

        self._signal = None
        self._stop = stop
        self._resume_warning = None
        with interrupt_handling(self._on_signal), handling(signal.SIGTERM, self._on_signal):
            if resume:
                if self.dir is None:
                    raise InputError("a run without an output directory cannot be resumed")
                target = self._resume(n_steps)
            else:
                if n_steps is None:
                    raise InputError("number of steps not given")
                self._check_fresh(overwrite)
                self.integrator.setup(self.state)  # the first force call: fails before any file is touched
                self._check_finite()
                self._init_guard()
                self._check_bounds()
                self._prepare_fresh()
                target = self.state.step + int(n_steps)
                for o in self.observers:
                    o.start(self)
                self.checkpoint(target)  # a run that fails later can always be resumed or inspected
            warn = getattr(self.integrator, "short_run_warning", None)
            msg = warn(target - self.state.step, self.state.step) if warn is not None else None
            for m in [*warnings, *([msg] if msg else []), *([self._resume_warning] if self._resume_warning else [])]:
                import sys

                print(f"dpqtb: warning: {m}", file=sys.stderr)
            if self.on_progress is not None:
                self.on_progress("resumed" if resume else "started", self.state.step, target)
            self._loop(target)
        return self.state

    def _loop(self, target: int) -> None:
        from tqdm.auto import tqdm

        bar = tqdm(total=target, initial=self.state.step, disable=not self.progress, unit="step",
                   desc=self.integrator.name, dynamic_ncols=True, mininterval=1.0)
        try:
            while self.state.step < target and self._signal is None:
                self.integrator.step(self.state)
                self._check_finite()
                step = self.state.step
                # the wall-clock checkpoints fall on thermo steps, whose bounds are checked anyway: where they
                # fall then changes nothing, not even when a run is found unstable
                ckpt_now = (bool(self.checkpoint_every) and step % self.checkpoint_every == 0) or \
                    (step % self._thermo.every == 0 and self._checkpoint_due())
                if step % self._thermo.every == 0 or ckpt_now or step == target:
                    self._check_bounds()
                self._observe()
                if ckpt_now:
                    self.checkpoint(target)
                bar.update(1)
                if self._stop is not None and self._signal is None and self._stop():
                    self._signal = signal.SIGTERM
        finally:
            bar.close()
        if self._signal is not None:
            self._check_bounds()
            self.checkpoint(target)
            raise RunInterrupted(self._signal, self.state.step, self.dir)
        self.checkpoint(target)
        if self._signal is not None:  # a signal while the last checkpoint was written: the caller must stop too
            raise RunInterrupted(self._signal, self.state.step, self.dir)


class _damaged_checkpoint:
    """Turns a missing or malformed field of a checkpoint that loaded (tensors and plain data only, so nothing
    ran) into one line: a hand-edited or truncated-then-repaired file, or one of another program."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is not None and issubclass(kind, RuntimeError) and (
                isinstance(exc, getattr(torch, "OutOfMemoryError", ())) or "CUDA" in str(exc)):
            return False  # the device, not the file: never advise --overwrite for that
        if kind is not None and issubclass(kind, (KeyError, TypeError, ValueError, AttributeError, IndexError,
                                                  RuntimeError)):
            raise InputError(f"checkpoint {self.path} is damaged or not of this run: {kind.__name__}: {exc}"
                             "; rerun with --overwrite") from None
        return False
