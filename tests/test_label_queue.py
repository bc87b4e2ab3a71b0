"""scripts/label_queue.sh: input checks, and a real two-lane queue over two stores (GPAW, cheap
settings) that takes a store over from a runner already labelling it.

The queue is run from a copy of the script in a temporary checkout (its ``.venv`` links to this
one), so it only sees processes started there: the test never touches a labelling queue running in
the real checkout."""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ase import Atoms

from dpqtb.dft.lock import lock_holder
from dpqtb.dft.settings import CHEAP
from dpqtb.dft.store import JobStore

ROOT = Path(__file__).resolve().parents[1]


def _checkout(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "label_queue.sh", tmp_path / "scripts" / "label_queue.sh")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    return tmp_path


def _h2(d: float) -> Atoms:
    return Atoms("H2", positions=[[2.0, 2.0, 2.0 - d / 2], [2.0, 2.0, 2.0 + d / 2]],
                 cell=[4.0, 4.0, 4.0], pbc=True)


def _queue(tree: Path, *args: str, env: dict | None = None):
    """The queue at scheduler-group nice 0 (its default 19 yields to everything: beside other full-load
    work, e.g. a sweep on both cores, it would get no CPU and miss the tests' deadlines)."""
    cmd = ["bash", str(tree / "scripts" / "label_queue.sh"), *args]
    return subprocess.run(cmd, cwd=tree, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DPQTB_LABEL_NICE": "0", **(env or {})})


# holds store a's lock like a runner's rank 0; when continued (SIGCONT) it labels one job (its
# "frame in flight", 3 s) and then, as the real runner does on SIGUSR1, ends: exit status 0 only if
# it was asked to stop (SIGUSR1) and was not killed
_RUNNER_IN_FLIGHT = """
import signal, sys, threading, time
from dpqtb.dft.lock import acquire_lock
from dpqtb.dft.store import JobStore, compute_frame
cont, stop = threading.Event(), threading.Event()
signal.signal(signal.SIGCONT, lambda *_: cont.set())
signal.signal(signal.SIGUSR1, lambda *_: stop.set())
store = JobStore(sys.argv[2])
lock = acquire_lock(store.root)
if cont.wait(timeout=120):
    time.sleep(3)
    jid = store.pending()[0]
    store.write_frame(compute_frame(store.job(jid)))
    sys.exit(0 if stop.wait(timeout=120) else 3)
sys.exit(4)
"""


def test_label_queue_rejects_bad_input(tmp_path):
    tree = _checkout(tmp_path)
    r = _queue(tree)
    assert r.returncode == 2 and "usage" in r.stderr
    r = _queue(tree, "nowhere")
    assert r.returncode == 2 and "no job store at nowhere" in r.stderr
    JobStore(tree / "a").add(_h2(0.9), CHEAP)
    for var, val in [("DPQTB_LABEL_LANES", "two"), ("DPQTB_LABEL_LANES", "0"),
                     ("DPQTB_LABEL_RANKS", "-1")]:
        r = _queue(tree, "a", env={var: val})
        assert r.returncode == 2 and f"{var} must be a positive integer" in r.stderr, r.stderr
    r = _queue(tree, "a", env={"DPQTB_LABEL_SMALLEST_FIRST": "yes"})
    assert r.returncode == 2 and "must be 0 or 1" in r.stderr
    r = _queue(tree, "a", env={"DPQTB_LABEL_NICE": "20"})
    assert r.returncode == 2 and "DPQTB_LABEL_NICE must be an integer 0-19" in r.stderr
    assert not list((tree / "a").glob("runner.*"))  # nothing was started


@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="no mpiexec")
def test_two_lanes_label_two_stores_and_take_over_a_running_store(tmp_path):
    pytest.importorskip("gpaw")
    tree = _checkout(tmp_path / "tree")
    a, b = JobStore(tree / "a"), JobStore(tree / "b")
    for d in (0.85, 0.9, 0.95):
        a.add(_h2(d), CHEAP)
    b.add(_h2(1.0), CHEAP)
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    (tmp_path / "other").mkdir()
    bystanders = [
        # a queue worker of another checkout, and a runner of a store whose name extends "a":
        # neither may be stopped
        subprocess.Popen(sleeper + ["label_queue.sh --worker"], cwd=tmp_path / "other"),
        subprocess.Popen(sleeper + ["dpqtb.dft.runner", "a_ext"], cwd=tree),
    ]
    # a runner already labelling store a (its command line names the store as the real one's does):
    # the queue continues it (SIGCONT), asks it to stop after its frame in flight (SIGUSR1), waits
    # for it and labels the rest
    first = subprocess.Popen([sys.executable, "-c", _RUNNER_IN_FLIGHT, "dpqtb.dft.runner", "a"],
                             cwd=tree)
    try:
        for _ in range(600):
            if lock_holder(a.root) == first.pid:
                break
            time.sleep(0.1)
        assert lock_holder(a.root) == first.pid
        r = _queue(tree, "a", "b", env={"DPQTB_LABEL_LANES": "2", "DPQTB_LABEL_SMALLEST_FIRST": "1"})
        assert r.returncode == 0, r.stderr
        worker = int(re.search(r"background pid (\d+)", r.stdout).group(1))
        for _ in range(3000):  # the queue runs in the background: wait for it to end
            if not Path(f"/proc/{worker}").exists():
                break
            time.sleep(0.1)
        assert not Path(f"/proc/{worker}").exists(), "the queue did not end within 300 s"
        assert first.wait(timeout=60) == 0  # asked to stop by the queue, after its frame ...
        assert a.progress() == (3, 3, 0) and b.progress() == (1, 1, 0)  # ... and nothing lost
        assert not a.failed_ids() and not b.failed_ids()
        for s in (a, b):
            assert "label_queue: " in (s.root / "runner.log").read_text()
            assert "--smallest-first" in (s.root / "runner.log").read_text()
            assert lock_holder(s.root) is None
        assert all(p.poll() is None for p in bystanders)
    finally:
        for p in [first, *bystanders]:
            p.kill()
            p.wait()


