"""The ``SWEEP.toml`` file of ``dpqtb sweep``: a base MD config plus axes, expanded to points.

A point is one complete ``dpqtb md`` config (checked by :func:`dpqtb.md.config.validate`) plus the
equilibration/production split and the analysis settings.  Its identity is the SHA-256 of all that
(structure and model files by the hash of their bytes, see :func:`dpqtb.md.build.physics_config`):
the point's directory is named by it, and its ``md.seed`` is derived from it, so that a point's
trajectory depends on the point only, never on the worker or the order it ran in.

File format (docs/sweep.md)::

    [sweep]
    equilibration_steps = 2000     # discarded from every average
    production_steps = 8000
    base = "lah10_npt.toml"        # a dpqtb md config file (relative to this file) ... or a [base] table
    blocks = 10                    # block averages for the error bars (default 10)
    directory = "../sweep_out"     # default output DIR (relative to this file; --out overrides)
    [base]                         # the base config: [base.system], [base.potential], [base.md], ...
    [baths.qtb]                    # thermostat keys for the points of one bath
    f_max_THz = 200
    [axes]                         # lists; their product is the grid
    pressure_GPa = [150, 200]      # barostat.pressure_GPa (NPT) and, for builtin:lah10, the starting lattice
    temperature_K = [5, 300]       # thermostat.temperature_K
    bath = ["langevin", "qtb"]     # thermostat.kind (+ [baths.<kind>])
    seed = [1, 2]                  # the seed the point's md.seed is derived from
    supercell = [[2, 2, 2]]        # system.supercell
    "thermostat.damp_fs" = [50, 100]   # any other config key, by its dotted name
    [[grid]]                       # more grids (union); unnamed axes are taken from [axes]
    bath = ["adqtb"]
    pressure_GPa = [150]
    production_steps = [4000]      # this grid's step split (equilibration_steps too): short runs beside long ones
    [plots]                        # figures: reference pressure, the classical and the quantum bath
    pressure_GPa = 150
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dpqtb import InputError

#: version of the point hash: bump it when the meaning of a point's files changes
HASH_FORMAT = 1
#: the named axes, in the column order of points.csv (dotted config keys follow)
NAMED_AXES = ("pressure_GPa", "temperature_K", "bath", "seed", "supercell")
#: axes that set a point's step split instead of a config key (default: the [sweep] values)
STEP_AXES = ("equilibration_steps", "production_steps")
BATHS = ("nve", "langevin", "qtb", "adqtb", "pimd", "trpmd")
SWEEP_KEYS = {"equilibration_steps", "production_steps", "base", "blocks", "directory", "name", "metal",
              "hydrogen", "trajectory_every_analysis"}
PLOT_KEYS = {"pressure_GPa", "classical", "quantum", "distortion", "model_trusted_from_GPa"}
TOP_KEYS = {"sweep", "base", "baths", "axes", "grid", "plots"}


@dataclass(frozen=True)
class Point:
    """One point of a sweep.

    Attributes
    ----------
    hash : str
        16 hex digits of the SHA-256 of the point's config (its directory name).
    axes : dict
        Axis name -> value (JSON-shaped: lists for supercells).
    config : dict
        The complete raw ``dpqtb md`` config of the point (md.seed derived, md.steps the total).
    base_dir : str
        Folder the config's relative paths are resolved against.
    equilibration_steps, production_steps : int
        The split of md.steps.
    md_seed : int
        The point's md.seed.
    analysis : dict
        ``blocks``, ``metal``, ``hydrogen``.
    """

    hash: str
    axes: dict
    config: dict
    base_dir: str
    equilibration_steps: int
    production_steps: int
    md_seed: int
    analysis: dict = field(default_factory=dict)

    def spec(self, directory: str) -> dict:
        """The plain dict a worker gets (everything :func:`dpqtb.workflows.sweep.run_point` needs)."""
        return {"hash": self.hash, "axes": self.axes, "config": self.config, "base_dir": self.base_dir,
                "equilibration_steps": self.equilibration_steps, "production_steps": self.production_steps,
                "md_seed": self.md_seed, "analysis": self.analysis, "dir": str(directory)}


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep file: its points (in expansion order), axis names, plot settings, default DIR."""

    points: list
    axis_names: list
    plots: dict
    directory: Path | None
    source: str


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=float)


def _int(table: dict, key: str, minimum: int, default=None) -> int:
    v = table.get(key, default)
    if v is None:
        raise InputError(f"sweep file: missing required key 'sweep.{key}'")
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise InputError(f"sweep file: 'sweep.{key}' must be an integer >= {minimum}, got {v!r}")
    return v


def _set_dotted(raw: dict, key: str, value) -> None:
    parts = key.split(".")
    if len(parts) != 2 or not all(parts):
        raise InputError(f"sweep file: axis {key!r} is neither {', '.join(NAMED_AXES)} nor 'section.key'")
    raw.setdefault(parts[0], {})[parts[1]] = copy.deepcopy(value)


