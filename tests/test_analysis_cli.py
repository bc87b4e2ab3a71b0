"""Trajectory reader, proton exchanges and the `dpqtb analyze` command end to end."""

import json

import numpy as np
import pytest
from ase.io import iread

from dpqtb import DpqtbError
from dpqtb.analysis.exchange import SiteTracker, cycle_counts
from dpqtb.analysis.trajectory import Trajectory, write_extxyz_frames
from dpqtb.cli import main
from dpqtb.structures.lah10 import fm3m, supercell

A = 5.1


def _lattice():
    return supercell(fm3m(A, "conventional"), 2)


def test_fast_reader_matches_ase_and_checks(tmp_path):
    at = fm3m(A, "conventional")
    rng = np.random.default_rng(0)
    frames = [at.positions + rng.normal(scale=0.1, size=at.positions.shape) + 20 * k for k in range(4)]
    vel = [rng.normal(size=at.positions.shape) for _ in range(4)]
    path = tmp_path / "t.extxyz"
    write_extxyz_frames(path, frames, at.get_chemical_symbols(), at.cell.array, 2.0, velocities=vel)
    got = list(Trajectory(path))
    ref = list(iread(str(path), ":"))
    assert len(got) == 4
    for fr, r, v in zip(got, ref, vel):
        np.testing.assert_allclose(fr.positions, r.positions)  # unwrapped, never folded
        np.testing.assert_allclose(fr.velocities, v, atol=1e-8)  # 8 decimals in the file
        np.testing.assert_allclose(fr.cell, r.cell.array)
    assert [fr.time_fs for fr in got] == [0.0, 2.0, 4.0, 6.0]
    assert [fr.index for fr in Trajectory(path, start=1, stride=2)] == [1, 3]
    # a missing frame (time jump) is an error
    bad = tmp_path / "gap.extxyz"
    lines = path.read_text().splitlines(keepends=True)
    nl = len(at) + 2
    bad.write_text("".join(lines[: 2 * nl] + lines[3 * nl:]))
    with pytest.raises(DpqtbError, match="missing frames"):
        list(Trajectory(bad))
    # mismatched species
    mixed = tmp_path / "mixed.extxyz"
    sym = at.get_chemical_symbols()
    write_extxyz_frames(mixed, frames[:1], sym, at.cell.array, 1.0)
    with open(mixed, "a") as fh:
        from ase import Atoms
        from ase.io import write

        b = Atoms(sym[::-1], positions=frames[1], cell=at.cell.array, pbc=True)
        b.info.update(time_fs=1.0)
        write(fh, b, format="extxyz")
    with pytest.raises(DpqtbError, match="mismatched species"):
        list(Trajectory(mixed))
    empty = tmp_path / "empty.extxyz"
    empty.write_text("")
    with pytest.raises(DpqtbError, match="empty"):
        Trajectory(empty)


def test_cycle_counts():
    assert cycle_counts(np.arange(5), np.array([1, 0, 2, 4, 3])) == (2, 0)
    assert cycle_counts(np.arange(5), np.array([1, 2, 0, 3, 4])) == (0, 3)


def test_site_tracker_swaps_rings_and_hops_under_drift_and_strain():
    at = _lattice()
    sym = np.array(at.get_chemical_symbols())
    h = np.flatnonzero(sym == "H")
    pos0 = at.positions
    tracker = SiteTracker(pos0, sym, at.cell.array)
    rng = np.random.default_rng(2)
    p, q, r, s, u = h[[0, 1, 10, 11, 12]]
    for k in range(30):
        pos = pos0.copy()
        if 5 <= k < 20:  # p <-> q swap
            pos[p], pos[q] = pos0[q], pos0[p]
        if k >= 20:  # ... and back: two hops each
            pass
        if k >= 8:  # 3-cycle r -> s -> u -> r
            pos[r], pos[s], pos[u] = pos0[s], pos0[u], pos0[r]
        pos = pos + rng.normal(scale=0.05, size=pos.shape)  # thermal noise below the capture radius
        F = np.eye(3) + 0.002 * k * np.array([[1, 0.3, 0], [0, -0.5, 0], [0, 0, 0.2]])
        cell = at.cell.array @ F.T
        tracker.update(pos @ F.T + 0.1 * k, cell, float(k))  # strain + drift of everything
    res = tracker.result()
    hops = dict(zip(h, res.hops))
    assert hops[p] == 2 and hops[q] == 2 and hops[r] == hops[s] == hops[u] == 1
    assert sum(res.hops) == 7
    assert res.class_counts() == {"none": len(h) - 5, "one": 3, "several": 2}
    assert res.n_pair_exchanges[10] == 1 and res.n_pair_exchanges[25] == 0
    assert res.n_ring_protons[10] == 3 and res.n_off_initial[10] == 5 and res.n_off_initial[25] == 3


