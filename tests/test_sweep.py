"""``dpqtb sweep`` (issue 24) on the shipped toy sweep examples/sweep_morse.toml (8 Morse points):

* the points run serially in this process are the reference (module fixture);
* a real LocalCluster with 2 worker processes gives identical points.csv and identical bytes of every
  point's thermo.csv and trajectory.extxyz;
* one worker killed by PID (SIGKILL) after the first point finished: the sweep still completes, with
  identical results;
* the client (``dpqtb sweep`` subprocess) killed after a point finished and the command re-run: the
  finished points are not recomputed (their files keep bytes and mtimes), the result is identical, and
  a third run recomputes nothing;
* an interrupted point resumes from its checkpoint and gives the uninterrupted bytes;
* the sweep file's expansion: hashes, seeds, duplicates, errors.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dpqtb import InputError
from dpqtb.rundir import POINT_LOCK, POINT_RESULT, SWEEP_POINTS_CSV, SWEEP_POINTS_DIR, THERMO, TRAJECTORY
from dpqtb.workflows.sweep import ANALYSIS_VERSION
from dpqtb.workflows.sweep_spec import load_sweep, parse_sweep
from dpqtb.workflows.sweep_status import sweep_status

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "examples" / "sweep_morse.toml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
OUTPUTS = (THERMO, TRAJECTORY, POINT_RESULT)


def _finished(out: Path) -> list[Path]:
    return sorted(p.parent for p in (out / SWEEP_POINTS_DIR).glob(f"*/{POINT_RESULT}"))


def _same_as(ref: Path, out: Path) -> None:
    assert (out / SWEEP_POINTS_CSV).read_text() == (ref / SWEEP_POINTS_CSV).read_text()
    points = sorted(p.name for p in (ref / SWEEP_POINTS_DIR).iterdir())
    assert sorted(p.name for p in (out / SWEEP_POINTS_DIR).iterdir()) == points
    for h in points:
        for name in (THERMO, TRAJECTORY):
            assert (out / SWEEP_POINTS_DIR / h / name).read_bytes() == (ref / SWEEP_POINTS_DIR / h / name).read_bytes(), (h, name)


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    from dpqtb.workflows.sweep import run_sweep

    out = tmp_path_factory.mktemp("serial")
    res = run_sweep(load_sweep(TOY), out, serial=True, progress=False)
    assert res["n_points"] == 8 and res["done"] == 8 and res["failed"] == 0
    return out


def test_toy_sweep_serial_points_csv(serial):
    import csv

    rows = list(csv.DictReader(open(serial / SWEEP_POINTS_CSV)))
    assert len(rows) == 8 and {r["status"] for r in rows} == {"done"}
    assert {r["bath"] for r in rows} == {"langevin", "qtb"}
    for r in rows:
        assert abs(float(r["T_kin_K"]) - float(r["temperature_K"])) < 0.3 * float(r["temperature_K"]) + 60
        assert abs(float(r["P_mean_GPa"]) - float(r["pressure_GPa"])) < 6  # the pressure check (32 atoms)
        assert float(r["a_A"]) > 3.5 and float(r["E_per_3NkB_K_err"]) > 0
        # QTB: the energy with the uncorrected kinetic energy beside the corrected one (the correction removes the
        # broadening bias, which only adds kinetic energy); other baths have none
        if r["bath"] == "qtb":
            assert float(r["E_per_3NkB_raw_K"]) > float(r["E_per_3NkB_K"]) and float(r["E_per_3NkB_raw_K_err"]) > 0
        else:
            assert r["E_per_3NkB_raw_K"] == "nan"
        assert r["theta_avg_deg"] == "nan"  # no cage in fcc Cu: NaN, not an error
        assert float(r["T_zero_K"]) > 0 and r["T_zero_source"] == ("qtb_dos" if r["bath"] == "qtb" else "vdos")
        assert "T_Cu_K" in r
    figs = sorted(p.name for p in (serial / "figures").iterdir())
    assert figs == sorted(f"{n}.{e}" for n in ("fig2a_distortion", "fig2b_face_angles", "fig3a_energy",
                                               "fig3b_t_zero") for e in ("png", "csv"))


def test_local_cluster_two_workers_identical_to_serial(serial, tmp_path):
    from dpqtb.workflows.sweep import run_sweep

    res = run_sweep(load_sweep(TOY), tmp_path, workers=2, progress=False, plots=False)
    assert res["done"] == 8 and res["failed"] == 0
    _same_as(serial, tmp_path)


def test_own_local_cluster_workers_keep_freed_memory():
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which makes a torch point 1.25-2x slower
    (benchmarks/results/sweep_malloc_trim.json); dpqtb's LocalCluster starts them without it, and a worker of
    anyone else's cluster that has it says so in point.log."""
    from dpqtb.workflows.sweep import malloc_trim_warning
    from dpqtb.workflows.sweep_dask import make_client

    client, cluster = make_client(workers=1)
    try:
        assert set(client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values()) == {None}
        assert set(client.run(os.environ.get, "OMP_NUM_THREADS").values()) == {"1"}  # the other defaults stay
    finally:
        client.close()
        cluster.close()
    assert "1.25-2x slower" in malloc_trim_warning({"MALLOC_TRIM_THRESHOLD_": "65536"})
    assert malloc_trim_warning({}) is None and malloc_trim_warning({"MALLOC_TRIM_THRESHOLD_": "1073741824"}) is None


