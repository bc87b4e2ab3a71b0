"""Streaming trajectory reader for ``dpqtb md`` run directories and any ASE-readable file.

Frames are yielded one at a time (never the whole trajectory in memory).  The engine's
``trajectory.extxyz`` is parsed by a fast path (one ``split`` per frame; a 44,000-atom frame takes
~0.1 s); other formats, and extxyz files the fast path does not understand, go through
``ase.io.iread``.  Positions are taken as written: the engine writes *unwrapped* Cartesian
positions, which is what displacement observables (MSD, diffusion) need.

LAMMPS runs are read too (:mod:`dpqtb.lammps.dump`): a folder with ``dump.lammpstrj`` (and no
``trajectory.extxyz``), or any text dump file (first line ``ITEM: TIMESTEP``). The sidecar
``dpqtb_lammps.json`` of a ``dpqtb lammps`` deck, in the dump's folder, gives the species of the LAMMPS
types and the time step (frame time = LAMMPS step × time step); without it the species are the type
numbers and the frame spacing must be passed (``timestep_fs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from dpqtb import DpqtbError, InputError
from dpqtb.rundir import LAMMPS_DUMP, TRAJECTORY


@dataclass
class Frame:
    """One trajectory frame (units: Å, fs, eV)."""

    index: int
    symbols: np.ndarray  # (N,) str
    positions: np.ndarray  # (N, 3) Å, unwrapped when the writer kept them so
    cell: np.ndarray  # (3, 3) Å, rows are lattice vectors
    time_fs: float
    step: int | None = None
    velocities: np.ndarray | None = None  # (N, 3) Å/fs
    energy_eV: float | None = None


def _parse_comment(line: str) -> dict:
    from ase.io.extxyz import key_val_str_to_dict

    return key_val_str_to_dict(line)


def _lattice_rows(lat) -> np.ndarray:
    """The cell (lattice vectors as rows, Å) of an extxyz ``Lattice`` value as ASE's comment parser returns it: a
    3×3 array whose *columns* are the vectors (ASE's own reader transposes it, "ASE cell is transpose of extended
    XYZ lattice"); a flat list of 9 is the file's order, a1 a2 a3 (rows). Reshaping the 3×3 array without the
    transpose gave every sheared (flexible-barostat, triclinic) cell transposed before session 26; diagonal
    cells were unaffected."""
    if lat is None:
        return np.zeros((3, 3))
    arr = np.asarray(lat, dtype=float)
    return arr.T.copy() if arr.shape == (3, 3) else arr.reshape(3, 3)


class _NotFast(Exception):
    """The fast extxyz path does not handle this column layout: use ASE."""


def _extxyz_blocks(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(frame index, comment line, atom lines) of every frame of an extxyz file, unparsed."""
    try:
        yield from _extxyz_blocks_text(path)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a text (extxyz) trajectory: undecodable byte at offset {exc.start}") from None


def _extxyz_blocks_text(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    with open(path) as fh:
        index = 0
        while True:
            head = fh.readline()
            if not head:
                return
            if not head.strip():
                continue
            try:
                n = int(head.split()[0])
                if n < 0:
                    raise ValueError(n)
            except ValueError as exc:
                raise InputError(f"{path}: frame {index}: bad atom-count line {head.strip()[:40]!r}") from exc
            comment = fh.readline()
            lines = [fh.readline() for _ in range(n)]
            if n == 0 or not lines[-1]:
                raise InputError(f"{path}: frame {index} is truncated (expected {n} atom lines)")
            yield index, comment, lines
            index += 1


def _columns(info: dict) -> tuple[dict[str, tuple[int, int, str]], int]:
    """Column name -> (first column, width, kind) from the Properties of a comment line, and the total width."""
    fields = info.get("Properties", "species:S:1:pos:R:3").split(":")
    cols: dict[str, tuple[int, int, str]] = {}
    c = 0
    for k in range(0, len(fields) - 2, 3):
        name, kind, width = fields[k], fields[k + 1], int(fields[k + 2])
        cols[name] = (c, width, kind)
        c += width
    return cols, c


def _iter_extxyz_fast(path: Path) -> Iterator[Frame]:
    for index, comment, lines in _extxyz_blocks(path):
        n = len(lines)
        info = _parse_comment(comment)
        cols, c = _columns(info)
        if "species" not in cols or "pos" not in cols:
            raise InputError(f"{path}: frame {index} lacks species or pos columns")
        if cols["species"][0] != 0 or any(k[2] not in "RI" for name, k in cols.items() if name != "species"):
            if index == 0:
                raise _NotFast
            raise InputError(f"{path}: frame {index} changes the column layout")
        parts = [ln.split(None, 1) for ln in lines]
        species = np.array([p[0] for p in parts])
        try:
            num = np.array(" ".join(p[1] for p in parts if len(p) > 1).split(), dtype=float)
        except ValueError as exc:
            raise InputError(f"{path}: frame {index}: non-numeric atom data ({exc})") from exc
        if num.size != n * (c - 1):
            raise InputError(f"{path}: frame {index} has {num.size} values, expected {n}×{c - 1}")
        num = num.reshape(n, c - 1)
        p0 = cols["pos"][0] - 1
        vel = None
        if "velocities_A_per_fs" in cols:
            v0 = cols["velocities_A_per_fs"][0] - 1
            vel = num[:, v0:v0 + 3].copy()
        cell = _lattice_rows(info.get("Lattice"))
        t = info.get("time_fs")
        step = info.get("step")
        yield Frame(index, species, num[:, p0:p0 + 3].copy(), cell,
                    float(t) if t is not None else float("nan"),
                    int(step) if step is not None else None, vel,
                    float(info["energy_eV"]) if "energy_eV" in info else None)


def _iter_ase(path: Path, fmt: str | None) -> Iterator[Frame]:
    from ase.io import iread

    try:
        for index, atoms in enumerate(iread(str(path), index=":", format=fmt)):
            vel = None
            if "velocities_A_per_fs" in atoms.arrays:
                vel = np.asarray(atoms.arrays["velocities_A_per_fs"], dtype=float)
            elif atoms.has("momenta"):
                from ase import units

                vel = atoms.get_velocities() * units.fs  # ASE velocity unit -> Å/fs
            t = atoms.info.get("time_fs", float("nan"))
            yield Frame(index, np.array(atoms.get_chemical_symbols()), atoms.positions.copy(),
                        atoms.cell.array.copy(), float(t), atoms.info.get("step"), vel,
                        atoms.info.get("energy_eV"))
    except DpqtbError:
        raise
    except Exception as exc:  # ASE raises many different types on malformed files
        raise InputError(f"cannot read trajectory {path}: {exc}") from exc


class Trajectory:
    """Re-iterable, validated stream of :class:`Frame`.

    Checks, frame by frame, that the species list never changes, that the number of atoms is
    constant and that times are strictly increasing with a constant stride (a missing frame is an
    error).  ``timestep_fs`` overrides the frame spacing when the file has no ``time_fs``.

    Parameters
    ----------
    path : path
        A run directory (its trajectory.extxyz) or any ASE-readable trajectory file.
    fmt : str, optional
        ASE format name (default from the suffix).
    timestep_fs : float, optional
        Time between stored frames (fs), replacing the file's ``time_fs``.
    start, stop, stride : int
        Frame selection (indices of the file's frames).
    """

    def __init__(self, path: str | Path, fmt: str | None = None, timestep_fs: float | None = None,
                 start: int = 0, stop: int | None = None, stride: int = 1):
        path = Path(path)
        self._lammps: dict | None = None  # the sidecar of a LAMMPS dump ({} without one)
        if path.is_dir():
            from dpqtb.lammps.dump import is_lammps_run, read_meta

            if not (path / TRAJECTORY).exists() and is_lammps_run(path):
                self._lammps = read_meta(path)
                path = path / LAMMPS_DUMP
            else:
                path = path / TRAJECTORY
        elif fmt is None and path.suffix not in (".extxyz", ".xyz"):
            from dpqtb.lammps.dump import is_dump_file, read_meta

            if is_dump_file(path):
                self._lammps = read_meta(path.parent)
        if not path.exists():
            raise InputError(f"trajectory file {path} does not exist")
        if path.stat().st_size == 0:
            raise InputError(f"trajectory {path} is empty")
        if stride < 1 or start < 0 or (stop is not None and stop <= start):
            raise InputError(f"bad frame selection start={start} stop={stop} stride={stride}")
        self.path = path
        self.fmt = fmt
        self.timestep_fs = timestep_fs
        self.start, self.stop, self.stride = start, stop, stride
        self._first: Frame | None = None

    def _raw(self) -> Iterator[Frame]:
        if self._lammps is not None:
            return self._iter_lammps()
        use_fast = self.fmt in (None, "extxyz") and self.path.suffix in (".extxyz", ".xyz")
        if not use_fast:
            return _iter_ase(self.path, self.fmt)
        return self._fast_or_ase()

    def _fast_or_ase(self) -> Iterator[Frame]:
        try:
            yield from _iter_extxyz_fast(self.path)
        except _NotFast:  # only raised at the first frame, before anything was yielded
            yield from _iter_ase(self.path, "extxyz")

    def _iter_lammps(self) -> Iterator[Frame]:
        from dpqtb.lammps.dump import iter_dump, species_of

        type_map = self._lammps.get("type_map")
        dt = self._lammps.get("timestep_fs")
        for fr in iter_dump(self.path):
            yield Frame(fr.index, species_of(fr.types, type_map), fr.positions, fr.cell,
                        fr.step * float(dt) if dt else float("nan"), fr.step, fr.velocities, None)

    @property
    def is_lammps(self) -> bool:
        """True when the frames come from a LAMMPS dump."""
        return self._lammps is not None

    def __iter__(self) -> Iterator[Frame]:
        ref = None
        dt = None
        prev_t = None
        count = 0
        for fr in self._raw():
            if fr.index < self.start or (self.stop is not None and fr.index >= self.stop):
                if self.stop is not None and fr.index >= self.stop:
                    break
                continue
            if (fr.index - self.start) % self.stride:
                continue
            if self.timestep_fs is not None:
                fr.time_fs = (fr.index - self.start) * self.timestep_fs
            if ref is None:
                ref = fr.symbols
                if len(ref) == 0:
                    raise InputError(f"{self.path}: the first frame has no atoms")
            elif len(fr.symbols) != len(ref) or np.any(fr.symbols != ref):
                raise InputError(f"{self.path}: frame {fr.index} has different species/atom order "
                                 f"than frame {self.start} (mismatched species)")
            if not np.all(np.isfinite(fr.positions)):
                raise InputError(f"{self.path}: frame {fr.index} has non-finite positions")
            if prev_t is not None:
                if not np.isfinite(fr.time_fs):
                    raise InputError(f"{self.path}: frames have no time_fs; pass timestep_fs")
                step = fr.time_fs - prev_t
                if step <= 0:
                    raise InputError(f"{self.path}: time goes backwards at frame {fr.index}")
                if dt is None:
                    dt = step
                elif abs(step - dt) > 1e-6 * max(dt, 1.0):
                    raise InputError(f"{self.path}: frame spacing changes at frame {fr.index} "
                                     f"({step:g} fs instead of {dt:g} fs): missing frames?")
            prev_t = fr.time_fs
            count += 1
            yield fr
        if count == 0:
            raise InputError(f"trajectory {self.path} contains no frames in the selection")

    def iter_atoms(self, indices) -> Iterator[tuple[float, np.ndarray]]:
        """(time_fs, positions of ``indices``) per selected frame, parsing only those atom lines
        on the extxyz fast path (a cheap second pass for per-atom trajectories)."""
        indices = np.asarray(indices, dtype=np.int64)
        if self.path.suffix not in (".extxyz", ".xyz") or self.fmt not in (None, "extxyz"):
            for fr in self:
                yield fr.time_fs, fr.positions[indices]
            return
        for k, comment, lines in _extxyz_blocks(self.path):
            if self.stop is not None and k >= self.stop:
                return
            if k >= self.start and (k - self.start) % self.stride == 0:
                info = _parse_comment(comment)
                p0 = _columns(info)[0]["pos"][0]
                pos = np.array([[float(v) for v in lines[i].split()[p0:p0 + 3]] for i in indices])
                t = info.get("time_fs")
                if self.timestep_fs is not None or t is None:
                    t = (k - self.start) * (self.timestep_fs or 1.0)
                yield float(t), pos

    def count(self) -> int:
        """Number of selected frames, from the frame headers only on the extxyz fast path (other
        formats: the full reader; LAMMPS dumps: their ``ITEM: TIMESTEP`` lines)."""
        if self._lammps is not None:
            from dpqtb.lammps.dump import count_dump_frames

            n = count_dump_frames(self.path)
            return len(range(self.start, n if self.stop is None else min(n, self.stop), self.stride))
        if self.path.suffix not in (".extxyz", ".xyz"):
            return sum(1 for _ in self)
        return sum(1 for k, _, _ in _extxyz_blocks(self.path)
                   if k >= self.start and (self.stop is None or k < self.stop) and (k - self.start) % self.stride == 0)

    def first(self) -> Frame:
        if self._first is None:
            self._first = next(iter(self))
        return self._first

    @property
    def symbols(self) -> np.ndarray:
        return self.first().symbols

    def species(self) -> list[str]:
        """Distinct species in order of first appearance."""
        seen: list[str] = []
        for s in self.symbols:
            if s not in seen:
                seen.append(str(s))
        return seen


def write_extxyz_frames(path: str | Path, frames, symbols, cell, dt_fs: float, velocities=None) -> None:
    """Write (N, 3) position arrays as an engine-style extxyz (used by tests and examples).

    Parameters
    ----------
    path : path
        The file to write.
    frames : iterable of (N, 3) arrays
        Positions (Å).
    symbols : list of str
        Species of every atom.
    cell : (3, 3) array
        Lattice vectors (Å).
    dt_fs : float
        Time between frames (fs).
    velocities : sequence of (N, 3) arrays, optional
        Velocities (Å/fs).
    """
    from ase import Atoms
    from ase.io import write

    with open(path, "w") as fh:
        for k, pos in enumerate(frames):
            atoms = Atoms(list(symbols), positions=pos, cell=cell, pbc=True)
            atoms.info.update(step=k, time_fs=k * dt_fs, energy_eV=0.0)
            if velocities is not None:
                atoms.new_array("velocities_A_per_fs", np.asarray(velocities[k], dtype=float))
            write(fh, atoms, format="extxyz")
