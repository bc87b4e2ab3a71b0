"""Crash (kill -9) or interrupt (SIGINT, SIGTERM) a ``dpqtb md`` process at a step drawn from a seeded
RNG, ``--resume`` it in a new process, and compare thermo.csv, trajectory.extxyz (and PIMD's trajectory_beads.extxyz) byte for byte
with the uninterrupted run: Langevin, QTB, adQTB and PIMD on Morse copper, QTB, PIMD and QTB at constant
pressure on the shipped LaH10 Deep Potential (44 atoms; its resume is exact since the model runs unoptimised TorchScript)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "_kill_driver.py"

MORSE = """
[system]
structure = "builtin:fcc"
element = "Cu"
lattice_A = 3.61
supercell = [2, 2, 2]
[potential]
kind = "morse"
D_eV = 0.3429
a_per_A = 1.3588
r0_A = 2.866
cutoff_A = 5.0
[md]
timestep_fs = 2.0
steps = {steps}
seed = 11
[thermostat]
{thermostat}
[output]
thermo_every = 3
trajectory_every = 7
trajectory_velocities = true
checkpoint_every = 20
progress = false
vacf_every = 2
vacf_max_lag_fs = 40
"""

LAH10 = """
[system]
structure = "builtin:lah10"
pressure_GPa = 200
[potential]
kind = "deepmd"
[md]
timestep_fs = 0.5
steps = {steps}
seed = 7
[thermostat]
{thermostat}
[output]
thermo_every = 2
trajectory_every = 5
trajectory_velocities = true
checkpoint_every = 15
progress = false
"""

THERMOSTATS = {
    "langevin": 'kind = "langevin"\ntemperature_K = [300, 500]\ndamp_fs = 50',
    "qtb": 'kind = "qtb"\ntemperature_K = 300\ndamp_fs = 50\nf_max_THz = 60\nn_f = 8',
    "adqtb": 'kind = "adqtb"\ntemperature_K = 300\ndamp_fs = 50\nf_max_THz = 60\nn_f = 8\ntau_ad_fs = 100',
    "pimd": 'kind = "pimd"\ntemperature_K = 300\nbeads = 3\ndamp_fs = 50',
}
LAH10_THERMOSTATS = {
    "qtb": 'kind = "qtb"\ntemperature_K = 100\ndamp_fs = 50\nf_max_THz = 100\nn_f = 10',
    "pimd": 'kind = "pimd"\ntemperature_K = 100\nbeads = 2\ndamp_fs = 50',
    # NPT: the cell changes every step while the Verlet list is kept (strain-aware rebuild test)
    "qtb_npt": 'kind = "qtb"\ntemperature_K = 100\ndamp_fs = 50\nf_max_THz = 100\nn_f = 10\n'
               '[barostat]\npressure_GPa = 200\ndamp_fs = 100',
}

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
OUTPUTS = ("thermo.csv", "trajectory.extxyz", "vacf.csv", "trajectory_beads.extxyz")


def _dpqtb(*args, sig=None, step=None):
    cmd = [sys.executable, str(DRIVER), sig, str(step)] if sig else [sys.executable, "-m", "dpqtb.cli"]
    return subprocess.run(cmd + ["--threads", "1", *map(str, args)], capture_output=True, text=True, env=ENV,
                          timeout=600)


def _check_resume(tmp_path, text, steps, sig, seed):
    cfg = tmp_path / "run.toml"
    if 'kind = "pimd"' in text:  # every bead too ([output] is the last table)
        text += "bead_trajectory_every = 4\n"
    cfg.write_text(text)
    ref = _dpqtb("md", cfg, "--output", tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr
    kill_step = int(np.random.default_rng(seed).integers(steps // 4, steps - 5))
    crash = _dpqtb("md", cfg, "--output", tmp_path / "crash", sig=sig, step=kill_step)
    expected = {"SIGKILL": -9, "SIGINT": 130, "SIGTERM": 143}[sig]
    assert crash.returncode == expected, crash.stderr
    if sig != "SIGKILL":
        assert f"at step {kill_step}" in crash.stderr and "--resume" in crash.stderr
        errors = [ln for ln in crash.stderr.splitlines() if not ln.startswith("dpqtb: warning:")]
        assert len(errors) == 1, crash.stderr  # one line (a run this short also warns: QTB left uncorrected)
        from dpqtb.md.checkpoint import load

        assert load(tmp_path / "crash" / "checkpoint.pt")["state"]["step"] == kill_step  # not the periodic one
    resumed = _dpqtb("md", cfg, "--output", tmp_path / "crash", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    for name in OUTPUTS:
        if not (tmp_path / "ref" / name).exists():  # vacf.csv: the Morse runs only; beads: PIMD
            assert name == "vacf.csv" or 'kind = "pimd"' not in text, name
            continue
        assert (tmp_path / "crash" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), (name, kill_step)
    return kill_step


@pytest.mark.parametrize("kind", list(THERMOSTATS))
def test_kill9_then_resume_is_bitwise_exact_morse(tmp_path, kind):
    steps = 90
    _check_resume(tmp_path, MORSE.format(steps=steps, thermostat=THERMOSTATS[kind]), steps, "SIGKILL",
                  seed=sorted(THERMOSTATS).index(kind))


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_signal_writes_checkpoint_at_current_step_morse(tmp_path, sig):
    """Ctrl-C / SIGTERM: a checkpoint at the step in flight (not the last periodic one), exit 130 / 143."""
    steps = 90
    _check_resume(tmp_path, MORSE.format(steps=steps, thermostat=THERMOSTATS["qtb"]), steps, sig, seed=5 + len(sig))


@pytest.mark.parametrize("kind", list(LAH10_THERMOSTATS))
def test_kill9_then_resume_is_bitwise_exact_deep_potential(tmp_path, kind):
    pytest.importorskip("deepmd")
    steps = 60
    _check_resume(tmp_path, LAH10.format(steps=steps, thermostat=LAH10_THERMOSTATS[kind]), steps, "SIGKILL",
                  seed=20 + len(kind))


def test_wall_clock_checkpoints_bound_what_a_kill9_loses_morse(tmp_path):
    """output.checkpoint_every_min: with step checkpoints off (checkpoint_every = 0) and a wall-clock interval
    far shorter than a step (6 µs), every thermo step (every 3rd) writes a checkpoint. kill -9 after the outputs of
    step 37 leaves the checkpoint of step 36 (without the interval: step 0, the run's start); --resume is the
    uninterrupted run byte for byte, and that run's outputs are those of a run without wall-clock checkpoints."""
    from dpqtb.md.checkpoint import load

    steps = 60
    text = MORSE.format(steps=steps, thermostat=THERMOSTATS["qtb"]).replace("checkpoint_every = 20",
                                                                           "checkpoint_every = 0")
    runs = {}
    for name, every_min in (("plain", 0), ("wall", 1e-7)):
        cfg = tmp_path / f"{name}.toml"
        cfg.write_text(text + f"checkpoint_every_min = {every_min}\n")
        ref = _dpqtb("md", cfg, "--output", tmp_path / f"{name}_ref")
        assert ref.returncode == 0, ref.stderr
        kill_step = 37
        crash = _dpqtb("md", cfg, "--output", tmp_path / f"{name}_crash", sig="SIGKILL", step=kill_step)
        assert crash.returncode == -9, crash.stderr
        runs[name] = load(tmp_path / f"{name}_crash" / "checkpoint.pt")["state"]["step"]
        resumed = _dpqtb("md", cfg, "--output", tmp_path / f"{name}_crash", "--resume")
        assert resumed.returncode == 0, resumed.stderr
        for out in ("thermo.csv", "trajectory.extxyz", "vacf.csv"):
            assert (tmp_path / f"{name}_crash" / out).read_bytes() == (tmp_path / f"{name}_ref" / out).read_bytes()
            assert (tmp_path / f"{name}_ref" / out).read_bytes() == (tmp_path / f"plain_ref" / out).read_bytes()
    assert runs == {"plain": 0, "wall": 36}  # the last thermo step (thermo_every = 3) before the kill