def test_worker_killed_mid_sweep_still_completes_identically(serial, tmp_path):
    """``dpqtb sweep --scheduler ADDRESS`` on a running LocalCluster; a worker SIGKILLed by PID."""
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        assert len(set(pids)) == 2
        cmd = _sweep_cmd(tmp_path, "--scheduler", cluster.scheduler_address)
        cmd.remove("--workers"), cmd.remove("2")
        proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 300
        while not _finished(tmp_path) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        os.kill(pids[0], signal.SIGKILL)  # mid-sweep: both workers are busy with points
        n_done_at_kill = len(_finished(tmp_path))
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        new_pids = set(client.run(os.getpid).values())
    assert n_done_at_kill < 8 and pids[0] not in new_pids and len(new_pids) == 2  # the nanny restarted it
    assert "0 finished before, 8 run now, 0 failed" in stdout
    _same_as(serial, tmp_path)


@contextlib.contextmanager
def _signal_a_running_point_worker(out: Path, sig, threads: int = 1):
    """``dpqtb sweep --scheduler`` on a LocalCluster of 2 single-threaded workers (or one with 2 threads); once a
    point runs, ``sig`` to the worker process running it. Yields (client, the sweep's Popen, point dir, pid)."""
    import re

    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2 // threads, threads_per_worker=threads, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        pids = set(client.run(os.getpid).values())
        cmd = _sweep_cmd(out, "--scheduler", cluster.scheduler_address)
        cmd.remove("--workers"), cmd.remove("2")
        proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 300
        while (d := _running_point(out)) is None and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None and d is not None, proc.communicate()
        pid = int(re.findall(r"(?:start|resume) on \S+ pid (\d+)", (d / "point.log").read_text())[-1])
        assert pid in pids
        os.kill(pid, sig)
        yield client, proc, d, pid


@pytest.mark.parametrize("threads", [1, 2])
def test_worker_sent_sigterm_checkpoints_its_point_which_resumes_elsewhere(serial, tmp_path, threads):
    """A batch system ending a job that runs only workers sends them SIGTERM: the worker stops its running point
    after the current step with a checkpoint there, exits without reporting the task (so it is not a failure),
    and the scheduler reruns the point on another worker, which resumes from that step; the sweep completes
    with the bytes of the serial run."""
    import re

    # threads = 2: one worker process running two points at once (the docs' GPU-node layout): both stop
    with _signal_a_running_point_worker(tmp_path, signal.SIGTERM, threads=threads) as (client, proc, d, pid):
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        new_pids = set(client.run(os.getpid).values())
        handlers = set(client.run(signal.getsignal, signal.SIGTERM).values())
    assert pid not in new_pids and len(new_pids) == 2 // threads  # it exited; the nanny started another
    assert handlers == {signal.SIG_DFL}  # the sweep over, its plugin is gone: the workers' own SIGTERM handling
    assert "0 finished before, 8 run now, 0 failed" in stdout
    log = (d / "point.log").read_text()
    stopped = re.search(r"stopped at step (\d+) \(SIGTERM to its worker; it reruns elsewhere\); checkpoint written", log)
    assert stopped, log
    after = log[stopped.end():]
    resumed = re.search(r"resume on \S+ pid (\d+)", after)
    assert resumed and int(resumed.group(1)) != pid, log
    first = next(ln for ln in after[resumed.end():].splitlines() if " step " in ln)
    assert f" step {stopped.group(1)}/" in first and first.endswith("(resumed)"), log  # from the checkpoint of the SIGTERM
    logs = [p.read_text() for p in (tmp_path / SWEEP_POINTS_DIR).glob("*/point.log")]
    for text in logs:  # every point stopped by it: checkpoint, then resumed from that step
        for m in re.finditer(r"stopped at step (\d+) \(SIGTERM to its worker", text):
            nxt = next(ln for ln in text[m.end():].splitlines() if ln.endswith("(resumed)"))
            assert f" step {m.group(1)}/" in nxt, text
    assert all(t.count("(started)") == 1 for t in logs)  # each point started once: no line in another's log
    _same_as(serial, tmp_path)


def test_a_point_that_keeps_losing_workers_but_advances_is_submitted_again(serial, tmp_path):
    """Dask gives up on a task after `allowed-failures` lost workers (KilledWorker): on a long sweep of short batch
    jobs a point would be marked failed although every worker advanced it. The client submits such a point again
    while its point.log shows progress since it was submitted, and a point that never started (only queued on the
    dying worker) too (here allowed-failures = 0 and one SIGKILL)."""
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            _signal_a_running_point_worker(tmp_path, signal.SIGKILL) as (_, proc, d, _):
        stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert f"point {d.name[:16]} lost its workers past Dask's allowed-failures but its checkpoint advanced" in stderr, stderr
    assert "submitted again (1)" in stderr
    assert "0 finished before, 8 run now, 0 failed" in stdout
    _same_as(serial, tmp_path)


def _sweep_cmd(out: Path, *extra) -> list[str]:
    return [sys.executable, "-m", "dpqtb.cli", "sweep", str(TOY), "--out", str(out), "--workers", "2",
            "--no-progress", *extra]


def _snapshot(dirs: list[Path]) -> dict:
    return {(d.name, n): ((d / n).stat().st_mtime_ns, (d / n).read_bytes()) for d in dirs for n in OUTPUTS}