@pytest.fixture(scope="module")
def md_run(tmp_path_factory):
    from dpqtb.md.integrators import Langevin, TemperatureSchedule
    from dpqtb.md.run import Simulation
    from dpqtb.md.state import MDState
    from dpqtb.potential import EinsteinCrystal

    out = tmp_path_factory.mktemp("run")
    state = MDState.from_atoms(fm3m(A, "conventional"))
    pot = EinsteinCrystal(state.positions.clone(), state.cell.clone(), k_by_species={"La": 20.0, "H": 10.0})
    Simulation(state, Langevin(pot, 0.5, TemperatureSchedule(300.0), 100.0, seed=1), out, thermo_every=2,
               trajectory_every=2, trajectory_velocities=True, progress=False).run(240)
    return out


def test_analyze_command_writes_everything(md_run, tmp_path):
    out = tmp_path / "ana"
    assert main(["analyze", str(md_run), "--out", str(out), "--vdos-max-lag-fs", "40"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for f in ("msd.csv", "msd_prime.csv", "rdf.csv", "vdos.csv", "theta.csv", "exchanges.csv",
              "msd.png", "rdf.png", "vdos.png", "theta.png"):
        assert (out / f).stat().st_size > 0, f
    assert summary["n_frames"] == 121 and summary["species"] == {"La": 4, "H": 40}
    assert summary["target_temperature_K"] == pytest.approx(300.0)
    # Einstein crystal: bounded motion, no hops, MSD′ ≤ MSD, cubic on average
    assert summary["exchanges"]["n_hops"] == 0
    mp = np.loadtxt(out / "msd_prime.csv", delimiter=",", skiprows=1)
    # the identity permutation is a candidate: MSD′(t) <= |r_i(t) − r_i(0)|² averaged (origin 0)
    frames = [fr.positions[fr.symbols == "H"] for fr in Trajectory(md_run)]
    direct = [np.mean(np.sum((f - frames[0]) ** 2, axis=1)) for f in frames]
    assert np.all(mp[:, 1] <= np.array(direct) * (1 + 1e-7) + 1e-12)  # CSV keeps 8 digits
    np.testing.assert_allclose(mp[:, 2], direct, rtol=1e-7, atol=1e-12)
    assert abs(summary["cage_angle"]["time_averaged_structure"]["theta_mean_deg"] - 90) < 1.0
    assert open(out / "msd.csv").readline().strip() == "time_fs,msd_La_A2,msd_H_A2"
    # H vibrates at nu = sqrt(k/m)/2π of the Einstein spring (resolution 2/(M dt) = 25 THz here)
    from dpqtb.units import MVV2E, THZ

    nu_h = np.sqrt(10.0 / (1.008 * MVV2E)) / (2 * np.pi) / THZ
    assert abs(summary["vdos"]["peak_THz"]["H"] - nu_h) < 13.0


def test_analyze_bad_input(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "trajectory.extxyz").write_text("")
    assert main(["analyze", str(tmp_path)]) == 2
    assert "empty" in capsys.readouterr().err


def test_analyze_reference_structure_checked(md_run, tmp_path, capsys):
    from ase.io import write

    bad = fm3m(A, "conventional")[::-1]
    write(tmp_path / "ref.extxyz", bad)
    assert main(["analyze", str(md_run), "--out", str(tmp_path / "o"), "--no-plots",
                 "--reference-structure", str(tmp_path / "ref.extxyz")]) == 2
    assert "species order" in capsys.readouterr().err


def test_iter_atoms_matches_full_frames(md_run):
    traj = Trajectory(md_run, start=3, stride=7)
    full = [(fr.time_fs, fr.positions[[0, 5, 17]]) for fr in traj]
    part = list(traj.iter_atoms([0, 5, 17]))
    assert len(full) == len(part)
    for (t1, p1), (t2, p2) in zip(full, part):
        assert t1 == t2
        np.testing.assert_array_equal(p1, p2)


def test_analyze_missing_frames_and_mismatched_species_exit_2(tmp_path, capsys):
    at = fm3m(A, "conventional")
    sym = at.get_chemical_symbols()
    frames = [at.positions + 0.01 * k for k in range(6)]
    gap = tmp_path / "gap"
    gap.mkdir()
    write_extxyz_frames(gap / "trajectory.extxyz", frames, sym, at.cell.array, 1.0)
    text = (gap / "trajectory.extxyz").read_text().splitlines(keepends=True)
    nl = len(at) + 2
    (gap / "trajectory.extxyz").write_text("".join(text[: 3 * nl] + text[4 * nl:]))  # drop frame 3
    assert main(["analyze", str(gap), "--no-plots"]) == 2
    assert "missing frames" in capsys.readouterr().err
    one = tmp_path / "one"
    one.mkdir()
    write_extxyz_frames(one / "trajectory.extxyz", frames[:1], sym, at.cell.array, 1.0)
    assert main(["analyze", str(one), "--no-plots"]) == 2
    assert "2 frames" in capsys.readouterr().err


def test_ase_trajectory_format_needs_timestep(tmp_path):
    from ase.io import Trajectory as AseTraj

    at = fm3m(A, "conventional")
    with AseTraj(str(tmp_path / "x.traj"), "w") as t:
        for k in range(3):
            b = at.copy()
            b.positions += 0.1 * k
            t.write(b)
    with pytest.raises(DpqtbError, match="timestep_fs"):
        list(Trajectory(tmp_path / "x.traj"))
    frames = list(Trajectory(tmp_path / "x.traj", timestep_fs=5.0))
    assert [f.time_fs for f in frames] == [0.0, 5.0, 10.0]
    np.testing.assert_allclose(frames[2].positions, at.positions + 0.2)


def test_analyze_ase_file_with_frame_dt(tmp_path):
    from ase.io import Trajectory as AseTraj

    at = fm3m(A, "conventional")
    rng = np.random.default_rng(0)
    with AseTraj(str(tmp_path / "x.traj"), "w") as t:
        for k in range(12):
            b = at.copy()
            b.positions += rng.normal(scale=0.05, size=b.positions.shape)
            t.write(b)
    out = tmp_path / "o"
    assert main(["analyze", str(tmp_path / "x.traj"), "--frame-dt-fs", "2", "--stride", "2",
                 "--out", str(out), "--no-plots"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["n_frames"] == 6 and s["frame_dt_fs"] == 4.0


def test_e_ref_first_is_the_starting_potential_energy(md_run, tmp_path):
    import csv

    rows = list(csv.DictReader(open(md_run / "thermo.csv")))
    e0 = float(rows[0]["potential_eV"])
    assert main(["analyze", str(md_run), "--out", str(tmp_path / "a"), "--no-plots", "--e-ref-eV", "first"]) == 0
    assert main(["analyze", str(md_run), "--out", str(tmp_path / "b"), "--no-plots", "--e-ref-eV", repr(e0)]) == 0
    a = json.loads((tmp_path / "a" / "summary.json").read_text())["energy"]
    b = json.loads((tmp_path / "b" / "summary.json").read_text())["energy"]
    assert a["e_ref_eV"] == e0 and a["E_per_3NkB_K"] == pytest.approx(b["E_per_3NkB_K"], rel=1e-12)
    with pytest.raises(SystemExit) as exc:  # argparse: usage line + one-line error, exit status 2
        main(["analyze", str(md_run), "--no-plots", "--e-ref-eV", "last"])
    assert exc.value.code == 2
