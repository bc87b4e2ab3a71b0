"""Reading LAMMPS runs: text dumps (``dump custom``) and ``log.lammps`` thermo, in dpqtb's units and names.

Only standard library, numpy and :mod:`dpqtb.rundir` (``dpqtb analyze`` imports this without torch).
Units are LAMMPS ``metal``: Å, ps, Å/ps, bar, eV; the readers return Å, fs, Å/fs, GPa, eV.

* :func:`iter_dump` yields one :class:`DumpFrame` per snapshot, atoms sorted by id, positions unwrapped
  (``xu yu zu``, or ``x y z`` with image flags ``ix iy iz``) and relative to the box origin, the cell
  as rows (orthogonal or triclinic boxes), velocities in Å/fs when the dump has ``vx vy vz``;
* :func:`read_log_thermo` returns the thermo columns of ``log.lammps`` under dpqtb's thermo.csv names
  (``dpqtb lammps`` decks already name them so; LAMMPS's default headers ``Step Temp PotEng ...`` are
  renamed and converted).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from dpqtb import InputError
from dpqtb.rundir import LAMMPS_DUMP, LAMMPS_LOG, LAMMPS_META, THERMO_COLUMNS

FS_PER_PS = 1000.0
BAR_PER_GPA = 1.0e4
#: LAMMPS's default thermo headers -> (dpqtb name, factor from metal units)
DEFAULT_HEADERS = {"Step": ("step", 1.0), "Time": ("time_fs", FS_PER_PS), "Temp": ("temperature_K", 1.0),
                   "KinEng": ("kinetic_eV", 1.0), "PotEng": ("potential_eV", 1.0), "TotEng": ("total_eV", 1.0),
                   "Econserve": ("conserved_eV", 1.0), "Press": ("pressure_GPa", 1.0 / BAR_PER_GPA),
                   "Volume": ("volume_A3", 1.0)}


@dataclass
class DumpFrame:
    """One dump snapshot (Å, Å/fs; atoms sorted by id)."""

    index: int
    step: int
    types: np.ndarray  # (N,) int, LAMMPS types (1-based)
    positions: np.ndarray  # (N, 3) Å, unwrapped, relative to the box origin
    cell: np.ndarray  # (3, 3) Å, rows
    velocities: np.ndarray | None  # (N, 3) Å/fs


def read_meta(run_dir: str | Path) -> dict:
    """The sidecar ``dpqtb_lammps.json`` of a deck folder, ``{}`` when there is none."""
    path = Path(run_dir) / LAMMPS_META
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from exc


def is_lammps_run(run_dir: str | Path) -> bool:
    """True for a folder with a LAMMPS dump or a ``dpqtb lammps`` sidecar."""
    d = Path(run_dir)
    return d.is_dir() and ((d / LAMMPS_META).is_file() or (d / LAMMPS_DUMP).is_file())


def is_dump_file(path: str | Path) -> bool:
    """True for a file whose first line is ``ITEM: TIMESTEP`` (a LAMMPS text dump)."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        with open(p, "rb") as fh:
            return fh.readline().strip() == b"ITEM: TIMESTEP"
    except OSError:
        return False