def test_client_killed_then_rerun_recomputes_nothing_finished(serial, tmp_path):
    proc = subprocess.Popen(_sweep_cmd(tmp_path), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 300
    while len(_finished(tmp_path)) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    os.kill(proc.pid, signal.SIGKILL)  # the client only (its worker processes follow their parent)
    proc.wait()
    finished = _finished(tmp_path)
    assert 2 <= len(finished) < 8
    before = _snapshot(finished)
    time.sleep(0.05)
    rerun = subprocess.run(_sweep_cmd(tmp_path), env=ENV, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(finished)} finished before, {8 - len(finished)} run now" in rerun.stdout
    assert _snapshot(finished) == before  # not recomputed: same bytes, same mtimes
    _same_as(serial, tmp_path)
    everything = _snapshot(_finished(tmp_path))
    again = subprocess.run(_sweep_cmd(tmp_path), env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "8 finished before, 0 run now" in again.stdout, again.stderr
    assert _snapshot(_finished(tmp_path)) == everything
    with pytest.raises(ProcessLookupError):  # the killed client's process group is gone
        os.killpg(proc.pid, 0)


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _running_point(out: Path) -> Path | None:
    """A point directory with MD under way (thermo rows past step 20) and no result yet."""
    for d in (out / SWEEP_POINTS_DIR).glob("*"):
        t = d / THERMO
        if not (d / POINT_RESULT).exists() and t.exists() and len(t.read_text().splitlines()) > 5:
            return d
    return None


@pytest.mark.parametrize("mode", ["workers", "workers-ctrl-c", "serial"])
def test_sigterm_checkpoints_running_points_then_the_same_command_resumes(serial, tmp_path, mode):
    """SIGTERM to ``dpqtb sweep`` (a batch system ending the job), or Ctrl-C in its terminal (SIGINT to the
    whole process group, workers included): with Dask workers the client asks them to stop this run's points
    after their current step, each writes a checkpoint there (not only at its last periodic one), the
    command exits 143 / 130 with one line; serially the point in flight does the same. The same command
    then finishes the sweep with the bytes of an uninterrupted serial run."""
    from dpqtb.md.checkpoint import load

    cmd = _sweep_cmd(tmp_path) if mode != "serial" else [*_sweep_cmd(tmp_path)[:7], "--serial", "--no-progress"]
    # the client starts with SIGINT at its default, as a terminal's foreground job does: a suite run from a
    # background script inherits SIGINT ignored, which the client rightly leaves ignored (a fresh-clone
    # suite run in the background failed here, exit 0, before the test set this)
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_sigint_default)
    deadline = time.time() + 300
    while _running_point(tmp_path) is None and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()
    sig = signal.SIGINT if mode == "workers-ctrl-c" else signal.SIGTERM
    if mode == "workers-ctrl-c":
        os.killpg(proc.pid, sig)  # what a terminal does: the client and its worker processes
    else:
        proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"dpqtb: sweep interrupted by {sig.name}") and "the same command resumes" in last, stderr
    stopped = [d for d in (tmp_path / SWEEP_POINTS_DIR).glob("*") if "stopped at step" in (d / "point.log").read_text()]
    assert stopped and len(stopped) <= 2, stderr
    for d in stopped:
        step = int((d / "point.log").read_text().split("stopped at step ")[-1].split()[0])
        assert load(d / "checkpoint.pt")["state"]["step"] == step  # the step in flight, not a periodic one
    status = {r["hash"]: r for r in sweep_status(tmp_path)}  # dpqtb sweep --status, from the files alone
    assert len(status) == 8 and {r["status"] for r in status.values()} <= {"done", "stopped", "pending"}
    for d in stopped:
        step = int((d / "point.log").read_text().split("stopped at step ")[-1].split()[0])
        spec = json.loads((d / "point.json").read_text())
        target = spec["equilibration_steps"] + spec["production_steps"]
        assert (status[d.name]["status"], status[d.name]["step"], status[d.name]["target"]) == ("stopped", step, target)
    if mode != "serial":
        assert f"{len(stopped)} running point(s) stopped with a checkpoint" in last
    rerun = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    for d in stopped:
        assert "resume on" in (d / "point.log").read_text().split("stopped at step")[-1]
    _same_as(serial, tmp_path)
    assert all(r["status"] == "done" and r["step"] == r["target"] > 0 for r in sweep_status(tmp_path))


def test_interrupted_point_resumes_from_checkpoint(serial, tmp_path):
    from dpqtb.md.build import build_simulation
    from dpqtb.md.config import validate
    from dpqtb.workflows.sweep import run_point

    pt = load_sweep(TOY).points[3]  # a QTB point
    spec = pt.spec(tmp_path / pt.hash)
    cfg = validate(pt.config, base_dir=pt.base_dir)
    build_simulation(cfg, output_dir=tmp_path / pt.hash, progress=False).run(120)  # stopped at step 120
    res = run_point(spec)
    assert res["timing"]["resumed"] is True
    for name in (THERMO, TRAJECTORY):
        assert (tmp_path / pt.hash / name).read_bytes() == (serial / SWEEP_POINTS_DIR / pt.hash / name).read_bytes()
    mtime = (tmp_path / pt.hash / POINT_RESULT).stat().st_mtime_ns
    again = run_point(spec)  # finished: read back, not rerun
    assert json.dumps(again) == json.dumps(res) and (tmp_path / pt.hash / POINT_RESULT).stat().st_mtime_ns == mtime


