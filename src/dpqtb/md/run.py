"""Running a simulation: output files, exact checkpoint/restart, progress bar.

Output directory layout:
    thermo.csv            step, time_fs, temperature_K, ... (units in every column name)
    trajectory.extxyz     unwrapped positions (Å), cell, energy; optional velocities_A_per_fs
    qtb_fd_<species>.csv  Δ_FD(ω) diagnostic per species (QTB/adQTB)
    checkpoint.pt         everything needed to continue bit for bit (written atomically)
    run.json              configuration and versions

A resumed run first truncates thermo.csv and trajectory.extxyz back to the byte offsets recorded
in the checkpoint, so the outputs of an interrupted-and-resumed run are identical to those of an
uninterrupted one.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np
import torch

from dpqtb import DpqtbError, __version__
from dpqtb.md.state import MDState
from dpqtb.units import KB

THERMO_COLUMNS = ("step", "time_fs", "temperature_K", "target_temperature_K", "kinetic_eV", "potential_eV",
                  "total_eV", "conserved_eV", "pressure_GPa", "volume_A3")

CHECKPOINT = "checkpoint.pt"
THERMO = "thermo.csv"
TRAJECTORY = "trajectory.extxyz"
#: phonon density of states deconvolved from the QTB spectra (QTB/adQTB runs; see QTB.phonon_dos)
QTB_DOS = "qtb_dos.csv"


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Simulation:
    def __init__(self, state: MDState, integrator, output_dir: str | Path | None, thermo_every: int = 10,
                 trajectory_every: int = 100, trajectory_velocities: bool = False, checkpoint_every: int = 1000,
                 progress: bool = True, metadata: dict | None = None):
        self.state = state
        self.integrator = integrator
        self.dir = None if output_dir is None else Path(output_dir)
        self.thermo_every = int(thermo_every)
        self.traj_every = int(trajectory_every)
        self.traj_velocities = bool(trajectory_velocities)
        self.checkpoint_every = int(checkpoint_every)
        self.progress = progress
        self.metadata = metadata or {}
        self._setup_done = False
        self.thermo_rows: list[tuple] = []  # kept in memory too (Python API)

    # ------------------------------------------------------------------ files
    def _paths(self):
        return self.dir / THERMO, self.dir / TRAJECTORY, self.dir / CHECKPOINT

    def _prepare_fresh(self, overwrite: bool) -> None:
        if self.dir is None:
            return
        thermo, traj, ckpt = self._paths()
        existing = [p.name for p in (thermo, traj, ckpt) if p.exists()]
        if existing and not overwrite:
            raise DpqtbError(f"output directory {self.dir} already holds {', '.join(existing)}; "
                             "use --resume to continue it or --overwrite to start again")
        self.dir.mkdir(parents=True, exist_ok=True)
        for p in (thermo, traj, ckpt):
            if p.exists():
                p.unlink()
        for p in [*self.dir.glob("qtb_fd_*.csv"), self.dir / QTB_DOS]:
            if p.exists():
                p.unlink()
        thermo.write_text(",".join(self.thermo_columns()) + "\n")
        meta = {"dpqtb_version": __version__, "torch_version": torch.__version__, "python": platform.python_version(),
                "integrator": self.integrator.name, "n_atoms": self.state.n_atoms,
                "type_map": list(self.state.type_map), **self.metadata}
        _atomic_write_text(self.dir / "run.json", json.dumps(meta, indent=2, default=str) + "\n")

    def _file_offsets(self) -> dict:
        thermo, traj, _ = self._paths()
        return {"thermo": thermo.stat().st_size if thermo.exists() else 0,
                "trajectory": traj.stat().st_size if traj.exists() else 0}

    # ------------------------------------------------------------------ observables
    def thermo_columns(self) -> tuple:
        """THERMO_COLUMNS, then the integrator's own (per-species temperatures; raw QTB values)."""
        return THERMO_COLUMNS + tuple(self.integrator.extra_thermo_columns(self.state.type_map))

    def thermo_row(self) -> tuple:
        s, integ = self.state, self.integrator
        ke = integ.kinetic_energy(s)  # for PIMD the centroid-virial estimator
        pe = float(s.energy)
        vol = s.volume if all(s.pbc) else float("nan")
        temp = 2.0 * ke / (integ.n_dof(s) * KB)
        extra = integ.extra_thermo(s)
        return (s.step, s.time_fs, temp, integ.target_temperature(s.step), ke, pe, ke + pe,
                integ.conserved_energy(s), integ.pressure_gpa(s), vol,
                *(extra[c] for c in integ.extra_thermo_columns(s.type_map)))

    def _write_thermo(self) -> None:
        row = self.thermo_row()
        self.thermo_rows.append(row)
        if self.dir is not None:
            with open(self.dir / THERMO, "a") as fh:
                fh.write(",".join(f"{v:d}" if isinstance(v, int) else f"{v:.15g}" for v in row) + "\n")

    def _write_frame(self) -> None:
        from ase.io import write

        atoms = self.state.to_atoms(include_velocities=False)
        atoms.info.update(step=self.state.step, time_fs=self.state.time_fs, energy_eV=float(self.state.energy))
        if self.traj_velocities:
            atoms.new_array("velocities_A_per_fs", self.state.velocities.detach().cpu().numpy())
        with open(self.dir / TRAJECTORY, "a") as fh:
            write(fh, atoms, format="extxyz")

    def write_fd_files(self) -> None:
        integ = self.integrator
        if self.dir is None or getattr(integ, "fd", None) is None or integ.fd.n_segments == 0:
            return
        for name, table in integ.fd_table(self.state.type_map).items():
            cols = list(table)
            data = np.column_stack([table[c] for c in cols])
            tmp = self.dir / f"qtb_fd_{name}.csv.tmp"
            np.savetxt(tmp, data, delimiter=",", header=",".join(cols), comments="", fmt="%.8g")
            os.replace(tmp, self.dir / f"qtb_fd_{name}.csv")
        dos = integ.phonon_dos()
        cols = ["freq_THz"] + [f"g_{k}_per_THz" for k in dos if k != "freq_THz"]
        tmp = self.dir / f"{QTB_DOS}.tmp"
        np.savetxt(tmp, np.column_stack(list(dos.values())), delimiter=",", header=",".join(cols), comments="",
                   fmt="%.8g")
        os.replace(tmp, self.dir / QTB_DOS)
        for msg in integ.diagnose():
            key = msg.split(":")[0]
            if key not in integ.reported:
                integ.reported.add(key)
                import sys

                print(f"dpqtb: warning: {msg}", file=sys.stderr)

    def _observe(self) -> None:
        step = self.state.step
        if step % self.thermo_every == 0:
            self._write_thermo()
        if self.dir is not None and self.traj_every and step % self.traj_every == 0:
            self._write_frame()

    # ------------------------------------------------------------------ checkpoint
    def checkpoint(self, target_steps: int) -> None:
        if self.dir is None:
            return
        self.write_fd_files()
        ckpt = {"format": 1, "dpqtb_version": __version__, "target_steps": target_steps,
                "state": self.state.tensors_state_dict(), "integrator_name": self.integrator.name,
                "integrator": self.integrator.state_dict(), "offsets": self._file_offsets(),
                "n_thermo_rows": len(self.thermo_rows)}
        _atomic_torch_save(ckpt, self.dir / CHECKPOINT)

    def _resume(self) -> int:
        _, _, ckpt_path = self._paths()
        if not ckpt_path.exists():
            raise DpqtbError(f"no checkpoint to resume in {self.dir}")
        try:
            ckpt = torch.load(ckpt_path, map_location=self.state.device, weights_only=False)
        except Exception as exc:  # corrupt file
            raise DpqtbError(f"checkpoint {ckpt_path} cannot be read: {exc}") from None
        if ckpt.get("integrator_name") != self.integrator.name:
            raise DpqtbError(f"checkpoint was written by integrator '{ckpt.get('integrator_name')}', "
                             f"this run uses '{self.integrator.name}'")
        self.state.load_tensors_state_dict(ckpt["state"])
        self.integrator.setup(self.state)  # forces at the checkpointed positions, fresh objects
        self.integrator.load_state_dict(ckpt["integrator"])
        for name, key in ((THERMO, "thermo"), (TRAJECTORY, "trajectory")):
            path = self.dir / name
            if path.exists():
                with open(path, "r+b") as fh:
                    fh.truncate(ckpt["offsets"][key])
        return int(ckpt["target_steps"])

    # ------------------------------------------------------------------ main loop
    def run(self, n_steps: int | None = None, resume: bool = False, overwrite: bool = False) -> MDState:
        """Run until ``state.step`` reaches the target (``n_steps`` from a fresh start)."""
        if resume:
            target = self._resume()
            if n_steps is not None:
                target = int(n_steps)
        else:
            if n_steps is None:
                raise DpqtbError("number of steps not given")
            self._prepare_fresh(overwrite)
            self.integrator.setup(self.state)
            target = self.state.step + int(n_steps)
            self._observe()
        from tqdm.auto import tqdm

        bar = tqdm(total=target, initial=self.state.step, disable=not self.progress, unit="step",
                   desc=self.integrator.name, dynamic_ncols=True, mininterval=1.0)
        try:
            while self.state.step < target:
                self.integrator.step(self.state)
                self._observe()
                if self.checkpoint_every and self.state.step % self.checkpoint_every == 0:
                    self.checkpoint(target)
                bar.update(1)
                if not torch.isfinite(self.state.energy).all():
                    raise DpqtbError(f"energy became non-finite at step {self.state.step}; "
                                     "the time step is probably too large")
        finally:
            bar.close()
        self.checkpoint(target)
        return self.state
