"""Run configuration (TOML) for ``dpqtb md``: strict schema, typed sections, one-line errors naming the key.

Every key states its unit in its name. See ``docs/config.md`` for the full reference and
``src/dpqtb/workflows/*.toml`` for examples.

:data:`SCHEMA` is the single source of key names, types, defaults and messages. :func:`validate` turns a
raw TOML table into an :class:`MDConfig`: one frozen dataclass per section (:class:`SystemConfig`,
:class:`PotentialConfig`, :class:`DynamicsConfig`, :class:`ThermostatConfig`, :class:`OutputConfig`),
whose fields are the schema's keys and whose defaults are the schema's. Each section checks its values
against the schema when it is constructed and resolves its derived defaults (``thermostat.damp_fs`` per
thermostat); :class:`MDConfig` checks every rule between keys. A config that validates builds: nothing
downstream checks the config again. Overrides go through :func:`dataclasses.replace`, which checks again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

from dpqtb.config_schema import (NUMBER, REQUIRED, check_value, device_name, freeze, int_list, load_toml, nonneg,
                                 positive, thaw, validate_schema)
from dpqtb.md.barostat import (CELL_MODES, DEFAULT_BAROSTAT_DAMP_FS, is_stress_table, resolve_stress)
from dpqtb.md.pimd import DEFAULT_PILE_LAMBDA, DEFAULT_TRPMD_LAMBDA
from dpqtb.md.qtb import QTB_DEFAULTS
from dpqtb.potential.neighbors import DEFAULT_SKIN_A

#: Default friction time (fs) of every thermostat but those of :data:`DEFAULT_DAMP_fs_BY_KIND`.
DEFAULT_DAMP_fs = 1000.0
#: adQTB can only drain leaked zero-point energy through the friction, so it needs γ = 1/damp well above
#: plain QTB's (docs/qtb.md, "Choosing γ for adQTB").
DEFAULT_DAMP_fs_BY_KIND = {"adqtb": 100.0}

#: ``system.structure = "builtin:NAME"``: the structures dpqtb builds itself.
BUILTIN_STRUCTURES = ("fcc", "bcc", "sc", "lah10")

#: Random streams derived from ``md.seed``: the thermostat's noise draws from ``md.seed`` itself, the initial
#: Maxwell–Boltzmann momenta from ``md.seed + 7919`` (a prime offset, so the two generators never start from
#: the same seed for neighbouring seeds). Changing a value changes every run's trajectory.
SEED_OFFSETS = {"thermostat": 0, "momenta": 7919, "barostat": 104729}
#: Offset of the initial momenta's seed from ``md.seed`` (see :data:`SEED_OFFSETS`).
MOMENTA_SEED_OFFSET = SEED_OFFSETS["momenta"]


def derived_seed(seed: int, stream: str) -> int:
    """The seed of one random stream of a run.

    Parameters
    ----------
    seed
        ``md.seed`` of the config.
    stream
        ``"thermostat"`` (the integrator's noise) or ``"momenta"`` (initial Maxwell–Boltzmann momenta).

    Returns
    -------
    int
        ``seed + SEED_OFFSETS[stream]``.
    """
    return int(seed) + SEED_OFFSETS[stream]


def _temperature(v):
    vals = v if isinstance(v, list) else [v]
    return 1 <= len(vals) <= 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0
                                       for x in vals)


def _int3(v):
    return int_list(v) and len(v) == 3


def _adapt_groups(v):
    if isinstance(v, str):
        return v in ("species", "sites")
    return len(v) >= 1 and all(isinstance(g, list) and len(g) >= 1 and all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in g) for g in v)


#: ``potential.trust_hi_eV_per_A``: the upper edge of the trust window of dpqtb's own concurrent-learning
#: exploration (data/concurrent/iter2/explore.toml); DP-GEN counts a frame above it as failed, not learnable.
DEFAULT_TRUST_HI_EV_PER_A = 0.5


def _model_list(v):
    return len(v) >= 1 and all(isinstance(x, str) and x for x in v)


def _species_floats(v):
    return isinstance(v, dict) and len(v) > 0 and all(isinstance(x, (int, float)) and x > 0 for x in v.values())


# section -> key -> (types, default, check, message)
SCHEMA: dict[str, dict[str, tuple]] = {
    "system": {
        "structure": (str, REQUIRED, None, "a file readable by ASE or 'builtin:NAME'"),
        "format": (str, None, None, ""),
        "supercell": (list, [1, 1, 1], _int3, "must be three integers >= 1"),
        "type_map": (list, None, lambda v: all(isinstance(x, str) for x in v), "must be a list of species names"),
        "masses_amu": (dict, None, _species_floats, "must map species to masses > 0"),
        "lattice_A": (NUMBER, None, positive, "must be > 0"),
        "pressure_GPa": (NUMBER, None, positive, "must be > 0 (builtin:lah10 only: lattice constant from the stored DFT EOS)"),
        "element": (str, "H", None, ""),
        "initial_temperature_K": (NUMBER, None, nonneg, "must be >= 0"),
        "device": (str, "cpu", device_name, "must be 'cpu', 'cuda' or 'cuda:N'"),
        "dtype": (str, "float64", lambda v: v in ("float64", "float32"), "must be 'float64' or 'float32'"),
    },
    "potential": {
        "kind": (str, REQUIRED, lambda v: v in ("einstein", "morse", "function", "deepmd"),
                 "must be one of einstein, morse, function, deepmd"),
        "k_eV_per_A2": (dict, None, _species_floats, "must map species to spring constants > 0"),
        "frequency_THz": (dict, None, _species_floats, "must map species to frequencies > 0"),
        "D_eV": (NUMBER, None, positive, "must be > 0"),
        "a_per_A": (NUMBER, None, positive, "must be > 0"),
        "r0_A": (NUMBER, None, positive, "must be > 0"),
        "cutoff_A": (NUMBER, None, positive, "must be > 0"),
        "skin_A": (NUMBER, DEFAULT_SKIN_A, nonneg, "must be >= 0"),
        "function": (str, None, None, ""),
        "batched": (bool, False, None, ""),
        "model": (str, "builtin:lah10", None,
                  "a frozen DeePMD-kit PyTorch model (*.pth) or 'builtin:NAME' (deepmd; shipped: lah10)"),
        "chunk_atoms": (int, None, positive, "must be an integer >= 1 (deepmd: local atoms per model call)"),
        "ensemble": (list, None, _model_list,
                     "must be a list of frozen DeePMD-kit models (*.pth) or 'builtin:NAME' entries: the other "
                     "members of the ensemble; their model deviation with potential.model is recorded as the run goes "
                     "(max_force_dev_eV_A; deepmd)"),
        "deviation_every": (int, None, positive, "must be an integer >= 1 (steps between model deviations; "
                            "a multiple of output.thermo_every, default output.thermo_every)"),
        "trust_hi_eV_per_A": (NUMBER, DEFAULT_TRUST_HI_EV_PER_A, positive,
                              "must be > 0 (eV/Å: a run warns when max_force_dev_eV_A reaches it)"),
    },
    "md": {
        "timestep_fs": (NUMBER, REQUIRED, positive, "must be > 0"),
        "steps": (int, REQUIRED, nonneg, "must be >= 0"),
        "seed": (int, 12345, nonneg, "must be >= 0"),
    },
    "thermostat": {
        "kind": (str, "nve", lambda v: v in ("nve", "langevin", "qtb", "adqtb", "pimd", "trpmd"),
                 "must be one of nve, langevin, qtb, adqtb, pimd, trpmd"),
        "temperature_K": ((int, float, list), None, _temperature,
                          "must be >= 0 (a number, or [start, stop] for a linear ramp)"),
        "damp_fs": (NUMBER, None, positive, f"must be > 0 (default {DEFAULT_DAMP_fs:g}; adqtb: "
                    f"{DEFAULT_DAMP_fs_BY_KIND['adqtb']:g}, see docs/qtb.md)"),
        "f_max_THz": (NUMBER, QTB_DEFAULTS["f_max_THz"], positive, "must be > 0"),
        "n_f": (int, QTB_DEFAULTS["n_f"], lambda v: v >= 2, "must be an integer >= 2"),
        "classical_kernel": (bool, QTB_DEFAULTS["classical_kernel"], None, ""),
        "zero_net_force": (bool, None, None, "true or false (default: true when the potential is translation-invariant)"),
        "fd_diagnostic": (bool, QTB_DEFAULTS["fd_diagnostic"], None, ""),
        "tau_ad_fs": (NUMBER, QTB_DEFAULTS["tau_ad_fs"], positive, "must be > 0"),
        "tau_avg_fs": (NUMBER, None, positive, "must be > 0"),
        "fd_max_dof": (int, QTB_DEFAULTS["fd_max_dof"], positive, "must be > 0"),
        "adapt_groups": ((str, list), QTB_DEFAULTS["adapt_groups"], _adapt_groups,
                         "must be 'species', 'sites' or a list of lists of atom indices (0-based)"),
        "kinetic_correction": (bool, QTB_DEFAULTS["kinetic_correction"], None, ""),
        "fd_skip_segments": (int, QTB_DEFAULTS["fd_skip_segments"], nonneg, "must be an integer >= 0"),
        "gamma_r_min_ratio": (NUMBER, QTB_DEFAULTS["gamma_r_min_ratio"], lambda v: 0 < v < 1, "must lie in (0, 1)"),
        "beads": (int, 1, positive, "must be an integer >= 1"),
        "pile_lambda": (NUMBER, None, positive, "must be > 0"),
        "centroid_thermostat_steps": (int, None, nonneg, "must be an integer >= 0 (TRPMD: steps with a centroid "
                                      "thermostat before the centroid runs free)"),
    },
    "barostat": {
        "pressure_GPa": (NUMBER, None, nonneg, "must be >= 0 (GPa; set it, or stress_GPa, to run at constant pressure)"),
        "cell": (str, "isotropic", lambda v: v in CELL_MODES,
                 "must be one of " + ", ".join(CELL_MODES) + " (anisotropic/flexible/x/y/z: lower-triangular cell)"),
        "damp_fs": (NUMBER, DEFAULT_BAROSTAT_DAMP_FS, positive, "must be > 0 (relaxation time of the volume)"),
        "compressibility_per_GPa": (NUMBER, None, positive,
                                    "must be > 0 (default 1/(100 GPa + 4 P): sets the speed, not the ensemble)"),
        "stress_GPa": (list, None, is_stress_table,
                       "must be six numbers [xx, yy, zz, yz, xz, xy] (GPa, positive = compressive, as pressure_GPa) "
                       "or a symmetric 3x3 table; cell 'flexible' (or 'anisotropic' without shear); "
                       "pressure_GPa is then its trace/3"),
    },
    "output": {
        "directory": (str, "run", None, ""),
        "thermo_every": (int, 10, positive, "must be > 0"),
        "trajectory_every": (int, 100, nonneg, "must be >= 0 (0: no trajectory)"),
        "trajectory_velocities": (bool, False, None, ""),
        "checkpoint_every": (int, 1000, nonneg, "must be >= 0 (0: only at the end)"),
        "checkpoint_every_min": (NUMBER, 10.0, nonneg, "must be >= 0 (wall-clock minutes after which the next thermo "
                                 "step also writes a checkpoint; 0: steps only)"),
        "progress": (bool, True, None, ""),
        "vacf_every": (int, 0, nonneg, "must be >= 0 (steps between velocity samples of vacf.csv; 0: none)"),
        "vacf_max_lag_fs": (NUMBER, 1000.0, positive, "must be > 0 (longest lag of vacf.csv)"),
        "bead_trajectory_every": (int, 0, nonneg, "must be >= 0 (steps between frames of every bead in "
                                  "trajectory_beads.extxyz, PIMD/TRPMD; 0: none)"),
    },
}


# ----------------------------------------------------------------------------- typed sections
def _section(name: str):
    """Class decorator: a frozen, keyword-only dataclass for ``[name]`` whose fields are the schema's keys
    (same order) with the schema's defaults, and whose docstring lists them (numpydoc Attributes)."""
    def wrap(cls):
        keys = SCHEMA[name]
        annotated = list(cls.__dict__.get("__annotations__", {}))
        if annotated != list(keys):  # pragma: no cover - caught at import
            raise TypeError(f"{cls.__name__} fields {annotated} differ from SCHEMA[{name!r}] {list(keys)}")
        lines = ["", "    Attributes", "    ----------"]
        for key, (types, default, _, msg) in keys.items():
            if default is not REQUIRED:
                setattr(cls, key, freeze(default))
            tt = types if isinstance(types, tuple) else (types,)
            kind = " or ".join(t.__name__ for t in tt) if types != NUMBER else "float"
            d = "required" if default is REQUIRED else f"default {default!r}"
            lines += [f"    {key} : {kind}", f"        {msg or 'see docs/config.md'} ({d})."]
        cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n" + "\n".join(lines) + "\n"
        cls.section = name
        return dataclass(frozen=True, kw_only=True)(cls)
    return wrap


class _Section:
    """Shared behaviour of the section dataclasses."""

    section: ClassVar[str]

    def __post_init__(self) -> None:
        for f in fields(self):
            spec = SCHEMA[self.section][f.name]
            value = thaw(getattr(self, f.name))
            if not (value is None and spec[1] is None):  # an optional key left out
                check_value(value, spec, f"config key '{self.section}.{f.name}'")
            object.__setattr__(self, f.name, freeze(value))

    def to_dict(self) -> dict[str, Any]:
        """The section as the TOML table it stands for (lists, dicts; every key, defaults included).

        Returns
        -------
        dict
            key -> value, in schema order.
        """
        return {f.name: thaw(getattr(self, f.name)) for f in fields(self)}


@_section("system")
class SystemConfig(_Section):
    """``[system]``: the structure (file or ``builtin:NAME``), its repetition and masses, where it runs."""

    structure: str
    format: str | None
    supercell: tuple[int, int, int]
    type_map: tuple[str, ...] | None
    masses_amu: Mapping[str, float] | None
    lattice_A: float | None
    pressure_GPa: float | None
    element: str
    initial_temperature_K: float | None
    device: str
    dtype: str

    @property
    def builtin(self) -> str | None:
        """NAME of ``structure = "builtin:NAME"``, else None (a file)."""
        return self.structure.split(":", 1)[1] if self.structure.startswith("builtin:") else None


@_section("potential")
class PotentialConfig(_Section):
    """``[potential]``: the kind of potential and its parameters."""

    kind: str
    k_eV_per_A2: Mapping[str, float] | None
    frequency_THz: Mapping[str, float] | None
    D_eV: float | None
    a_per_A: float | None
    r0_A: float | None
    cutoff_A: float | None
    skin_A: float
    function: str | None
    batched: bool
    model: str
    chunk_atoms: int | None
    ensemble: tuple[str, ...] | None
    deviation_every: int | None
    trust_hi_eV_per_A: float


@_section("md")
class DynamicsConfig(_Section):
    """``[md]``: time step, number of steps and the run's seed."""

    timestep_fs: float
    steps: int
    seed: int

    @property
    def thermostat_seed(self) -> int:
        """Seed of the integrator's random generator (:func:`derived_seed`)."""
        return derived_seed(self.seed, "thermostat")

    @property
    def momenta_seed(self) -> int:
        """Seed of the initial Maxwell–Boltzmann momenta (:func:`derived_seed`)."""
        return derived_seed(self.seed, "momenta")

    @property
    def barostat_seed(self) -> int:
        """Seed of the barostat's random generator (:func:`derived_seed`)."""
        return derived_seed(self.seed, "barostat")


@_section("thermostat")
class ThermostatConfig(_Section):
    """``[thermostat]``: NVE, Langevin, QTB, adQTB, PIMD or TRPMD and their parameters.

    ``damp_fs`` left out takes its thermostat's default (:data:`DEFAULT_DAMP_fs_BY_KIND`, else
    :data:`DEFAULT_DAMP_fs`) when the section is constructed.
    """

    kind: str
    temperature_K: float | tuple[float, float] | None
    damp_fs: float | None
    f_max_THz: float
    n_f: int
    classical_kernel: bool
    zero_net_force: bool | None
    fd_diagnostic: bool
    tau_ad_fs: float
    tau_avg_fs: float | None
    fd_max_dof: int
    adapt_groups: str | tuple[tuple[int, ...], ...]
    kinetic_correction: bool
    fd_skip_segments: int
    gamma_r_min_ratio: float
    beads: int
    pile_lambda: float | None
    centroid_thermostat_steps: int | None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.damp_fs is None:
            object.__setattr__(self, "damp_fs", DEFAULT_DAMP_fs_BY_KIND.get(self.kind, DEFAULT_DAMP_fs))

    def to_dict(self) -> dict[str, Any]:
        """As :meth:`_Section.to_dict`, without ``centroid_thermostat_steps`` when it is not given (so that a
        config without it keeps the table, and the checkpoint and sweep-point hash, it had before the key
        existed)."""
        d = super().to_dict()
        if not d["centroid_thermostat_steps"]:  # None or 0: the same run
            del d["centroid_thermostat_steps"]
        return d

    @property
    def temperatures_K(self) -> tuple[float, float] | None:
        """(start, stop) of the target temperature (equal for a constant one), or None (NVE)."""
        t = self.temperature_K
        if t is None:
            return None
        return (t[0], t[-1]) if isinstance(t, tuple) else (t, t)

    @property
    def is_ramp(self) -> bool:
        """True for ``temperature_K = [start, stop]`` with start != stop."""
        t = self.temperatures_K
        return t is not None and t[0] != t[1]

    @property
    def effective_pile_lambda(self) -> float:
        """``pile_lambda``, or its default for the kind (PIMD: critical damping, TRPMD: half of it)."""
        if self.pile_lambda is not None:
            return self.pile_lambda
        return DEFAULT_TRPMD_LAMBDA if self.kind == "trpmd" else DEFAULT_PILE_LAMBDA


@_section("barostat")
class BarostatConfig(_Section):
    """``[barostat]``: constant pressure by stochastic cell rescaling (docs/barostat.md); off unless
    ``pressure_GPa`` or ``stress_GPa`` is given.

    ``stress_GPa`` is stored as its six Voigt components (xx, yy, zz, yz, xz, xy), whichever form was given;
    with it, ``pressure_GPa`` left out is set to its hydrostatic part (trace/3), and given must equal it.
    """

    pressure_GPa: float | None
    cell: str
    damp_fs: float
    compressibility_per_GPa: float | None
    stress_GPa: tuple[float, float, float, float, float, float] | None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.stress_GPa is not None:
            voigt, pressure = resolve_stress(thaw(self.stress_GPa), self.pressure_GPa)
            object.__setattr__(self, "stress_GPa", voigt)
            object.__setattr__(self, "pressure_GPa", pressure)

    def to_dict(self) -> dict[str, Any]:
        """As :meth:`_Section.to_dict`, without ``stress_GPa`` when it is not given (so that a hydrostatic
        config keeps the table, and the checkpoint hash, it had before ``stress_GPa`` existed)."""
        d = super().to_dict()
        if d["stress_GPa"] is None:
            del d["stress_GPa"]
        return d

    @property
    def enabled(self) -> bool:
        """True when the run is at constant pressure."""
        return self.pressure_GPa is not None

    @property
    def effective_compressibility_per_GPa(self) -> float:
        """``compressibility_per_GPa``, or 1/(B₀ + B′P) with B₀ = 100 GPa, B′ = 4 (a solid's bulk modulus
        to within a factor ~2 up to the megabar: only the cell's relaxation time depends on it)."""
        if self.compressibility_per_GPa is not None:
            return self.compressibility_per_GPa
        return 1.0 / (100.0 + 4.0 * (self.pressure_GPa or 0.0))


@_section("output")
class OutputConfig(_Section):
    """``[output]``: the run directory and how often thermo rows, frames and checkpoints are written."""

    directory: str
    thermo_every: int
    trajectory_every: int
    trajectory_velocities: bool
    checkpoint_every: int
    checkpoint_every_min: float
    progress: bool
    vacf_every: int
    vacf_max_lag_fs: float
    bead_trajectory_every: int


_SECTIONS = {"system": SystemConfig, "potential": PotentialConfig, "md": DynamicsConfig,
             "thermostat": ThermostatConfig, "barostat": BarostatConfig, "output": OutputConfig}


@dataclass(frozen=True, kw_only=True)
class MDConfig:
    """A complete, checked ``dpqtb md`` config.

    Constructing it checks every rule between keys (the sections check their own values);
    :func:`dataclasses.replace` on it checks them again.

    Attributes
    ----------
    system : SystemConfig
        ``[system]``.
    potential : PotentialConfig
        ``[potential]``.
    md : DynamicsConfig
        ``[md]``.
    thermostat : ThermostatConfig
        ``[thermostat]`` (default: NVE).
    barostat : BarostatConfig
        ``[barostat]`` (default: fixed cell).
    output : OutputConfig
        ``[output]`` (default: every key's default).
    base_dir : Path
        Folder that relative paths in the config (structure, model, function file, output directory)
        are resolved against: the config file's folder (:func:`load`), else the working directory.
    """

    system: SystemConfig
    potential: PotentialConfig
    md: DynamicsConfig
    thermostat: ThermostatConfig = field(default_factory=ThermostatConfig)
    barostat: BarostatConfig = field(default_factory=BarostatConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    base_dir: Path = Path(".")

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_dir", Path(self.base_dir))
        from dpqtb.md.config_rules import cross_checks

        cross_checks(self)

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Mapping[str, Any]], base_dir: str | Path = ".") -> "MDConfig":
        """The typed form of a complete config table (every section and key present).

        Parameters
        ----------
        cfg
            section -> key -> value, as :func:`dpqtb.config_schema.validate_schema` returns it (or
            :meth:`to_dict`: a missing ``barostat`` section means a fixed cell).
        base_dir
            See :attr:`base_dir`.

        Returns
        -------
        MDConfig
        """
        # [barostat] is left out of a fixed-cell config's table (see to_dict): its defaults then
        return cls(**{name: sec(**cfg.get(name, {})) for name, sec in _SECTIONS.items()}, base_dir=Path(base_dir))

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The config as a TOML-shaped table: every section and key (defaults included, ``damp_fs``
        resolved), lists and dicts; written to run.json and hashed into the checkpoint (see
        :func:`dpqtb.md.build.physics_config`). ``base_dir`` is not part of it.

        Returns
        -------
        dict
            section -> key -> value, in schema order; ``[barostat]`` only at constant pressure (so a
            fixed-cell config keeps the table, and the checkpoint hash, it had before the barostat existed).
        """
        return {name: getattr(self, name).to_dict() for name in _SECTIONS
                if name != "barostat" or self.barostat.enabled}

    def resolve(self, path: str | Path) -> Path:
        """``path`` as given if absolute, else relative to :attr:`base_dir`.

        Parameters
        ----------
        path
            A path from the config.

        Returns
        -------
        Path
        """
        path = Path(path)
        return path if path.is_absolute() else self.base_dir / path


def validate(raw: Any, base_dir: str | Path = ".") -> MDConfig:
    """The complete, typed config of a raw TOML table, or an InputError naming the bad key.

    Parameters
    ----------
    raw
        The table read from a config file.
    base_dir
        Folder that relative paths in it are resolved against (see :attr:`MDConfig.base_dir`).

    Returns
    -------
    MDConfig

    Raises
    ------
    InputError
        Unknown section or key, missing required key, wrong type, value out of range, or values that are
        each valid but together no physics.
    """
    return MDConfig.from_dict(validate_schema(raw, SCHEMA), base_dir)


def load(path: str | Path) -> MDConfig:
    """Read and validate a config file; its relative paths are resolved against the file's folder.

    Parameters
    ----------
    path
        The TOML file.

    Returns
    -------
    MDConfig
    """
    return validate(load_toml(path), base_dir=Path(path).resolve().parent)


def with_steps(cfg: MDConfig, steps: int) -> MDConfig:
    """``cfg`` with ``md.steps`` replaced (checked again, as every rule on the new value).

    Parameters
    ----------
    cfg
        A config.
    steps
        The new step target.

    Returns
    -------
    MDConfig
    """
    return replace(cfg, md=replace(cfg.md, steps=steps))