def _box(path: Path, index: int, head: str, lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(origin, cell rows) of a BOX BOUNDS block."""
    try:
        vals = [[float(x) for x in ln.split()] for ln in lines]
    except ValueError as exc:
        raise InputError(f"{path}: frame {index}: bad box bounds ({exc})") from None
    if "abc origin" in head:
        raise InputError(f"{path}: frame {index}: general triclinic boxes (BOX BOUNDS abc origin) are not read; "
                         "dump without 'dump_modify triclinic/general yes'")
    if "xy" in head.split():
        (xlo_b, xhi_b, xy), (ylo_b, yhi_b, xz), (zlo, zhi, yz) = vals
        xlo = xlo_b - min(0.0, xy, xz, xy + xz)
        xhi = xhi_b - max(0.0, xy, xz, xy + xz)
        ylo = ylo_b - min(0.0, yz)
        yhi = yhi_b - max(0.0, yz)
    else:
        (xlo, xhi), (ylo, yhi), (zlo, zhi) = [v[:2] for v in vals]
        xy = xz = yz = 0.0
    cell = np.array([[xhi - xlo, 0.0, 0.0], [xy, yhi - ylo, 0.0], [xz, yz, zhi - zlo]])
    return np.array([xlo, ylo, zlo]), cell


def _atoms(path: Path, index: int, columns: list[str], lines: list[str], origin, cell):
    try:
        data = np.array(" ".join(lines).split(), dtype=float)
    except ValueError as exc:
        raise InputError(f"{path}: frame {index}: non-numeric atom data ({exc})") from None
    n, c = len(lines), len(columns)
    if data.size != n * c:
        raise InputError(f"{path}: frame {index} has {data.size} values, expected {n}×{c}")
    data = data.reshape(n, c)
    col = {name: k for k, name in enumerate(columns)}
    if "id" in col:
        data = data[np.argsort(data[:, col["id"]], kind="stable")]
    if "type" not in col:
        raise InputError(f"{path}: the dump has no 'type' column")
    if all(k in col for k in ("xu", "yu", "zu")):
        pos = data[:, [col["xu"], col["yu"], col["zu"]]]
    elif all(k in col for k in ("x", "y", "z", "ix", "iy", "iz")):
        pos = data[:, [col["x"], col["y"], col["z"]]] + data[:, [col["ix"], col["iy"], col["iz"]]] @ cell
    else:
        raise InputError(f"{path}: the dump needs unwrapped coordinates (xu yu zu, or x y z with ix iy iz): "
                         f"it has {' '.join(columns)}")
    vel = None
    if all(k in col for k in ("vx", "vy", "vz")):
        vel = data[:, [col["vx"], col["vy"], col["vz"]]] / FS_PER_PS
    return data[:, col["type"]].astype(int), pos - origin, vel


def iter_dump(path: str | Path) -> Iterator[DumpFrame]:
    """The snapshots of a LAMMPS text dump (``dump custom``, units metal), one at a time.

    Parameters
    ----------
    path : path
        The dump file.

    Yields
    ------
    DumpFrame

    Raises
    ------
    InputError
        A malformed or truncated snapshot, wrapped coordinates without image flags, no type column.
    """
    path = Path(path)
    try:
        fh = open(path)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    with fh:
        index = 0
        line = fh.readline()
        while line:
            if not line.strip():
                line = fh.readline()
                continue
            if not line.startswith("ITEM: TIMESTEP"):
                raise InputError(f"{path}: frame {index}: expected 'ITEM: TIMESTEP', got {line.strip()[:40]!r}")
            try:
                step = int(fh.readline().split()[0])
                assert fh.readline().startswith("ITEM: NUMBER OF ATOMS")
                n = int(fh.readline().split()[0])
                head = fh.readline()
                assert head.startswith("ITEM: BOX BOUNDS")
                box = [fh.readline() for _ in range(3)]
                ahead = fh.readline()
                assert ahead.startswith("ITEM: ATOMS")
            except (AssertionError, ValueError, IndexError):
                raise InputError(f"{path}: frame {index} has a malformed or truncated header") from None
            lines = [fh.readline() for _ in range(n)]
            if n == 0 or not lines[-1].strip():
                raise InputError(f"{path}: frame {index} is truncated (expected {n} atom lines)")
            origin, cell = _box(path, index, head, box)
            types, pos, vel = _atoms(path, index, ahead.split()[2:], lines, origin, cell)
            yield DumpFrame(index, step, types, pos, cell, vel)
            index += 1
            line = fh.readline()


def count_dump_frames(path: str | Path) -> int:
    """Number of snapshots of a dump (its ``ITEM: TIMESTEP`` lines)."""
    with open(path, "rb") as fh:
        return sum(1 for ln in fh if ln.startswith(b"ITEM: TIMESTEP"))


def species_of(types: np.ndarray, type_map) -> np.ndarray:
    """Species names of LAMMPS types (1-based) through ``type_map``; the type numbers without one."""
    if not type_map:
        return np.array([str(t) for t in types])
    if types.min() < 1 or types.max() > len(type_map):
        raise InputError(f"LAMMPS types {int(types.min())}..{int(types.max())} outside the type map {list(type_map)}")
    return np.asarray(type_map, dtype=object)[types - 1].astype(str)


def read_log_thermo(run_dir: str | Path) -> dict[str, np.ndarray]:
    """The thermo rows of ``log.lammps`` as dpqtb's thermo columns (every run of the log, in order).

    Parameters
    ----------
    run_dir : path
        A folder with ``log.lammps``, or the log file itself.

    Returns
    -------
    dict of str to numpy.ndarray
        Columns under thermo.csv's names (step, time_fs, temperature_K, ..., temperature_<X>_K);
        every :data:`~dpqtb.rundir.THERMO_COLUMNS` column is present (NaN where LAMMPS has none); a
        negative target temperature (NVE decks) is NaN. A step repeated at the start of a following
        ``run`` is kept once.

    Raises
    ------
    InputError
        No log, or no thermo rows in it.
    """
    p = Path(run_dir)
    path = p / LAMMPS_LOG if p.is_dir() else p
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    header: list[str] | None = None
    rows: list[list[float]] = []
    current: list[str] | None = None
    with open(path, errors="replace") as fh:
        for line in fh:
            tok = line.split()
            if not tok:
                current = None
                continue
            if tok[0] in ("Step", "step") and len(tok) > 1:
                current = tok
                if header is None:
                    header = tok
                elif tok != header:
                    raise InputError(f"{path}: the thermo columns change between runs")
                continue
            if current is None:
                continue
            try:
                vals = [float(x) for x in tok]
            except ValueError:
                current = None
                continue
            if len(vals) != len(current):
                current = None
                continue
            if rows and vals[0] == rows[-1][0]:
                continue  # the first row of a following run repeats the last step
            rows.append(vals)
    if header is None or not rows:
        raise InputError(f"{path} has no thermo rows")
    data = np.array(rows)
    out: dict[str, np.ndarray] = {}
    for k, name in enumerate(header):
        new, factor = DEFAULT_HEADERS.get(name, (name, 1.0))
        out[new] = data[:, k] * factor
    for name in THERMO_COLUMNS:
        out.setdefault(name, np.full(len(data), np.nan))
    tt = out["target_temperature_K"]
    out["target_temperature_K"] = np.where(tt < 0, np.nan, tt)
    return out
