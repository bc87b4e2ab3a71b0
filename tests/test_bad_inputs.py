"""Bad inputs across the CLI: each one stops with exit 2 and exactly one line on stderr that names the
key or file at fault, and leaves every file it was given unchanged (checksums of the whole folder,
new files included). Run in-process through ``dpqtb.cli.main`` (a few as subprocesses)."""

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dpqtb.cli import main

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
timestep_fs = 1.0
steps = 20
seed = 3

[thermostat]
kind = "qtb"
temperature_K = 100
damp_fs = 100
f_max_THz = 50
n_f = 8

[output]
directory = "out"
thermo_every = 5
trajectory_every = 5
checkpoint_every = 10
progress = false
"""

POSCAR_OVERLAP = """LaH overlapping
1.0
4.0 0.0 0.0
0.0 4.0 0.0
0.0 0.0 4.0
La H
1 2
Cartesian
0.0 0.0 0.0
2.0 2.0 2.0
2.1 2.0 2.0
"""


def _tree(root: Path) -> dict:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


# ----------------------------------------------------------------------------- set-ups (all in tmp)
def _cfg(tmp, old=None, new=None, name="run.toml"):
    text = MORSE if old is None else MORSE.replace(old, new, 1)
    assert old is None or old in MORSE, old
    (tmp / name).write_text(text)
    return str(tmp / name)


def _done_run(tmp):
    cfg = _cfg(tmp)
    assert main(["md", cfg]) == 0
    return cfg


def _crafted_checkpoint(tmp):
    cfg = _done_run(tmp)

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp / 'PWNED'}",))

    (tmp / "out" / "checkpoint.pt").write_bytes(pickle.dumps({"format": 2, "x": Evil()}))
    return cfg


def _damaged_checkpoint(tmp, mutate):
    """The finished run's checkpoint re-saved with a field removed or replaced (plain data: nothing runs)."""
    from dpqtb.md import checkpoint as checkpoint_io

    cfg = _done_run(tmp)
    path = tmp / "out" / "checkpoint.pt"
    ckpt = checkpoint_io.load(path)
    mutate(ckpt)
    checkpoint_io.save(ckpt, path)
    return cfg


def _crafted_torch_checkpoint(tmp):
    import torch

    cfg = _done_run(tmp)

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp / 'PWNED'}",))

    torch.save({"format": 2, "x": Evil()}, tmp / "out" / "checkpoint.pt")
    return cfg


def _store(tmp):
    """A job store with two labelled LaH10 frames (Lennard-Jones labels: fast)."""
    from ase.calculators.lj import LennardJones

    from dpqtb.dft.runner import run_store
    from dpqtb.dft.settings import CHEAP
    from dpqtb.dft.store import JobStore
    from dpqtb.structures.lah10 import fm3m

    st = JobStore(tmp / "store")
    rng = np.random.default_rng(5)
    for n in range(2):
        a = fm3m(4.9, "primitive")
        a.positions += rng.normal(size=a.positions.shape) * 0.05
        st.add(a, CHEAP, {"order": n})
    run_store(st, calc_factory=lambda *a, **k: LennardJones(sigma=1.5, epsilon=0.01, rc=3.0), verbose=False)
    return sorted((tmp / "store" / "frames").glob("*.json"))


def _analysis_run(tmp):
    import torch
    from ase.build import bulk

    from dpqtb.md.integrators import Langevin, TemperatureSchedule
    from dpqtb.md.run import Simulation
    from dpqtb.md.state import MDState
    from dpqtb.potential import Morse

    state = MDState.from_atoms(bulk("Cu", "fcc", a=3.61, cubic=True))
    integ = Langevin(Morse(0.3429, 1.3588, 2.866, 5.0), 1.0, TemperatureSchedule(100.0), 100.0, seed=1)
    Simulation(state, integ, tmp / "run", thermo_every=2, trajectory_every=2, progress=False).run(20)
    return str(tmp / "run")


# ----------------------------------------------------------------------------- the cases
# (id, set-up(tmp) -> argv, text the one error line must contain)
def _nonperiodic_npt(t):
    """A config at constant pressure whose structure (an xyz file: 4 Cu atoms, no cell) is not periodic."""
    t.joinpath("cu.xyz").write_text("4\n\nCu 0 0 0\nCu 2.5 0 0\nCu 0 2.5 0\nCu 0 0 2.5\n")
    text = MORSE.replace('structure = "builtin:fcc"\nelement = "Cu"\nlattice_A = 3.61\nsupercell = [2, 2, 2]',
                         'structure = "cu.xyz"').replace("[output]", "[barostat]\npressure_GPa = 1.0\n[output]")
    assert "cu.xyz" in text
    t.joinpath("run.toml").write_text(text)
    return ["md", str(t / "run.toml")]


