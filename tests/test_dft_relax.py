"""Symmetry-constrained relaxation keeps the space group (stand-in calculator, no DFT)."""

import json

import numpy as np
import pytest
from ase.calculators.lj import LennardJones

from dpqtb.dft.relax import relax
from dpqtb.structures.lah10 import SPACE_GROUP_NUMBER, fm3m, lowered

spglib = pytest.importorskip("spglib")


@pytest.mark.parametrize("phase", ["C2", "P-1"])
def test_relax_keeps_space_group(phase):
    atoms = lowered(fm3m(4.9), phase, amplitude=0.1, rng=3)
    calc = LennardJones(sigma=1.2, epsilon=0.01, rc=3.0)
    out = relax(atoms, pressure_GPa=10.0, steps=5, txt=None, calc=calc)
    out.set_constraint()
    assert not np.allclose(out.positions, atoms.positions)
    ds = spglib.get_symmetry_dataset((out.cell.array, out.get_scaled_positions(), out.numbers),
                                     symprec=1e-3)
    assert ds.number == SPACE_GROUP_NUMBER[phase]


P_GPA = 20.0
#: stand-in models and settings shared by the relax_phase tests (pre-relax, then relax)
RELAX_KW = dict(amplitude_A=0.1, seed=2, fmax=1e-3, txt=None, logfile=None, prerelax_fmax=0.02,
                cell_filter="unit")  # the Frechet filter's matrix exponentials cost minutes here


def _pre():
    return LennardJones(sigma=1.0, epsilon=0.02, rc=3.0)


def _calc():
    return LennardJones(sigma=1.05, epsilon=0.02, rc=3.0)


@pytest.fixture(scope="module")
def relaxed_c2():
    from dpqtb.dft.relax import relax_phase

    return relax_phase("C2", P_GPA, calc=_calc(), prerelax_calc=_pre(), steps=400, **RELAX_KW)


def test_relax_phase_prerelax_keeps_the_start_group_and_reaches_the_pressure(relaxed_c2):
    """Pre-relax with one stand-in model, relax with another: the symmetry imposed in both stages is
    the lowered start's (its operations map the result onto itself), the final cell sits at the
    target pressure, and the record's enthalpy is (E + pV)/N of the result."""
    from ase.units import GPa

    from dpqtb.dft.relax import space_groups

    p = P_GPA
    out, rec = relaxed_c2
    out = out.copy()
    out.calc = _calc()
    assert rec["space_group_start"]["0.001"] == "C2 (5)"
    assert rec["prerelax"]["steps"] > 0 and rec["final"]["steps"] > 0
    # fmax applies to the filter's generalised forces (atom forces times the deformation gradient)
    assert rec["prerelax"]["max_force_eV_per_A"] < 0.04
    f = rec["final"]
    assert f["max_force_eV_per_A"] < 2e-3 and abs(f["pressure_GPa"] - p) < 0.05
    assert f["enthalpy_eV_per_atom"] == pytest.approx(
        (out.get_potential_energy() + p * GPa * out.get_volume()) / len(out), rel=1e-12)
    # every operation of the start maps the relaxed cell onto itself
    start = lowered(fm3m(4.9), "C2", amplitude=0.1, rng=2)
    ds = spglib.get_symmetry_dataset((start.cell.array, start.get_scaled_positions(), start.numbers),
                                     symprec=1e-3)
    frac = out.get_scaled_positions()
    for R, t in zip(ds.rotations, ds.translations):
        img = (frac @ R.T + t) % 1.0
        d = (img[:, None, :] - frac[None, :, :] + 0.5) % 1.0 - 0.5
        assert np.abs(d).max(axis=2).min(axis=1).max() < 1e-4
    assert set(space_groups(out)) == {"0.001", "0.01", "0.1"}


def test_report_gives_enthalpies_relative_to_fm3m():
    from dpqtb.dft.relax import report

    def rec(phase, h, pre_h=None, seed=0, natoms=None):
        sg = {"0.001": "X", "0.01": "Y", "0.1": "Z"}
        r = {"phase_start": phase, "pressure_target_GPa": 100.0, "seed": seed,
             "final": {"enthalpy_eV_per_atom": h, "space_group": sg, "volume_A3_per_atom": 3.3,
                       "pressure_GPa": 100.0, "max_force_eV_per_A": 0.01, "steps": 3}}
        if natoms:
            r["final"]["natoms"] = natoms
        if pre_h is not None:
            r["prerelax"] = {"enthalpy_eV_per_atom": pre_h, "space_group": sg}
        return r

    # the 44-atom pair (its Fm-3m 1 meV/atom lower: the k-point rule samples that cell differently) comes first
    # in the list: each cell size is referenced to its own Fm-3m (records without an atom count are 11-atom)
    md = report([rec("Fm-3m", -1.001, natoms=44), rec("C2", -1.005, seed=2, natoms=44),
                 rec("C2", -1.0075, -2.0020, 1), rec("Fm-3m", -1.0, -2.0)])
    lines = md.strip().splitlines()
    assert lines[2].startswith("| Fm-3m | 100 | 11 | 0 |") and "+0.00" in lines[2]
    assert lines[3].startswith("| C2 | 100 | 11 | 1 | Y | -2.00 | X / Y / Z | -7.50 |")
    assert lines[4].startswith("| Fm-3m | 100 | 44 | 0 |")
    assert lines[5].startswith("| C2 | 100 | 44 | 2 | (none) | – | X / Y / Z | -4.00 |")