# ------------------------------------------------------------------------------------ the sweep file
BASE = {"system": {"structure": "builtin:fcc", "element": "Cu", "lattice_A": 3.61},
        "potential": {"kind": "morse", "D_eV": 0.3429, "a_per_A": 1.3588, "r0_A": 2.866, "cutoff_A": 5.0},
        "md": {"timestep_fs": 2.0, "steps": 0, "seed": 3},
        "thermostat": {"damp_fs": 100.0}, "output": {"thermo_every": 5, "trajectory_every": 5}}


def _raw(**over):
    raw = {"sweep": {"equilibration_steps": 10, "production_steps": 100, "blocks": 2}, "base": BASE,
           "axes": {"temperature_K": [100, 200], "bath": ["langevin", "qtb"]}}
    raw.update(over)
    return raw


def test_expansion_hashes_seeds_and_grids(tmp_path):
    sw = parse_sweep(_raw(grid=[{"bath": ["adqtb"], "temperature_K": [100]},
                                {"bath": ["qtb"], "temperature_K": [100]}]), tmp_path)  # the 2nd: a duplicate
    assert len(sw.points) == 5 and sw.axis_names == ["temperature_K", "bath"]
    assert [p.axes["bath"] for p in sw.points] == ["langevin", "qtb", "langevin", "qtb", "adqtb"]
    again = parse_sweep(_raw(), tmp_path)
    assert [p.hash for p in again.points] == [p.hash for p in sw.points[:4]]  # stable
    assert len({p.md_seed for p in sw.points}) == 5  # seeds from the point
    assert all(p.config["md"]["seed"] == p.md_seed for p in sw.points)
    more = parse_sweep(_raw(sweep={"equilibration_steps": 10, "production_steps": 200, "blocks": 2}), tmp_path)
    assert not {p.hash for p in more.points} & {p.hash for p in again.points}  # steps are part of a point


def test_expansion_named_and_dotted_axes(tmp_path):
    sw = parse_sweep(_raw(axes={"pressure_GPa": [0, 5], "seed": [1, 2], "supercell": [[1, 1, 1]],
                                "thermostat.damp_fs": [50.0], "bath": ["pimd"], "temperature_K": [300]},
                          baths={"pimd": {"beads": 2}}), tmp_path)
    assert len(sw.points) == 4
    assert sw.axis_names == ["pressure_GPa", "temperature_K", "bath", "seed", "supercell", "thermostat.damp_fs"]
    c = sw.points[-1].config
    assert c["barostat"]["pressure_GPa"] == 5 and c["thermostat"]["beads"] == 2 and c["thermostat"]["damp_fs"] == 50.0


def test_a_grid_sets_its_own_step_split(tmp_path):
    """Short runs beside long ones in one file (e.g. K_cv vs beads beside a long centroid-MSD run): a grid's
    production_steps / equilibration_steps axis is the point's split; the point is the same one a [sweep]
    with that split gives (same hash and seed), and points.csv has one column for each."""
    from dpqtb.workflows.sweep import csv_columns

    sw = parse_sweep(_raw(grid=[{"bath": ["qtb"], "temperature_K": [300], "production_steps": [200, 300],
                                 "equilibration_steps": [20]}]), tmp_path)
    short = [p for p in sw.points if p.axes.get("production_steps")]
    assert [(p.equilibration_steps, p.production_steps) for p in short] == [(20, 200), (20, 300)]
    assert [p.config["md"]["steps"] for p in short] == [220, 320]
    assert all((p.equilibration_steps, p.production_steps) == (10, 100) for p in sw.points if p not in short)
    alone = parse_sweep(_raw(sweep={"equilibration_steps": 20, "production_steps": 200, "blocks": 2},
                             axes={"temperature_K": [300], "bath": ["qtb"]}), tmp_path).points[0]
    assert (alone.hash, alone.md_seed) == (short[0].hash, short[0].md_seed)
    cols = csv_columns(sw.axis_names, [])
    assert len(cols) == len(set(cols)) and "production_steps" in cols


@pytest.mark.parametrize("over, match", [
    ({"axes": {"temperature_K": 300}}, "non-empty list"),
    ({"axes": {"production_steps": [1]}}, "integers >= 2"),
    ({"axes": {"equilibration_steps": [2.5]}}, "integers >= 0"),
    ({"axes": {"bath": ["quantum"]}}, "unknown bath"),
    ({"axes": {"colour": [1]}}, "unknown axis"),
    ({"axes": {"temperature_K": [-5]}}, "sweep point"),
    ({"sweep": {"production_steps": 100}}, "equilibration_steps"),
    ({"sweep": {"equilibration_steps": 7, "production_steps": 100}}, "multiple"),
    ({"extra": {}}, "unknown table"),
])
def test_bad_sweep_files(tmp_path, over, match):
    with pytest.raises(InputError, match=match):
        parse_sweep(_raw(**over), tmp_path)


def test_set_overrides_base_config(tmp_path):
    from dpqtb.workflows.sweep_spec import parse_override

    assert parse_override("system.supercell=[3, 3, 3]") == ("system.supercell", [3, 3, 3])
    assert parse_override("system.device=cuda") == ("system.device", "cuda")
    sw = parse_sweep(_raw(), tmp_path, overrides=dict([parse_override("system.supercell=[2,2,2]")]))
    assert sw.points[0].config["system"]["supercell"] == [2, 2, 2]
    assert sw.points[0].hash != parse_sweep(_raw(), tmp_path).points[0].hash
    with pytest.raises(InputError, match="section.key"):
        parse_override("supercell")


