"""Turn a validated config (:class:`dpqtb.md.config.MDConfig`) into (state, potential, integrator, simulation).

The config was checked when it was built (every key and every rule between keys); what is left here is
what only the files, the machine or the structure can tell: a structure or model file that is missing or
unreadable, no CUDA device, atoms too close, a supercell too large for the memory, a species the
structure lacks.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from dpqtb import InputError
from dpqtb.md.config import MDConfig, PotentialConfig, SystemConfig
from dpqtb.md.barostat import StochasticCellRescaling
from dpqtb.md.integrators import NVE, QTB, Langevin, TemperatureSchedule
from dpqtb.md.observers import BeadTrajectoryObserver, ModelDeviationObserver, VACFObserver
from dpqtb.md.run import Simulation
from dpqtb.md.state import MDState, maxwell_boltzmann_momenta
from dpqtb.structures.checks import check_min_distance


def load_structure(sys_cfg: SystemConfig, base_dir: Path):
    """The structure of ``[system]``, repeated ``supercell`` times, with ``masses_amu`` applied.

    Parameters
    ----------
    sys_cfg
        The ``[system]`` section.
    base_dir
        Folder a relative structure path is resolved against.

    Returns
    -------
    ase.Atoms
    """
    spec, name = sys_cfg.structure, sys_cfg.builtin
    if name is not None:
        atoms = _builtin_lah10(sys_cfg) if name == "lah10" else _builtin_bulk(name, sys_cfg)
    else:
        path = Path(spec)
        if not path.is_absolute():
            path = base_dir / path
        if not path.is_file():
            raise InputError(f"structure file not found: {path}")
        from ase.io import read

        try:
            atoms = read(path, format=sys_cfg.format)
        except Exception as exc:  # noqa: BLE001 - ASE raises many kinds, some with an empty message
            text = str(exc).strip().splitlines()
            fmt = sys_cfg.format or path.suffix.lstrip(".") or "?"
            reason = (f"{type(exc).__name__}: {text[0]}" if text else
                      f"ASE's {fmt} reader found no structure in it ({type(exc).__name__})")
            raise InputError(f"cannot read structure {path}: {reason}; is it a valid {fmt} file "
                             "(system.format names the format if the extension does not)?") from None
        if isinstance(atoms, list):
            atoms = atoms[-1]
        if len(atoms) == 0:
            raise InputError(f"structure file {path} holds no atoms")
    where = f"system.structure = {spec!r}"
    if name is not None:
        where += (f" with system.lattice_A = {sys_cfg.lattice_A!r}" if sys_cfg.lattice_A is not None
                  else f" with system.pressure_GPa = {sys_cfg.pressure_GPa!r}")
    check_min_distance(atoms, where)
    check_system_size(len(atoms), sys_cfg.supercell)
    atoms = atoms.repeat(tuple(sys_cfg.supercell))
    if sys_cfg.masses_amu:
        masses = atoms.get_masses()
        for sym, m in sys_cfg.masses_amu.items():
            masses[np.array(atoms.get_chemical_symbols()) == sym] = m
        atoms.set_masses(masses)
    return atoms


#: Bytes per atom the structure, the MD state and a neighbour list take at least (ASE arrays,
#: float64 positions/momenta/forces, ~100 pairs): the size check of system.supercell.
BYTES_PER_ATOM = 4096


def check_system_size(n_cell: int, supercell, available_bytes: int | None = None) -> None:
    """Refuse a supercell whose atoms cannot fit in memory before anything is allocated."""
    n = int(n_cell) * int(np.prod([int(x) for x in supercell], dtype=object))
    if available_bytes is None:
        try:
            available_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
            available_bytes = 1 << 40
    need = n * BYTES_PER_ATOM
    if n >= 2**31 or need > available_bytes:
        raise InputError(f"config key 'system.supercell' = {list(supercell)} gives {n:,} atoms, which need at "
                         f"least {need / 2**30:,.1f} GiB ({BYTES_PER_ATOM} bytes per atom); this machine has "
                         f"{available_bytes / 2**30:,.1f} GiB")


def _builtin_bulk(name: str, sys_cfg: SystemConfig):
    """fcc, bcc or sc of system.element in its cubic cell (system.lattice_A is given: the config checked it)."""
    from ase.build import bulk

    try:
        return bulk(sys_cfg.element, name, a=sys_cfg.lattice_A, cubic=True)
    except (KeyError, ValueError) as exc:
        raise InputError(f"config key 'system.element' = {sys_cfg.element!r}: {exc}") from None


def _builtin_lah10(sys_cfg: SystemConfig):
    """Fm-3m LaH10, conventional 44-atom cell; a from system.lattice_A or system.pressure_GPa (DFT EOS;
    exactly one is given: the config checked it)."""
    from dpqtb.structures.eos import fm3m_at_pressure
    from dpqtb.structures.lah10 import fm3m

    if sys_cfg.lattice_A is None:
        return fm3m_at_pressure(sys_cfg.pressure_GPa, cell="conventional")
    return fm3m(sys_cfg.lattice_A, cell="conventional")


def build_potential(pot_cfg: PotentialConfig, state: MDState, base_dir: Path):
    """The potential of ``[potential]`` for ``state``.

    Parameters
    ----------
    pot_cfg
        The ``[potential]`` section.
    state
        The system (the Einstein crystal's sites, the masses for ``frequency_THz``, the device).
    base_dir
        Folder relative model and function files are resolved against.

    Returns
    -------
    Potential
    """
    kind = pot_cfg.kind
    if kind == "einstein":
        from dpqtb.potential import EinsteinCrystal, spring_constant_from_frequency

        if pot_cfg.k_eV_per_A2 is not None:
            k = dict(pot_cfg.k_eV_per_A2)
        else:
            k = {}
            for sym, f in pot_cfg.frequency_THz.items():
                if sym not in state.type_map:
                    raise InputError(f"potential.frequency_THz names species {sym!r} absent from the structure")
                m = float(state.masses[state.species_mask(sym)][0])
                k[sym] = spring_constant_from_frequency(f, m)
        return EinsteinCrystal(state.positions.clone(), state.cell.clone(), k_by_species=k, pbc=state.pbc)
    if kind == "morse":
        from dpqtb.potential import Morse

        return Morse(pot_cfg.D_eV, pot_cfg.a_per_A, pot_cfg.r0_A, pot_cfg.cutoff_A, pot_cfg.skin_A)
    if kind == "function":
        from dpqtb.potential.torchfn import TorchFunctionPotential, load_function

        return TorchFunctionPotential(load_function(pot_cfg.function, base_dir), batched=pot_cfg.batched,
                                      name=pot_cfg.function)
    if kind == "deepmd":
        from dpqtb.potential.deepmd import DeepPotential

        from dpqtb.potential.builtin import resolve

        path = resolve(pot_cfg.model, base_dir)
        return DeepPotential(path, device=state.device, skin_A=pot_cfg.skin_A, chunk_atoms=pot_cfg.chunk_atoms)
    raise InputError(f"unknown potential kind {kind!r}")  # pragma: no cover - validated earlier


#: Keys that do not touch the trajectory: the step target and output bookkeeping (the VACF sampling may not
#: change on --resume either: its observer's accumulators are in the checkpoint and refuse another one), and
#: the model-deviation ensemble (it only watches the driving model).
#: Everything else is the run's physics, stored in its checkpoint.
NOT_PHYSICS = {("md", "steps"), ("output", "directory"), ("output", "progress"), ("output", "checkpoint_every"),
               ("output", "checkpoint_every_min"),
               ("output", "vacf_every"), ("output", "vacf_max_lag_fs"),
               ("output", "bead_trajectory_every"), ("potential", "ensemble"),
               ("potential", "deviation_every"), ("potential", "trust_hi_eV_per_A")}


def physics_config(cfg: MDConfig) -> dict:
    """The part of a config that defines the run's trajectory, stored (and hashed) in its checkpoint.

    Every key of :meth:`MDConfig.to_dict` but :data:`NOT_PHYSICS`; with a temperature ramp md.steps stays
    in (it is the ramp's length). Structure and model files are represented by the SHA-256 of their bytes,
    not their paths: a run dir resumed through another path to the same file is the same run, an edited
    file is not. An unchanged config keeps its value (and hash) across versions, so that checkpoints
    written before still resume (tests/test_config_schema.py pins one).

    Parameters
    ----------
    cfg
        The run's config.

    Returns
    -------
    dict
        section -> key -> value (JSON-serialisable).
    """
    out = {sec: {k: v for k, v in keys.items() if (sec, k) not in NOT_PHYSICS} for sec, keys in cfg.to_dict().items()}
    if cfg.thermostat.is_ramp:
        out["md"]["steps"] = cfg.md.steps
    if cfg.system.builtin is None:
        out["system"]["structure"] = "sha256:" + _file_sha256(cfg.resolve(cfg.system.structure))
    if cfg.potential.kind == "deepmd":
        from dpqtb.potential.builtin import resolve

        out["potential"]["model"] = "sha256:" + _file_sha256(resolve(cfg.potential.model, cfg.base_dir))
    return out


def _file_sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def output_directory(cfg: MDConfig, output_dir: str | Path | None = None) -> Path:
    """Where the run writes.

    Parameters
    ----------
    cfg
        The run's config.
    output_dir
        A command-line path (``--output``): used as given, relative to the working directory.

    Returns
    -------
    Path
        ``output_dir``, else output.directory of the config, relative to the config file's folder like
        every path in it (written relative to the working directory when it lies below it).
    """
    if output_dir is not None:
        return Path(output_dir)
    d = Path(cfg.output.directory)
    if d.is_absolute():
        return d
    full = os.path.normpath(cfg.base_dir / d)
    rel = os.path.relpath(full)  # written relative to the working directory when it lies below it
    return Path(full if rel.startswith("..") else rel)


def build_integrator(cfg: MDConfig, potential):
    """The integrator of ``[thermostat]`` and ``[md]``.

    Parameters
    ----------
    cfg
        The run's config.
    potential
        The potential the integrator drives.

    Returns
    -------
    NVE
        An :class:`NVE`, :class:`Langevin`, :class:`QTB` or :class:`dpqtb.md.pimd.PIMD`.
    """
    th, md = cfg.thermostat, cfg.md  # zero_net_force None: resolved by the integrator from the potential
    dt, seed = md.timestep_fs, md.thermostat_seed
    if th.kind == "nve":
        return NVE(potential, dt)
    schedule = TemperatureSchedule(*th.temperatures_K, md.steps)
    barostat = None
    if cfg.barostat.enabled:
        b = cfg.barostat
        barostat = StochasticCellRescaling(b.pressure_GPa, damp_fs=b.damp_fs,
                                           compressibility_per_GPa=b.effective_compressibility_per_GPa,
                                           seed=md.barostat_seed, cell=b.cell, stress_GPa=b.stress_GPa)
    if th.kind == "langevin":
        return Langevin(potential, dt, schedule, th.damp_fs, seed, th.zero_net_force, barostat=barostat)
    if th.kind in ("pimd", "trpmd"):
        from dpqtb.md.pimd import PIMD

        return PIMD(potential, dt, schedule, th.beads, th.damp_fs, seed, pile_lambda=th.effective_pile_lambda,
                    trpmd=(th.kind == "trpmd"), zero_net_force=th.zero_net_force, barostat=barostat,
                    centroid_thermostat_steps=th.centroid_thermostat_steps or 0)
    return QTB(potential, dt, schedule, th.damp_fs, seed, f_max_THz=th.f_max_THz, n_f=th.n_f,
               classical_kernel=th.classical_kernel, zero_net_force=th.zero_net_force,
               adaptive=(th.kind == "adqtb"), fd_diagnostic=th.fd_diagnostic, tau_ad_fs=th.tau_ad_fs,
               tau_avg_fs=th.tau_avg_fs, fd_max_dof=th.fd_max_dof, adapt_groups=th.adapt_groups,
               kinetic_correction=th.kinetic_correction, fd_skip_segments=th.fd_skip_segments,
               gamma_r_min_ratio=th.gamma_r_min_ratio, barostat=barostat)


def build_deviation_observer(cfg: MDConfig, state: MDState) -> ModelDeviationObserver:
    """The model-deviation observer of ``potential.ensemble``: the listed members (a shipped ensemble
    expands to its files), each loaded like ``potential.model``, every ``potential.deviation_every`` steps
    (default ``output.thermo_every``)."""
    from dpqtb.potential.builtin import ensemble_members
    from dpqtb.potential.deepmd import DeepPotential

    pot = cfg.potential
    paths = ensemble_members(pot.model, pot.ensemble, cfg.base_dir)
    members = [DeepPotential(p, device=state.device, skin_A=pot.skin_A, chunk_atoms=pot.chunk_atoms) for p in paths]
    every = pot.deviation_every or cfg.output.thermo_every
    return ModelDeviationObserver(members, every, pot.trust_hi_eV_per_A)


def build_simulation(cfg: MDConfig, output_dir: str | Path | None = None, progress: bool | None = None) -> Simulation:
    """The simulation of a config: structure, potential, integrator, initial momenta, output settings.

    Parameters
    ----------
    cfg
        The run's config.
    output_dir
        A command-line output directory (``--output``), else output.directory (:func:`output_directory`).
    progress
        Show a progress bar; None: output.progress.

    Returns
    -------
    Simulation
        Set up; nothing is written before its ``run``.
    """
    sys_cfg = cfg.system
    if sys_cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("config asks for system.device = 'cuda' but this torch has no usable CUDA device")
    dtype = {"float64": torch.float64, "float32": torch.float32}[sys_cfg.dtype]
    atoms = load_structure(sys_cfg, cfg.base_dir)
    state = MDState.from_atoms(atoms, type_map=sys_cfg.type_map, device=sys_cfg.device, dtype=dtype)
    potential = build_potential(cfg.potential, state, cfg.base_dir)
    integrator = build_integrator(cfg, potential)
    t0 = sys_cfg.initial_temperature_K
    if t0 is None and integrator.has_temperature:
        t0 = integrator.target_temperature(0)
    if t0 is not None:
        gen = torch.Generator(device=state.device)
        gen.manual_seed(cfg.md.momenta_seed)
        state.momenta = maxwell_boltzmann_momenta(state.masses, t0, gen, zero_com=state.n_atoms > 1)
    elif state.n_atoms > 1:
        state.zero_com_momentum()
    out = cfg.output
    observers = [VACFObserver(out.vacf_every, out.vacf_max_lag_fs, cfg.md.timestep_fs)] if out.vacf_every else []
    if out.bead_trajectory_every:
        observers.append(BeadTrajectoryObserver(out.bead_trajectory_every))
    if cfg.potential.ensemble:
        observers.append(build_deviation_observer(cfg, state))
    return Simulation(state, integrator, output_directory(cfg, output_dir),
                      thermo_every=out.thermo_every, trajectory_every=out.trajectory_every,
                      trajectory_velocities=out.trajectory_velocities, checkpoint_every=out.checkpoint_every,
                      checkpoint_every_min=out.checkpoint_every_min,
                      progress=out.progress if progress is None else progress,
                      metadata={"config": cfg.to_dict()}, physics_config=physics_config(cfg),
                      observers=observers)
