"""Job store, resumable runner (with a cheap stand-in calculator), input validation, CLI errors."""

import argparse
import json
import multiprocessing
import os
import signal
import time

import numpy as np
import pytest
from ase import Atoms
from ase import units as ase_units
from ase.calculators.lj import LennardJones

from dpqtb import DpqtbError
from dpqtb.dft import cli as dft_cli
from dpqtb.dft import supervise
from dpqtb.dft.lock import acquire_lock, lock_holder
from dpqtb.dft.runner import run_store, skipped_failures
from dpqtb.dft.settings import CHEAP, PRODUCTION, kpoint_mesh
from dpqtb.dft.store import JobStore, job_id, validate_atoms
from dpqtb.structures.lah10 import fm3m


def lj_factory(atoms, settings, txt=None):
    return LennardJones(sigma=1.5, epsilon=0.01, rc=3.0)


def _configs(n):
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        a = fm3m(4.9)
        a.positions += rng.normal(size=a.positions.shape) * 0.05
        out.append(a)
    return out


def test_kpoint_mesh_from_density():
    a = 4.955
    prim = fm3m(a, "primitive")
    conv = fm3m(a, "conventional")
    s = 0.25
    # |b| = 2π√3/a for the fcc primitive cell, 2π/a for the cube
    n_prim = int(np.ceil(2 * np.pi * np.sqrt(3) / a / s))
    n_conv = int(np.ceil(2 * np.pi / a / s))
    assert kpoint_mesh(prim, s) == (n_prim,) * 3
    assert kpoint_mesh(conv, s) == (n_conv,) * 3
    # a 2x2x2 supercell of the cube gets half the mesh (rounded up)
    assert kpoint_mesh(conv.repeat(2), s) == (int(np.ceil(n_conv / 2)),) * 3
    assert kpoint_mesh(conv, 100.0) == (1, 1, 1)
    with pytest.raises(DpqtbError):
        kpoint_mesh(conv, 0.0)


def test_job_ids_are_content_hashes(tmp_path):
    store = JobStore(tmp_path)
    a = _configs(1)[0]
    j1 = store.add(a, PRODUCTION, {"x": 1})
    j2 = store.add(a.copy(), PRODUCTION, {"x": 2})
    assert j1 == j2 == job_id(a, PRODUCTION)
    assert len(store.job_ids()) == 1
    assert store.add(a, CHEAP) != j1  # different settings, different job
    b = a.copy()
    b.positions[0, 0] += 1e-3
    assert job_id(b, PRODUCTION) != j1


def test_round_off_copies_are_one_job(tmp_path):
    """Two copies of a structure 4e-11 Å apart that straddle the 1e-6 Å rounding of the hash
    (and a job read back from its JSON, which keeps 1e-10 Å) are found as the stored job; a
    structure 1e-5 Å away, or the same one with other settings, is a new job."""
    a = _configs(1)[0]
    a.positions[3, 1] = 1.2345675 + 2e-11
    b = a.copy()
    b.positions[3, 1] = 1.2345675 - 2e-11
    assert job_id(a, PRODUCTION) != job_id(b, PRODUCTION)  # the hash alone splits them
    store = JobStore(tmp_path / "s")
    ja = store.add(a, PRODUCTION)
    assert store.add(b, PRODUCTION) == ja
    assert JobStore(tmp_path / "s").find(b, PRODUCTION) == ja  # a fresh index sees it too
    back = store.job(ja).atoms
    assert store.add(back, PRODUCTION) == ja
    assert len(store.job_ids()) == 1
    c = a.copy()
    c.positions[3, 1] += 1e-5
    assert store.find(c, PRODUCTION) is None and store.add(c, PRODUCTION) != ja
    assert store.find(b, CHEAP) is None
    d = a.copy()
    d.cell[0, 0] += 1e-5  # same positions, other cell
    assert store.find(d, PRODUCTION) is None
    assert len(store.job_ids()) == 2