def _check_axes(table: Any, where: str) -> dict:
    if not isinstance(table, dict):
        raise InputError(f"sweep file: [{where}] must be a table of lists")
    for k, v in table.items():
        if not isinstance(v, list) or not v:
            raise InputError(f"sweep file: axis '{where}.{k}' must be a non-empty list, got {v!r}")
        if k not in NAMED_AXES and k not in STEP_AXES and "." not in k:
            raise InputError(f"sweep file: unknown axis '{where}.{k}' (named axes: {', '.join(NAMED_AXES + STEP_AXES)}; "
                             "any config key as 'section.key')")
        if k in STEP_AXES:
            low = 2 if k == "production_steps" else 0
            bad = [x for x in v if isinstance(x, bool) or not isinstance(x, int) or x < low]
            if bad:
                raise InputError(f"sweep file: '{where}.{k}' must list integers >= {low}, got {bad[0]!r}")
        if k == "bath":
            bad = [b for b in v if b not in BATHS]
            if bad:
                raise InputError(f"sweep file: unknown bath {bad[0]!r} in '{where}.bath' (one of {', '.join(BATHS)})")
    return table


def apply_axes(base: dict, baths: dict, axes: dict) -> dict:
    """The raw md config of one point: ``base`` with the axis values written in.

    Parameters
    ----------
    base : dict
        The base config table (sections).
    baths : dict
        bath -> thermostat keys for that bath.
    axes : dict
        Axis name -> value.

    Returns
    -------
    dict
        A new raw config table.
    """
    raw = copy.deepcopy(base)
    if "bath" in axes:
        kind = axes["bath"]
        th = {**raw.get("thermostat", {}), **copy.deepcopy(baths.get(kind, {}))}
        th["kind"] = kind
        raw["thermostat"] = th
    if "temperature_K" in axes:
        raw.setdefault("thermostat", {})["temperature_K"] = axes["temperature_K"]
    if "pressure_GPa" in axes:
        p = axes["pressure_GPa"]
        raw.setdefault("barostat", {})["pressure_GPa"] = p
        sys_ = raw.setdefault("system", {})
        if sys_.get("structure") == "builtin:lah10" and "lattice_A" not in sys_:
            sys_["pressure_GPa"] = p  # the starting lattice from the stored EOS at the target pressure
    if "seed" in axes:
        raw.setdefault("md", {})["seed"] = axes["seed"]
    if "supercell" in axes:
        raw.setdefault("system", {})["supercell"] = axes["supercell"]
    for k, v in axes.items():
        if k not in NAMED_AXES and k not in STEP_AXES:
            _set_dotted(raw, k, v)
    return raw


def point_hash(physics: dict, eq: int, prod: int, analysis: dict) -> str:
    """SHA-256 (hex) of a point: its physics config, step split and analysis settings."""
    blob = _canonical({"format": HASH_FORMAT, "physics": physics, "equilibration_steps": eq,
                       "production_steps": prod, "analysis": analysis})
    return hashlib.sha256(blob.encode()).hexdigest()


