"""`dpqtb lammps` (issue 26): the deck against its config (no LAMMPS needed), the dump and log readers
behind `dpqtb analyze`, and the deck run by a real LAMMPS (skipped, saying why, when none is installed)."""

import json
import re
import shlex

import numpy as np
import pytest

from dpqtb import DpqtbError
from dpqtb.analysis.trajectory import Trajectory, write_extxyz_frames
from dpqtb.cli import main
from dpqtb.lammps.deck import write_deck
from dpqtb.lammps.dump import iter_dump, read_log_thermo
from dpqtb.md.config import validate
from dpqtb.rundir import LAMMPS_DATA, LAMMPS_DUMP, LAMMPS_INPUT, LAMMPS_LOG, LAMMPS_META
from dpqtb.structures.lah10 import fm3m

KB = 8.617333262e-5  # eV/K
MVV2E_METAL = 1.0364269e-4  # amu (Å/ps)² -> eV


def _raw(**sections):
    raw = {"system": {"structure": "builtin:lah10", "pressure_GPa": 200},
           "potential": {"kind": "deepmd", "model": "builtin:lah10"},
           "md": {"timestep_fs": 0.5, "steps": 200, "seed": 7},
           "thermostat": {"kind": "qtb", "temperature_K": 5.0, "damp_fs": 100.0, "f_max_THz": 200.0, "n_f": 64},
           "output": {"thermo_every": 5, "trajectory_every": 10}}
    for name, table in sections.items():
        if table is None:
            raw.pop(name, None)
        else:
            raw[name] = {**raw.get(name, {}), **table}
    return raw


def _deck(tmp_path, raw, copy_model=False):
    cfg = validate(raw, base_dir=tmp_path)
    return cfg, write_deck(cfg, tmp_path / "deck", raw=raw, copy_model=copy_model)


def _commands(deck_dir):
    """command -> list of argument lists of in.lammps (comments stripped)."""
    out = {}
    for line in (deck_dir / LAMMPS_INPUT).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            words = shlex.split(line)
            out.setdefault(words[0], []).append(words[1:])
    return out


def _data_file(path):
    """(masses by type, types, positions, velocities Å/ps) of a LAMMPS data file written by the deck."""
    text = path.read_text().splitlines()
    sec = {}
    name = None
    for ln in text:
        s = ln.split("#")[0].strip()
        if s in ("Masses", "Atoms", "Velocities"):
            name = s
            sec[name] = []
        elif s and name:
            sec[name].append([float(x) for x in s.split()])
    masses = {int(r[0]): r[1] for r in sec["Masses"]}
    atoms = np.array(sorted(sec["Atoms"]))
    vel = np.array(sorted(sec["Velocities"]))
    return masses, atoms[:, 1].astype(int), atoms[:, 2:5], vel[:, 1:4]