def test_relax_phase_resumes_from_its_trajectory(tmp_path, relaxed_c2):
    """A run stopped after a few steps and started again continues from the last stored structure
    (appending) and reaches the same minimum as an uninterrupted run."""
    from dpqtb.dft.relax import relax_phase

    calc, kw = _calc, RELAX_KW
    rfull = relaxed_c2[1]
    traj = str(tmp_path / "cut.traj")
    _, r1 = relax_phase("C2", P_GPA, calc=calc(), prerelax_calc=_pre(), steps=3, trajectory=traj, **kw)
    assert r1["final"]["steps"] == 3 and "resumed_after_steps" not in r1
    from ase.io import read

    assert len(read(traj, ":")) == 4  # the start and 3 steps

    class NoCalls:  # resuming must not pre-relax again
        def __getattr__(self, name):
            raise AssertionError("the pre-relaxation model was used on resume")

    out, r2 = relax_phase("C2", P_GPA, calc=calc(), prerelax_calc=NoCalls(), steps=400,
                          trajectory=traj, **kw)
    n = len(read(traj, ":"))
    assert r2["resumed_after_steps"] == 3 and r2["final"]["steps"] == n - 1 > 3  # no duplicate start
    assert r2["prerelax"] == r1["prerelax"]  # read back, not recomputed
    # the same minimum (the optimiser's state is restored: the steps themselves are compared below)
    assert r2["final"]["enthalpy_eV_per_atom"] == pytest.approx(rfull["final"]["enthalpy_eV_per_atom"],
                                                                abs=1e-6)
    assert r2["resumed_optimizer_state"] == "restart file"


RESUMED_STATE = {"restart file": "restart file", "killed in a force call": "restart file",
                 "missing": "replayed 5 structures", "torn": "replayed 5 structures",
                 "foreign": "replayed 5 structures", "stale": "replayed 5 structures"}


@pytest.mark.parametrize("state", list(RESUMED_STATE))
def test_resumed_relaxation_takes_the_steps_of_an_uninterrupted_one(tmp_path, state):
    """Stopped after 4 steps and resumed, the relaxation continues with the optimiser's state of the
    interrupted run, so its structures are those of an uninterrupted run, step for step: from BFGS's
    restart file (written at every step, before the move: a run stopped after a force call has the state of
    the structure before the last; one killed in the force call after a step, that of the last), or, where
    that file is missing (a trajectory of an older dpqtb), torn (killed while writing it), foreign (another
    relaxation with as many atoms) or stale (a state the trajectory has moved on from), rebuilt by replaying
    the trajectory. (A fresh Hessian, what a resume did before, takes other steps: 91 structures instead of
    104 here, so a relaxation's end depended on where it had been stopped; so does a state that is not the
    trajectory's.)"""
    from ase.io import read, write

    from dpqtb.dft.relax import relax_phase

    kw = {**RELAX_KW, "fmax": 1e-4}
    full = str(tmp_path / "full.traj")
    relax_phase("C2", P_GPA, calc=_calc(), prerelax_calc=_pre(), steps=400, trajectory=full, **kw)
    cut = str(tmp_path / "cut.traj")
    restart = tmp_path / "cut.traj.bfgs.json"
    if state == "stale":  # the restart file after 3 steps (the run is deterministic), then 4 steps
        relax_phase("C2", P_GPA, calc=_calc(), prerelax_calc=_pre(), steps=3, trajectory=cut, **kw)
        behind = restart.read_text()
    relax_phase("C2", P_GPA, calc=_calc(), prerelax_calc=_pre(), steps=4, trajectory=cut, **kw)
    assert restart.is_file()
    if state == "missing":
        restart.unlink()
    elif state == "torn":
        restart.write_text(restart.read_text()[:100])
    elif state == "stale":
        restart.write_text(behind)
    elif state == "foreign":  # the same phase and atom count, another distortion: the file's shape fits
        other = str(tmp_path / "other.traj")
        relax_phase("C2", P_GPA, calc=_calc(), prerelax_calc=_pre(), steps=4, trajectory=other, **{**kw, "seed": 7})
        restart.write_text((tmp_path / "other.traj.bfgs.json").read_text())
    elif state == "killed in a force call":  # after the 4th step's restart write, before its structure's
        write(cut, read(cut, ":")[:-1])
    _, rec = relax_phase("C2", P_GPA, calc=_calc(), prerelax_calc=_pre(), steps=400, trajectory=cut, **kw)
    a, b = read(full, ":"), read(cut, ":")
    assert rec["resumed_optimizer_state"] == RESUMED_STATE[state]
    assert len(b) == len(a) > 10
    for x, y in zip(a, b):
        np.testing.assert_allclose(y.positions, x.positions, rtol=0, atol=1e-10)
        np.testing.assert_allclose(y.cell.array, x.cell.array, rtol=0, atol=1e-10)


