"""A LAMMPS input deck for the run of a ``dpqtb md`` config (``dpqtb lammps CONFIG --out DIR``).

The deck runs the same system (structure, masses, initial velocities drawn as ``dpqtb md`` draws them),
the same Deep Potential (``pair_style deepmd``, DeePMD-kit's LAMMPS plugin) and the same bath parameters:

==================  ==========================================================================================
dpqtb               LAMMPS (units metal: ps, bar, Å/ps)
==================  ==========================================================================================
``nve``             ``fix nve``
``langevin``        ``fix langevin T0 T1 damp seed zero yes tally yes`` + ``fix nve`` (a ramp is allowed)
``qtb``             ``fix qtb temp T damp damp_fs/1000 f_max f_max_THz N_f n_f seed`` + ``fix nve``
[barostat]          ``fix nph`` instead of ``fix nve`` (iso / aniso / tri / x / y / z, Pdamp = damp_fs/1000)
==================  ==========================================================================================

What LAMMPS cannot do is an :class:`~dpqtb.InputError` naming it (adQTB, PIMD/TRPMD, a QTB temperature
ramp, the classical QTB kernel, a potential other than a Deep Potential, a GPU or float32 run, and a
``thermostat.zero_net_force`` set in the config file: LAMMPS always subtracts the unweighted mean random
force). What LAMMPS does differently but samples the same way, or outputs it lacks, is a warning and a
comment in the deck: the unweighted mean random force (the default, dpqtb: mass-weighted), raw QTB
kinetic energies only, no Δ_FD diagnostic, no exact restart of the noise (no checkpoints), its Langevin
integrator (not BAOAB), its barostat (``fix nph``, Nosé–Hoover/MTK; dpqtb: stochastic cell rescaling).
See docs/lammps.md.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dpqtb import InputError, __version__
from dpqtb.md.config import MDConfig
from dpqtb.rundir import (LAMMPS_DATA, LAMMPS_DUMP, LAMMPS_INPUT, LAMMPS_LOG, LAMMPS_META, LAMMPS_MODEL_DEVI,
                          QTB_DOS, QTB_FD_GLOB, THERMO, atomic_write_text)

#: 1 GPa in bar (LAMMPS metal pressure unit)
BAR_PER_GPA = 1.0e4
#: fs per ps (LAMMPS metal time unit)
FS_PER_PS = 1000.0
#: cell modes of [barostat] -> the couple/dimension arguments of ``fix nph``
NPH_STYLE = {"isotropic": "iso", "anisotropic": "aniso", "flexible": "tri", "x": "x", "y": "y", "z": "z"}
#: thermo columns of the deck: (LAMMPS keyword or reference, dpqtb's thermo.csv name)
THERMO_KEYWORDS = (("step", "step"), ("v_time_fs", "time_fs"), ("temp", "temperature_K"),
                   ("v_target_temperature_K", "target_temperature_K"), ("ke", "kinetic_eV"),
                   ("pe", "potential_eV"), ("etotal", "total_eV"), ("econserve", "conserved_eV"),
                   ("v_pressure_GPa", "pressure_GPa"), ("vol", "volume_A3"))


@dataclass
class Deck:
    """What :func:`write_deck` wrote.

    Attributes
    ----------
    directory : Path
        The deck's folder.
    files : dict
        role (``input``, ``data``, ``model``, ``meta``) -> path.
    warnings : list of str
        The differences from ``dpqtb md`` that the deck keeps (also written as comments in the deck).
    meta : dict
        The content of the sidecar ``dpqtb_lammps.json`` (type map, time step, output intervals, ...).
    """

    directory: Path
    files: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)


def _explicit(raw: dict | None, section: str, key: str) -> bool:
    """True when the config file itself sets ``section.key`` (not a default)."""
    return bool(raw) and key in (raw.get(section) or {})


def check_supported(cfg: MDConfig, raw: dict | None = None) -> list[str]:
    """InputError for what the config asks and LAMMPS cannot do; the list of kept differences otherwise.

    Parameters
    ----------
    cfg : MDConfig
        The run's config.
    raw : dict, optional
        The TOML table as read (to tell keys set in the file from defaults).

    Returns
    -------
    list of str
        One sentence per difference between the deck's run and ``dpqtb md``'s that the deck keeps.
    """
    th, pot, baro, out = cfg.thermostat, cfg.potential, cfg.barostat, cfg.output
    if th.kind in ("pimd", "trpmd"):
        raise InputError(f"LAMMPS cannot run thermostat '{th.kind}' with fix qtb (no PIMD with QTB; fix pimd "
                         "is another method): run it with dpqtb md")
    if th.kind == "adqtb":
        raise InputError("LAMMPS has no adaptive QTB (fix qtb is the plain QTB): use thermostat 'qtb' or run "
                         "adqtb with dpqtb md")
    if pot.kind != "deepmd":
        raise InputError(f"dpqtb lammps writes pair_style deepmd only; potential '{pot.kind}' has no LAMMPS "
                         "deck here (use potential.kind = 'deepmd')")
    if cfg.system.device != "cpu" or cfg.system.dtype != "float64":
        raise InputError("dpqtb lammps writes a CPU float64 deck: set system.device = 'cpu', dtype = 'float64'")
    notes = []
    if th.kind == "qtb":
        if th.is_ramp:
            raise InputError("LAMMPS fix qtb cannot ramp its temperature (thermostat.temperature_K = "
                             f"{list(th.temperatures_K)}): give one temperature or run the ramp with dpqtb md")
        if th.classical_kernel:
            raise InputError("LAMMPS fix qtb has no classical kernel (thermostat.classical_kernel = true): "
                             "use thermostat 'langevin' for the classical run")
        if _explicit(raw, "thermostat", "zero_net_force"):
            raise InputError(f"LAMMPS fix qtb always subtracts the unweighted mean random force: "
                             f"thermostat.zero_net_force = {str(th.zero_net_force).lower()} (mass-weighted "
                             "removal or none) cannot be honoured; remove the key to accept LAMMPS's removal")
        for key, why in (("fd_diagnostic", "writes no Δ_FD(ω) diagnostic (qtb_fd_*.csv, qtb_dos.csv)"),
                         ("kinetic_correction", "reports the raw kinetic energy only (no broadening correction)")):
            if _explicit(raw, "thermostat", key) and getattr(th, key):
                notes.append(f"thermostat.{key} = true: fix qtb {why}")
        notes.append("fix qtb subtracts the unweighted mean random force R_i - R_tot/N (dpqtb: the "
                     "mass-weighted projection); in small cells this heats the light species (docs/qtb.md)")
        notes.append(f"fix qtb reports the raw kinetic energy and temperatures (dpqtb's {THERMO}: broadening "
                     f"bias removed, raw values in the *_raw columns); no {QTB_FD_GLOB}, no {QTB_DOS}")
        notes.append("fix qtb draws its white noise from LAMMPS's Marsaglia generator: same statistics, not "
                     "the same random numbers as dpqtb md with the same seed")
        if out.checkpoint_every > 0:
            notes.append("no restart files: LAMMPS cannot restart fix qtb's noise exactly (its random state and "
                         "filter history are not in restart files); output.checkpoint_every is ignored")
        if cfg.md.seed < 1:
            raise InputError("LAMMPS fix qtb needs md.seed >= 1")
    if th.kind == "langevin":
        if th.zero_net_force is False:
            notes.append("fix langevin zero yes subtracts the net random force (dpqtb: zero_net_force = false)")
        notes.append("fix langevin + fix nve is a velocity-Verlet Langevin integrator (dpqtb: BAOAB); both "
                     "sample the canonical ensemble, their time-step errors differ; the unweighted mean "
                     "random force is subtracted (zero yes)")
        if cfg.md.seed < 1:
            raise InputError("LAMMPS fix langevin needs md.seed >= 1")
    if cfg.potential.ensemble:
        every = cfg.potential.deviation_every or cfg.output.thermo_every
        notes.append(f"the model deviation of potential.ensemble goes to {LAMMPS_MODEL_DEVI} every {every} steps "
                     "(DeePMD-kit's pair_style deepmd with several models: step, max/min/avg virial and force "
                     "deviation, eV and eV/Å), not to thermo; no trust_hi warning")
    if baro.enabled:
        notes.append(f"constant pressure by fix nph {NPH_STYLE[baro.cell]} (Nosé-Hoover/MTK barostat, Pdamp = "
                     f"{baro.damp_fs:g} fs); dpqtb uses stochastic cell rescaling: the same NPT ensemble with "
                     "the bath's temperature, different cell dynamics (fluctuation time scales, no "
                     "compressibility_per_GPa)")
    return notes


def type_map_of(cfg: MDConfig, atoms) -> tuple[str, ...]:
    """The LAMMPS types, in order (type k+1 = species k): ``system.type_map``, else order of appearance."""
    symbols = atoms.get_chemical_symbols()
    tm = tuple(cfg.system.type_map) if cfg.system.type_map else tuple(dict.fromkeys(symbols))
    missing = sorted(set(symbols) - set(tm))
    if missing:
        raise InputError(f"species {missing} are not in type_map {list(tm)}")
    return tm


def _initial_velocities(cfg: MDConfig, atoms) -> np.ndarray:
    """Initial velocities (Å/fs), drawn exactly as ``dpqtb md`` draws its initial momenta."""
    import torch

    from dpqtb.md.state import maxwell_boltzmann_momenta

    th = cfg.thermostat
    t0 = cfg.system.initial_temperature_K
    if t0 is None and th.kind != "nve":
        t0 = th.temperatures_K[0]
    n = len(atoms)
    if t0 is None:
        return np.zeros((n, 3))
    masses = torch.tensor(atoms.get_masses(), dtype=torch.float64)
    gen = torch.Generator()
    gen.manual_seed(cfg.md.momenta_seed)
    p = maxwell_boltzmann_momenta(masses, t0, gen, zero_com=n > 1)
    return (p / masses[:, None]).numpy()


def _species_extra_dof(masses: np.ndarray, symbols: np.ndarray, type_map) -> dict:
    """Per species, the degrees of freedom the centre of mass takes from it: 3 Σ_{i∈X} m_i / M (dpqtb's
    ``temperature_<X>_K``)."""
    total = masses.sum()
    return {s: 3.0 * masses[symbols == s].sum() / total for s in type_map}


def _fix_lines(cfg: MDConfig) -> list[str]:
    th, md, baro = cfg.thermostat, cfg.md, cfg.barostat
    lines = []
    if baro.enabled:
        p = baro.pressure_GPa * BAR_PER_GPA
        lines.append(f"fix integrate all nph {NPH_STYLE[baro.cell]} {p:.10g} {p:.10g} "
                     f"{baro.damp_fs / FS_PER_PS:.10g}")
    else:
        lines.append("fix integrate all nve")
    if th.kind == "qtb":
        t = th.temperatures_K[0]
        lines.append(f"fix bath all qtb temp {t:.10g} damp {th.damp_fs / FS_PER_PS:.10g} seed {md.seed} "
                     f"f_max {th.f_max_THz:.10g} N_f {th.n_f}")
    elif th.kind == "langevin":
        t0, t1 = th.temperatures_K
        lines.append(f"fix bath all langevin {t0:.10g} {t1:.10g} {th.damp_fs / FS_PER_PS:.10g} {md.seed} "
                     "zero yes tally yes")
    return lines


def deck_text(cfg: MDConfig, type_map, extra_dof: dict, model_ref: str, notes: list[str],
              member_refs: tuple[str, ...] = ()) -> str:
    """The text of ``in.lammps`` (see :func:`write_deck`); ``member_refs``: the other models of an ensemble."""
    th, md, out, pot = cfg.thermostat, cfg.md, cfg.output, cfg.potential
    pair = f"pair_style deepmd {model_ref}"
    if member_refs:  # DeePMD-kit evaluates every model and writes their deviation; the first drives the run
        pair += (f" {' '.join(member_refs)} out_freq {pot.deviation_every or out.thermo_every} "
                 f"out_file {LAMMPS_MODEL_DEVI}")
    dt_ps = md.timestep_fs / FS_PER_PS
    if th.kind == "nve":
        target = "NaN"
        target_var = "variable target_temperature_K equal -1  # NVE: no target (read back as NaN)"
    else:
        t0, t1 = th.temperatures_K
        target = f"{t0:g}" if t0 == t1 else f"{t0:g} -> {t1:g}"
        target_var = (f"variable target_temperature_K equal {t0:.10g}" if t0 == t1 else
                      f"variable target_temperature_K equal ramp({t0:.10g},{t1:.10g})")
    head = [f"# LAMMPS deck written by dpqtb {__version__} (dpqtb lammps) for the run of the config",
            f"# {th.kind} at {target} K, {md.steps} steps of {md.timestep_fs:g} fs"
            + (f", {cfg.barostat.pressure_GPa:g} GPa" if cfg.barostat.enabled else ""),
            "# Needs LAMMPS with the QTB and PLUGIN packages and DeePMD-kit's plugin on LAMMPS_PLUGIN_PATH",
            f"# (scripts/install_lammps.sh). Run in this folder: lmp -in {LAMMPS_INPUT} (log: {LAMMPS_LOG}); a cell",
            f"# too big for one process: mpirun -np N lmp -in {LAMMPS_INPUT} with an MPI build (MPI=1 in the script).",
            "# Differences from dpqtb md (docs/lammps.md):"]
    head += [f"#  - {n}" for n in notes] or ["#  - none"]
    types = " ".join(type_map)
    L = head + ["", "units metal", "atom_style atomic", "boundary p p p", f"read_data {LAMMPS_DATA}", "",
                pair, f"pair_coeff * * {types}", "",
                f"neighbor {pot.skin_A:.10g} bin", "neigh_modify every 1 delay 0 check yes", "",
                f"timestep {dt_ps:.10g}", "reset_timestep 0", ""]
    for k, s in enumerate(type_map, start=1):
        L += [f"group sp_{s} type {k}", f"compute T_{s} sp_{s} temp",
              f"compute_modify T_{s} extra/dof {extra_dof[s]:.12g}  # 3 M_{s}/M: dpqtb's temperature_{s}_K"]
    L += ["", f"variable time_fs equal time*{FS_PER_PS:g}", target_var,
          f"variable pressure_GPa equal press/{BAR_PER_GPA:g}", ""]
    L += _fix_lines(cfg) + [""]
    keys = [k for k in THERMO_KEYWORDS if th.kind != "qtb" or k[0] != "econserve"]  # fix qtb tallies no energy
    keys += [(f"c_T_{s}", f"temperature_{s}_K") for s in type_map]
    if cfg.barostat.enabled:
        keys += [("cella", "cell_a_A"), ("cellb", "cell_b_A"), ("cellc", "cell_c_A")]
    keys.append(("press", "pressure_bar"))  # v_pressure_GPa needs thermo to compute press itself
    L.append("thermo_style custom " + " ".join(k for k, _ in keys))
    L.append("thermo_modify norm no flush yes format float %.12g " + " ".join(
        f"colname {k} {n}" for k, n in keys))
    L.append(f"thermo {out.thermo_every}")
    if out.trajectory_every > 0:
        L += [f"dump traj all custom {out.trajectory_every} {LAMMPS_DUMP} id type xu yu zu vx vy vz",
              "dump_modify traj sort id format float %.12g"]
    L += ["", f"run {md.steps}", ""]
    return "\n".join(L)


def write_deck(cfg: MDConfig, out_dir: str | Path, raw: dict | None = None, copy_model: bool = True) -> Deck:
    """Write ``in.lammps``, ``data.lammps``, the model (or its path) and ``dpqtb_lammps.json`` into ``out_dir``.

    Parameters
    ----------
    cfg : MDConfig
        The run's config.
    out_dir : path
        The deck's folder (created).
    raw : dict, optional
        The TOML table as read, to tell keys set in the file from defaults (see :func:`check_supported`).
    copy_model : bool
        Copy the model file into ``out_dir`` (default), else name it by its absolute path.

    Returns
    -------
    Deck

    Raises
    ------
    InputError
        The config asks for something LAMMPS cannot do; a species of the structure missing from the type
        map; masses that differ within a species; an unwritable folder.
    """
    from ase.io.lammpsdata import write_lammps_data

    from dpqtb.md.build import load_structure
    from dpqtb.potential.builtin import ensemble_members, resolve

    notes = check_supported(cfg, raw)
    atoms = load_structure(cfg.system, cfg.base_dir)
    type_map = type_map_of(cfg, atoms)
    symbols = np.array(atoms.get_chemical_symbols())
    masses = atoms.get_masses()
    for s in type_map:
        m = masses[symbols == s]
        if m.size and np.ptp(m) > 1e-9 * m.max():
            raise InputError(f"LAMMPS atom_style atomic has one mass per type: species {s} has several")
    model = resolve(cfg.potential.model, cfg.base_dir)
    if not model.is_file():
        raise InputError(f"model file {model} does not exist")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create deck directory {out}: {exc.strerror or exc}") from None
    deck = Deck(out, warnings=notes)
    if copy_model:
        dest = out / model.name
        if dest.resolve() != model.resolve():
            shutil.copyfile(model, dest)
        model_ref = model.name
        deck.files["model"] = dest
    else:
        model_ref = str(model.resolve())
        deck.files["model"] = model.resolve()
    member_refs = []
    if cfg.potential.ensemble:
        for k, member in enumerate(ensemble_members(cfg.potential.model, cfg.potential.ensemble, cfg.base_dir), 1):
            if copy_model:  # numbered: members from different folders may share a file name
                dest = out / f"member{k}_{member.name}"
                shutil.copyfile(member, dest)
                member_refs.append(dest.name)
                deck.files[f"member{k}"] = dest
            else:
                member_refs.append(str(member))
                deck.files[f"member{k}"] = member

    from ase import units

    atoms = atoms.copy()
    atoms.set_velocities(_initial_velocities(cfg, atoms) / units.fs)  # Å/fs -> ASE units
    skew = cfg.barostat.enabled and cfg.barostat.cell == "flexible"
    with open(out / LAMMPS_DATA, "w") as fh:
        write_lammps_data(fh, atoms, specorder=list(type_map), masses=True, velocities=True, units="metal",
                          atom_style="atomic", force_skew=skew)
    extra = _species_extra_dof(masses, symbols, type_map)
    atomic_write_text(out / LAMMPS_INPUT, deck_text(cfg, type_map, extra, model_ref, notes, tuple(member_refs)))
    deck.meta = {"format": "dpqtb-lammps-1", "dpqtb": __version__, "type_map": list(type_map),
                 "timestep_fs": cfg.md.timestep_fs, "steps": cfg.md.steps,
                 "thermo_every": cfg.output.thermo_every, "dump_every": cfg.output.trajectory_every,
                 "integrator": cfg.thermostat.kind, "n_atoms": len(atoms),
                 "model": str(deck.files["model"] if not copy_model else model_ref), "ensemble": member_refs,
                 "differences": notes, "config": cfg.to_dict()}
    atomic_write_text(out / LAMMPS_META, json.dumps(deck.meta, indent=2, default=float) + "\n")
    deck.files.update(input=out / LAMMPS_INPUT, data=out / LAMMPS_DATA, meta=out / LAMMPS_META)
    return deck