def test_plot_cli_rewrites_figures(serial):
    from dpqtb.cli import main

    png = serial / "figures" / "fig3a_energy.png"
    png.unlink()
    assert main(["sweep", "--plot", str(serial)]) == 0 and png.stat().st_size > 1000
    assert (serial / "figures" / "fig3a_energy.csv").read_text().startswith("bath,pressure_GPa,temperature_K,")


def test_failed_point_is_marked_and_the_others_finish(tmp_path):
    import csv

    from dpqtb.cli import main

    (tmp_path / "bad.py").write_text("def energy(positions, cell, species):\n"
                                     "    return (positions ** 2).sum() * float('nan')\n")
    sweep = tmp_path / "s.toml"
    sweep.write_text(TOY.read_text().replace('directory = "../sweep_morse"', "")
                     .replace("[axes]\npressure_GPa = [0, 10]", '[axes]\npressure_GPa = [0]')
                     .replace("temperature_K = [100, 400]", "temperature_K = [100]")
                     .replace('bath = ["langevin", "qtb"]', 'bath = ["langevin"]\n'
                              '[[grid]]\n"potential.kind" = ["function"]\n"potential.function" = ["bad.py:energy"]'))
    assert main(["sweep", str(sweep), "--serial", "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    rows = list(csv.DictReader(open(tmp_path / "out" / SWEEP_POINTS_CSV)))
    assert [r["status"] for r in rows] == ["done", "failed"] and rows[1]["error"]
    assert "failed:" in next((tmp_path / "out" / SWEEP_POINTS_DIR / rows[1]["hash"]).glob("point.log")).read_text()
    status = sweep_status(tmp_path / "out")
    assert [r["status"] for r in status] == ["done", "failed"] and "failed:" not in status[1]["error"]
    assert status[1]["error"].startswith("SimulationUnstable: ")


def test_status_of_a_running_point_from_its_lock_log_and_thermo(tmp_path):
    """A point whose point.lock another open file holds is running; its steps/min is the current attempt's
    (the lines after the last resume), its ETA (target - last checkpoint's step) / rate less the time since;
    without the lock it is stopped (it has a checkpoint); thermo.csv's last row gives a later step."""
    import fcntl

    from dpqtb.cli import main
    from dpqtb.workflows.sweep_status import parse_log, point_status

    d = tmp_path / SWEEP_POINTS_DIR / "abc"
    d.mkdir(parents=True)
    (tmp_path / "sweep.json").write_text(json.dumps({"points": [{"hash": "abc", "axes": {"temperature_K": 5}},
                                                                {"hash": "def", "axes": {"temperature_K": 9}}]}))
    (d / "point.json").write_text(json.dumps({"equilibration_steps": 400, "production_steps": 1600}))
    t0 = time.mktime((2026, 12, 7, 4, 0, 0, 0, 0, -1))

    def stamp(dt):
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t0 + dt))

    (d / "point.log").write_text(
        f"{stamp(-900)} start on host pid 1\n{stamp(-900)} step 0/2000 (started)\n{stamp(-300)} step 100/2000 "
        f"(checkpoint)\n{stamp(-200)} stopped at step 130 (SIGTERM); checkpoint written\n"
        f"{stamp(0)} resume on host pid 2\n{stamp(0)} step 130/2000 (resumed)\n"
        f"{stamp(600)} step 430/2000 (checkpoint)\n{stamp(1200)} step 730/2000 (checkpoint)\n")
    (d / "checkpoint.pt").write_bytes(b"")
    (d / "point.lock").write_text("")
    now = t0 + 1260
    with open(d / "point.lock") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        row = point_status(d, "abc", now=now)
        assert row["status"] == "running" and (row["step"], row["target"]) == (730, 2000)
        assert row["steps_per_min"] == pytest.approx(30.0)  # (730 - 130) steps / 20 min
        assert row["eta_h"] == pytest.approx(((2000 - 730) * 2.0 - 60.0) / 3600.0)
        assert row["last_line_min"] == pytest.approx(1.0) and row["where"] == "host:2"  # the current attempt's
        (d / "thermo.csv").write_text("step,time_fs\n0,0.0\n10,5.0\n740,370.0\n75")  # a row being written
        assert point_status(d, "abc", now=now)["step"] == 740  # running: thermo.csv is further on
    row = point_status(d, "abc", now=now)
    assert (row["status"], row["step"]) == ("stopped", 730)  # it resumes from its checkpoint, not thermo's 740
    # progress lines carry their UTC offset: the same instant read in any time zone
    from dpqtb.workflows.sweep import progress_line
    from dpqtb.workflows.sweep_status import _when

    line = progress_line("checkpoint", 5, 10)
    stamp = line.split(" ")[0]
    assert len(stamp) == 24 and _when(stamp) == pytest.approx(time.time(), abs=5)
    assert parse_log(line + "\n")["steps"][0][1:] == (5, 10, "checkpoint")
    assert [r["status"] for r in sweep_status(tmp_path, now=now)] == ["stopped", "pending"]
    assert main(["sweep", "--status", str(tmp_path)]) == 0
    assert main(["sweep", "--status", str(d)]) == 2  # not a sweep directory


