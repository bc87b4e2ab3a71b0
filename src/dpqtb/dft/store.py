"""A resumable job store for DFT labels.

Layout of a store directory::

    STORE/jobs/<id>.json     configuration to label (structure, settings, sampling metadata)
    STORE/frames/<id>.json   labelled frame (job + energy, forces, stress, provenance)
    STORE/failed/<id>.json   last error of a job that did not finish (retried on the next run)
    STORE/logs/<id>.txt      GPAW text output (not meant for version control)
    STORE/runner.lock        held by the one running labeller

The job id is a hash of the structure and the DFT settings, so a configuration is labelled once
whatever the order or number of runs (a copy that differs from a stored job by round-off only is
recognised as that job, :meth:`JobStore.find`).  Every file is written atomically (temporary file +
``os.replace``) as soon as it is complete: a killed run loses at most the job in flight, and the
next run resumes with the remaining jobs.  Units: eV, Å, GPa.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.units import GPa

from dpqtb import InputError
from dpqtb.dft.settings import DFTSettings, code_versions, kpoint_mesh
from dpqtb.rundir import atomic_write_json as _atomic_write_json
from dpqtb.structures.checks import MIN_DISTANCE_A, check_min_distance  # noqa: F401 (re-exported)

#: Elements the La–H data set may contain, in DeePMD type-map order.
TYPE_MAP = ("La", "H")


def atomic_write_json(path: Path, obj) -> None:
    """Write ``obj`` as compact JSON (the store's format) to ``path`` atomically: never leaves a partial
    file (:func:`dpqtb.rundir.atomic_write_json`)."""
    _atomic_write_json(path, obj, separators=(",", ":"), newline=False)


def validate_atoms(atoms: Atoms, where: str = "structure") -> None:
    """Reject structures the La–H labeller cannot handle, with a one-line reason."""
    if len(atoms) == 0:
        raise InputError(f"{where}: no atoms")
    bad = sorted({s for s in atoms.get_chemical_symbols() if s not in TYPE_MAP})
    if bad:
        raise InputError(f"{where}: unknown element(s) {', '.join(bad)}; the type map is "
                         f"[{', '.join(TYPE_MAP)}]")
    if not all(atoms.pbc):
        raise InputError(f"{where}: the cell must be periodic in all three directions")
    vol = abs(atoms.cell.volume)
    if not vol > 1e-6:
        raise InputError(f"{where}: the cell has zero volume")
    check_min_distance(atoms, where)  # the one overlap rule of dpqtb (md applies it too)


def atoms_to_dict(atoms: Atoms) -> dict:
    return {
        "symbols": atoms.get_chemical_symbols(),
        "cell_A": np.round(atoms.cell.array, 10).tolist(),
        "positions_A": np.round(atoms.positions, 10).tolist(),
        "pbc": [bool(p) for p in atoms.pbc],
    }


def atoms_from_dict(d: dict) -> Atoms:
    return Atoms(d["symbols"], positions=d["positions_A"], cell=d["cell_A"], pbc=d["pbc"])


def job_id(atoms: Atoms, settings: DFTSettings) -> str:
    """Content hash of a structure (rounded to 1e-6 Å) and the DFT settings."""
    payload = {
        "symbols": atoms.get_chemical_symbols(),
        "cell": np.round(atoms.cell.array, 6).tolist(),
        "positions": np.round(atoms.positions, 6).tolist(),
        "pbc": [bool(p) for p in atoms.pbc],
        "settings": settings.as_dict(),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


#: Two structures whose cells and positions all agree within this (Å) are one job (see
#: :meth:`JobStore.find`); the same resolution as the rounding in :func:`job_id`.
SAME_STRUCTURE_TOL_A = 1e-6


def _signature(symbols, pbc, settings: dict) -> str:
    return json.dumps([list(symbols), [bool(p) for p in pbc], settings], sort_keys=True)


@dataclass
class Job:
    id: str
    atoms: Atoms
    settings: DFTSettings
    meta: dict

    def to_dict(self) -> dict:
        return {"id": self.id, **atoms_to_dict(self.atoms), "settings": self.settings.as_dict(),
                "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> "Job":
        return cls(d["id"], atoms_from_dict(d), DFTSettings.from_dict(d["settings"]),
                   d.get("meta", {}))


class JobStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"job store {self.root} is a file, not a directory")
        self._index: dict[str, list] = {}  # near-match index, see _index_record
        self._indexed: set[str] = set()

    # -- paths
    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    @property
    def frames_dir(self) -> Path:
        return self.root / "frames"

    @property
    def failed_dir(self) -> Path:
        return self.root / "failed"

    @property
    def retired_dir(self) -> Path:
        return self.root / "retired"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    # -- jobs
    def find(self, atoms: Atoms, settings: DFTSettings) -> str | None:
        """Id of the stored job holding this configuration, or None.

        The content hash (:func:`job_id`) rounds coordinates to 1e-6 Å, so two copies of one
        structure that differ by round-off (a job read back from its JSON, which keeps 1e-10 Å)
        can fall on either side of a rounding boundary and hash differently.  When the hash is not
        in the store, the stored jobs with the same species order, pbc and settings are compared
        coordinate by coordinate: cell and positions all within ``SAME_STRUCTURE_TOL_A`` is the
        same job.  Atom order matters, as for the hash.
        """
        jid = job_id(atoms, settings)
        if (self.jobs_dir / f"{jid}.json").exists():
            return jid
        return self._near_match(atoms, settings)

    def add(self, atoms: Atoms, settings: DFTSettings, meta: dict | None = None,
            validate: bool = True) -> str:
        """Register a configuration to label; returns its id (a no-op if already present,
        including a copy that differs from a stored job by round-off only, see :meth:`find`)."""
        if validate:
            validate_atoms(atoms)
        found = self.find(atoms, settings)
        if found is not None:
            return found
        jid = job_id(atoms, settings)
        rec = Job(jid, atoms, settings, dict(meta or {})).to_dict()
        atomic_write_json(self.jobs_dir / f"{jid}.json", rec)
        self._index_record(jid, rec)
        return jid

    # The near-match index: signature (species, pbc, settings) -> list of (key, id, cell, pos),
    # key = sum of all cell and position components, so candidates are the entries whose key lies
    # within (3N + 9) * tolerance.  Built lazily, refreshed with job files added since (by any
    # process) on every miss.
    def _index_record(self, jid: str, rec: dict) -> None:
        if jid in self._indexed:
            return
        self._indexed.add(jid)
        cell = np.asarray(rec["cell_A"], float)
        pos = np.asarray(rec["positions_A"], float)
        sig = _signature(rec["symbols"], rec["pbc"], rec["settings"])
        self._index.setdefault(sig, []).append((float(cell.sum() + pos.sum()), jid, cell, pos))

    def _near_match(self, atoms: Atoms, settings: DFTSettings) -> str | None:
        for jid in self.job_ids():
            if jid not in self._indexed:
                try:
                    self._index_record(jid, self.job_record(jid))
                except (OSError, ValueError, KeyError):  # a file being written by another process
                    continue
        sig = _signature(atoms.get_chemical_symbols(), [bool(p) for p in atoms.pbc],
                         settings.as_dict())
        cell = np.asarray(atoms.cell.array, float)
        pos = np.asarray(atoms.positions, float)
        key = float(cell.sum() + pos.sum())
        window = (pos.size + 9) * SAME_STRUCTURE_TOL_A
        for k, jid, c, p in self._index.get(sig, []):
            if (abs(k - key) <= window and p.shape == pos.shape
                    and np.max(np.abs(c - cell)) <= SAME_STRUCTURE_TOL_A
                    and np.max(np.abs(p - pos)) <= SAME_STRUCTURE_TOL_A):
                return jid
        return None

    def job_record(self, jid: str) -> dict:
        """The stored job file as a dict (``symbols``, ``meta``, ...), without building Atoms."""
        path = self.jobs_dir / f"{jid}.json"
        if not path.exists():
            raise InputError(f"no job {jid} in store {self.root}")
        return json.loads(path.read_text())

    def job(self, jid: str) -> Job:
        return Job.from_dict(self.job_record(jid))

    def add_meta(self, jid: str, extra: dict, check_only: bool = False) -> bool:
        """Add the keys of ``extra`` that the job's ``meta`` lacks, in the job file and in its frame if labelled
        (metadata, not part of the job's identity: e.g. the temperature of the run a frame came from, for errors
        by temperature). A key already there with another value is an error; nothing is overwritten. Returns
        whether anything was (``check_only``: would be) written. Run it when the job is not being labelled (the
        labeller writes the frame from the job as it read it; running this again fills that frame in)."""
        changed = False
        paths = [self.jobs_dir / f"{jid}.json"] + ([self.frames_dir / f"{jid}.json"] if self.has_frame(jid) else [])
        for path in paths:
            rec = json.loads(path.read_text())
            meta = rec.setdefault("meta", {})
            for k, v in extra.items():
                if k in meta and meta[k] != v:
                    raise InputError(f"{path}: meta {k} is {meta[k]!r}, not {v!r} (metadata is never overwritten)")
            new = {k: v for k, v in extra.items() if k not in meta}
            if new:
                changed = True
                if not check_only:
                    meta.update(new)
                    atomic_write_json(path, rec)
        return changed

    def job_ids(self) -> list[str]:
        if not self.jobs_dir.is_dir():
            return []
        return sorted(p.stem for p in self.jobs_dir.glob("*.json"))

    def done_ids(self) -> set[str]:
        if not self.frames_dir.is_dir():
            return set()
        return {p.stem for p in self.frames_dir.glob("*.json")}

    def failed_ids(self) -> set[str]:
        if not self.failed_dir.is_dir():
            return set()
        return {p.stem for p in self.failed_dir.glob("*.json")}

    def retired_ids(self) -> set[str]:
        if not self.retired_dir.is_dir():
            return set()
        return {p.stem for p in self.retired_dir.glob("*.json")}

    def is_retired(self, jid: str) -> bool:
        return (self.retired_dir / f"{jid}.json").exists()

    def retire(self, jid: str, reason: str) -> None:
        """Take a not-yet-labelled job off the labelling plan (recorded with ``reason``; the job
        file stays, so the plan remains reproducible).  Labelled jobs cannot be retired."""
        if not (self.jobs_dir / f"{jid}.json").exists():
            raise InputError(f"no job {jid} in store {self.root}")
        if self.has_frame(jid):
            raise InputError(f"job {jid} in {self.root} is already labelled; frames are never retired")
        if not reason.strip():
            raise InputError("retiring a job needs a reason")
        atomic_write_json(self.retired_dir / f"{jid}.json",
                          {"id": jid, "reason": reason.strip(),
                           "time": time.strftime("%Y-%m-%dT%H:%M:%S")})

    def pending(self) -> list[str]:
        """Jobs without a frame and not retired, in labelling order (``meta['order']``, then id)."""
        done = self.done_ids() | self.retired_ids()
        todo = [j for j in self.job_ids() if j not in done]
        order = {j: (self.job_record(j).get("meta", {}).get("order", 1e18), j) for j in todo}
        return sorted(todo, key=order.__getitem__)

    def progress(self) -> tuple[int, int, int]:
        """(labelled, total, failed-and-not-yet-labelled); retired jobs are not counted."""
        done = self.done_ids()
        retired = self.retired_ids() - done
        jobs = set(self.job_ids()) - retired
        return len(done & jobs), len(jobs), len(self.failed_ids() - done - retired)

    # -- frames
    def has_frame(self, jid: str) -> bool:
        return (self.frames_dir / f"{jid}.json").exists()

    def frame(self, jid: str) -> dict:
        return read_frame(self.frames_dir / f"{jid}.json")

    def frames(self) -> list[dict]:
        if not self.frames_dir.is_dir():
            return []
        return [read_frame(p) for p in sorted(self.frames_dir.glob("*.json"))]

    def write_frame(self, frame: dict) -> None:
        atomic_write_json(self.frames_dir / f"{frame['id']}.json", frame)
        failed = self.failed_dir / f"{frame['id']}.json"
        if failed.exists():
            failed.unlink()

    def write_failure(self, jid: str, error: str) -> None:
        atomic_write_json(self.failed_dir / f"{jid}.json",
                          {"id": jid, "error": error, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})


def compute_frame(job: Job, txt: str | None = None, calc_factory=None) -> dict:
    """Run the DFT calculation of ``job`` and return the frame dictionary (all MPI ranks)."""
    from dpqtb.dft.settings import make_calculator

    atoms = job.atoms.copy()
    factory = calc_factory or make_calculator
    atoms.calc = factory(atoms, job.settings, txt=txt)
    t0 = time.time()
    free = float(atoms.get_potential_energy(force_consistent=True))
    extrap = float(atoms.get_potential_energy())
    forces = atoms.get_forces()
    stress = atoms.get_stress(voigt=False)
    wall = time.time() - t0
    try:  # the SCF's length (what the convergence criteria cost; GPAW's ASE interface, else unknown)
        niter = int(atoms.calc.get_number_of_iterations())
    except Exception:  # noqa: BLE001 - provenance only
        niter = None
    nranks = 1
    try:
        from gpaw.mpi import world

        nranks = world.size
    except ImportError:  # pragma: no cover
        pass
    frame = job.to_dict()
    frame.update({
        "energy_eV": free,
        "energy_extrapolated_eV": extrap,
        "forces_eV_per_A": np.round(forces, 8).tolist(),
        "stress_eV_per_A3": np.round(stress, 10).tolist(),
        "pressure_GPa": float(-np.trace(stress) / 3.0 / GPa),
        "kpts": list(kpoint_mesh(atoms, job.settings.kspacing_invA)),
        "provenance": {
            "codes": code_versions(),
            "calculator": "GPAW plane-wave (ASE)",
            "energy_kind": "Fermi-Dirac free energy (force consistent)",
            "host": socket.gethostname(),
            "mpi_ranks": nranks,
            "wall_s": round(wall, 2),
            "scf_iterations": niter,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
    })
    return frame


#: Keys every labelled frame holds (checked when a frame file is read).
FRAME_KEYS = ("id", "symbols", "cell_A", "positions_A", "pbc", "settings", "energy_eV", "forces_eV_per_A",
              "stress_eV_per_A3", "pressure_GPa")


def read_frame(path: Path) -> dict:
    """A labelled frame file, or a one-line DpqtbError naming the file (bad JSON, a missing label)."""
    try:
        frame = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"frame file {path} is not valid JSON ({exc}); delete it to relabel the job") from None
    if not isinstance(frame, dict):
        raise InputError(f"frame file {path} does not hold a frame (a JSON object)")
    missing = [k for k in FRAME_KEYS if k not in frame]
    if missing:
        raise InputError(f"frame file {path} lacks {', '.join(missing)}; delete it to relabel the job")
    n = len(frame["symbols"])
    if np.shape(frame["forces_eV_per_A"]) != (n, 3) or np.shape(frame["positions_A"]) != (n, 3):
        raise InputError(f"frame file {path}: forces_eV_per_A/positions_A are not {n}×3 arrays")
    return frame


def frame_to_atoms(frame: dict) -> Atoms:
    """ASE Atoms with a single-point calculator holding the frame's labels."""
    atoms = atoms_from_dict(frame)
    stress = np.asarray(frame["stress_eV_per_A3"])
    voigt = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    atoms.calc = SinglePointCalculator(atoms, energy=frame["energy_eV"],
                                       free_energy=frame["energy_eV"],
                                       forces=np.asarray(frame["forces_eV_per_A"]), stress=voigt)
    meta = dict(frame.get("meta", {}))
    atoms.info.update({k: v for k, v in meta.items() if isinstance(v, (int, float, str, bool))})
    atoms.info["frame_id"] = frame["id"]
    atoms.info["pressure_GPa"] = frame["pressure_GPa"]
    return atoms
