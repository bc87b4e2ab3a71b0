"""CLI and config validation: one-line errors naming the key, exit 2, no traceback, nothing overwritten."""

import subprocess
import sys
from pathlib import Path

import pytest

from dpqtb.cli import main

GOOD = """
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
steps = 40
seed = 3

[thermostat]
kind = "qtb"
temperature_K = 100
damp_fs = 100
f_max_THz = 50
n_f = 16

[output]
thermo_every = 10
trajectory_every = 20
checkpoint_every = 20
progress = false
"""


def _write(tmp_path, text, name="run.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("old,new,key", [
    ("timestep_fs = 1.0", "timestep_fs = 1.0\ntmestep_fs = 2.0", "md.tmestep_fs"),
    ("temperature_K = 100", "temperature_K = -5", "thermostat.temperature_K"),
    ("timestep_fs = 1.0", "timestep_fs = 0.0", "md.timestep_fs"),
    ("timestep_fs = 1.0", "timestep_fs = -1.0", "md.timestep_fs"),
    ('kind = "qtb"', 'kind = "nose"', "thermostat.kind"),
    ('kind = "morse"', 'kind = "lj"', "potential.kind"),
    ("steps = 40", 'steps = "many"', "md.steps"),
    ("[output]", "[outptu]", "outptu"),
    ('structure = "builtin:fcc"', 'structure = "missing.xyz"', "missing.xyz"),
    ("D_eV = 0.3429\n", "", "potential.D_eV"),
    ("n_f = 16", "n_f = 1", "thermostat.n_f"),
    ("f_max_THz = 50", "f_max_THz = 900", "f_max_THz"),
])
def test_bad_config_one_line_error(tmp_path, capsys, old, new, key):
    cfg = _write(tmp_path, GOOD.replace(old, new, 1))
    code = main(["md", str(cfg), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("dpqtb: error:") and err.count("\n") == 1, err
    assert key in err
    assert "Traceback" not in err


def test_cli_subprocess_error_has_no_traceback(tmp_path):
    cfg = _write(tmp_path, GOOD.replace("temperature_K = 100", "temperature_K = -1"))
    r = subprocess.run([sys.executable, "-m", "dpqtb.cli", "md", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "temperature_K" in r.stderr and "Traceback" not in r.stderr


def test_cli_runs_resumes_and_refuses_to_overwrite(tmp_path, capsys):
    cfg = _write(tmp_path, GOOD)
    out = tmp_path / "out"
    assert main(["md", str(cfg), "--output", str(out), "--steps", "20"]) == 0
    thermo = (out / "thermo.csv").read_text().splitlines()
    assert thermo[0].split(",") == ["step", "time_fs", "temperature_K", "target_temperature_K", "kinetic_eV",
                                    "potential_eV", "total_eV", "conserved_eV", "pressure_GPa", "volume_A3",
                                    "temperature_Cu_K", "kinetic_raw_eV", "temperature_raw_K", "pressure_raw_GPa",
                                    "temperature_raw_Cu_K"]
    assert len(thermo) == 1 + 3
    before = (out / "thermo.csv").read_bytes()
    assert main(["md", str(cfg), "--output", str(out)]) == 2  # exists: refuse
    assert (out / "thermo.csv").read_bytes() == before
    # 700 steps > two Δ_FD segments (2 n_f = 32 noise periods of α = 10 steps; the first is the
    # bath's start-up transient and is skipped, fd_skip_segments = 1)
    assert main(["md", str(cfg), "--output", str(out), "--resume", "--steps", "700"]) == 0
    assert len((out / "thermo.csv").read_text().splitlines()) == 1 + 71
    assert (out / "qtb_fd_Cu.csv").exists()
    header = (out / "qtb_fd_Cu.csv").read_text().splitlines()[0]
    assert "frequency_THz" in header and "delta_fd_eV" in header
    assert main(["md", str(cfg), "--output", str(out), "--overwrite", "--steps", "10"]) == 0


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, capsys):
    cfg = _write(tmp_path, GOOD)
    out = tmp_path / "out"
    assert main(["md", str(cfg), "--output", str(out), "--steps", "20"]) == 0
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert main(["md", str(cfg), "--output", str(out), "--resume"]) == 2
    assert "checkpoint" in capsys.readouterr().err


def test_function_potential_from_file(tmp_path):
    (tmp_path / "pot.py").write_text(
        "import torch\n"
        "def energy(x, cell, species):\n"
        "    # an Einstein crystal on the fcc sites (multiples of a/2 = 1.805 Å): starts at rest in its minima\n"
        "    return 0.5 * 2.0 * ((x - torch.round(x / 1.805) * 1.805) ** 2).sum()\n")
    text = GOOD.replace('kind = "morse"\nD_eV = 0.3429\na_per_A = 1.3588\nr0_A = 2.866\ncutoff_A = 5.0',
                        'kind = "function"\nfunction = "pot.py:energy"').replace('kind = "qtb"', 'kind = "langevin"')
    cfg = _write(tmp_path, text)
    assert main(["md", str(cfg), "--output", str(tmp_path / "o"), "--steps", "10"]) == 0


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "md" in out and "demo" in out


def test_busy_machine_warning_for_torch_default_threads(tmp_path, capsys, monkeypatch):
    """torch's default threads on a machine where other processes run: one warning line naming --threads,
    once the input is checked; none when they fit, with --threads, with OMP_NUM_THREADS set, or before a
    bad input's one-line error."""
    import torch

    from dpqtb import entry

    assert entry.busy_threads_warning(2, 2, 0) is None
    assert entry.busy_threads_warning(1, 2, 1) is None
    assert entry.busy_threads_warning(4, 8, 3) is None
    msg = entry.busy_threads_warning(2, 2, 1)
    assert "1 other process running" in msg and msg.endswith("--threads 1")
    assert entry.busy_threads_warning(16, 16, 5).endswith("--threads 11")
    assert entry.busy_threads_warning(2, 2, 3).endswith("--threads 1")
    cfg = _write(tmp_path, GOOD)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(entry, "_others_running", lambda: 4)
    monkeypatch.setattr(entry.os, "cpu_count", lambda: 4)
    n0 = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        assert main(["md", str(cfg), "--output", str(tmp_path / "a"), "--steps", "2"]) == 0
        err = capsys.readouterr().err
        assert err.count("dpqtb: warning: 4 other processes running") == 1 and "--threads 1" in err
        # a bad input still gets its one-line error alone (the warning comes once the input is checked)
        bad = _write(tmp_path, GOOD.replace("temperature_K = 100", "temperature_K = -1"), name="bad.toml")
        assert main(["md", str(bad), "--output", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert err.strip().count("\n") == 0 and "temperature_K" in err and "other process" not in err
        # ... also for the inputs the run itself checks: no checkpoint to resume, an output that is a file
        # (on a busy machine without OMP_NUM_THREADS these printed the warning first: README's test command)
        assert main(["md", str(cfg), "--output", str(tmp_path / "none"), "--resume"]) == 2
        err = capsys.readouterr().err
        assert err.strip().count("\n") == 0 and "checkpoint" in err and "other process" not in err
        (tmp_path / "afile").write_text("x")
        assert main(["md", str(cfg), "--output", str(tmp_path / "afile"), "--steps", "2"]) == 2
        err = capsys.readouterr().err
        assert err.strip().count("\n") == 0 and "other process" not in err
        assert main(["demo", "--output", str(tmp_path / "afile")]) == 2
        err = capsys.readouterr().err
        assert err.strip().count("\n") == 0 and "not a folder" in err and "other process" not in err
        assert main(["--threads", "4", "md", str(cfg), "--output", str(tmp_path / "b"), "--steps", "2"]) == 0
        assert "other process" not in capsys.readouterr().err
        torch.set_num_threads(4)
        monkeypatch.setenv("OMP_NUM_THREADS", "4")
        assert main(["md", str(cfg), "--output", str(tmp_path / "c"), "--steps", "2"]) == 0
        assert "other process" not in capsys.readouterr().err
    finally:
        torch.set_num_threads(n0)


def test_readme_commands_match_ci():
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text().splitlines()
    fence = readme.index("```bash")
    main_cmd, test_cmd = readme[fence + 1], readme[fence + 2]
    assert "setup.sh" in main_cmd and "setup.sh" in test_cmd and "pytest" in test_cmd
    ci = (root / ".ci" / "run").read_text()
    assert test_cmd in ci


def test_config_doc_is_current():
    import subprocess

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "scripts" / "make_config_doc.py")], capture_output=True,
                         text=True, check=True).stdout
    assert out == (root / "docs" / "config.md").read_text(), "run: python scripts/make_config_doc.py > docs/config.md"