def test_cage_face_angles_of_relaxed_cells_match_the_closed_form(tmp_path):
    """θ of a relaxed cell (report column): 90°/90° for Fm-3m; for a homogeneously deformed Fm-3m cell
    every H4 face is the parallelogram of cubic_face_angles(F) — the mean largest/smallest angle over
    the three face orientations; an 11-atom cell and its 44-atom conventional cell agree."""
    from ase.io import write

    from dpqtb.analysis.cage import strained_face_angles
    from dpqtb.dft.relax import cage_face_angles, main
    from dpqtb.structures.lah10 import fm3m, to_conventional

    c = cage_face_angles(fm3m(5.0))
    # tolerance: fm3m rounds fractional coordinates to 1e-10, i.e. ~1e-8 degrees
    assert c["face_max_mean_deg"] == pytest.approx(90.0, abs=1e-6) and c["deviation_mean_deg"] < 1e-6
    F = np.array([[1.0, 0.04, 0.0], [0.0, 1.0, -0.03], [0.02, 0.0, 0.98]])
    prim = fm3m(5.0)
    prim.set_cell(prim.cell.array @ F.T, scale_atoms=True)
    ref = strained_face_angles(F)
    want = {"face_max_mean_deg": ref.max(axis=1).mean(), "face_min_mean_deg": ref.min(axis=1).mean(),
            "deviation_mean_deg": np.abs(ref - 90.0).mean()}
    for cell in (prim, to_conventional(prim)):
        got = cage_face_angles(cell)
        for k, v in want.items():
            assert got[k] == pytest.approx(v, abs=1e-6), k
    # the report reads OUT.extxyz beside OUT.json
    write(tmp_path / "x.extxyz", prim)
    rec = {"phase_start": "C2", "pressure_target_GPa": 100.0, "seed": 0,
           "final": {"enthalpy_eV_per_atom": -1.0, "space_group": {"0.001": "X", "0.01": "Y", "0.1": "Z"},
                     "volume_A3_per_atom": 3.3, "pressure_GPa": 100.0, "max_force_eV_per_A": 0.01, "steps": 3}}
    (tmp_path / "x.extxyz.json").write_text(json.dumps(rec))
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["report", str(tmp_path / "x.extxyz.json")]) == 0
    assert f"| {want['face_max_mean_deg']:.1f} / {want['face_min_mean_deg']:.1f} |" in buf.getvalue()


def test_prerelax_with_the_shipped_model_through_potential_calculator():
    """The pre-relaxation model is the Deep Potential as MD evaluates it (PotentialCalculator around
    DeepPotential, from --prerelax-model's spec): the record's pressure (ASE stress) equals the virial
    pressure tr(W)/(3V) of DeepPotential, the symmetry-constrained relaxation lowers the enthalpy and
    keeps the group, and the provenance names the model."""
    pytest.importorskip("deepmd.pt")
    import torch
    from ase.units import GPa

    from dpqtb.dft.relax import record
    from dpqtb.potential.calculator import PotentialCalculator, calculator_from_spec
    from dpqtb.structures.eos import fm3m_at_pressure

    calc, prov = calculator_from_spec("builtin:lah10")
    assert isinstance(calc, PotentialCalculator)
    assert prov["relax_model"] == "builtin:lah10" and len(prov["relax_model_sha256"]) == 16
    start = lowered(fm3m_at_pressure(200.0), "C2", amplitude=0.05, rng=4)
    atoms = start.copy()
    atoms.calc = calc
    rec0 = record(atoms, 200.0)
    pot = calc.potential
    out = pot(torch.tensor(start.positions), torch.tensor(start.cell.array),
              torch.tensor([pot.type_map.index(s) for s in start.get_chemical_symbols()]))
    p_virial = float(torch.trace(out.virial)) / (3 * start.get_volume()) / GPa
    assert rec0["pressure_GPa"] == pytest.approx(p_virial, rel=1e-12)
    assert rec0["calculator"] == "PotentialCalculator" and rec0["energy_eV"] == pytest.approx(float(out.energy))
    relaxed = relax(start, pressure_GPa=200.0, fmax=0.05, steps=15, calc=calc, logfile=None, cell_filter="unit")
    rec1 = record(relaxed, 200.0)
    assert rec1["enthalpy_eV_per_atom"] < rec0["enthalpy_eV_per_atom"]
    ds = spglib.get_symmetry_dataset((relaxed.cell.array, relaxed.get_scaled_positions(), relaxed.numbers),
                                     symprec=1e-3)
    assert ds.number == SPACE_GROUP_NUMBER["C2"]