def test_qtb_deck_matches_config(tmp_path):
    raw = _raw()
    cfg, deck = _deck(tmp_path, raw, copy_model=True)
    d = deck.directory
    cmd = _commands(d)
    assert cmd["units"] == [["metal"]]
    assert cmd["read_data"] == [[LAMMPS_DATA]]
    assert cmd["pair_style"] == [["deepmd", "lah10.pth"]]
    assert (d / "lah10.pth").stat().st_size > 0
    assert cmd["pair_coeff"] == [["*", "*", "La", "H"]]
    assert cmd["timestep"] == [["0.0005"]]  # ps
    fixes = {f[0]: f[1:] for f in cmd["fix"]}
    assert fixes["integrate"] == ["all", "nve"]
    q = fixes["bath"]
    assert q[:2] == ["all", "qtb"]
    kv = dict(zip(q[2::2], q[3::2]))
    assert kv == {"temp": "5", "damp": "0.1", "seed": "7", "f_max": "200", "N_f": "64"}
    assert cmd["run"] == [["200"]]
    assert cmd["thermo"] == [["5"]]
    assert cmd["dump"] == [["traj", "all", "custom", "10", LAMMPS_DUMP, "id", "type", "xu", "yu", "zu",
                            "vx", "vy", "vz"]]
    # thermo columns named as in thermo.csv; fix qtb tallies no energy: no conserved_eV
    mod = cmd["thermo_modify"][0]
    names = [mod[i + 2] for i, w in enumerate(mod) if w == "colname"]
    assert names == ["step", "time_fs", "temperature_K", "target_temperature_K", "kinetic_eV", "potential_eV",
                     "total_eV", "pressure_GPa", "volume_A3", "temperature_La_K", "temperature_H_K",
                     "pressure_bar"]
    # per-species temperatures with dpqtb's degrees of freedom: 3 M_X/M taken by the centre of mass
    extra = {c[0]: float(c[2]) for c in cmd["compute_modify"]}
    m_la, m_h = 138.90547, 1.008
    M = 4 * m_la + 40 * m_h
    assert extra["T_La"] == pytest.approx(3 * 4 * m_la / M, rel=1e-6)
    assert extra["T_H"] == pytest.approx(3 * 40 * m_h / M, rel=1e-6)
    # the data file: 44 atoms, types by the type map, masses, initial velocities at 5 K (Å/ps), no net momentum
    masses, types, pos, vel = _data_file(d / LAMMPS_DATA)
    assert masses[1] == pytest.approx(m_la, rel=1e-6) and masses[2] == pytest.approx(m_h, rel=1e-3)
    assert len(types) == 44 and (types == 1).sum() == 4 and (types == 2).sum() == 40
    m = np.array([masses[t] for t in types])
    np.testing.assert_allclose((m[:, None] * vel).sum(0), 0.0, atol=1e-9)
    t_kin = (m[:, None] * vel ** 2).sum() * MVV2E_METAL / ((3 * 44 - 3) * KB)
    assert 2.0 < t_kin < 9.0  # 129 degrees of freedom drawn at 5 K
    # same draw as dpqtb md's initial momenta (seed + 7919), converted Å/fs -> Å/ps
    import torch

    from dpqtb.md.state import maxwell_boltzmann_momenta

    gen = torch.Generator()
    gen.manual_seed(cfg.md.momenta_seed)
    mt = torch.tensor(m, dtype=torch.float64)
    v_ref = (maxwell_boltzmann_momenta(mt, 5.0, gen) / mt[:, None]).numpy() * 1000.0
    np.testing.assert_allclose(vel, v_ref, rtol=1e-9, atol=1e-12)
    meta = json.loads((d / LAMMPS_META).read_text())
    assert meta["type_map"] == ["La", "H"] and meta["timestep_fs"] == 0.5 and meta["dump_every"] == 10
    assert meta["integrator"] == "qtb"
    text = (d / LAMMPS_INPUT).read_text()
    assert "unweighted mean random force" in text  # the differences are written in the deck
    assert any("unweighted" in w for w in deck.warnings)


def test_ensemble_deck_writes_deepmd_model_deviation(tmp_path):
    """potential.ensemble becomes DeePMD-kit's own multi-model pair style: the driving model first, the other
    members after it (the driver named again in the ensemble counts once), out_freq = potential.deviation_every,
    out_file model_devi.out; the members are copied under numbered names, and the difference is noted."""
    from _deepmd_models import frozen_random_model

    (tmp_path / "m").mkdir()
    m1 = frozen_random_model(tmp_path / "m" / "model.pth", seed=3)
    raw = _raw(potential={"ensemble": [str(m1), "builtin:lah10"], "deviation_every": 10})
    cfg, deck = _deck(tmp_path, raw, copy_model=True)
    cmd = _commands(deck.directory)
    assert cmd["pair_style"] == [["deepmd", "lah10.pth", "member1_model.pth", "out_freq", "10",
                                  "out_file", "model_devi.out"]]
    assert (deck.directory / "member1_model.pth").read_bytes() == m1.read_bytes()
    meta = json.loads((deck.directory / LAMMPS_META).read_text())
    assert meta["ensemble"] == ["member1_model.pth"]
    assert any("model_devi.out every 10 steps" in n for n in deck.warnings)
    _, by_path = _deck(tmp_path / "abs", raw, copy_model=False)
    words = _commands(by_path.directory)["pair_style"][0]
    assert words[2] == str(m1.resolve()) and words[3:] == ["out_freq", "10", "out_file", "model_devi.out"]


