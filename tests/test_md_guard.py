"""The stability guard (exit 3, last good checkpoint kept), resume rules for the step target, fresh
runs that fail in setup leave nothing behind, and nothing in a Simulation grows with the run."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dpqtb import SimulationUnstable
from dpqtb.cli import main

MORSE = """
[system]
structure = "builtin:fcc"
element = "Cu"
lattice_A = {a}
supercell = [2, 2, 2]
initial_temperature_K = 300
[potential]
kind = "morse"
D_eV = 0.3429
a_per_A = 1.3588
r0_A = 2.866
cutoff_A = 5.0
[md]
timestep_fs = {dt}
steps = {steps}
seed = 3
[thermostat]
{thermostat}
[output]
directory = "out"
thermo_every = 5
trajectory_every = 5
checkpoint_every = 10
progress = false
"""


def _cfg(tmp_path, a=3.61, dt=1.0, steps=40, thermostat='kind = "nve"'):
    p = tmp_path / "run.toml"
    p.write_text(MORSE.format(a=a, dt=dt, steps=steps, thermostat=thermostat))
    return str(p)


@pytest.mark.parametrize("dt,a,thermostat,what", [
    (30.0, 3.61, 'kind = "nve"', "conserved energy drifted"),       # NVE at 30 fs (issue: ended at 4.9e9 K)
    (30.0, 3.61, 'kind = "langevin"\ntemperature_K = 300\ndamp_fs = 100', "kinetic temperature"),
])
def test_unstable_run_stops_with_exit_3_and_keeps_last_good_checkpoint(tmp_path, capsys, dt, a, thermostat, what):
    from dpqtb.md.checkpoint import load

    cfg = _cfg(tmp_path, a=a, dt=dt, steps=400, thermostat=thermostat)
    assert main(["md", cfg]) == 3
    err = capsys.readouterr().err
    assert err.startswith("dpqtb: error: simulation unstable at step") and err.count("\n") == 1, err
    assert what in err and "checkpoint" in err
    bad_step = int(err.split("at step ")[1].split(":")[0])
    ck = load(tmp_path / "out" / "checkpoint.pt")
    assert ck["state"]["step"] < bad_step
    for key in ("positions", "momenta"):
        assert torch.isfinite(ck["state"][key]).all()
    steps = np.loadtxt(tmp_path / "out" / "thermo.csv", delimiter=",", skiprows=1, ndmin=2)[:, 0]
    assert steps.max() < bad_step  # nothing of the bad step was written
    assert np.isfinite(np.loadtxt(tmp_path / "out" / "thermo.csv", delimiter=",", skiprows=1, ndmin=2)[:, 2]).all()


def test_guard_bounds_of_a_quantum_bath_allow_zero_point_motion():
    """QTB of a hydride at 5 K has a kinetic temperature of ~1000 K (zero-point): T_ref covers it."""
    from dpqtb.md.integrators import QTB, Langevin, TemperatureSchedule
    from dpqtb.md.run import TEMPERATURE_FACTOR, TEMPERATURE_OFFSET_K, reference_temperature

    q = QTB(None, 0.5, TemperatureSchedule(5.0), 100.0, 1, f_max_THz=200.0, n_f=10)
    t_ref = reference_temperature(q)
    assert t_ref == pytest.approx(4798.7, rel=1e-3)  # h f_max / 2 k_B
    assert TEMPERATURE_FACTOR * t_ref + TEMPERATURE_OFFSET_K > 90000
    assert reference_temperature(Langevin(None, 1.0, TemperatureSchedule(100.0, 400.0, 10), 100.0, 1)) == 400.0


def test_explore_reports_unstable_runs_by_type(monkeypatch, tmp_path):
    """dpqtb explore: an unstable MD (the typed exception, whatever its message) is a result, not a crash."""
    from dpqtb.train import explore

    class FakeSim:
        class state:
            step, n_atoms = 3, 44

        def run(self, *a, **k):
            raise SimulationUnstable("simulation unstable at step 3: kinetic temperature 1e9 K exceeds the bound")

    monkeypatch.setattr("dpqtb.md.build.build_simulation", lambda *a, **k: FakeSim())
    monkeypatch.setattr(explore, "md_config", lambda *a, **k: SimpleNamespace(md=SimpleNamespace(steps=10)))
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "start.extxyz").write_text("")
    rec = explore.run_md({"name": "x", "grid": 0}, {}, "m.pth", tmp_path / "r", log=lambda *_: None)
    assert rec["status"] == "unstable" and "kinetic temperature" in rec["message"]


def test_raised_steps_in_file_are_honoured_on_resume(tmp_path, capsys):
    cfg = _cfg(tmp_path, steps=20)
    assert main(["md", cfg]) == 0
    cfg = _cfg(tmp_path, steps=35)  # only md.steps changed
    assert main(["md", cfg, "--resume"]) == 0
    assert "done: 35 steps" in capsys.readouterr().out
    assert main(["md", cfg, "--resume"]) == 0  # at the target: nothing to do
    assert main(["md", cfg, "--resume", "--steps", "30"]) == 2
    assert "below the checkpoint's step 35" in capsys.readouterr().err


def test_ramp_length_cannot_change_on_resume(tmp_path, capsys):
    ramp = 'kind = "langevin"\ntemperature_K = [100, 300]\ndamp_fs = 100'
    assert main(["md", _cfg(tmp_path, steps=20, thermostat=ramp)]) == 0
    assert main(["md", _cfg(tmp_path, steps=40, thermostat=ramp), "--resume"]) == 2
    assert "md.steps (20 -> 40)" in capsys.readouterr().err


def test_failed_fresh_run_leaves_nothing_and_reruns(tmp_path, capsys):
    (tmp_path / "pot.py").write_text("def f(x, cell, species):\n    raise RuntimeError('boom')\n")
    text = MORSE.format(a=3.61, dt=1.0, steps=10, thermostat='kind = "nve"').replace(
        'kind = "morse"', 'kind = "function"\nfunction = "pot.py:f"')
    (tmp_path / "bad.toml").write_text(text)
    assert main(["md", str(tmp_path / "bad.toml")]) == 2
    assert "boom" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # setup failed before the directory was touched
    assert main(["md", _cfg(tmp_path, steps=10)]) == 0  # the rerun is not blocked


def test_output_directory_is_relative_to_the_config_file(tmp_path, monkeypatch):
    sub = tmp_path / "cfgdir"
    sub.mkdir()
    cfg = _cfg(sub, steps=5)
    monkeypatch.chdir(tmp_path)
    assert main(["md", cfg]) == 0
    assert (sub / "out" / "thermo.csv").is_file() and not (tmp_path / "out").exists()
    assert main(["md", cfg, "--output", "cli_out", "--steps", "5"]) == 0  # a command-line path: from the CWD
    assert (tmp_path / "cli_out" / "thermo.csv").is_file()


def test_simulation_keeps_only_the_last_thermo_row(tmp_path):
    from ase.build import bulk

    from dpqtb.rundir import read_thermo
    from dpqtb.md.integrators import Langevin, TemperatureSchedule
    from dpqtb.md.run import Simulation
    from dpqtb.md.state import MDState
    from dpqtb.potential import Morse

    state = MDState.from_atoms(bulk("Cu", "fcc", a=3.61, cubic=True))
    sim = Simulation(state, Langevin(Morse(0.3429, 1.3588, 2.866, 5.0), 1.0, TemperatureSchedule(100.0), 100.0, 1),
                     tmp_path / "run", thermo_every=2, progress=False)
    sim.run(10)
    assert not hasattr(Simulation(sim.state, sim.integrator, None), "thermo_rows")  # nothing kept in memory
    assert [r[0] for r in sim.thermo_rows] == [0, 2, 4, 6, 8, 10]  # read back from thermo.csv
    assert sim.last_thermo[0] == sim.last_thermo.step == 10
    assert sim.thermo_rows[-1].columns == sim.last_thermo.columns == sim.thermo_columns()
    cols = read_thermo(tmp_path / "run")
    assert list(cols["step"]) == [0, 2, 4, 6, 8, 10]
    assert cols["temperature_K"][-1] == pytest.approx(sim.last_thermo.temperature_K, rel=1e-14)
    assert cols["temperature_Cu_K"][-1] == pytest.approx(sim.thermo_rows[-1].temperature_Cu_K, rel=1e-14)


def test_resume_compares_structure_files_by_content(tmp_path, capsys):
    from ase.build import bulk
    from ase.io import write

    write(tmp_path / "cu.extxyz", bulk("Cu", "fcc", a=3.61, cubic=True))
    text = MORSE.format(a=3.61, dt=1.0, steps=10, thermostat='kind = "nve"').replace(
        'structure = "builtin:fcc"', 'structure = "cu.extxyz"')
    (tmp_path / "run.toml").write_text(text)
    assert main(["md", str(tmp_path / "run.toml")]) == 0
    # the same file through another path: the same run
    (tmp_path / "run.toml").write_text(text.replace('"cu.extxyz"', f'"{tmp_path / "cu.extxyz"}"'))
    assert main(["md", str(tmp_path / "run.toml"), "--resume", "--steps", "15"]) == 0
    write(tmp_path / "cu.extxyz", bulk("Cu", "fcc", a=3.62, cubic=True))  # an edited file: another run
    capsys.readouterr()
    assert main(["md", str(tmp_path / "run.toml"), "--resume", "--steps", "20"]) == 2
    assert "system.structure (" in capsys.readouterr().err