def test_runner_labels_each_job_once_and_resumes(tmp_path):
    store = JobStore(tmp_path / "s")
    for n, a in enumerate(_configs(4)):
        store.add(a, CHEAP, {"order": n})
    assert run_store(store, max_jobs=2, calc_factory=lj_factory, verbose=False) == 2
    assert store.progress() == (2, 4, 0)
    assert run_store(store, calc_factory=lj_factory, verbose=False) == 2
    assert run_store(store, calc_factory=lj_factory, verbose=False) == 0
    assert store.progress() == (4, 4, 0)
    assert not (store.root / "runner.lock").exists()
    fr = store.frames()[0]
    atoms = store.job(fr["id"]).atoms
    atoms.calc = LennardJones(sigma=1.5, epsilon=0.01, rc=3.0)
    np.testing.assert_allclose(fr["forces_eV_per_A"], atoms.get_forces(), atol=1e-7)
    assert fr["energy_eV"] == pytest.approx(atoms.get_potential_energy())
    p = -np.trace(atoms.get_stress(voigt=False)) / 3 / ase_units.GPa
    assert fr["pressure_GPa"] == pytest.approx(p, rel=1e-6)
    prov = fr["provenance"]
    assert prov["codes"]["dpqtb"] and prov["codes"]["ase"]
    assert fr["settings"] == CHEAP.as_dict()


def test_crash_loses_only_the_job_in_flight(tmp_path):
    store = JobStore(tmp_path / "s")
    for n, a in enumerate(_configs(3)):
        store.add(a, CHEAP, {"order": n})
    order = store.pending()
    calls = []

    def flaky(atoms, settings, txt=None):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("SCF did not converge")
        return lj_factory(atoms, settings)

    assert run_store(store, calc_factory=flaky, verbose=False) == 2
    assert store.progress() == (2, 3, 1)
    assert store.failed_ids() == {order[1]}
    assert "SCF" in json.loads((store.failed_dir / f"{order[1]}.json").read_text())["error"]
    # the next run retries the failed job only
    assert run_store(store, calc_factory=lj_factory, verbose=False) == 1
    assert store.progress() == (3, 3, 0)
    assert not store.failed_ids()
    # no partial/temporary files are left behind
    assert not [p for p in store.frames_dir.iterdir() if p.name.startswith(".")]


def _hold_lock(root, barrier, out):
    """Child process: race for the store lock; a winner holds it for 0.3 s and reports when."""
    barrier.wait()
    try:
        lock = acquire_lock(root)
    except DpqtbError:
        out.put(None)
        return
    t0 = time.monotonic()
    time.sleep(0.3)
    t1 = time.monotonic()
    lock.release()
    out.put((t0, t1))


def test_lock_blocks_a_second_runner(tmp_path):
    lock = acquire_lock(tmp_path)
    assert lock_holder(tmp_path) == os.getpid()
    with pytest.raises(DpqtbError, match="being labelled by process"):
        acquire_lock(tmp_path)
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    child = ctx.Process(target=_hold_lock, args=(tmp_path, ctx.Barrier(1), q))
    child.start()
    child.join()
    assert q.get(timeout=5) is None  # another process cannot take it either
    lock.release()
    assert not (tmp_path / "runner.lock").exists() and lock_holder(tmp_path) is None
    # a flock-style file nobody holds is free, whatever pid it names (pids are reused)
    (tmp_path / "runner.lock").write_text(json.dumps({"pid": os.getpid(), "flock": True}))
    assert lock_holder(tmp_path) is None
    acquire_lock(tmp_path).release()
    # a lock written before flock (no "flock" key) counts as held while its process lives
    (tmp_path / "runner.lock").write_text(json.dumps({"pid": os.getpid()}))
    assert lock_holder(tmp_path) == os.getpid()
    with pytest.raises(DpqtbError, match="being labelled"):
        acquire_lock(tmp_path)
    (tmp_path / "runner.lock").write_text(json.dumps({"pid": 2**22 + 12345}))
    assert lock_holder(tmp_path) is None
    acquire_lock(tmp_path).release()