def test_barostat_langevin_and_nve_decks(tmp_path):
    raw = _raw(barostat={"pressure_GPa": 200.0, "cell": "anisotropic", "damp_fs": 500.0})
    _, deck = _deck(tmp_path, raw)
    fixes = {f[0]: f[1:] for f in _commands(deck.directory)["fix"]}
    assert fixes["integrate"] == ["all", "nph", "aniso", "2000000", "2000000", "0.5"]  # bar, ps
    assert any("fix nph" in w and "stochastic cell rescaling" in w for w in deck.warnings)
    assert "cella" in _commands(deck.directory)["thermo_style"][0]

    raw = _raw(thermostat={"kind": "langevin", "temperature_K": [100.0, 300.0], "damp_fs": 200.0,
                           "f_max_THz": None, "n_f": None})
    raw["thermostat"] = {k: v for k, v in raw["thermostat"].items() if v is not None}
    _, deck = _deck(tmp_path / "l", raw)
    cmd = _commands(deck.directory)
    fixes = {f[0]: f[1:] for f in cmd["fix"]}
    assert fixes["bath"] == ["all", "langevin", "100", "300", "0.2", "7", "zero", "yes", "tally", "yes"]
    assert fixes["integrate"] == ["all", "nve"]
    assert ["target_temperature_K", "equal", "ramp(100,300)"] in cmd["variable"]
    assert "econserve" in cmd["thermo_style"][0]

    raw = _raw(thermostat={"kind": "nve"}, system={"initial_temperature_K": 50.0})
    raw["thermostat"] = {"kind": "nve"}
    _, deck = _deck(tmp_path / "n", raw)
    fixes = {f[0]: f[1:] for f in _commands(deck.directory)["fix"]}
    assert fixes == {"integrate": ["all", "nve"]}


@pytest.mark.parametrize("change, match", [
    ({"thermostat": {"kind": "adqtb"}}, "no adaptive QTB"),
    ({"thermostat": {"kind": "pimd", "beads": 4, "f_max_THz": None, "n_f": None}}, "PIMD"),
    ({"thermostat": {"temperature_K": [5.0, 50.0]}}, "cannot ramp"),
    ({"thermostat": {"classical_kernel": True}}, "classical kernel"),
    ({"thermostat": {"zero_net_force": True}}, "unweighted mean random force"),
    ({"potential": {"kind": "morse", "D_eV": 1.0, "a_per_A": 1.0, "r0_A": 1.0, "cutoff_A": 4.0}},
     "pair_style deepmd only"),
])
def test_what_lammps_cannot_do_is_an_error(tmp_path, change, match):
    raw = _raw()
    for name, table in change.items():
        raw[name] = {k: v for k, v in {**raw[name], **table}.items() if v is not None}
    with pytest.raises(DpqtbError, match=match):
        _deck(tmp_path, raw)


def _toml(raw):
    def val(v):
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return repr(v)
    return "".join(f"[{s}]\n" + "".join(f"{k} = {val(v)}\n" for k, v in t.items()) + "\n" for s, t in raw.items())


