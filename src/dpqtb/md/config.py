"""Run configuration (TOML) for ``dpqtb md``: strict schema, one-line errors naming the key.

Every key states its unit in its name. See ``docs/config.md`` for the full reference and
``src/dpqtb/workflows/*.toml`` for examples.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

from dpqtb import DpqtbError

_REQUIRED = object()


def _positive(v):
    return v > 0


def _nonneg(v):
    return v >= 0


def _temperature(v):
    vals = v if isinstance(v, list) else [v]
    return 1 <= len(vals) <= 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0
                                       for x in vals)


def _int3(v):
    return isinstance(v, list) and len(v) == 3 and all(isinstance(x, int) and x >= 1 for x in v)


def _species_floats(v):
    return isinstance(v, dict) and len(v) > 0 and all(isinstance(x, (int, float)) and x > 0 for x in v.values())


NUMBER = (int, float)

# section -> key -> (types, default, check, message)
SCHEMA: dict[str, dict[str, tuple]] = {
    "system": {
        "structure": (str, _REQUIRED, None, "a file readable by ASE or 'builtin:NAME'"),
        "format": (str, None, None, ""),
        "supercell": (list, [1, 1, 1], _int3, "must be three integers >= 1"),
        "type_map": (list, None, lambda v: all(isinstance(x, str) for x in v), "must be a list of species names"),
        "masses_amu": (dict, None, _species_floats, "must map species to masses > 0"),
        "lattice_A": (NUMBER, None, _positive, "must be > 0"),
        "pressure_GPa": (NUMBER, None, _positive, "must be > 0 (builtin:lah10 only: lattice constant from the stored DFT EOS)"),
        "element": (str, "H", None, ""),
        "initial_temperature_K": (NUMBER, None, _nonneg, "must be >= 0"),
        "device": (str, "cpu", lambda v: v == "cpu" or v.startswith("cuda"), "must be 'cpu' or 'cuda[:N]'"),
        "dtype": (str, "float64", lambda v: v in ("float64", "float32"), "must be 'float64' or 'float32'"),
    },
    "potential": {
        "kind": (str, _REQUIRED, lambda v: v in ("einstein", "morse", "function", "deepmd"),
                 "must be one of einstein, morse, function, deepmd"),
        "k_eV_per_A2": (dict, None, _species_floats, "must map species to spring constants > 0"),
        "frequency_THz": (dict, None, _species_floats, "must map species to frequencies > 0"),
        "D_eV": (NUMBER, None, _positive, "must be > 0"),
        "a_per_A": (NUMBER, None, _positive, "must be > 0"),
        "r0_A": (NUMBER, None, _positive, "must be > 0"),
        "cutoff_A": (NUMBER, None, _positive, "must be > 0"),
        "skin_A": (NUMBER, 0.5, _nonneg, "must be >= 0"),
        "function": (str, None, None, ""),
        "batched": (bool, False, None, ""),
        "model": (str, None, None, "a frozen DeePMD-kit PyTorch model (*.pth)"),
        "chunk_atoms": (int, None, _positive, "must be an integer >= 1 (deepmd: local atoms per model call)"),
    },
    "md": {
        "timestep_fs": (NUMBER, _REQUIRED, _positive, "must be > 0"),
        "steps": (int, _REQUIRED, _nonneg, "must be >= 0"),
        "seed": (int, 12345, _nonneg, "must be >= 0"),
    },
    "thermostat": {
        "kind": (str, "nve", lambda v: v in ("nve", "langevin", "qtb", "adqtb", "pimd", "trpmd"),
                 "must be one of nve, langevin, qtb, adqtb, pimd, trpmd"),
        "temperature_K": ((int, float, list), None, _temperature,
                          "must be >= 0 (a number, or [start, stop] for a linear ramp)"),
        "damp_fs": (NUMBER, 1000.0, _positive, "must be > 0"),
        "f_max_THz": (NUMBER, 200.0, _positive, "must be > 0"),
        "n_f": (int, 100, lambda v: v >= 2, "must be an integer >= 2"),
        "classical_kernel": (bool, False, None, ""),
        "zero_net_force": (bool, True, None, ""),
        "fd_diagnostic": (bool, True, None, ""),
        "tau_ad_fs": (NUMBER, 5000.0, _positive, "must be > 0"),
        "tau_avg_fs": (NUMBER, None, _positive, "must be > 0"),
        "fd_max_dof": (int, 6000, _positive, "must be > 0"),
        "beads": (int, 1, _positive, "must be an integer >= 1"),
        "pile_lambda": (NUMBER, None, _positive, "must be > 0"),
    },
    "output": {
        "directory": (str, "run", None, ""),
        "thermo_every": (int, 10, _positive, "must be > 0"),
        "trajectory_every": (int, 100, _nonneg, "must be >= 0 (0: no trajectory)"),
        "trajectory_velocities": (bool, False, None, ""),
        "checkpoint_every": (int, 1000, _nonneg, "must be >= 0 (0: only at the end)"),
        "progress": (bool, True, None, ""),
    },
}


def _check_type(value, types) -> bool:
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        return False
    if types is float or types == NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, types)


def validate(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return a complete config (defaults filled in) or raise DpqtbError naming the bad key."""
    if not isinstance(raw, dict):
        raise DpqtbError("config must be a TOML table")
    for section in raw:
        if section not in SCHEMA:
            raise DpqtbError(f"unknown config section [{section}] (known: {', '.join(SCHEMA)})")
    cfg: dict[str, dict[str, Any]] = {}
    for section, keys in SCHEMA.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise DpqtbError(f"config [{section}] must be a table")
        for key in given:
            if key not in keys:
                raise DpqtbError(f"unknown config key '{section}.{key}'")
        out = {}
        for key, (types, default, check, msg) in keys.items():
            if key not in given:
                if default is _REQUIRED:
                    raise DpqtbError(f"missing required config key '{section}.{key}'")
                out[key] = default
                continue
            value = given[key]
            if not _check_type(value, types):
                raise DpqtbError(f"config key '{section}.{key}' has the wrong type ({type(value).__name__}) {msg}".rstrip())
            if check is not None and not check(value):
                raise DpqtbError(f"config key '{section}.{key}' = {value!r}: {msg}")
            out[key] = value
        cfg[section] = out
    _cross_checks(cfg)
    return cfg


