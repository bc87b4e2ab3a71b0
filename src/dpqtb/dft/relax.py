"""Symmetry-lowering relaxation of a LaH10 phase at a target pressure (GPAW, under mpiexec).

    OMP_NUM_THREADS=1 GPAW_MPI_BACKEND=cgpaw mpiexec --allow-run-as-root -n 2 \\
        python -m dpqtb.dft.relax --phase C2 --pressure-GPa 100 --seed 1 \\
        --prerelax-model builtin:lah10 --out data/phases/C2_100GPa_s1.extxyz

The starting cell is the Fm-3m structure at the target pressure (stored DFT EOS) lowered to the
requested symmetry (:func:`dpqtb.structures.lah10.lowered`: a random displacement and strain
projected onto the subgroup's invariant subspace).  Positions and cell then relax under ASE's
FixSymmetry (the operations of the lowered starting cell are kept; the structure may gain
symmetry, never lose it) and a FrechetCellFilter at the scalar pressure, so the result is the
nearest enthalpy minimum compatible with that subgroup.  Whether it falls back to Fm-3m is a
result, read from the space group of the relaxed cell at several tolerances.

``--prerelax-model`` first relaxes the same way with a Deep Potential (seconds, on rank 0), so
the DFT relaxation starts near its minimum and needs a few steps only; the DFT result does not
depend on the model beyond the basin it starts in.  The output extxyz carries the record
(enthalpy per atom, volume, pressure, space groups, steps) in its info, and OUT.json repeats it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from ase.units import GPa

from dpqtb.dft.settings import PRODUCTION, make_calculator
from dpqtb.entry import entry_point

#: spglib tolerances (Å) at which the space group of a relaxed cell is reported.
SYMPREC_A = (1e-3, 1e-2, 1e-1)


def relax(atoms, settings=PRODUCTION, pressure_GPa: float = 0.0, fmax: float = 0.02,
          steps: int = 200, txt: str | None = "-", trajectory: str | None = None, calc=None,
          symmetry_from=None, logfile: str | None = "-", append: bool = False,
          cell_filter: str = "frechet", restart: str | None = None, history=None,
          restart_usable: bool | None = None):
    """Relax positions and cell of ``atoms`` at ``pressure_GPa`` keeping its space group (that of
    ``symmetry_from`` if given: same atom order and lattice basis, e.g. the unrelaxed start).

    ``calc`` replaces the GPAW calculator (a Deep Potential through
    :class:`dpqtb.potential.calculator.PotentialCalculator`, or a stand-in in tests).  Each step's
    structure (with energy, forces, stress) goes to ``trajectory``, appended to when ``append``.
    ``cell_filter``: ASE's FrechetCellFilter (default) or "unit" (UnitCellFilter: the same minimum,
    without the matrix exponentials that dominate the cost with a cheap stand-in model).

    Resuming (``atoms`` = the last structure of ``history``, the trajectory so far): BFGS's state (Hessian
    estimate, last step, the filter's reference cell) is read from ``restart`` (ASE's JSON restart file,
    written after every step) when it is there and readable, else rebuilt by replaying ``history``'s
    positions and forces in the coordinates of the first run (its reference cell: ``history[0]``'s). Either
    way a resumed relaxation is the computation of an uninterrupted one, step for step (with a deterministic
    calculator: tests/test_dft_relax.py), so where it ends does not depend on where it was stopped. (Before,
    each resume started a fresh Hessian: other steps, sometimes fewer, sometimes more.) ``info["bfgs_state"]``
    says which state was used. ``restart_usable``: whether ``restart`` fits (decided once, on MPI rank 0,
    by :func:`relax_phase`; None: decided here)."""
    from ase.constraints import FixSymmetry
    from ase.optimize import BFGS

    atoms = atoms.copy()
    atoms.set_constraint()
    ref = atoms if symmetry_from is None else symmetry_from.copy()
    if len(ref) != len(atoms) or list(ref.numbers) != list(atoms.numbers):
        raise ValueError("symmetry_from must have the atoms of the structure, in the same order")
    atoms.set_constraint(FixSymmetry(ref, symprec=1e-3))
    atoms.calc = calc if calc is not None else make_calculator(atoms, settings, txt=txt)
    Filter = _filter_class(cell_filter)
    flt = Filter(atoms, scalar_pressure=pressure_GPa * GPa)
    state = "fresh"
    if history:
        flt.orig_cell = np.asarray(history[0].cell.array, dtype=float)  # the first run's coordinates
    if restart_usable is None:
        restart_usable = restart is not None and _usable_restart(restart, history, cell_filter)
    readable = bool(history) and bool(restart_usable)
    # ASE writes the start and every step (n steps: n + 1 structures); appending to a non-empty
    # trajectory it does not write the start again (it is the last structure already there)
    # one MPI world for the trajectory, the log and the restart file: GPAW's (ASE's default world is
    # GPAW's in practice; said here, not assumed)
    opt = BFGS(flt, logfile=logfile, trajectory=trajectory, append_trajectory=append,
               master=_is_master(), comm=_world(), restart=restart if readable else None)
    opt.restart = restart  # the state after every step, for the next resume
    if readable:
        state = "restart file"
    elif history:
        try:
            _replay(opt, Filter, history, atoms.constraints[0], pressure_GPa, flt.orig_cell)
            state = f"replayed {len(history)} structures"
        except KeyError as exc:  # a structure stored without forces or stress: a fresh Hessian, as before
            opt.initialize()
            state = f"fresh (the trajectory lacks {exc.args[0]})"
    opt.run(fmax=fmax, steps=steps)
    atoms.info["relax_steps"] = int(opt.nsteps)
    atoms.info["bfgs_state"] = state
    return atoms


def _usable_restart(path: str, history, cell_filter: str = "frechet") -> bool:
    """Whether the BFGS restart file ``path`` can resume the relaxation whose trajectory so far is ``history``
    (never a fresh one: ``history`` empty or None). One that cannot is removed, by MPI rank 0, and the state
    is then replayed from the trajectory: a stale, torn or foreign file (ASE would refuse it), or one whose
    state is not that of this trajectory (:func:`_restart_matches`)."""
    usable = bool(history) and _restart_matches(path, history, cell_filter)
    if not usable and _is_master() and os.path.isfile(path):
        os.remove(path)
    return usable


def _restart_matches(path: str, history, cell_filter: str) -> bool:
    """Whether ``path`` is a BFGS restart file (ASE JSON: Hessian, last position, last force, max step,
    reference cell) written by the run whose structures are ``history``: the reference cell is the first
    structure's, and the last position is, in the cell filter's coordinates, the structure before the last
    stored one (ASE writes the file in each step, before the move, so a run stopped after a force call, by its
    step limit or killed before its next step, left the state of that structure) or the last one (killed in the
    force call that followed a step). Either way BFGS then continues as the uninterrupted run would. Any other
    file (another relaxation with as many atoms, a state the trajectory has moved on from) does not fit, whatever
    its shape."""
    from ase.io.jsonio import read_json

    n = 3 * (len(history[-1]) + 3)
    try:
        with open(path) as fh:
            data = read_json(fh, always_array=False)
        h, pos0, f0, _, orig_cell = (np.asarray(x, dtype=float) for x in data)
        if h.shape != (n, n) or pos0.size != n or f0.size != n or orig_cell.shape != (3, 3):
            return False
    except Exception:  # noqa: BLE001 - missing, torn or foreign: not usable
        return False
    ref = np.asarray(history[0].cell.array, dtype=float)
    if not np.allclose(orig_cell, ref, rtol=0, atol=1e-10):
        return False
    Filter = _filter_class(cell_filter)
    return any(np.allclose(_filter_positions(img, Filter, ref), pos0.ravel(), rtol=0, atol=1e-8)
               for img in history[-2:])


def _filter_class(cell_filter: str):
    from ase.filters import FrechetCellFilter, UnitCellFilter

    if cell_filter not in ("frechet", "unit"):
        raise ValueError(f"cell_filter must be 'frechet' or 'unit', not {cell_filter!r}")
    return FrechetCellFilter if cell_filter == "frechet" else UnitCellFilter


def _filter_positions(img, Filter, orig_cell, pressure_GPa: float = 0.0):
    """The cell filter's coordinates of the stored structure ``img`` in the first run's reference cell
    (positions do not depend on the pressure)."""
    f = Filter(img, scalar_pressure=pressure_GPa * GPa)
    f.orig_cell = orig_cell
    return f.get_positions().ravel()


def _replay(opt, Filter, history, constraint, pressure_GPa: float, orig_cell) -> None:
    """Rebuild ``opt``'s BFGS state from the structures of an earlier run (ASE's ``replay_trajectory``
    in the cell filter's coordinates: each structure with its stored energy, forces and stress, the
    symmetry constraint, and the first run's reference cell)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    pos0 = f0 = None
    opt.state = None
    for img in history:
        res = img.calc.results
        w = img.copy()
        w.set_constraint(constraint)
        w.calc = SinglePointCalculator(w, energy=res.get("energy"), forces=res["forces"], stress=res["stress"])
        f = Filter(w, scalar_pressure=pressure_GPa * GPa)
        f.orig_cell = orig_cell
        pos, forces = f.get_positions().ravel(), f.get_forces().ravel()
        opt.update(pos, forces, pos if pos0 is None else pos0, forces if f0 is None else f0)
        pos0, f0 = pos, forces
    opt.pos0, opt.forces0 = pos0, f0


def _world():
    """GPAW's MPI world (ASE's serial world where GPAW is missing)."""
    try:
        from gpaw.mpi import world
    except ImportError:  # pragma: no cover
        from ase.parallel import world
    return world


def _is_master() -> bool:
    return _world().rank == 0


def space_groups(atoms) -> dict[str, str]:
    """Space group (international symbol and number) at each of ``SYMPREC_A``."""
    import spglib

    cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    return {f"{p:g}": str(spglib.get_spacegroup(cell, symprec=p)) for p in SYMPREC_A}


def record(atoms, pressure_GPa: float) -> dict:
    """Enthalpy per atom H = (E + p V)/N at the target pressure (E: the calculator's energy, for
    GPAW the Fermi–Dirac free energy), volume, pressure from the stress, max force, space groups."""
    from ase.calculators.calculator import PropertyNotImplementedError

    # GPAW: the Fermi–Dirac free energy, consistent with forces and stress (as in the labels);
    # a model has one energy (which ASE may also file as its free energy)
    kind = "free energy" if type(atoms.calc).__name__ == "GPAW" else "energy"
    try:
        e = float(atoms.get_potential_energy(force_consistent=True))
    except PropertyNotImplementedError:
        e = float(atoms.get_potential_energy())
    v = float(atoms.get_volume())
    n = len(atoms)
    stress = atoms.get_stress(voigt=False)
    return {"natoms": n, "calculator": type(atoms.calc).__name__, "energy_eV": e, "energy_kind": kind,
            "volume_A3_per_atom": v / n,
            "enthalpy_eV_per_atom": (e + pressure_GPa * GPa * v) / n,
            "pressure_GPa": float(-np.trace(stress) / 3 / GPa),
            "max_force_eV_per_A": float(np.linalg.norm(atoms.get_forces(), axis=1).max()),
            "cell_A": np.round(atoms.cell.array, 6).tolist(),
            "space_group": space_groups(atoms)}


def relax_phase(phase: str, pressure_GPa: float, cell: str = "primitive", amplitude_A: float = 0.1,
                seed: int = 0, calc=None, prerelax_calc=None, settings=PRODUCTION,
                fmax: float = 0.02, steps: int = 200, txt: str | None = "-",
                trajectory: str | None = None, share=None, logfile: str | None = "-",
                prerelax_fmax: float = 0.005, prerelax_steps: int = 2000,
                cell_filter: str = "frechet") -> tuple:
    """Lower Fm-3m at ``pressure_GPa`` to ``phase``, optionally pre-relax with ``prerelax_calc``,
    relax with ``calc`` (GPAW if None).  Returns the relaxed Atoms and the record (start, pre-relax
    and final space groups, enthalpies, steps).  ``share(obj)`` (with ``share.rank``) hands rank 0's
    pre-relaxed structure to every MPI rank; None when serial.

    With ``trajectory``, a killed run resumes: if the trajectory holds steps, the relaxation goes on
    from its last structure (appending), with the optimiser's state of the interrupted run
    (``TRAJECTORY.bfgs.json``, else replayed from the trajectory: :func:`relax`), and the pre-relaxation
    record is read back from ``TRAJECTORY.prerelax.json``."""
    import os

    from ase.io import read

    from dpqtb.structures.eos import fm3m_at_pressure
    from dpqtb.structures.lah10 import lowered

    start = fm3m_at_pressure(pressure_GPa, cell)
    if phase != "Fm-3m":
        start = lowered(start, phase, amplitude=amplitude_A, rng=seed)
    rec = {"phase_start": phase, "pressure_target_GPa": pressure_GPa, "cell": cell,
           "amplitude_A": amplitude_A, "seed": seed, "space_group_start": space_groups(start)}
    geo = start
    done_steps = 0
    history = None
    pre_path = f"{trajectory}.prerelax.json" if trajectory else None
    share = share if share is not None else _SERIAL
    root = share.rank == 0
    resume = None  # rank 0 decides whether to resume and hands the state to every rank
    if root:
        if trajectory and os.path.isfile(trajectory) and os.path.getsize(trajectory) > 0:
            images = read(trajectory, index=":")
            if images:
                last = images[-1].copy()
                last.calc = None
                pre_rec = None
                if pre_path and os.path.isfile(pre_path):
                    with open(pre_path) as fh:
                        pre_rec = json.load(fh)
                usable = _usable_restart(f"{trajectory}.bfgs.json", images, cell_filter)
                resume = (last, len(images) - 1, pre_rec, images, usable)  # the start is stored too
    resume = share(resume)
    if resume is not None:
        geo, done_steps, pre_rec, history, usable = resume
        rec["resumed_after_steps"] = done_steps
        if pre_rec is not None:
            rec["prerelax"] = pre_rec
    if prerelax_calc is not None and resume is None:
        pre = None
        if root:
            pre = relax(start, pressure_GPa=pressure_GPa, fmax=prerelax_fmax, steps=prerelax_steps,
                        calc=prerelax_calc, symmetry_from=start, logfile=None,
                        cell_filter=cell_filter)
            pre_rec = record(pre, pressure_GPa)
            pre.calc = None
            pre.set_constraint()
            pre = (pre, pre_rec)
        pre, pre_rec = share(pre)
        rec["prerelax"] = {**pre_rec, "steps": int(pre.info["relax_steps"])}
        if pre_path and root:
            with open(pre_path, "w") as fh:
                json.dump(rec["prerelax"], fh, indent=1)
        geo = pre
    out = relax(geo, settings=settings, pressure_GPa=pressure_GPa, fmax=fmax,
                steps=max(steps - done_steps, 0), txt=txt, trajectory=trajectory, calc=calc,
                symmetry_from=start, logfile=logfile, append=bool(done_steps),
                cell_filter=cell_filter, restart=f"{trajectory}.bfgs.json" if trajectory else None,
                history=history if resume is not None else None,
                restart_usable=usable if resume is not None else None)
    rec["final"] = {**record(out, pressure_GPa), "steps": done_steps + int(out.info["relax_steps"]),
                    "converged_fmax_eV_per_A": fmax}
    if resume is not None:
        rec["resumed_optimizer_state"] = out.info["bfgs_state"]
    return out, rec


class _Serial:
    """One process: rank 0, nothing to hand over."""

    rank = 0

    def __call__(self, obj):
        return obj


_SERIAL = _Serial()


class _Share:
    """Broadcast from rank 0 over GPAW's MPI world."""

    def __init__(self):
        from gpaw.mpi import world

        self.world, self.rank = world, world.rank

    def __call__(self, obj):
        from gpaw.mpi import broadcast

        # wrapped: GPAW's broadcast refuses None on the root, and "nothing" is a valid value here
        return broadcast((obj,) if self.rank == 0 else None, 0, comm=self.world)[0]


def cage_face_angles(atoms) -> dict:
    """Cage distortion of a relaxed cell (θ of ``dpqtb.structures.cage``, paper Fig. 2b): the mean over
    the H4 faces of their largest and smallest interior angle, and the mean |θ − 90°| (degrees).
    An 11-atom cell is taken to its 44-atom conventional cell; doubled so that the ±a neighbours of
    every La are distinct images."""
    from dpqtb.structures.cage import angle_stats, quadrilateral_angles
    from dpqtb.structures.lah10 import to_conventional

    big = (to_conventional(atoms) if len(atoms) == 11 else atoms).repeat(2)
    st = angle_stats(quadrilateral_angles(big.positions, big.cell.array, big.get_chemical_symbols()))
    return {"face_max_mean_deg": st.face_max_mean_deg, "face_min_mean_deg": st.face_min_mean_deg,
            "deviation_mean_deg": st.deviation_mean_deg}


def report(records: list[dict]) -> str:
    """Markdown table of relaxation records (``OUT.json``): enthalpies relative to the Fm-3m record
    at the same target pressure in the same cell (11 or 44 atoms: the k-point rule samples the two cells
    differently, ~1 meV/atom on Fm-3m itself), DFT and, where pre-relaxed, the model's; and the cage angles of
    the DFT structure where the record carries them (``cage``: :func:`cage_face_angles`)."""
    ref = {reference_key(r): r for r in records if r["phase_start"] == "Fm-3m"}
    rows = ["| start | P (GPa) | atoms | seed | pre-relax: model's group (0.01 Å) | model ΔH (meV/atom) | "
            "DFT group (1e-3 / 0.01 / 0.1 Å) | DFT ΔH (meV/atom) | V (Å³/atom) | DFT P (GPa) | "
            "max F (eV/Å) | DFT steps | θ face max / min (°) |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r["pressure_target_GPa"], reference_key(r)[1], r["phase_start"] != "Fm-3m",
                                             r["phase_start"], r["seed"])):
        f, p0 = r["final"], ref.get(reference_key(r))
        dh = (f"{1000 * (f['enthalpy_eV_per_atom'] - p0['final']['enthalpy_eV_per_atom']):+.2f}"
              if p0 else "–")
        pre = r.get("prerelax")
        pre_sg = pre["space_group"]["0.01"] if pre else "(none)"
        pre_dh = (f"{1000 * (pre['enthalpy_eV_per_atom'] - p0['prerelax']['enthalpy_eV_per_atom']):+.2f}"
                  if pre and p0 and p0.get("prerelax") else "–")
        sg = " / ".join(f["space_group"][f"{p:g}"] for p in SYMPREC_A)
        rows.append(f"| {r['phase_start']} | {r['pressure_target_GPa']:g} | {reference_key(r)[1]} | {r['seed']} | {pre_sg} | "
                    f"{pre_dh} | {sg} | {dh} | {f['volume_A3_per_atom']:.4f} | {f['pressure_GPa']:.1f} | "
                    f"{f['max_force_eV_per_A']:.3f} | {f['steps']} | {_cage_cell(r.get('cage'))} |")
    return "\n".join(rows) + "\n"