def test_cli(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(_toml(_raw()))
    assert main(["lammps", str(cfg), "--out", str(tmp_path / "d"), "--model-path"]) == 0
    out = capsys.readouterr()
    assert "44 atoms" in out.out and "warning" in out.err
    assert _commands(tmp_path / "d")["pair_style"][0][1].endswith(".pth")
    bad = tmp_path / "b.toml"
    raw = _raw(thermostat={"kind": "adqtb"})
    bad.write_text(_toml(raw))
    assert main(["lammps", str(bad), "--out", str(tmp_path / "e")]) == 2
    assert "adaptive QTB" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- readers
def _write_dump(path, frames, types, cells, steps, velocities, triclinic=False, order=None):
    """A LAMMPS text dump (units metal: velocities Å/ps) of Å/fs velocities, atoms written in ``order``."""
    n = len(types)
    order = np.arange(n) if order is None else order
    with open(path, "w") as fh:
        for pos, cell, step, vel in zip(frames, cells, steps, velocities):
            fh.write(f"ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n{n}\n")
            (lx, _, _), (xy, ly, _), (xz, yz, lz) = cell
            lo = np.array([-1.0, 2.0, 0.5])  # a box origin away from 0
            if triclinic:
                xlo_b = lo[0] + min(0.0, xy, xz, xy + xz)
                xhi_b = lo[0] + lx + max(0.0, xy, xz, xy + xz)
                fh.write("ITEM: BOX BOUNDS xy xz yz pp pp pp\n")
                fh.write(f"{xlo_b:.12f} {xhi_b:.12f} {xy:.12f}\n"
                         f"{lo[1] + min(0.0, yz):.12f} {lo[1] + ly + max(0.0, yz):.12f} {xz:.12f}\n"
                         f"{lo[2]:.12f} {lo[2] + lz:.12f} {yz:.12f}\n")
            else:
                fh.write("ITEM: BOX BOUNDS pp pp pp\n")
                fh.write("".join(f"{lo[k]:.12f} {lo[k] + cell[k][k]:.12f}\n" for k in range(3)))
            fh.write("ITEM: ATOMS id type xu yu zu vx vy vz\n")
            for i in order:
                p = pos[i] + lo
                v = vel[i] * 1000.0
                fh.write(f"{i + 1} {types[i]} {p[0]:.12f} {p[1]:.12f} {p[2]:.12f} {v[0]:.12f} {v[1]:.12f} {v[2]:.12f}\n")


def test_dump_reader_sorts_converts_and_reads_triclinic(tmp_path):
    rng = np.random.default_rng(1)
    n = 6
    types = np.array([1, 2, 2, 1, 2, 2])
    cell = np.array([[5.0, 0, 0], [0.7, 4.5, 0], [-0.4, 0.3, 4.0]])
    frames = [rng.normal(size=(n, 3)) * 3 for _ in range(3)]
    vel = [rng.normal(size=(n, 3)) * 0.01 for _ in range(3)]
    path = tmp_path / "t.lammpstrj"
    _write_dump(path, frames, types, [cell] * 3, [0, 20, 40], vel, triclinic=True, order=rng.permutation(n))
    got = list(iter_dump(path))
    assert [f.step for f in got] == [0, 20, 40]
    for fr, p, v in zip(got, frames, vel):
        np.testing.assert_array_equal(fr.types, types)  # sorted by id
        np.testing.assert_allclose(fr.positions, p, atol=1e-9)  # relative to the box origin
        np.testing.assert_allclose(fr.velocities, v, atol=1e-12)  # Å/ps -> Å/fs
        np.testing.assert_allclose(fr.cell, cell, atol=1e-12)
    # a bare dump: species are the type numbers, the spacing must be given
    tr = Trajectory(path, timestep_fs=5.0)
    assert tr.count() == 3
    first = next(iter(tr))
    assert first.symbols.tolist() == ["1", "2", "2", "1", "2", "2"]
    with pytest.raises(DpqtbError, match="no time_fs"):
        list(Trajectory(path))
    # the sidecar next to it maps types and times
    (tmp_path / LAMMPS_META).write_text(json.dumps({"type_map": ["La", "H"], "timestep_fs": 0.25}))
    frs = list(Trajectory(path))
    assert frs[1].symbols.tolist() == ["La", "H", "H", "La", "H", "H"]
    assert [f.time_fs for f in frs] == [0.0, 5.0, 10.0]
    # wrapped coordinates without image flags are refused
    wrapped = tmp_path / "w.lammpstrj"
    wrapped.write_text(path.read_text().replace("id type xu yu zu", "id type x y z"))
    with pytest.raises(DpqtbError, match="unwrapped"):
        list(iter_dump(wrapped))
    trunc = tmp_path / "tr.lammpstrj"
    trunc.write_text("".join(path.read_text().splitlines(keepends=True)[:-2]))
    with pytest.raises(DpqtbError, match="truncated"):
        list(iter_dump(trunc))


LOG = """LAMMPS (4 Feb 2025)
units metal
WARNING: something (src/x.cpp:1)
   step        time_fs     temperature_K  target_temperature_K  kinetic_eV  potential_eV  total_eV  pressure_GPa  volume_A3  temperature_La_K  temperature_H_K
         0   0   5   5   0.01   -100   -99.99   200.5   121.7   4   6
        10   5   7   5   0.02   -100.1   -100.08   201   121.7   5   8
Loop time of 1.0 on 1 procs for 10 steps with 44 atoms

   step        time_fs     temperature_K  target_temperature_K  kinetic_eV  potential_eV  total_eV  pressure_GPa  volume_A3  temperature_La_K  temperature_H_K
        10   5   7   5   0.02   -100.1   -100.08   201   121.7   5   8
        20   10   9   5   0.03   -100.2   -100.17   202   121.7   6   10
Loop time of 1.0 on 1 procs for 10 steps with 44 atoms
"""


def test_log_reader(tmp_path):
    (tmp_path / LAMMPS_LOG).write_text(LOG)
    th = read_log_thermo(tmp_path)
    np.testing.assert_array_equal(th["step"], [0, 10, 20])  # the repeated step kept once
    np.testing.assert_array_equal(th["temperature_H_K"], [6, 8, 10])
    assert np.all(np.isnan(th["conserved_eV"]))
    # LAMMPS's default headers are renamed and converted (ps -> fs, bar -> GPa)
    (tmp_path / "default").mkdir()
    (tmp_path / "default" / LAMMPS_LOG).write_text(
        "Step Time Temp PotEng TotEng Press Volume\n0 0 10 -5 -4 2000000 100\n5 0.0025 11 -5.1 -4 2100000 100\n"
        "Loop time\n")
    th = read_log_thermo(tmp_path / "default")
    np.testing.assert_allclose(th["time_fs"], [0, 2.5])
    np.testing.assert_allclose(th["pressure_GPa"], [200, 210])
    assert np.all(np.isnan(th["target_temperature_K"]))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / LAMMPS_LOG).write_text("LAMMPS\nERROR: nothing\n")
    with pytest.raises(DpqtbError, match="no thermo rows"):
        read_log_thermo(tmp_path / "empty")


