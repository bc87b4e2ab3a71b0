"""``dpqtb sweep`` on damaged or unusual input (the session-22 reliability review): one clear error or a
sensible state, never a traceback; a serial sweep survives a point that raises anything; points.csv is
valid CSV whatever an error message holds; a stop request from outside a command is not counted as done."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from dpqtb import InputError
from dpqtb.rundir import POINT_LOG, POINT_RESULT, SWEEP_JSON, SWEEP_POINTS_CSV, SWEEP_POINTS_DIR
from dpqtb.workflows.sweep_spec import load_sweep, parse_sweep
from dpqtb.workflows.sweep_status import parse_log, point_status, sweep_status

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "examples" / "sweep_morse.toml"
BASE = {"system": {"structure": "builtin:fcc", "element": "Cu", "lattice_A": 3.61, "supercell": [2, 2, 2]},
        "potential": {"kind": "morse", "D_eV": 0.3429, "a_per_A": 1.3588, "r0_A": 2.866, "cutoff_A": 5.0},
        "md": {"timestep_fs": 2.0, "steps": 0, "seed": 1}}


def _raw(**over):
    raw = {"sweep": {"equilibration_steps": 10, "production_steps": 100, "blocks": 2}, "base": BASE,
           "axes": {"temperature_K": [100], "bath": ["langevin"]}}
    raw.update(over)
    return raw


@pytest.mark.parametrize("change, match", [
    (lambda r: r.update(base="base.toml"), "'base' must be a table"),
    (lambda r: r.update(sweep=3), "'sweep' must be a table"),
    (lambda r: r.update(plots=3), "'plots' must be a table"),
    (lambda r: (r.pop("base"), r["sweep"].update(base=5)), "sweep.base must be a path"),
    (lambda r: r["sweep"].update(directory=["a"]), "sweep.directory must be a path"),
])
def test_sweep_file_values_of_the_wrong_type_are_one_error(tmp_path, change, match):
    raw = _raw()
    change(raw)
    with pytest.raises(InputError, match=match):
        parse_sweep(raw, tmp_path)


def test_points_csv_quotes_errors_with_quotes_commas_and_newlines():
    from dpqtb.workflows.sweep import _fmt

    for text in ['KeyError: "x", y', 'a "quoted" word', "two\nlines, and a comma", "plain"]:
        assert next(csv.reader(io.StringIO("a," + _fmt(text) + ",b"))) == ["a", text, "b"]


def _point_dir(tmp_path, h="abc"):
    d = tmp_path / SWEEP_POINTS_DIR / h
    d.mkdir(parents=True)
    (tmp_path / SWEEP_JSON).write_text(json.dumps({"points": [{"hash": h, "axes": {"temperature_K": 5}}]}))
    return d


def test_status_never_crashes_on_damaged_files(tmp_path):
    d = _point_dir(tmp_path)
    (d / POINT_RESULT).write_text("[1, 2]")  # valid JSON, not an object
    (d / POINT_LOG).write_text("2024-02-30T10:00:00+0000 step 10/100 (checkpoint)\n"  # no such date
                               "2024-03-01T10:00:00+0000 step 20/100 (checkpoint)\n")
    log = parse_log((d / POINT_LOG).read_text())
    assert [s[1] for s in log["steps"]] == [20]
    row = point_status(d, "abc")
    assert row["status"] == "pending" and row["step"] == 20
    from dpqtb.workflows.sweep import read_result

    assert read_result(d, "abc") is None
    (tmp_path / SWEEP_JSON).write_text(json.dumps({"points": ["abc"]}))
    with pytest.raises(InputError, match="damaged"):
        sweep_status(tmp_path)
    (tmp_path / SWEEP_JSON).write_text("[]")
    with pytest.raises(InputError, match="not a sweep directory"):
        sweep_status(tmp_path)


def test_missing_scheduler_file_is_one_error_not_a_hang(tmp_path):
    from dpqtb.cli import main

    assert main(["sweep", str(TOY), "--out", str(tmp_path / "o"), "--scheduler-file", str(tmp_path / "no.json"),
                 "--no-progress"]) == 2


def test_serial_sweep_marks_a_point_that_raises_anything_failed_and_runs_the_others(tmp_path, monkeypatch):
    import dpqtb.workflows.sweep as sweep_mod

    sweep = load_sweep(TOY)
    first = sweep.points[0].hash
    real = sweep_mod.run_point
    ran = []

    def flaky(spec):
        ran.append(spec["hash"])
        if spec["hash"] == first:
            raise ZeroDivisionError('a "bug", in the analysis')
        return {"hash": spec["hash"], "status": "done", "axes": spec["axes"], "md_seed": spec["md_seed"],
                "equilibration_steps": spec["equilibration_steps"], "production_steps": spec["production_steps"],
                "observables": {}}

    monkeypatch.setattr(sweep_mod, "run_point", flaky)
    res = sweep_mod.run_sweep(sweep, tmp_path, serial=True, progress=False, plots=False)
    assert real is not flaky and len(ran) == len(sweep.points)
    assert res["failed"] == 1 and res["done"] == len(sweep.points) - 1
    rows = list(csv.DictReader(open(tmp_path / SWEEP_POINTS_CSV)))
    bad = [r for r in rows if r["status"] == "failed"]
    assert len(bad) == 1 and bad[0]["hash"] == first
    assert bad[0]["error"] == 'ZeroDivisionError: a "bug", in the analysis'


def test_a_point_stopped_from_outside_is_stopped_not_done(tmp_path, monkeypatch):
    import dpqtb.workflows.sweep as sweep_mod
    from dpqtb.workflows.sweep_stop import PointStopped

    sweep = load_sweep(TOY)

    def stopped(spec):
        raise PointStopped(f"point {spec['hash'][:16]} stopped at step 3 with a checkpoint", 3)

    monkeypatch.setattr(sweep_mod, "run_point", stopped)
    res = sweep_mod.run_sweep(sweep, tmp_path, serial=True, progress=False, plots=False)
    assert res["stopped"] == len(sweep.points) and res["done"] == 0 and res["failed"] == 0
    rows = list(csv.DictReader(open(tmp_path / SWEEP_POINTS_CSV)))
    assert {r["status"] for r in rows} == {"stopped"}


def test_a_second_client_on_the_same_sweep_directory_is_refused(tmp_path):
    import fcntl

    from dpqtb.cli import main
    from dpqtb.rundir import SWEEP_LOCK

    (tmp_path / "out").mkdir()
    with open(tmp_path / "out" / SWEEP_LOCK, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fh.write("otherhost pid 4242\n")
        fh.flush()
        csv_before = (tmp_path / "out" / SWEEP_POINTS_CSV).exists()
        assert main(["sweep", str(TOY), "--out", str(tmp_path / "out"), "--serial", "--no-progress"]) == 2
        assert not (tmp_path / "out" / SWEEP_JSON).exists() and not csv_before  # nothing written
        assert "otherhost pid 4242" in (tmp_path / "out" / SWEEP_LOCK).read_text()
        fcntl.flock(fh, fcntl.LOCK_UN)


def test_the_client_lock_names_its_holder_and_is_released(tmp_path, monkeypatch):
    import dpqtb.workflows.sweep as sweep_mod
    from dpqtb.rundir import SWEEP_LOCK

    seen = []

    def peek(spec):
        seen.append((tmp_path / SWEEP_LOCK).read_text())
        raise ValueError("stop here")

    monkeypatch.setattr(sweep_mod, "run_point", peek)
    sweep = load_sweep(TOY)
    sweep_mod.run_sweep(sweep, tmp_path, serial=True, progress=False, plots=False)
    import os
    import socket

    assert seen and seen[0] == f"{socket.gethostname()} pid {os.getpid()}\n"
    sweep_mod.run_sweep(sweep, tmp_path, serial=True, progress=False, plots=False)  # released: a second run works


def test_own_cluster_workers_ignore_stop_signals_also_after_a_nanny_restart():
    """A worker of dpqtb's own LocalCluster killed (as by the OOM killer) is restarted by its nanny; the restarted
    worker must ignore SIGINT/SIGTERM like the first ones (else a Ctrl-C to the process group kills its point)."""
    import os
    import signal
    import time

    from dpqtb.workflows.sweep_dask import make_client

    def dispositions():
        return (signal.getsignal(signal.SIGINT) == signal.SIG_IGN, signal.getsignal(signal.SIGTERM) == signal.SIG_IGN)

    client, cluster = make_client(workers=1)
    try:
        first = client.run(os.getpid)
        assert set(client.run(dispositions).values()) == {(True, True)}
        os.kill(next(iter(first.values())), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                now = client.run(os.getpid)
            except Exception:  # noqa: BLE001 - the worker is between lives
                continue
            if now and set(now.values()).isdisjoint(first.values()):
                break
        else:
            pytest.fail("the nanny did not restart the worker within 60 s")
        assert set(client.run(dispositions).values()) == {(True, True)}
    finally:
        client.close()
        cluster.close()


def test_two_sweeps_sharing_a_worker_keep_its_sigterm_checkpointing_until_the_last_ends():
    """Each sweep on a foreign cluster registers its own plugin; the worker's own SIGTERM handler comes back
    when the last one is torn down, not the first (which left the other sweep's points to the walltime)."""
    import signal

    from dpqtb.workflows.sweep_stop import _install_sigterm, _on_worker_sigterm, _restore_sigterm

    def own(signum, frame):  # the worker's own handler (Dask's, in a real worker)
        pass

    before = signal.signal(signal.SIGTERM, own)
    try:
        a, b = _install_sigterm(), _install_sigterm()
        assert a and b and signal.getsignal(signal.SIGTERM) is _on_worker_sigterm
        _restore_sigterm(a)  # the first sweep ends
        assert signal.getsignal(signal.SIGTERM) is _on_worker_sigterm
        _restore_sigterm(b)  # the last one
        assert signal.getsignal(signal.SIGTERM) is own
        _restore_sigterm(b)  # a second teardown changes nothing
        assert signal.getsignal(signal.SIGTERM) is own
    finally:
        signal.signal(signal.SIGTERM, before)