def md(old, new, key):
    return lambda t: ["md", _cfg(t, old, new)], key


DP_RUN = """
[system]
structure = "builtin:lah10"
pressure_GPa = 200
[potential]
kind = "deepmd"
{potential}
[md]
timestep_fs = 0.5
steps = 10
[thermostat]
kind = "langevin"
temperature_K = 100
[output]
thermo_every = 5
progress = false
"""


def dp(potential, key):
    """A Deep Potential run (builtin:lah10) whose [potential] also holds ``potential``."""
    return lambda t: (t.joinpath("run.toml").write_text(DP_RUN.format(potential=potential)),
                      ["md", str(t / "run.toml")])[1], key


CASES = {
    # non-finite numbers, anywhere in a config
    "temperature-inf": md("temperature_K = 100", "temperature_K = inf", "thermostat.temperature_K"),
    "temperature-nan": md("temperature_K = 100", "temperature_K = nan", "thermostat.temperature_K"),
    "temperature-ramp-inf": md("temperature_K = 100", "temperature_K = [100, inf]", "thermostat.temperature_K"),
    "masses-inf": md("supercell = [2, 2, 2]", "supercell = [2, 2, 2]\nmasses_amu = {Cu = inf}", "system.masses_amu"),
    "masses-nan": md("supercell = [2, 2, 2]", "supercell = [2, 2, 2]\nmasses_amu = {Cu = nan}", "system.masses_amu"),
    "timestep-inf": md("timestep_fs = 1.0", "timestep_fs = inf", "md.timestep_fs"),
    "damp-nan": md("damp_fs = 100", "damp_fs = nan", "thermostat.damp_fs"),
    "cutoff-inf": md("cutoff_A = 5.0", "cutoff_A = inf", "potential.cutoff_A"),
    # values that are each valid but no physics together
    "damp-1e-300": md("damp_fs = 100", "damp_fs = 1e-300", "thermostat.damp_fs"),
    "lattice-0.5-overlap": md("lattice_A = 3.61", "lattice_A = 0.5", "system.lattice_A"),
    "supercell-1000": md("supercell = [2, 2, 2]", "supercell = [1000, 1000, 1000]", "system.supercell"),
    "device-cudaXYZ": md('structure = "builtin:fcc"', 'structure = "builtin:fcc"\ndevice = "cudaXYZ"', "system.device"),
    "function-os-system": md('kind = "morse"', 'kind = "function"\nfunction = "os:system"', "os:system"),
    "function-missing-file": md('kind = "morse"', 'kind = "function"\nfunction = "nope.py:f"', "nope.py"),
    "pimd-one-bead": md('kind = "qtb"', 'kind = "pimd"\nbeads = 1', "thermostat.beads"),
    "unknown-key": md("seed = 3", "seed = 3\nsede = 4", "md.sede"),
    # constant pressure (issue 23)
    "barostat-negative-pressure": md("[output]", "[barostat]\npressure_GPa = -1.0\n[output]", "barostat.pressure_GPa"),
    "barostat-nan-pressure": md("[output]", "[barostat]\npressure_GPa = nan\n[output]", "barostat.pressure_GPa"),
    "barostat-with-nve": md("kind = \"qtb\"\ntemperature_K = 100\ndamp_fs = 100\nf_max_THz = 50\nn_f = 8",
                            "kind = \"nve\"\n[barostat]\npressure_GPa = 1.0", "barostat"),
    "barostat-damp-short": md("[output]", "[barostat]\npressure_GPa = 1.0\ndamp_fs = 5.0\n[output]", "barostat.damp_fs"),
    "barostat-cell-unknown": md("[output]", "[barostat]\npressure_GPa = 1.0\ncell = \"cubic\"\n[output]", "barostat.cell"),
    "barostat-nonperiodic": (_nonperiodic_npt, "periodic"),
    "barostat-cell-without-pressure": md("[output]", "[barostat]\ncell = \"flexible\"\n[output]", "barostat.cell"),
    "barostat-stress-not-symmetric": md("[output]", "[barostat]\ncell = \"flexible\"\n"
                                        "stress_GPa = [[1, 0.5, 0], [0, 1, 0], [0, 0, 1]]\n[output]",
                                        "barostat.stress_GPa"),
    "barostat-stress-nan": md("[output]", "[barostat]\ncell = \"flexible\"\nstress_GPa = [1, 1, nan, 0, 0, 0]\n"
                              "[output]", "barostat.stress_GPa"),
    "barostat-stress-inf": md("[output]", "[barostat]\ncell = \"flexible\"\n"
                              "stress_GPa = [[1, 0, 0], [0, 1, 0], [0, 0, inf]]\n[output]", "barostat.stress_GPa"),
    "barostat-stress-wrong-shape": md("[output]", "[barostat]\ncell = \"flexible\"\nstress_GPa = [1, 1, 1]\n[output]",
                                      "barostat.stress_GPa"),
    "barostat-stress-not-a-list": md("[output]", "[barostat]\ncell = \"flexible\"\nstress_GPa = 5.0\n[output]",
                                     "barostat.stress_GPa"),
    "barostat-stress-isotropic-cell": md("[output]", "[barostat]\nstress_GPa = [1, 1, 2, 0, 0, 0]\n[output]",
                                         "barostat.stress_GPa"),
    "barostat-stress-axis-cell": md("[output]", "[barostat]\ncell = \"z\"\nstress_GPa = [1, 1, 2, 0, 0, 0]\n[output]",
                                    "barostat.stress_GPa"),
    "barostat-stress-anisotropic-shear": md("[output]", "[barostat]\ncell = \"anisotropic\"\n"
                                            "stress_GPa = [1, 1, 2, 0, 0, 0.5]\n[output]", "barostat.stress_GPa"),
    "barostat-stress-pressure-mismatch": md("[output]", "[barostat]\npressure_GPa = 1.0\ncell = \"flexible\"\n"
                                            "stress_GPa = [1, 1, 2, 0, 0, 0]\n[output]", "barostat.pressure_GPa"),
    "barostat-stress-negative-trace": md("[output]", "[barostat]\ncell = \"flexible\"\n"
                                         "stress_GPa = [-1, -1, -2, 0, 0, 0]\n[output]", "barostat.stress_GPa"),
    # structure files
    "poscar-overlap": (lambda t: (t.joinpath("POSCAR").write_text(POSCAR_OVERLAP),
                                  ["md", _cfg(t, 'structure = "builtin:fcc"', 'structure = "POSCAR"\nformat = "vasp"')])[1],
                       "overlap"),
    "cif-garbage": (lambda t: (t.joinpath("x.cif").write_bytes(b"data_x\n_cell_length_a 4\nloop_\n_atom\n\x00\x01"),
                               ["md", _cfg(t, 'structure = "builtin:fcc"', 'structure = "x.cif"')])[1], "x.cif"),
    "structure-missing": md('structure = "builtin:fcc"', 'structure = "missing.xyz"', "missing.xyz"),
    # output directory
    "output-is-file": (lambda t: (t.joinpath("afile").write_text("x"), ["md", _cfg(t), "--output", str(t / "afile")])[1],
                       "afile"),
    "output-unreachable": (lambda t: (t.joinpath("afile").write_text("x"),
                                      ["md", _cfg(t), "--output", str(t / "afile" / "sub")])[1], "afile"),
    "output-config-dir-is-file": (lambda t: (t.joinpath("out").write_text("x"), ["md", _cfg(t)])[1], "out"),
    # command-line arguments
    "threads-0": (lambda t: ["--threads", "0", "md", _cfg(t)], "--threads"),
    "steps-negative": (lambda t: ["md", _cfg(t), "--steps", "-1"], "--steps"),
    "steps-not-int": (lambda t: ["md", _cfg(t), "--steps", "many"], "--steps"),
    "resume-and-overwrite": (lambda t: ["md", _cfg(t), "--resume", "--overwrite"], "--resume"),
    # resume
    "resume-no-checkpoint": (lambda t: ["md", _cfg(t), "--resume"], "checkpoint"),
    "resume-crafted-pickle": (lambda t: ["md", _crafted_checkpoint(t), "--resume"], "checkpoint.pt"),
    "resume-crafted-torch-save": (lambda t: ["md", _crafted_torch_checkpoint(t), "--resume"], "checkpoint.pt"),
    "resume-checkpoint-without-state": (lambda t: ["md", _damaged_checkpoint(t, lambda c: c.pop("state")), "--resume",
                                                   "--steps", "40"], "checkpoint.pt"),
    "resume-checkpoint-bad-step": (lambda t: ["md", _damaged_checkpoint(t, lambda c: c["state"].update(step="x")),
                                              "--resume", "--steps", "40"], "checkpoint.pt"),
    "resume-checkpoint-without-integrator": (lambda t: ["md", _damaged_checkpoint(t, lambda c: c.pop("integrator")),
                                                        "--resume", "--steps", "40"], "checkpoint.pt"),
    "resume-checkpoint-bad-tag": (lambda t: (_done_run(t), __import__("torch").save(
        {"format": 2, "state": {"__ndarray__": 5}}, t / "out" / "checkpoint.pt"),
        ["md", _cfg(t), "--resume", "--steps", "40"])[2], "checkpoint.pt"),
    "resume-timestep-changed": (lambda t: (_done_run(t), ["md", _cfg(t, "timestep_fs = 1.0", "timestep_fs = 0.5"),
                                                          "--resume", "--steps", "40"])[1], "md.timestep_fs"),
    "resume-potential-changed": (lambda t: (_done_run(t), ["md", _cfg(t, "D_eV = 0.3429", "D_eV = 0.4"),
                                                           "--resume", "--steps", "40"])[1], "potential.D_eV"),
    "resume-temperature-changed": (lambda t: (_done_run(t), ["md", _cfg(t, "temperature_K = 100", "temperature_K = 50"),
                                                             "--resume"])[1], "thermostat.temperature_K"),
    "resume-steps-below": (lambda t: ["md", _done_run(t), "--resume", "--steps", "10"], "10"),
    "resume-thermo-deleted": (lambda t: (_done_run(t), (t / "out" / "thermo.csv").unlink(),
                                         ["md", _cfg(t), "--resume", "--steps", "40"])[2], "thermo.csv"),
    "resume-trajectory-short": (lambda t: (_done_run(t), (t / "out" / "trajectory.extxyz").write_text("1\n"),
                                           ["md", _cfg(t), "--resume", "--steps", "40"])[2], "trajectory.extxyz"),
    "overwrite-failing-setup": (lambda t: (_done_run(t), t.joinpath("pot.py").write_text(
        "def f(x, cell, species):\n    raise RuntimeError('boom')\n"),
        ["md", _cfg(t, 'kind = "morse"', 'kind = "function"\nfunction = "pot.py:f"'), "--overwrite"])[2], "pot.py:f"),
    # analyze
    "analyze-random-bytes": (lambda t: (t.joinpath("junk.extxyz").write_bytes(np.random.default_rng(1).bytes(4000)),
                                        ["analyze", str(t / "junk.extxyz"), "--out", str(t / "a")])[1], "junk.extxyz"),
    "analyze-random-bytes-dir": (lambda t: (t.joinpath("r").mkdir(), t.joinpath("r", "trajectory.extxyz").write_bytes(
        np.random.default_rng(2).bytes(4000)), ["analyze", str(t / "r"), "--out", str(t / "a")])[2], "trajectory.extxyz"),
    "analyze-rdf-bin-nan": (lambda t: ["analyze", _analysis_run(t), "--rdf-bin-A", "nan"], "--rdf-bin-A"),
    "analyze-rdf-bin-zero": (lambda t: ["analyze", _analysis_run(t), "--rdf-bin-A", "0"], "--rdf-bin-A"),
    "analyze-out-is-file": (lambda t: (t.joinpath("afile").write_text("x"),
                                       ["analyze", _analysis_run(t), "--out", str(t / "afile")])[1], "afile"),
    "analyze-max-lag-negative": (lambda t: ["analyze", _analysis_run(t), "--max-lag-fs", "-5"], "--max-lag-fs"),
    "analyze-max-lag-zero": (lambda t: ["analyze", _analysis_run(t), "--max-lag-fs", "0"], "--max-lag-fs"),
    "analyze-origin-negative": (lambda t: ["analyze", _analysis_run(t), "--origin-every-fs", "-1"], "--origin-every-fs"),
    "analyze-vdos-lag-zero": (lambda t: ["analyze", _analysis_run(t), "--vdos-max-lag-fs", "0"], "--vdos-max-lag-fs"),
    "analyze-missing": (lambda t: ["analyze", str(t / "nope")], "nope"),
    # dataset
    "dataset-corrupt-frame": (lambda t: (_store(t)[0].write_text("{not json"),
                                         ["dataset", "export", "--store", str(t / "store"), "--extxyz",
                                          str(t / "x.extxyz")])[1], ".json"),
    "dataset-frame-no-forces": (lambda t: (lambda fs: (fs[0].write_text(json.dumps(
        {k: v for k, v in json.loads(fs[0].read_text()).items() if k != "forces_eV_per_A"})),
        ["dataset", "export", "--store", str(t / "store"), "--extxyz", str(t / "x.extxyz")])[1])(_store(t)),
        "forces_eV_per_A"),
    "dataset-out-dir-missing": (lambda t: (_store(t), ["dataset", "export", "--store", str(t / "store"), "--extxyz",
                                                       str(t / "no" / "x.extxyz")])[1], "no"),
    "dataset-npy-out-is-file": (lambda t: (_store(t), t.joinpath("afile").write_text("x"),
                                           ["dataset", "export", "--store", str(t / "store"), "--deepmd-npy",
                                            str(t / "afile")])[2], "afile"),
    "dataset-summary-out-dir-missing": (lambda t: (_store(t), ["dataset", "summary", "--store", str(t / "store"),
                                                               "--out", str(t / "no" / "s.md")])[1], "no"),
    "dataset-store-missing": (lambda t: ["dataset", "summary", "--store", str(t / "nostore")], "nostore"),
    # label, validate
    "label-store-is-file": (lambda t: (t.joinpath("afile").write_text("x"),
                                       ["label", "--store", str(t / "afile"), "--status"])[1], "afile"),
    "label-overlap": (lambda t: (t.joinpath("POSCAR").write_text(POSCAR_OVERLAP),
                                 ["label", str(t / "POSCAR"), "--store", str(t / "st"), "--no-run"])[1], "overlap"),
    "validate-out-is-file": (lambda t: (t.joinpath("afile").write_text("x"), t.joinpath("data").mkdir(),
                                        ["validate", "--model", "builtin:lah10", "--data", str(t / "data"),
                                         "--out", str(t / "afile"), "--frames-only"])[2], "afile"),
    "models-bad-option": (lambda t: ["models", "--jsn"], "--jsn"),
    # the model-deviation ensemble
    "ensemble-not-deepmd": md("cutoff_A = 5.0", 'cutoff_A = 5.0\nensemble = ["m.pth"]', "potential.ensemble"),
    "ensemble-empty": md("cutoff_A = 5.0", "cutoff_A = 5.0\nensemble = []", "potential.ensemble"),
    "deviation-every-not-deepmd": md("cutoff_A = 5.0", "cutoff_A = 5.0\ndeviation_every = 5",
                                     "potential.deviation_every"),
    "deviation-every-without-ensemble": dp("deviation_every = 5", "potential.deviation_every"),
    "deviation-every-not-thermo-multiple": dp('ensemble = ["m1.pth"]\ndeviation_every = 7', "potential.deviation_every"),
    "trust-hi-zero": dp('ensemble = ["m1.pth"]\ntrust_hi_eV_per_A = 0', "potential.trust_hi_eV_per_A"),
    "ensemble-missing-file": dp('ensemble = ["nope.pth"]', "nope.pth"),
    "ensemble-only-the-driver": dp('ensemble = ["builtin:lah10"]', "potential.ensemble"),
    "ensemble-unknown-builtin": dp('ensemble = ["builtin:nosuch"]', "builtin:nosuch"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_one_line_exit_2_nothing_changed(tmp_path, capsys, case):
    make, needle = CASES[case]
    work = tmp_path / "w"
    work.mkdir()
    cwd = os.getcwd()
    os.chdir(work)  # relative outputs (if any) land inside the checked folder
    try:
        argv = make(work)
        capsys.readouterr()
        before = _tree(work)
        with pytest.raises(SystemExit) if case in _ARGPARSE else _nothing():
            code = main(argv)
        if case in _ARGPARSE:
            code = 2
        err = capsys.readouterr().err
    finally:
        os.chdir(cwd)
    assert code == 2, (code, err)
    assert err.startswith("dpqtb: error:") and err.count("\n") == 1, err
    assert needle in err, err
    assert "Traceback" not in err
    assert _tree(work) == before, err
    assert not (work / "PWNED").exists()


#: cases argparse rejects (SystemExit(2) from main; the CLI entry point exits the same way)
_ARGPARSE = {"steps-not-int", "models-bad-option", "analyze-rdf-bin-nan", "analyze-rdf-bin-zero",
             "analyze-max-lag-negative", "analyze-max-lag-zero", "analyze-origin-negative", "analyze-vdos-lag-zero"}


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_crafted_checkpoint_runs_nothing_subprocess(tmp_path):
    """The real CLI process: a checkpoint whose unpickling would run os.system is refused before it runs."""
    cfg = _crafted_checkpoint(tmp_path)
    r = subprocess.run([sys.executable, "-m", "dpqtb.cli", "md", cfg, "--output", str(tmp_path / "out"), "--resume"],
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "checkpoint" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "PWNED").exists()


def test_argparse_error_is_one_line_subprocess(tmp_path):
    r = subprocess.run([sys.executable, "-m", "dpqtb.cli", "analyze", str(tmp_path), "--rdf-bin-A", "nan"],
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--rdf-bin-A" in r.stderr, r.stderr


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_directory(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(["md", _cfg(tmp_path), "--output", str(ro / "out")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not writable" in err and str(ro) in err
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)