def _numbers(obj):
    """The numbers of a nested summary entry, flattened in key order."""
    if isinstance(obj, dict):
        return [x for k in sorted(obj) for x in _numbers(obj[k])]
    if isinstance(obj, list):
        return [x for v in obj for x in _numbers(v)]
    return [float(obj)] if isinstance(obj, (int, float)) and obj is not None else []


def test_analyze_reads_a_lammps_run_as_an_extxyz_run(tmp_path):
    """The same frames as trajectory.extxyz and as a LAMMPS run directory give the same analysis."""
    at = fm3m(5.0, "conventional")
    sym = at.get_chemical_symbols()
    rng = np.random.default_rng(3)
    n_frames, dt = 24, 5.0
    steps = np.cumsum(rng.normal(scale=0.05, size=(n_frames, len(at), 3)), axis=0)
    frames = [at.positions + s for s in steps]
    vel = [rng.normal(scale=0.01, size=(len(at), 3)) for _ in range(n_frames)]
    ext = tmp_path / "ext"
    ext.mkdir()
    write_extxyz_frames(ext / "trajectory.extxyz", frames, sym, at.cell.array, dt, velocities=vel)
    lmp = tmp_path / "lmp"
    lmp.mkdir()
    types = np.array([1 if s == "La" else 2 for s in sym])
    _write_dump(lmp / LAMMPS_DUMP, frames, types, [at.cell.array] * n_frames, [10 * k for k in range(n_frames)],
                vel, order=rng.permutation(len(at)))
    (lmp / LAMMPS_META).write_text(json.dumps({"type_map": ["La", "H"], "timestep_fs": dt / 10,
                                               "integrator": "qtb"}))
    (lmp / LAMMPS_LOG).write_text(LOG)
    assert main(["analyze", str(ext), "--no-plots"]) == 0
    assert main(["analyze", str(lmp), "--no-plots"]) == 0
    a = json.loads((ext / "analysis" / "summary.json").read_text())
    b = json.loads((lmp / "analysis" / "summary.json").read_text())
    assert b["n_frames"] == a["n_frames"] == n_frames and b["frame_dt_fs"] == pytest.approx(dt)
    assert b["species"] == a["species"]
    assert _numbers(b["diffusion"]) == pytest.approx(_numbers(a["diffusion"]), rel=1e-6, abs=1e-12)
    for f in ("msd.csv", "rdf.csv"):
        ta = np.loadtxt(ext / "analysis" / f, delimiter=",", skiprows=1)
        tb = np.loadtxt(lmp / "analysis" / f, delimiter=",", skiprows=1)
        np.testing.assert_allclose(tb, ta, rtol=1e-6, atol=1e-9)
    assert b["energy"] and b["target_temperature_K"] == 5.0  # from log.lammps