def test_stale_lock_is_taken_by_one_process_only(tmp_path):
    """Processes that find the same stale lock at once: the holding times of the winners never
    overlap (create-if-absent plus remove-if-dead let two of them hold it together)."""
    ctx = multiprocessing.get_context("fork")
    n = 8
    barrier, q = ctx.Barrier(n), ctx.Queue()
    for _ in range(5):  # the old lock failed ~1 in 3 rounds here
        (tmp_path / "runner.lock").write_text(json.dumps({"pid": 2**22 + 12345}))
        procs = [ctx.Process(target=_hold_lock, args=(tmp_path, barrier, q)) for _ in range(n)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=30)
        held = sorted(iv for iv in (q.get(timeout=5) for _ in range(n)) if iv is not None)
        assert held, "nobody took the stale lock"
        for (_, end), (start, _) in zip(held, held[1:]):
            assert start >= end, f"two processes held the lock at once: {held}"
        assert not (tmp_path / "runner.lock").exists()


@pytest.mark.parametrize("atoms,msg", [
    (Atoms("LaHe", positions=[[0, 0, 0], [1.5, 0, 0]], cell=[4, 4, 4], pbc=True),
     "unknown element"),
    (Atoms("LaH", positions=[[0, 0, 0], [0.3, 0, 0]], cell=[4, 4, 4], pbc=True), "overlap"),
    (Atoms("H", positions=[[0, 0, 0]], cell=[0.4, 4, 4], pbc=True), "overlap"),
    (Atoms(), "no atoms"),
    (Atoms("LaH", positions=[[0, 0, 0], [2, 0, 0]], cell=[4, 4, 4], pbc=False), "periodic"),
])
def test_validation(atoms, msg):
    with pytest.raises(DpqtbError, match=msg):
        validate_atoms(atoms)


def _parser():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    dft_cli.register(sub)
    return p


def _run_cli(argv):
    from dpqtb.cli import main as dpqtb_main

    return dpqtb_main(argv)


@pytest.mark.parametrize("content,msg", [
    ("", "empty file"),
    ("2\n\nLa 0 0 0\nXx 1 1 1\n", "cannot read|unknown element"),
    ('2\nLattice="4 0 0 0 4 0 0 0 4" pbc="T T T"\nLa 0 0 0\nHe 1.5 0 0\n', "unknown element"),
    ('2\nLattice="4 0 0 0 4 0 0 0 4" pbc="T T T"\nLa 0 0 0\nH 0.2 0 0\n', "overlap"),
])
def test_label_cli_rejects_bad_input(tmp_path, content, msg):
    f = tmp_path / "in.xyz"
    f.write_text(content)
    args = _parser().parse_args(["label", str(f), "--store", str(tmp_path / "s"), "--no-run"])
    with pytest.raises(DpqtbError, match=msg):
        args.func(args)


def test_label_cli_missing_file_and_empty_store(tmp_path, capsys):
    args = _parser().parse_args(["label", str(tmp_path / "nope.xyz"), "--store", str(tmp_path)])
    with pytest.raises(DpqtbError, match="no such file"):
        args.func(args)
    args = _parser().parse_args(["label", "--store", str(tmp_path / "empty")])
    with pytest.raises(DpqtbError, match="nothing to label"):
        args.func(args)