def _cross_checks(cfg) -> None:
    th, pot = cfg["thermostat"], cfg["potential"]
    if th["kind"] != "nve" and th["temperature_K"] is None:
        raise DpqtbError(f"missing required config key 'thermostat.temperature_K' for thermostat '{th['kind']}'")
    if th["kind"] in ("pimd", "trpmd") and th["beads"] < 2:
        raise DpqtbError(f"config key 'thermostat.beads' must be >= 2 for thermostat '{th['kind']}'")
    if th["kind"] not in ("pimd", "trpmd") and th["beads"] != 1:
        raise DpqtbError(f"config key 'thermostat.beads' needs thermostat 'pimd' or 'trpmd', not '{th['kind']}'")
    if pot["kind"] == "einstein" and (pot["k_eV_per_A2"] is None) == (pot["frequency_THz"] is None):
        raise DpqtbError("potential 'einstein' needs exactly one of 'potential.k_eV_per_A2' or 'potential.frequency_THz'")
    if pot["kind"] == "morse":
        for key in ("D_eV", "a_per_A", "r0_A", "cutoff_A"):
            if pot[key] is None:
                raise DpqtbError(f"missing required config key 'potential.{key}' for potential 'morse'")
    if pot["kind"] == "deepmd" and not pot["model"]:
        raise DpqtbError("missing required config key 'potential.model' for potential 'deepmd'")
    if pot["kind"] == "function" and not pot["function"]:
        raise DpqtbError("missing required config key 'potential.function' for potential 'function'")


def load(path: str | Path) -> dict[str, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise DpqtbError(f"config file not found: {path}")
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise DpqtbError(f"config file {path} is not valid TOML: {exc}") from None
    cfg = validate(raw)
    cfg["_base_dir"] = str(path.resolve().parent)
    return cfg