# ------------------------------------------------------------------------------------------- real LAMMPS
def test_deck_runs_in_lammps(tmp_path):
    from dpqtb.lammps.runner import find_lammps, run_deck

    lmp, why = find_lammps()
    if lmp is None:
        pytest.skip(why)
    raw = _raw(md={"steps": 40}, output={"thermo_every": 10, "trajectory_every": 10})
    _, deck = _deck(tmp_path, raw, copy_model=True)
    run_deck(deck.directory, lmp, threads=1, timeout_s=900)
    th = read_log_thermo(deck.directory)
    np.testing.assert_array_equal(th["step"], [0, 10, 20, 30, 40])
    assert np.all(np.isfinite(th["potential_eV"])) and np.all(th["temperature_H_K"] > 0)
    frames = list(Trajectory(deck.directory))
    assert len(frames) == 5 and frames[0].symbols.tolist().count("H") == 40
    assert [f.time_fs for f in frames] == [0.0, 5.0, 10.0, 15.0, 20.0]
    masses, types, pos, vel = _data_file(deck.directory / LAMMPS_DATA)
    np.testing.assert_allclose(frames[0].positions, pos, atol=1e-6)  # step 0 = the data file
    assert re.search(r"fix qtb", (deck.directory / LAMMPS_INPUT).read_text())


def test_probe_names_a_plugin_that_failed_to_load(tmp_path, monkeypatch):
    """A LAMMPS whose DeePMD-kit plugin fails to load (an MPI build linked against the wrong MPI) is not
    taken, although its `plugin list` output names the plugin's path; the reason quotes the failure."""
    from dpqtb.lammps import runner

    def fake(name, plugin_out):
        exe = tmp_path / name
        exe.write_text("#!/bin/sh\n"
                       'if [ "$1" = "-h" ]; then echo "Fix styles:"; echo " nve qtb langevin "; exit 0; fi\n'
                       f"printf '{plugin_out}'\n")
        exe.chmod(0o755)
        return exe

    broken = fake("lmp_broken", "Open of file /x/deepmd_lmp/dpplugin.so failed: /x/deepmd_lmp/dpplugin.so: "
                                "undefined symbol: _ZN3MPI8Datatype4FreeEv\\nLoaded 0 plugins from /x/deepmd_lmp\\n")
    good = fake("lmp_good", "Currently loaded plugins\\n   1: pair style plugin deepmd\\n")
    monkeypatch.setattr(runner, "candidates", lambda: [broken, good])
    lmp, why = runner.find_lammps()
    assert lmp == good and why == ""
    monkeypatch.setattr(runner, "candidates", lambda: [broken])
    lmp, why = runner.find_lammps()
    assert lmp is None and "loads no DeePMD-kit plugin" in why and "undefined symbol" in why