@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="no mpiexec")
def test_smallest_first_goes_across_stores(tmp_path):
    """One lane, DPQTB_LABEL_SMALLEST_FIRST=1: the 2-atom cells of both stores are labelled before
    the 4-atom cell that comes first in store a's own order."""
    pytest.importorskip("gpaw")
    tree = _checkout(tmp_path / "tree")
    a, b = JobStore(tree / "a"), JobStore(tree / "b")
    h4 = _h2(0.9)
    h4.extend(Atoms("H2", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 0.9]]))
    big = a.add(h4, CHEAP, {"order": 0})
    small_a = a.add(_h2(0.95), CHEAP, {"order": 1})
    small_b = b.add(_h2(1.0), CHEAP)
    r = _queue(tree, "a", "b", env={"DPQTB_LABEL_LANES": "1", "DPQTB_LABEL_SMALLEST_FIRST": "1"})
    assert r.returncode == 0, r.stderr
    worker = int(re.search(r"background pid (\d+)", r.stdout).group(1))
    for _ in range(3000):
        if not Path(f"/proc/{worker}").exists():
            break
        time.sleep(0.1)
    assert not Path(f"/proc/{worker}").exists(), "the queue did not end within 300 s"
    assert a.progress() == (2, 2, 0) and b.progress() == (1, 1, 0)
    written = {j: (s.frames_dir / f"{j}.json").stat().st_mtime_ns
               for s, j in ((a, big), (a, small_a), (b, small_b))}
    assert max(written[small_a], written[small_b]) < written[big]
    assert "--max-atoms 2" in (a.root / "runner.log").read_text()
    assert "--max-atoms 4" in (a.root / "runner.log").read_text()