def reference_key(r: dict) -> tuple[float, int]:
    """(target pressure, atoms): a record's Fm-3m reference is the one with both the same. Records that name no
    atom count are 11-atom (primitive) cells, as every relaxation before the 44-atom ones."""
    n = r["final"].get("natoms") or {"primitive": 11, "conventional": 44}[r.get("cell", "primitive")]
    return float(r["pressure_target_GPa"]), int(n)


def _cage_cell(c: dict | None) -> str:
    return f"{c['face_max_mean_deg']:.1f} / {c['face_min_mean_deg']:.1f}" if c else "–"


@entry_point
def main(argv=None) -> int:
    from ase.io import write

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "report":  # python -m dpqtb.dft.relax report OUT.json ...
        recs = []
        for p in argv[1:]:
            with open(p) as fh:
                r = json.load(fh)
            if not isinstance(r, dict) or "phase_start" not in r or "final" not in r:
                print(f"dpqtb.dft.relax report: {p} is not a relaxation record (OUT.json)", file=sys.stderr)
                return 2
            structure = p[:-len(".json")] if p.endswith(".json") else ""
            if structure and os.path.isfile(structure):  # OUT.extxyz beside OUT.json
                from ase.io import read

                r = {**r, "cage": cage_face_angles(read(structure))}
            recs.append(r)
        print(report(recs), end="")
        return 0

    ap = argparse.ArgumentParser(prog="python -m dpqtb.dft.relax", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase", required=True, choices=["Fm-3m", "C2", "P-1", "R-3m"])
    ap.add_argument("--pressure-GPa", type=float, required=True)
    ap.add_argument("--cell", default="primitive", choices=["primitive", "conventional"])
    ap.add_argument("--amplitude-A", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fmax-eV-per-A", type=float, default=0.02)
    ap.add_argument("--steps", type=int, default=200, help="max DFT optimiser steps")
    ap.add_argument("--prerelax-model", default=None,
                    help="Deep Potential (builtin:NAME or a path) to pre-relax with on rank 0")
    ap.add_argument("--out", required=True, help="relaxed structure (.extxyz); OUT.json the record")
    a = ap.parse_args(argv)
    pre_calc = None
    share = _Share()
    if a.prerelax_model and share.rank == 0:
        # the Deep Potential as MD evaluates it (dpqtb's neighbour list + forward_lower)
        from dpqtb.potential.calculator import calculator_from_spec

        pre_calc, _ = calculator_from_spec(a.prerelax_model)
    elif a.prerelax_model:
        pre_calc = object()  # only rank 0 evaluates it; the others receive its result
    out, rec = relax_phase(a.phase, a.pressure_GPa, a.cell, a.amplitude_A, a.seed,
                           prerelax_calc=pre_calc, fmax=a.fmax_eV_per_A, steps=a.steps,
                           txt=a.out + ".gpaw.txt", trajectory=a.out + ".traj", share=share)
    if a.prerelax_model and "prerelax" in rec:
        rec["prerelax"]["model"] = a.prerelax_model
    if share.rank == 0:
        from dpqtb.dft.settings import code_versions

        rec["provenance"] = {"codes": code_versions(), "settings": PRODUCTION.as_dict(),
                             "mpi_ranks": share.world.size}
        out.set_constraint()
        out.info.update({"dpqtb_relax": json.dumps(rec)})
        write(a.out, out, format="extxyz")
        with open(a.out + ".json", "w") as fh:
            json.dump(rec, fh, indent=1)
        f = rec["final"]
        print(f"{a.phase} at {a.pressure_GPa} GPa: H = {f['enthalpy_eV_per_atom']:.5f} eV/atom, "
              f"space group {f['space_group']}, {f['steps']} steps", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