def test_cli_errors_exit_2(tmp_path):
    from dpqtb.cli import main

    assert main(["sweep"]) == 2
    assert main(["sweep", "--plot", str(tmp_path)]) == 2  # no points.csv
    assert main(["sweep", str(tmp_path / "missing.toml")]) == 2


def test_every_shipped_sweep_file_expands():
    """examples/*.toml with a [sweep] table: each expands and every point validates (a GPU file too: the
    device is checked when it runs)."""
    import tomllib

    files = [f for f in sorted((ROOT / "examples").glob("*.toml")) if "sweep" in tomllib.loads(f.read_text())]
    assert {"verdict_lah10_small.toml", "verdict_beads_gpu.toml", "sweep_morse.toml"} <= {f.name for f in files}
    for f in files:
        assert load_sweep(f).points, f.name


def test_each_thread_writes_its_own_point_log(tmp_path):
    """Several points in one worker run in threads: each one's prints (its log lines, the MD's warnings) go to
    its own point.log, never another's, and the process's streams are intact afterwards."""
    import threading

    from dpqtb.workflows.sweep import thread_output_to

    barrier = threading.Barrier(4)

    def point(k):
        with open(tmp_path / f"{k}.log", "w") as log, thread_output_to(log):
            barrier.wait()
            for i in range(200):
                print(f"point {k} line {i}")
                print(f"point {k} warning {i}", file=sys.stderr)

    threads = [threading.Thread(target=point, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        lines = (tmp_path / f"{k}.log").read_text().splitlines()
        assert len(lines) == 400 and all(ln.startswith(f"point {k} ") for ln in lines)
    print("the process's own stdout still works")
    sys.stderr.write("and its stderr\n")


def test_which_points_dask_gave_up_on_are_submitted_again(tmp_path):
    """The rule behind the resubmission, on point.log states: finished, advanced, stopped by a worker SIGTERM or
    never started (at most MAX_UNSTARTED_RETRIES times) are not the point's fault; started and not advanced is."""
    from distributed import KilledWorker

    from dpqtb.workflows.sweep_dask import MAX_UNSTARTED_RETRIES, NEVER_STARTED, _lost_but_not_bad, log_state

    class Fut:
        def __init__(self, exc, status="error"):
            self.status, self.exc = status, exc

        def exception(self, timeout=None):
            return self.exc

    killed = Fut(KilledWorker("point-x", None, 3))
    log = tmp_path / "point.log"
    assert log_state(tmp_path) == (0, -1, 0, 0)
    log.write_text("2026-12-07T04:00:00 start on vm pid 1\n2026-12-07T04:00:00+0000 step 0/250 (checkpoint)\n"
                   "2026-12-07T04:00:01+0000 step 50/250 (checkpoint)\n")
    before = log_state(tmp_path)
    assert before == (1, 50, 0, 0)
    assert _lost_but_not_bad(killed, before, (2, 50, 0, 0), 0) is None  # (re)started, crashed, did not advance: bad
    assert _lost_but_not_bad(killed, before, before, 0) == NEVER_STARTED  # no new start line since submission
    assert _lost_but_not_bad(killed, (0, -1, 0, 0), before, 0).startswith("its checkpoint advanced to step 50")
    assert _lost_but_not_bad(killed, before, before[:2] + (1, 0), 0).startswith("a SIGTERM to its worker")
    assert _lost_but_not_bad(killed, before, before[:3] + (1,), 0) == "it finished"
    assert _lost_but_not_bad(killed, (0, -1, 0, 0), (0, -1, 0, 0), 0) == NEVER_STARTED
    assert _lost_but_not_bad(killed, (0, -1, 0, 0), (0, -1, 0, 0), MAX_UNSTARTED_RETRIES) is None
    assert _lost_but_not_bad(Fut(ValueError("bad input")), (0, -1, 0, 0), before, 0) is None  # not KilledWorker
    assert _lost_but_not_bad(Fut(None, status="finished"), (0, -1, 0, 0), before, 0) is None


def test_production_frames_exclude_the_last_equilibration_frame(serial):
    """The toy points: equilibration 50 steps, production 200, a frame every 5 steps from step 0. The
    production frames are steps 55 ... 250: 40 frames, as the 40 production thermo rows (step > 50)."""
    for d in _finished(serial):
        summary = json.loads((d / "analysis" / "summary.json").read_text())
        assert summary["n_frames"] == 200 // 5
        assert json.loads((d / POINT_RESULT).read_text())["analysis_version"] == ANALYSIS_VERSION


def test_reanalyze_brings_old_points_up_to_date_without_md(serial, tmp_path):
    """A copy of the toy sweep made by analysis version 1 (no analysis_version, the frame at step eq in):
    `dpqtb sweep --reanalyze` re-analyses every finished point from its files, leaves the MD files untouched,
    and gives exactly the results a fresh run gives; a point without its trajectory keeps its result and
    is named (one line, exit 2); a second call has nothing to do; a sweep directory a client holds is refused."""
    import csv
    import shutil

    import numpy as np

    from dpqtb.cli import main
    from dpqtb.workflows.sweep import production_start_frame

    assert production_start_frame(50, 5) == 11  # frame 10 is step 50, the last of equilibration
    out = tmp_path / "old"
    shutil.copytree(serial, out)
    points = _finished(out)
    md_bytes = {(d.name, n): (d / n).read_bytes() for d in points for n in (THERMO, TRAJECTORY)}
    for i, d in enumerate(points):  # as version 1 wrote them: other numbers, no version
        res = json.loads((d / POINT_RESULT).read_text())
        del res["analysis_version"]
        res["observables"]["a_A"] = 0.0
        (d / POINT_RESULT).write_text(json.dumps(res))
        if i == 0:  # a call stopped between its renames: the old analysis in analysis.old, a partial new one
            (d / "analysis").rename(d / "analysis.old")
            (d / "analysis.new").mkdir()
            (d / "analysis.new" / "partial").write_text("x")
        elif i == 1:  # an old analysis in place: replaced whole
            (d / "analysis" / "v1_only.csv").write_text("x")
        else:
            shutil.rmtree(d / "analysis")
    (out / SWEEP_POINTS_CSV).write_text("stale\n")
    from dpqtb.workflows.sweep_status import format_status

    text = format_status(sweep_status(out))
    assert text.count("(older analysis version)") == 8 and "8 done point(s) analysed by an older version" in text
    lost = points[0]
    (lost / TRAJECTORY).rename(lost / "moved.extxyz")
    assert main(["sweep", "--reanalyze", str(out)]) == 2  # one point could not be re-analysed: one line, exit 2
    assert json.loads((lost / POINT_RESULT).read_text())["observables"]["a_A"] == 0.0  # kept as it was
    assert (lost / "analysis" / "summary.json").is_file() and not (lost / "analysis.old").exists()  # put back
    rows = {r["hash"]: r for r in csv.DictReader(open(out / SWEEP_POINTS_CSV))}
    assert len(rows) == 8 and rows[lost.name]["a_A"] == "0"
    (lost / "moved.extxyz").rename(lost / TRAJECTORY)
    assert main(["sweep", "--reanalyze", str(out)]) == 0  # now only that one is stale
    assert (out / SWEEP_POINTS_CSV).read_text() == (serial / SWEEP_POINTS_CSV).read_text()
    for d in points:
        new, ref = (json.loads((p / POINT_RESULT).read_text()) for p in (d, serial / SWEEP_POINTS_DIR / d.name))
        assert new["observables"] == ref["observables"] and new["analysis_version"] == ANALYSIS_VERSION
        assert "reanalysis_s" in new["timing"] and new["timing"]["md_s"] == ref["timing"]["md_s"]
        assert not (d / "analysis.new").exists() and not (d / "analysis.old").exists()
        assert not (d / "analysis" / "v1_only.csv").exists()
        summary = json.loads((d / "analysis" / "summary.json").read_text())
        assert summary["analysis_version"] == ANALYSIS_VERSION and summary["n_frames"] == 40
        # the lattice parameter: the mean over the production frames (steps 55 ... 250, frames 11 ...) of the
        # cell length over the supercell's 2, read here with ASE
        from ase.io import read

        frames = read(str(d / TRAJECTORY), index=f"{production_start_frame(50, 5)}:")
        assert len(frames) == 40
        a = np.mean([np.linalg.norm(f.cell[0]) / 2 for f in frames])
        assert new["observables"]["a_A"] == pytest.approx(a, rel=1e-12)
    assert {k: (out / SWEEP_POINTS_DIR / k[0] / k[1]).read_bytes() for k in md_bytes} == md_bytes
    assert "older analysis version" not in format_status(sweep_status(out))
    stamp = (points[1] / POINT_RESULT).stat().st_mtime_ns
    assert main(["sweep", "--reanalyze", str(out)]) == 0 and (points[1] / POINT_RESULT).stat().st_mtime_ns == stamp
    from dpqtb.workflows.sweep import _locked, _one_client

    (points[2] / POINT_RESULT).unlink()  # a point without a result whose lock someone holds: 'pending' in the
    with _locked(points[2] / POINT_LOCK):  # file (as the sweep writes it), not the moment's 'running'
        assert {r["hash"]: r for r in sweep_status(out)}[points[2].name]["status"] == "running"
        assert main(["sweep", "--reanalyze", str(out)]) == 0
    rows = {r["hash"]: r for r in csv.DictReader(open(out / SWEEP_POINTS_CSV))}
    assert rows[points[2].name]["status"] == "pending" and rows[points[3].name]["status"] == "done"
    with _one_client(out.resolve()):
        assert main(["sweep", "--reanalyze", str(out)]) == 2  # a client holds it
    assert main(["sweep", "--reanalyze", str(tmp_path)]) == 2  # not a sweep directory
    assert main(["sweep", str(TOY), "--status", str(out)]) == 2  # one mode at a time


def test_cage_columns_come_from_the_analysis_directory_given(tmp_path):
    """point_observables reads the per-frame cage angles (theta.csv) from the analysis directory it is
    given (a re-analysis writes to analysis.new/ before the swap), not from run_dir/analysis."""
    from dpqtb.workflows.sweep import _cage

    a = tmp_path / "analysis.new"
    a.mkdir()
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "theta.csv").write_text("theta_mean_deg\n1\n1\n1\n1\n")  # must not be read
    (a / "theta.csv").write_text("theta_mean_deg,deviation_mean_deg\n88,2\n89,1\n90,0\n91,1\n")
    summary = {"cage_angle": {"frames_mean": {"theta_mean_deg": 89.5, "theta_std_deg": 0.3},
                              "time_averaged_structure": {"theta_mean_deg": 89.4}}}
    out = {}
    _cage(out, a, summary, 2)
    from dpqtb.analysis.stats import mean_error

    # the error of analysis.new's series (the other file's constant series would give 0)
    assert out["theta_frames_deg"] == pytest.approx(89.5)
    err = mean_error([88.0, 89.0, 90.0, 91.0], 2)[1]
    assert err > 0.9 and out["theta_frames_deg_err"] == pytest.approx(err)
    assert out["distortion_frames_deg"] == pytest.approx(1.0) and out["theta_avg_deg"] == pytest.approx(89.4)
    assert out["face_spread_frames_deg"] == pytest.approx(0.3)


def test_diffusion_observables_from_the_summary():
    """D per species with its error, and the fraction of the H atoms that changed site at least once."""
    from dpqtb.workflows.sweep import _diffusion

    summary = {"species": {"La": 4, "H": 40},
               "diffusion": {"H": {"D_cm2_per_s": 2.5e-6, "D_err_cm2_per_s": 4e-7}},
               "exchanges": {"classes": {"none": 30, "one": 7, "several": 3}}}
    out = {}
    _diffusion(out, summary)
    assert out["D_H_cm2_per_s"] == 2.5e-6 and out["D_H_cm2_per_s_err"] == 4e-7 and out["exchanged_fraction"] == 0.25
    assert math.isnan(out["D_La_cm2_per_s"]) and math.isnan(out["D_La_cm2_per_s_err"])  # not in the summary
    out = {}
    _diffusion(out, {"species": {}})
    assert math.isnan(out["exchanged_fraction"])


def test_figures_mark_where_the_model_is_not_trusted(serial, tmp_path):
    """[plots] model_trusted_from_GPa: Fig. 2a's CSV says, per row, whether the model is trusted at its
    pressure (the PNG hatches those rows); a value that is not a number is one error."""
    import csv
    import shutil

    from dpqtb.rundir import SWEEP_JSON
    from dpqtb.workflows.sweep_plots import plot_sweep

    out = tmp_path / "s"
    shutil.copytree(serial, out)
    meta = json.loads((out / SWEEP_JSON).read_text())
    meta["plots"]["model_trusted_from_GPa"] = 5
    (out / SWEEP_JSON).write_text(json.dumps(meta))
    plot_sweep(out)
    rows = list(csv.DictReader(open(out / "figures" / "fig2a_distortion.csv")))
    assert rows and {(r["pressure_GPa"], r["model_trusted"]) for r in rows} == {("0", "False"), ("10", "True")}
    rows = list(csv.DictReader(open(out / "figures" / "fig3b_t_zero.csv")))  # across pressures
    assert rows and {(r["pressure_GPa"], r["model_trusted"]) for r in rows} == {("0", "False"), ("10", "True")}
    for name in ("fig2b_face_angles", "fig3a_energy"):  # at the reference pressure, [plots] pressure_GPa = 0
        rows = list(csv.DictReader(open(out / "figures" / f"{name}.csv")))
        assert rows and {(r["pressure_GPa"], r["model_trusted"]) for r in rows} == {("0", "False")}
    # protons that diffuse (rule 2: D > 1e-6 cm²/s and > 3σ) are marked in Fig. 2a's CSV (and a "D" on the PNG)
    with open(out / SWEEP_POINTS_CSV, newline="") as fh:
        pts = list(csv.DictReader(fh))
    d_h = {0: ("2e-05", "1e-06"), 1: ("2e-05", "1e-05"), 2: ("5e-07", "1e-08")}  # resolved; 2σ; below D_min
    for k, r in enumerate(pts):
        r["D_H_cm2_per_s"], r["D_H_cm2_per_s_err"] = d_h.get(k, ("", ""))
    with open(out / SWEEP_POINTS_CSV, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(pts[0]))
        w.writeheader()
        w.writerows(pts)
    plot_sweep(out)
    marked = {(r["bath"], r["pressure_GPa"], r["temperature_K"]): r["H_diffusive"]
              for r in csv.DictReader(open(out / "figures" / "fig2a_distortion.csv"))}
    key = [(r["bath"], r["pressure_GPa"], r["temperature_K"]) for r in pts]  # 2 x 2 x 2: one point per cell
    assert len(set(key)) == len(key) == 8 and [marked[k] for k in key] == ["True"] + ["False"] * 7
    raw = {"sweep": {"equilibration_steps": 10, "production_steps": 100}, "base": {"md": {"steps": 0}},
           "axes": {"temperature_K": [100], "bath": ["langevin"]}, "plots": {"model_trusted_from_GPa": "high"}}
    with pytest.raises(InputError, match="plots.model_trusted_from_GPa must be a number"):
        parse_sweep(raw, tmp_path)


def test_sigint_ignored_on_entry_stays_ignored():
    """The Unix convention, for `dpqtb md` and the sweep client alike: a process that inherited SIGINT
    ignored (a job a script put in the background) leaves it ignored, so a Ctrl-C to that script does not
    stop it; otherwise SIGINT is handled inside the block and the previous handler restored after."""
    from dpqtb.signals import interrupt_handling

    def mine(signum, frame):
        pass

    before = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with interrupt_handling(mine):
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with interrupt_handling(mine):
            assert signal.getsignal(signal.SIGINT) is mine
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)
