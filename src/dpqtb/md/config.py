"""Run configuration (TOML) for ``dpqtb md``: strict schema, one-line errors naming the key.

Every key states its unit in its name. See ``docs/config.md`` for the full reference and
``src/dpqtb/workflows/*.toml`` for examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dpqtb import InputError
from dpqtb.config_schema import NUMBER, REQUIRED, device_name, int_list, load_toml, nonneg, positive, validate_schema

_REQUIRED = REQUIRED  # scripts/make_config_doc.py marks required keys with it


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
        "skin_A": (NUMBER, 0.5, nonneg, "must be >= 0"),
        "function": (str, None, None, ""),
        "batched": (bool, False, None, ""),
        "model": (str, "builtin:lah10", None,
                  "a frozen DeePMD-kit PyTorch model (*.pth) or 'builtin:NAME' (deepmd; shipped: lah10)"),
        "chunk_atoms": (int, None, positive, "must be an integer >= 1 (deepmd: local atoms per model call)"),
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
        "damp_fs": (NUMBER, None, positive, "must be > 0 (default 1000; adqtb: 100, see docs/qtb.md)"),
        "f_max_THz": (NUMBER, 200.0, positive, "must be > 0"),
        "n_f": (int, 100, lambda v: v >= 2, "must be an integer >= 2"),
        "classical_kernel": (bool, False, None, ""),
        "zero_net_force": (bool, None, None, "true or false (default: true when the potential is translation-invariant)"),
        "fd_diagnostic": (bool, True, None, ""),
        "tau_ad_fs": (NUMBER, 5000.0, positive, "must be > 0"),
        "tau_avg_fs": (NUMBER, None, positive, "must be > 0"),
        "fd_max_dof": (int, 6000, positive, "must be > 0"),
        "adapt_groups": ((str, list), "species", _adapt_groups,
                         "must be 'species', 'sites' or a list of lists of atom indices (0-based)"),
        "kinetic_correction": (bool, True, None, ""),
        "fd_skip_segments": (int, 1, nonneg, "must be an integer >= 0"),
        "gamma_r_min_ratio": (NUMBER, 0.05, lambda v: 0 < v < 1, "must lie in (0, 1)"),
        "beads": (int, 1, positive, "must be an integer >= 1"),
        "pile_lambda": (NUMBER, None, positive, "must be > 0"),
    },
    "output": {
        "directory": (str, "run", None, ""),
        "thermo_every": (int, 10, positive, "must be > 0"),
        "trajectory_every": (int, 100, nonneg, "must be >= 0 (0: no trajectory)"),
        "trajectory_velocities": (bool, False, None, ""),
        "checkpoint_every": (int, 1000, nonneg, "must be >= 0 (0: only at the end)"),
        "progress": (bool, True, None, ""),
    },
}


def validate(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return a complete config (defaults filled in) or raise DpqtbError naming the bad key."""
    cfg = validate_schema(raw, SCHEMA)
    _cross_checks(cfg)
    return cfg


#: Default friction time (fs) per thermostat: adQTB can only drain leaked zero-point energy through the
#: friction, so it needs γ = 1/damp well above plain QTB's (docs/qtb.md, "Choosing γ for adQTB").
DEFAULT_DAMP_FS = {"adqtb": 100.0}


def _cross_checks(cfg) -> None:
    th, pot = cfg["thermostat"], cfg["potential"]
    if th["damp_fs"] is None:
        th["damp_fs"] = DEFAULT_DAMP_FS.get(th["kind"], 1000.0)
    if th["kind"] not in ("qtb", "adqtb"):
        for key, default in (("adapt_groups", "species"), ("fd_skip_segments", 1), ("gamma_r_min_ratio", 0.05)):
            if th[key] != default:
                raise InputError(f"config key 'thermostat.{key}' needs thermostat 'qtb' or 'adqtb', not '{th['kind']}'")
    if th["kind"] != "nve" and th["temperature_K"] is None:
        raise InputError(f"missing required config key 'thermostat.temperature_K' for thermostat '{th['kind']}'")
    if th["kind"] in ("pimd", "trpmd") and th["beads"] < 2:
        raise InputError(f"config key 'thermostat.beads' must be >= 2 for thermostat '{th['kind']}'")
    if th["kind"] not in ("pimd", "trpmd") and th["beads"] != 1:
        raise InputError(f"config key 'thermostat.beads' needs thermostat 'pimd' or 'trpmd', not '{th['kind']}'")
    if pot["kind"] == "einstein" and (pot["k_eV_per_A2"] is None) == (pot["frequency_THz"] is None):
        raise InputError("potential 'einstein' needs exactly one of 'potential.k_eV_per_A2' or 'potential.frequency_THz'")
    if pot["kind"] == "morse":
        for key in ("D_eV", "a_per_A", "r0_A", "cutoff_A"):
            if pot[key] is None:
                raise InputError(f"missing required config key 'potential.{key}' for potential 'morse'")
    if pot["kind"] == "deepmd" and not pot["model"]:
        raise InputError("config key 'potential.model' must name a model file or 'builtin:NAME'")
    if pot["kind"] == "function" and not pot["function"]:
        raise InputError("missing required config key 'potential.function' for potential 'function'")


def load(path: str | Path) -> dict[str, dict[str, Any]]:
    cfg = validate(load_toml(path))
    cfg["_base_dir"] = str(Path(path).resolve().parent)
    return cfg
