"""The files of a run directory: their names, the thermo table, ``run.json`` and atomic writes.

Every layer (``md``, ``analysis``, ``train``, ``dft``, ``workflows``) names run-directory files
through this module; it imports only the standard library, numpy and :mod:`dpqtb`'s errors.

MD run directory (``dpqtb md``, :class:`dpqtb.md.run.Simulation`)::

    thermo.csv            step, time_fs, temperature_K, ... (THERMO_COLUMNS, then the integrator's own)
    trajectory.extxyz     unwrapped positions (Å), cell, energy; optional velocities_A_per_fs
    checkpoint.pt         everything needed to continue bit for bit (written atomically)
    run.json              configuration, versions, the model file's SHA-256 and the numerical environment of the start
    qtb_fd_<group>.csv    Δ_FD(ω) diagnostic per species/group (QTB/adQTB)
    qtb_dos.csv           phonon DOS deconvolved from the QTB spectra (QTB/adQTB)

An exploration run directory (``dpqtb explore``, :mod:`dpqtb.train.explore`) adds ``start.extxyz``
(the starting structure), ``done.json`` (the finished run's record) and ``model_devi.json`` /
``model_devi.csv`` (the ensemble deviation of its frames); the exploration writes ``explore.json``
and ``explore.md`` next to its ``runs/``.

A sweep directory (``dpqtb sweep``, :mod:`dpqtb.workflows.sweep`) holds ``points.csv`` (one row per
point), ``sweep.json`` (the expanded sweep), ``figures/`` and ``points/<hash>/``: one MD run directory
per point, named by the hash of its config, with ``point.json`` (its spec), ``result.json`` (its
observables; present only when the point is finished), ``point.log`` and ``point.lock``.

A LAMMPS run directory (``dpqtb lammps``, :mod:`dpqtb.lammps`): ``in.lammps``, ``data.lammps``, the model,
``dpqtb_lammps.json`` (type map, time step, output intervals), and after the run ``log.lammps`` and
``dump.lammpstrj`` (read by ``dpqtb analyze``).

Atomic writers (:func:`atomic_open`, :func:`atomic_write_text`, :func:`atomic_write_bytes`,
:func:`atomic_write_json`): the data go to a temporary file in the destination's directory, are
flushed and fsynced, and the file is renamed over the destination (``os.replace``), so a reader or
a killed writer never sees a partial file.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import uuid
from operator import itemgetter
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from dpqtb import InputError

# ------------------------------------------------------------------------------------ file names
THERMO = "thermo.csv"
TRAJECTORY = "trajectory.extxyz"
#: every bead of a ring polymer (PIMD/TRPMD, output.bead_trajectory_every)
BEAD_TRAJECTORY = "trajectory_beads.extxyz"
CHECKPOINT = "checkpoint.pt"
RUN_JSON = "run.json"
#: phonon density of states deconvolved from the QTB spectra (QTB/adQTB runs; see QTB.phonon_dos)
QTB_DOS = "qtb_dos.csv"
#: glob pattern of every :func:`qtb_fd_name` file
QTB_FD_GLOB = "qtb_fd_*.csv"
#: velocity autocorrelation per species, on the fly (output.vacf_every; dpqtb.md.observers.VACFObserver)
VACF = "vacf.csv"

#: exploration run directories (:mod:`dpqtb.train.explore`)
START_STRUCTURE = "start.extxyz"
DONE = "done.json"
MODEL_DEVI = "model_devi.json"
MODEL_DEVI_CSV = "model_devi.csv"
#: the exploration's report, next to its ``runs/``
EXPLORE_REPORT = "explore.json"
EXPLORE_MARKDOWN = "explore.md"

#: sweep directories (``dpqtb sweep``, :mod:`dpqtb.workflows.sweep`): DIR/points.csv, DIR/sweep.json, DIR/sweep.lock,
#: DIR/points/<hash>/ (an MD run directory plus point.json, result.json, point.log, point.lock),
#: DIR/figures/
SWEEP_POINTS_CSV = "points.csv"
SWEEP_JSON = "sweep.json"
#: held (flock) by the one client that runs a sweep directory; it holds "host pid" of that client
SWEEP_LOCK = "sweep.lock"
SWEEP_POINTS_DIR = "points"
SWEEP_FIGURES_DIR = "figures"
POINT_JSON = "point.json"
POINT_RESULT = "result.json"
POINT_LOG = "point.log"
POINT_LOCK = "point.lock"
POINT_ANALYSIS_DIR = "analysis"

#: a LAMMPS deck and run directory (``dpqtb lammps``, :mod:`dpqtb.lammps`): the input, its data file, the
#: dump of unwrapped positions and velocities, LAMMPS's log, and dpqtb's sidecar (type map, time step, ...)
LAMMPS_INPUT = "in.lammps"
LAMMPS_DATA = "data.lammps"
LAMMPS_DUMP = "dump.lammpstrj"
LAMMPS_LOG = "log.lammps"
LAMMPS_META = "dpqtb_lammps.json"
#: DeePMD-kit's model deviation file of a LAMMPS run with an ensemble (pair_style deepmd ... out_file)
LAMMPS_MODEL_DEVI = "model_devi.out"


def qtb_fd_name(group: str) -> str:
    """File name of the Δ_FD(ω) diagnostic of one QTB group.

    Parameters
    ----------
    group : str
        The group's name (a species, or ``group<k>`` for explicit adQTB groups).

    Returns
    -------
    str
        ``qtb_fd_<group>.csv``.
    """
    return f"qtb_fd_{group}.csv"


# ------------------------------------------------------------------------------------ thermo table
#: The fixed columns of thermo.csv (units in every name); integrators append their own
#: (``temperature_<X>_K`` per species, raw QTB values), see ``Integrator.extra_thermo_columns``.
THERMO_COLUMNS = ("step", "time_fs", "temperature_K", "target_temperature_K", "kinetic_eV", "potential_eV",
                  "total_eV", "conserved_eV", "pressure_GPa", "volume_A3")


class ThermoRow(tuple):
    """One row of ``thermo.csv``: a tuple of its values (an int step, then floats) whose columns
    are also attributes named with their units.

    The fixed columns are properties (``row.step``, ``row.temperature_K``, ``row.potential_eV``,
    ...); an integrator's extra columns are attributes too (``row.temperature_H_K``).  Being a
    tuple, a row indexes, unpacks and stacks (``np.array(rows)``) as a plain tuple of values.

    Parameters
    ----------
    values : iterable
        The row's values, in column order.
    columns : sequence of str, optional
        The column names (default :data:`THERMO_COLUMNS`); as many as values.
    """

    def __new__(cls, values, columns=THERMO_COLUMNS):
        row = super().__new__(cls, values)
        columns = tuple(columns)
        if len(columns) != len(row):
            raise ValueError(f"thermo row: {len(row)} values for {len(columns)} columns")
        row.columns = columns
        return row

    def __getnewargs__(self):
        return tuple(self), self.columns

    def __getattr__(self, name: str):
        cols = self.__dict__.get("columns", ())
        if name in cols:
            return self[cols.index(name)]
        raise AttributeError(f"thermo row has no column {name!r}")

    def as_dict(self) -> dict:
        """The row as ``{column: value}``."""
        return dict(zip(self.columns, self))

    def __repr__(self) -> str:
        return "ThermoRow(" + ", ".join(f"{c}={v!r}" for c, v in zip(self.columns, self)) + ")"

    step = property(itemgetter(0), doc="MD step")
    time_fs = property(itemgetter(1), doc="simulated time (fs)")
    temperature_K = property(itemgetter(2), doc="kinetic temperature (K)")
    target_temperature_K = property(itemgetter(3), doc="the thermostat's target (K); NaN for NVE")
    kinetic_eV = property(itemgetter(4), doc="kinetic energy estimator (eV)")
    potential_eV = property(itemgetter(5), doc="potential energy (eV)")
    total_eV = property(itemgetter(6), doc="kinetic + potential (eV)")
    conserved_eV = property(itemgetter(7), doc="total + energy removed by the thermostat (eV)")
    pressure_GPa = property(itemgetter(8), doc="pressure (GPa)")
    volume_A3 = property(itemgetter(9), doc="cell volume (Å³); NaN without periodic boundaries")


def thermo_header(columns) -> str:
    """The header line of ``thermo.csv`` (with its newline) for ``columns``."""
    return ",".join(columns) + "\n"


def thermo_line(values) -> str:
    """One data line of ``thermo.csv`` (with its newline): ints as ints, floats to 15 digits."""
    return ",".join(f"{v:d}" if isinstance(v, int) else f"{v:.15g}" for v in values) + "\n"


def read_thermo(run_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """Columns of ``thermo.csv`` as float arrays.

    Parameters
    ----------
    run_dir : path
        The run directory.

    Returns
    -------
    dict of str to numpy.ndarray
        One array per column, keyed by the column name (units included).

    Raises
    ------
    InputError
        The file is missing, not CSV text, has no data rows, or a row does not match the header.
    """
    path = Path(run_dir) / THERMO
    if not path.exists():
        raise InputError(f"{path} does not exist")
    try:
        with open(path) as fh:
            rows = list(csv.reader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path} is not a CSV text file ({type(exc).__name__})") from None
    if len(rows) < 2:
        raise InputError(f"{path} has no data rows")
    head = rows[0]
    try:
        data = np.array([[float(x) for x in r] for r in rows[1:] if r], dtype=float)
    except ValueError as exc:
        raise InputError(f"{path}: non-numeric value ({exc})") from exc
    if data.ndim != 2 or data.shape[1] != len(head):
        raise InputError(f"{path}: rows do not match the header")
    return {h: data[:, k] for k, h in enumerate(head)}


def _row(line: str, columns: tuple) -> ThermoRow | None:
    vals = line.strip().split(",")
    if len(vals) <= 1:
        return None
    return ThermoRow((int(vals[0]), *(float(v) for v in vals[1:])), columns)


def read_thermo_rows(run_dir: str | os.PathLike) -> list[ThermoRow]:
    """The rows of ``thermo.csv`` (values to the file's 15 significant digits).

    Parameters
    ----------
    run_dir : path
        The run directory.

    Returns
    -------
    list of ThermoRow
        Every data row, in file order.
    """
    with open(Path(run_dir) / THERMO) as fh:
        columns = tuple(next(fh, "").strip().split(","))
        return [r for r in (_row(line, columns) for line in fh) if r is not None]


def last_thermo(run_dir: str | os.PathLike) -> ThermoRow | None:
    """The last row of ``thermo.csv``, or None when it has no data row.

    Parameters
    ----------
    run_dir : path
        The run directory.

    Returns
    -------
    ThermoRow or None
    """
    last = None
    with open(Path(run_dir) / THERMO) as fh:
        columns = tuple(next(fh, "").strip().split(","))
        for line in fh:
            last = _row(line, columns) or last
    return last


def read_run_json(run_dir: str | os.PathLike) -> dict:
    """The run's ``run.json`` (versions, integrator, config), ``{}`` when there is none.

    Parameters
    ----------
    run_dir : path
        The run directory.

    Returns
    -------
    dict

    Raises
    ------
    InputError
        The file exists but is not valid JSON.
    """
    path = Path(run_dir) / RUN_JSON
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from exc


# ------------------------------------------------------------------------------------ atomic writes
@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """A file handle whose content replaces ``path`` atomically when the block ends without error.

    The data go to a hidden temporary file in the same directory (created with the usual
    permissions), which is flushed, fsynced and renamed over ``path``; on an error it is removed
    and ``path`` is left as it was.  Missing parent directories are created.

    Parameters
    ----------
    path : path
        The destination.
    mode : {"w", "wb"}
        Text or binary.

    Yields
    ------
    file object
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, mode.replace("w", "x")) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`).

    Parameters
    ----------
    path : path
        The destination.
    text : str
        The whole content.
    """
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`).

    Parameters
    ----------
    path : path
        The destination.
    data : bytes
        The whole content.
    """
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_json(path: str | os.PathLike, obj, *, indent: int | None = None,
                      separators: tuple[str, str] | None = None, default=None, newline: bool = True) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (see :func:`atomic_open`).

    Parameters
    ----------
    path : path
        The destination.
    obj
        Anything :func:`json.dumps` takes.
    indent, separators, default
        As for :func:`json.dumps`.
    newline : bool
        End the file with a newline (default).
    """
    text = json.dumps(obj, indent=indent, separators=separators, default=default)
    atomic_write_text(path, text + ("\n" if newline else ""))