def test_main_cli_exit_code_2_on_bad_input(tmp_path, capsys):
    from dpqtb.cli import _COMMAND_MODULES

    if "dpqtb.dft.cli" not in _COMMAND_MODULES:
        pytest.skip("dpqtb.dft.cli not registered in dpqtb.cli")
    f = tmp_path / "empty.xyz"
    f.write_text("")
    assert _run_cli(["label", str(f), "--store", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "empty file" in err and len(err.strip().splitlines()) == 1


def test_label_cli_registers_and_reports_status(tmp_path, capsys):
    f = tmp_path / "in.extxyz"
    from ase.io import write

    write(str(f), _configs(2), format="extxyz")
    store = str(tmp_path / "s")
    args = _parser().parse_args(["label", str(f), "--store", store, "--cheap", "--no-run"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "2 configuration(s) registered" in out and "0/2 labelled" in out
    assert supervise.runner_command(store, 2, 19, None)[:3] == ["nice", "-n", "19"]
    assert os.path.isdir(os.path.join(store, "jobs"))


def test_smallest_cells_first(tmp_path):
    store = JobStore(tmp_path / "s")
    small, large = _configs(2)[0], _configs(1)[0].repeat((1, 1, 2))
    ids = {n: store.add(a, CHEAP, {"order": k}) for k, (n, a) in enumerate([(44, large), (11, small)])}
    order = store.pending()
    assert order == [ids[44], ids[11]]  # the store's order: large first
    assert run_store(store, max_jobs=1, calc_factory=lj_factory, verbose=False,
                     smallest_first=True) == 1
    assert store.has_frame(ids[11]) and not store.has_frame(ids[44])
    # the store's order otherwise
    store2 = JobStore(tmp_path / "s2")
    for k, a in enumerate((large, small)):
        store2.add(a, CHEAP, {"order": k})
    assert store2.pending() == order
    run_store(store2, max_jobs=1, calc_factory=lj_factory, verbose=False)
    assert store2.has_frame(order[0])
    assert "--smallest-first" in supervise.runner_command("s", 1, 0, None, smallest_first=True)
    cmd = supervise.runner_command("s", 1, 0, None, max_atoms=11)
    assert cmd[cmd.index("--max-atoms") + 1] == "11"
    args = _parser().parse_args(["label", "--store", str(tmp_path / "s3"), "--max-atoms", "0"])
    with pytest.raises(DpqtbError, match="--max-atoms must be >= 1"):
        args.func(args)
    assert not (tmp_path / "s3").exists()


def test_max_atoms_labels_only_the_small_cells(tmp_path):
    store = JobStore(tmp_path / "s")
    small, large = _configs(2)[0], _configs(1)[0].repeat((1, 1, 2))
    n = len(small)
    assert len(large) == 2 * n
    ids = {k: store.add(a, CHEAP, {"order": i}) for i, (k, a) in enumerate([("large", large), ("small", small)])}
    assert run_store(store, calc_factory=lj_factory, verbose=False, max_atoms=2 * n - 1) == 1
    assert store.has_frame(ids["small"]) and store.pending() == [ids["large"]]
    assert run_store(store, calc_factory=lj_factory, verbose=False, max_atoms=n) == 0
    assert run_store(store, calc_factory=lj_factory, verbose=False, max_atoms=2 * n) == 1
    with pytest.raises(DpqtbError, match="max_atoms must be >= 1"):
        run_store(store, max_atoms=0)


def test_killed_run_is_recorded_and_resumed(tmp_path):
    store = JobStore(tmp_path / "s")
    for n, a in enumerate(_configs(3)):
        store.add(a, CHEAP, {"order": n})
    first = store.pending()[0]
    # simulate a run killed while labelling the first job (lock and in-flight marker left)
    (store.root / "runner.lock").write_text(json.dumps({"pid": 2**22 + 12345}))
    (store.root / "inflight.json").write_text(json.dumps({"id": first}))
    assert run_store(store, max_jobs=1, calc_factory=lj_factory, verbose=False) == 1
    assert store.has_frame(first)  # retried first, labelled once
    assert not (store.root / "inflight.json").exists()
    # a job that killed the runner twice is moved to the end of the queue
    second = store.pending()[0]
    for _ in range(2):
        (store.root / "inflight.json").write_text(json.dumps({"id": second}))
        run_store(store, max_jobs=0, calc_factory=lj_factory, verbose=False)
    assert json.loads((store.failed_dir / f"{second}.json").read_text())["interrupted"] == 2
    assert run_store(store, max_jobs=1, calc_factory=lj_factory, verbose=False) == 1
    assert not store.has_frame(second)
    assert run_store(store, calc_factory=lj_factory, verbose=False) == 1
    assert store.progress() == (3, 3, 0)


def test_stop_signal_ends_the_run_after_the_frame_in_flight(tmp_path):
    store = JobStore(tmp_path / "s")
    for n, a in enumerate(_configs(3)):
        store.add(a, CHEAP, {"order": n})

    def stop_during_first(atoms, settings, txt=None):
        if not store.done_ids():  # SIGUSR1 arrives while the first frame is being computed
            os.kill(os.getpid(), signal.SIGUSR1)
        return lj_factory(atoms, settings)

    assert run_store(store, calc_factory=stop_during_first, verbose=False) == 1
    assert store.progress() == (1, 3, 0)  # the frame in flight was written, nothing failed
    assert not (store.root / "inflight.json").exists() and lock_holder(store.root) is None
    # the handler is the run's only: outside a run SIGUSR1 is back to what it was
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert run_store(store, calc_factory=lj_factory, verbose=False) == 2
    assert store.progress() == (3, 3, 0)


def test_skip_failed_retries_a_job_interrupted_once(tmp_path, capsys):
    store = JobStore(tmp_path / "s")
    for n, a in enumerate(_configs(4)):
        store.add(a, CHEAP, {"order": n})
    once, twice, error, fine = store.pending()
    for jid, times in ((once, 1), (twice, 2)):
        for _ in range(times):  # runs killed with this job in flight
            (store.root / "inflight.json").write_text(json.dumps({"id": jid}))
            run_store(store, max_jobs=0, calc_factory=lj_factory, verbose=False)
    store.write_failure(error, "RuntimeError: SCF did not converge")
    assert store.failed_ids() == {once, twice, error}
    assert skipped_failures(store) == {twice, error}
    args = _parser().parse_args(["label", "--store", str(store.root), "--status"])
    assert args.func(args) == 0
    assert "3 failed (1 only interrupted once: retried as usual)" in capsys.readouterr().out
    assert run_store(store, retry_failed=False, calc_factory=lj_factory, verbose=False) == 2
    assert store.has_frame(once) and store.has_frame(fine)
    assert not store.has_frame(twice) and not store.has_frame(error)
    assert run_store(store, calc_factory=lj_factory, verbose=False) == 2  # without --skip-failed


_LOCK_HOLDER = """
import signal, sys, time
from dpqtb.dft.lock import acquire_lock
got = []
signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
lock = acquire_lock(sys.argv[1])
print("locked", flush=True)
t0 = time.time()
while not got and time.time() - t0 < 60:
    time.sleep(0.05)
sys.exit(0 if got else 3)
"""


def test_label_cli_stop_signals_the_store_runner(tmp_path, capsys):
    import subprocess
    import sys

    store_dir = tmp_path / "s"
    JobStore(store_dir).add(_configs(1)[0], CHEAP)
    args = _parser().parse_args(["label", "--store", str(store_dir), "--stop"])
    assert args.func(args) == 0
    assert "no labelling process running" in capsys.readouterr().out
    holder = subprocess.Popen([sys.executable, "-c", _LOCK_HOLDER, str(store_dir)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert args.func(args) == 0
        assert f"process {holder.pid} stops after its frame in flight" in capsys.readouterr().out
        assert holder.wait(timeout=30) == 0  # it received SIGUSR1 (not killed)
    finally:
        holder.kill()
        holder.wait()
    with pytest.raises(DpqtbError, match="no job store at"):
        args = _parser().parse_args(["label", "--store", str(tmp_path / "none"), "--stop"])
        args.func(args)
    with pytest.raises(DpqtbError, match="--stop takes no"):
        args = _parser().parse_args(["label", "--store", str(store_dir), "--stop", "--status"])
        args.func(args)


def test_label_cli_refuses_a_second_runner(tmp_path, capsys):
    store_dir = tmp_path / "s"
    store = JobStore(store_dir)
    store.add(_configs(1)[0], CHEAP)
    (store_dir / "runner.lock").write_text(json.dumps({"pid": os.getpid()}))
    args = _parser().parse_args(["label", "--store", str(store_dir), "--status"])
    assert args.func(args) == 0
    assert f"labelling process: {os.getpid()}" in capsys.readouterr().out
    args = _parser().parse_args(["label", "--store", str(store_dir), "--background"])
    with pytest.raises(DpqtbError, match="already being labelled"):
        args.func(args)


def test_label_cli_rejects_bad_np(tmp_path):
    store = JobStore(tmp_path / "s")
    store.add(_configs(1)[0], CHEAP)
    args = _parser().parse_args(["label", "--store", str(tmp_path / "s"), "--np", "0"])
    with pytest.raises(DpqtbError, match="--np"):
        args.func(args)


def test_retired_jobs_leave_the_plan_but_not_the_store(tmp_path):
    store = JobStore(tmp_path / "s")
    ids = [store.add(a, CHEAP, {"order": n, "kind": "thermal" if n % 2 else "pair-rotation"})
           for n, a in enumerate(_configs(4))]
    assert run_store(store, max_jobs=1, calc_factory=lj_factory, verbose=False) == 1
    with pytest.raises(DpqtbError, match="already labelled"):
        store.retire(ids[0], "x")
    with pytest.raises(DpqtbError, match="no job"):
        store.retire("0" * 16, "x")
    with pytest.raises(DpqtbError, match="reason"):
        store.retire(ids[2], "  ")
    store.retire(ids[2], "rigid rotation")
    assert store.pending() == [ids[1], ids[3]]
    assert store.progress() == (1, 3, 0)
    assert (store.jobs_dir / f"{ids[2]}.json").exists()  # the plan stays reproducible
    assert json.loads((store.retired_dir / f"{ids[2]}.json").read_text())["reason"] == "rigid rotation"

    # a job retired while a run is going is skipped by that run (checked before each job)
    def retire_next(atoms, settings, txt=None):
        if not store.is_retired(ids[3]):
            store.retire(ids[3], "retired mid-run")
        return lj_factory(atoms, settings)

    assert run_store(store, calc_factory=retire_next, verbose=False) == 1
    assert store.done_ids() == {ids[0], ids[1]}
    assert store.progress() == (2, 2, 0) and store.pending() == []


def test_label_cli_retire_kind(tmp_path, capsys, monkeypatch):
    store = JobStore(tmp_path / "s")
    for n, a in enumerate(_configs(3)):
        store.add(a, CHEAP, {"order": n, "kind": ["thermal", "pair-rotation", "pair-rotation"][n]})
    base = ["label", "--store", str(store.root), "--no-run"]
    args = _parser().parse_args(base + ["--retire-kind", "pair-rotation"])
    with pytest.raises(DpqtbError, match="needs --reason"):
        args.func(args)
    args = _parser().parse_args(base + ["--retire-kind", "strained", "--reason", "r"])
    with pytest.raises(DpqtbError, match="no pending job of kind 'strained'.*pair-rotation, thermal"):
        args.func(args)
    assert not store.retired_ids()
    # retiring edits the plan and returns: it never launches a labelling run (even without --no-run)
    def no_run(*a, **k):
        raise AssertionError("--retire-kind started a labelling run")

    monkeypatch.setattr(supervise, "runner_command", no_run)
    monkeypatch.setattr(supervise, "check_can_run", no_run)
    args = _parser().parse_args(["label", "--store", str(store.root), "--retire-kind", "pair-rotation",
                                 "--reason", "r"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "2 pending 'pair-rotation' job(s)" in out and "0/1 labelled, 0 failed, 2 retired" in out


def test_runner_command_unpins_open_mpi(monkeypatch):
    """Open MPI binds rank k to core k; two labelling/relaxation runs at once would then share core
    0.  The runner command asks for no binding when mpiexec is Open MPI's, and only then."""
    import dpqtb.dft.mpi as dft_mpi

    monkeypatch.setattr(dft_mpi, "mpiexec_is_openmpi", lambda: True)
    cmd = supervise.runner_command("s", 2, 0, None)
    i = cmd.index("mpiexec")
    assert cmd[cmd.index("--bind-to", i) + 1] == "none" and cmd.index("--bind-to") < cmd.index("-n")
    monkeypatch.setattr(dft_mpi, "mpiexec_is_openmpi", lambda: False)
    assert "--bind-to" not in supervise.runner_command("s", 2, 0, None)
    assert "mpiexec" not in supervise.runner_command("s", 1, 0, None)
    assert dft_mpi.mpi_prefix(3)[-2:] == ["-n", "3"]
    with pytest.raises(ValueError, match=">= 1"):
        dft_mpi.mpi_prefix(0)


def test_gpaw_environment_for_the_shell_drivers():
    """``python -m dpqtb.dft.mpi RANKS`` gives the shell drivers GPAW's environment and the
    mpiexec prefix, one argument per line; the runner command gets the same environment."""
    import subprocess
    import sys

    import dpqtb.dft.mpi as dft_mpi

    out = subprocess.run([sys.executable, "-m", "dpqtb.dft.mpi", "2"], capture_output=True,
                         text=True, check=True).stdout.split("\n")[:-1]
    env = [f"{k}={v}" for k, v in dft_mpi.GPAW_ENV.items()]
    assert out[:len(env) + 1] == ["env", *env] and "OMP_NUM_THREADS=1" in env
    assert out[len(env) + 1:] == dft_mpi.mpi_prefix(2)
    assert dft_mpi.gpaw_env({"OMP_NUM_THREADS": "8", "X": "y"}) == {**dft_mpi.GPAW_ENV, "X": "y"}
    bad = subprocess.run([sys.executable, "-m", "dpqtb.dft.mpi", "0"], capture_output=True,
                         text=True)
    assert bad.returncode != 0 and "positive integer" in bad.stderr


def test_label_cli_index_kind_and_frame_provenance(tmp_path, capsys):
    """Frames of an MD trajectory: --index picks them with ASE's (Python) slicing, --kind names them, and
    each job keeps the file, its position there and the comment-line scalars (step, bead, …)."""
    from ase.io import write

    frames = _configs(6)
    for n, a in enumerate(frames):
        a.info.update(step=10 * n, bead=n % 2, beads=2, note="x")
        a.info["vector"] = np.arange(3)  # not a scalar: left out
    f = tmp_path / "trajectory_beads.extxyz"
    write(str(f), frames, format="extxyz")
    store = tmp_path / "s"
    args = _parser().parse_args(["label", str(f), "--store", str(store), "--cheap", "--no-run",
                                 "--index", "1::2", "--kind", "pimd-bead"])
    assert args.func(args) == 0
    assert "3 configuration(s) registered" in capsys.readouterr().out
    s = JobStore(store)
    metas = sorted((s.job_record(j)["meta"] for j in s.job_ids()), key=lambda m: m["index_in_source"])
    assert [m["index_in_source"] for m in metas] == [1, 3, 5]
    assert all(m["kind"] == "pimd-bead" and m["source"] == f.name for m in metas)
    assert [m["frame_info"]["step"] for m in metas] == [10, 30, 50]
    assert metas[0]["frame_info"]["bead"] == 1 and "vector" not in metas[0]["frame_info"]
    args = _parser().parse_args(["label", str(f), "--store", str(store), "--cheap", "--no-run", "--index", "-1"])
    assert args.func(args) == 0
    assert "(0 new, 1 already there)" in capsys.readouterr().out and len(JobStore(store).job_ids()) == 3  # frame 5
    for bad, msg in (("1:2:0", "not an ASE frame index"), ("a:b", "not an ASE frame index"), ("", "not an ASE"),
                     ("7", "outside its 6"), ("10:", "selects none")):
        args = _parser().parse_args(["label", str(f), "--store", str(tmp_path / "s2"), "--no-run", "--index", bad])
        with pytest.raises(DpqtbError, match=msg):
            args.func(args)
    assert _run_cli(["label", str(f), "--store", str(tmp_path / "s3"), "--no-run", "--index", "::0"]) == 2


def test_eta_per_cell_size_and_k_spacing(tmp_path):
    """The time estimate keys frames by (atoms, k spacing): a class with labelled frames is timed by their mean;
    one without is scaled as the k-point count, (spacing ratio)³, from the same cell size, else from the largest
    cell times the atom ratio. The numbers by hand."""
    store = JobStore(tmp_path / "s")
    small, big = fm3m(5.1, "primitive"), fm3m(5.1, "conventional")
    rng = np.random.default_rng(0)

    def add(atoms, k, wall=None):
        a = atoms.copy()
        a.positions += rng.normal(0, 0.01, a.positions.shape)
        jid = store.add(a, PRODUCTION.replace(kspacing_invA=k))
        if wall is not None:
            rec = store.job_record(jid)
            store.write_frame({**{key: rec[key] for key in ("id", "symbols", "cell_A", "positions_A", "pbc", "settings")},
                               "energy_eV": 0.0, "forces_eV_per_A": np.zeros((len(a), 3)).tolist(),
                               "stress_eV_per_A3": np.zeros((3, 3)).tolist(), "pressure_GPa": 0.0,
                               "provenance": {"wall_s": wall}})

    add(big, 0.25, 400.0)
    add(big, 0.25, 600.0)  # 44 atoms at 0.25: 500 s
    add(small, 0.14, 700.0)  # 11 atoms at 0.14: 700 s
    add(big, 0.25)  # pending: 500 s
    add(big, 0.125)  # pending: same size at half the spacing, 500 * 2³ = 4000 s
    add(fm3m(5.1, "conventional").repeat((2, 1, 1)), 0.25)  # 88 atoms: from the largest (44 at 0.25) x 2 = 1000 s
    line = supervise.eta(store)
    assert line.startswith("mean wall time per frame: 11 atoms at 0.14 1/A 700 s, 44 atoms at 0.25 1/A 500 s;")
    assert line.endswith(f"estimated time left: {(500 + 4000 + 1000) / 3600:.1f} h")


def test_label_meta_adds_keys_and_never_overwrites(tmp_path, capsys):
    """dpqtb label --meta KEY=VALUE: numbers where they read as one; a frame registered before gets the keys it
    lacks, in its job and in its labelled frame; another value for a key it has is one error (exit 2), and nothing
    is written; keys dpqtb label sets itself are refused."""
    from ase.io import write

    f = tmp_path / "in.extxyz"
    write(f, _configs(2))
    store = tmp_path / "s"
    assert _run_cli(["label", str(f), "--store", str(store), "--no-run", "--meta", "temperature_K=200"]) == 0
    s = JobStore(store)
    jids = s.job_ids()
    assert len(jids) == 2 and all(s.job_record(j)["meta"]["temperature_K"] == 200.0 for j in jids)
    rec = s.job_record(jids[0])  # label one of them (a stand-in frame)
    s.write_frame({**{k: rec[k] for k in ("id", "symbols", "cell_A", "positions_A", "pbc", "settings", "meta")},
                   "energy_eV": 0.0, "forces_eV_per_A": np.zeros((len(rec["symbols"]), 3)).tolist(),
                   "stress_eV_per_A3": np.zeros((3, 3)).tolist(), "pressure_GPa": 0.0})
    assert _run_cli(["label", str(f), "--store", str(store), "--no-run", "--meta", "pressure_GPa=150",
                     "--meta", "source_run=verdict"]) == 0
    for j in jids:
        assert s.job_record(j)["meta"]["pressure_GPa"] == 150.0 and s.job_record(j)["meta"]["source_run"] == "verdict"
    assert s.frame(jids[0])["meta"]["pressure_GPa"] == 150.0 and s.frame(jids[0])["meta"]["temperature_K"] == 200.0
    s.add_meta(jids[1], {"run": "b"})  # only the second has it: the first must not be written either
    before = {p.name: p.read_bytes() for p in (store / "jobs").iterdir()}
    capsys.readouterr()
    assert _run_cli(["label", str(f), "--store", str(store), "--no-run", "--meta", "run=a"]) == 2
    assert "meta run is 'b', not 'a'" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (store / "jobs").iterdir()} == before
    assert _run_cli(["label", str(f), "--store", str(store), "--no-run", "--meta", "temperature_K=100"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "meta temperature_K is 200.0, not 100.0" in err[0]
    assert {p.name: p.read_bytes() for p in (store / "jobs").iterdir()} == before
    for bad in ("kind=x", "novalue", "=3"):
        assert _run_cli(["label", str(f), "--store", str(store), "--no-run", "--meta", bad]) == 2