def derive_seed(hex_hash: str) -> int:
    """The md.seed of a point, from its hash (31 bits)."""
    return int(hashlib.sha256((hex_hash + ":md.seed").encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def _grids(raw: dict) -> list[dict]:
    axes = _check_axes(raw.get("axes", {}), "axes")
    extra = raw.get("grid", [])
    if not isinstance(extra, list):
        raise InputError("sweep file: [[grid]] must be an array of tables")
    grids = [axes] if axes or not extra else []
    for i, g in enumerate(extra):
        grids.append({**axes, **_check_axes(g, f"grid[{i}]")})
    return grids


def _ordered_names(grids: list[dict]) -> list[str]:
    names = [n for n in NAMED_AXES if any(n in g for g in grids)]
    for g in grids:
        names += [k for k in g if k not in NAMED_AXES and k not in names]
    return names


def parse_override(text: str) -> tuple[str, Any]:
    """``section.key=VALUE`` (VALUE in TOML: ``[10, 10, 10]``, ``"cuda"``, ``0.5``) as (key, value)."""
    import tomllib

    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or len(key.split(".")) != 2:
        raise InputError(f"--set {text!r}: expected section.key=VALUE (e.g. system.supercell=[10,10,10])")
    try:
        return key, tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        try:
            return key, tomllib.loads(f'v = "{value.strip()}"')["v"]  # a bare word: a string
        except tomllib.TOMLDecodeError:
            raise InputError(f"--set {text!r}: VALUE is not a TOML value") from None


def parse_sweep(raw: dict, base_dir: str | Path = ".", overrides: dict | None = None) -> Sweep:
    """Expand a sweep table into its points (each config checked; duplicates dropped).

    Parameters
    ----------
    raw : dict
        The TOML table of a sweep file.
    base_dir : path
        The sweep file's folder: relative paths (``sweep.base``, ``sweep.directory``, the base config's
        files) are resolved against it (the base config's against its own folder).
    overrides : dict, optional
        ``section.key`` -> value written into the base config (``dpqtb sweep --set``); axes still win.

    Returns
    -------
    Sweep

    Raises
    ------
    InputError
        Unknown tables or keys, bad axes, a point whose config does not validate (named by its axes).
    """
    from dpqtb.config_schema import load_toml
    from dpqtb.md.build import physics_config
    from dpqtb.md.config import validate

    base_dir = Path(base_dir).resolve()
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise InputError(f"sweep file: unknown table(s) {sorted(unknown)} (known: {sorted(TOP_KEYS)})")
    for name in ("sweep", "base", "plots"):  # tables, not values (a [base] table or sweep.base = FILE)
        if name in raw and not isinstance(raw[name], dict):
            raise InputError(f"sweep file: '{name}' must be a table [{name}]"
                             + (" (or give the base config as 'sweep.base = FILE')" if name == "base" else ""))
    sw = raw.get("sweep", {})
    for name in ("base", "directory"):
        if name in sw and not isinstance(sw[name], str):
            raise InputError(f"sweep file: sweep.{name} must be a path (a string), got {sw[name]!r}")
    bad = set(sw) - SWEEP_KEYS
    if bad:
        raise InputError(f"sweep file: unknown key(s) {sorted('sweep.' + k for k in bad)}")
    eq = _int(sw, "equilibration_steps", 0)
    prod = _int(sw, "production_steps", 2)
    blocks = _int(sw, "blocks", 2, default=10)
    analysis = {"blocks": blocks, "metal": str(sw.get("metal", "La")), "hydrogen": str(sw.get("hydrogen", "H"))}
    if ("base" in sw) == ("base" in raw):
        raise InputError("sweep file: give the base config as 'sweep.base = FILE' or as a [base] table (one of them)")
    if "base" in sw:
        path = base_dir / sw["base"]
        base, cfg_dir = load_toml(path, what="base config"), path.resolve().parent
    else:
        base, cfg_dir = raw["base"], base_dir
    base = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        _set_dotted(base, key, value)
    baths = raw.get("baths", {})
    if not isinstance(baths, dict) or any(k not in BATHS or not isinstance(v, dict) for k, v in baths.items()):
        raise InputError(f"sweep file: [baths.<kind>] tables must be named by a bath ({', '.join(BATHS)})")
    plots = raw.get("plots", {})
    if set(plots) - PLOT_KEYS:
        raise InputError(f"sweep file: unknown key(s) in [plots]: {sorted(set(plots) - PLOT_KEYS)}")
    for key in ("pressure_GPa", "model_trusted_from_GPa"):
        v = plots.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise InputError(f"sweep file: plots.{key} must be a number (GPa), got {v!r}")
    grids = _grids(raw)
    names = _ordered_names(grids)
    points, seen = [], set()
    for grid in grids:
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            axes = dict(zip(keys, values))
            axes = {n: axes[n] for n in names if n in axes}
            pt = _make_point(base, baths, axes, cfg_dir, axes.get("equilibration_steps", eq),
                             axes.get("production_steps", prod), analysis, validate, physics_config)
            if pt.hash not in seen:
                seen.add(pt.hash)
                points.append(pt)
    if not points:
        raise InputError("sweep file: no points (give [axes] or [[grid]])")
    directory = base_dir / sw["directory"] if "directory" in sw else None
    return Sweep(points, names, dict(plots), directory, str(base_dir))


def _make_point(base, baths, axes, cfg_dir, eq, prod, analysis, validate, physics_config) -> Point:
    raw = apply_axes(base, baths, axes)
    raw.setdefault("md", {})["steps"] = eq + prod
    out = raw.setdefault("output", {})
    out["progress"] = False
    out.pop("directory", None)
    try:
        cfg = validate(raw, base_dir=cfg_dir)
    except InputError as exc:
        raise InputError(f"sweep point {_canonical(axes)}: {exc}") from None
    te, tr = cfg.output.thermo_every, cfg.output.trajectory_every
    if eq % te:
        raise InputError(f"sweep file: equilibration_steps ({eq}) must be a multiple of output.thermo_every ({te})")
    if not tr:
        raise InputError("sweep file: output.trajectory_every must be > 0 (the analysis reads the trajectory)")
    if eq % tr:
        raise InputError(f"sweep file: equilibration_steps ({eq}) must be a multiple of output.trajectory_every ({tr})")
    if prod // tr < 4:
        raise InputError("sweep file: production_steps must hold at least 4 trajectory frames")
    if prod // te < 2 * analysis["blocks"]:
        raise InputError(f"sweep file: production_steps must hold at least 2 thermo rows per block "
                         f"({analysis['blocks']} blocks, thermo every {te} steps)")
    h = point_hash(physics_config(cfg), eq, prod, analysis)
    seed = derive_seed(h)
    raw["md"]["seed"] = seed
    return Point(h[:16], axes, raw, str(cfg_dir), eq, prod, seed, analysis)


def load_sweep(path: str | Path, overrides: dict | None = None) -> Sweep:
    """Read and expand a sweep file (see :func:`parse_sweep`)."""
    from dpqtb.config_schema import load_toml

    path = Path(path)
    return parse_sweep(load_toml(path, what="sweep"), base_dir=path.resolve().parent, overrides=overrides)
