"""The parent side of a labelling run: start, watch and stop ``python -m dpqtb.dft.runner``.

:mod:`dpqtb.dft.runner` is the child: it runs under ``mpiexec`` on every rank and labels the
pending jobs of a store.  This module is what ``dpqtb label`` does around it in the user's process
(never under MPI): the command line of the child, the checks before starting it, a progress bar
while it runs in the foreground, a detached start, the time estimate of ``--status`` and the stop
request of ``--stop``.  Units: seconds, hours.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from dpqtb import InputError
from dpqtb.dft.lock import lock_holder
from dpqtb.dft.mpi import gpaw_env, mpi_prefix


def runner_command(store: str, np_: int, nice: int, max_jobs: int | None,
                   smallest_first: bool = False, max_atoms: int | None = None) -> list[str]:
    """The command line of a labelling run of ``store``.

    Parameters
    ----------
    store : str
        Job store directory.
    np_ : int
        MPI ranks; above 1 the command starts with ``mpiexec`` (:func:`dpqtb.dft.mpi.mpi_prefix`).
    nice : int
        ``nice`` level of the run; 0 runs it without ``nice``.
    max_jobs : int or None
        Stop after this many frames (``None``: all pending jobs).
    smallest_first : bool, optional
        Label the cells with the fewest atoms first.
    max_atoms : int or None, optional
        Label only the cells with at most this many atoms.

    Returns
    -------
    list of str
        ``[nice -n N] [mpiexec … -n NP] python -m dpqtb.dft.runner STORE [options]``.
    """
    cmd = [sys.executable, "-m", "dpqtb.dft.runner", store]
    if max_atoms is not None:
        cmd += ["--max-atoms", str(max_atoms)]
    if max_jobs is not None:
        cmd += ["--max-jobs", str(max_jobs)]
    if smallest_first:
        cmd.append("--smallest-first")
    if np_ > 1:
        cmd = mpi_prefix(np_) + cmd
    if nice > 0:
        cmd = ["nice", "-n", str(nice)] + cmd
    return cmd


def check_can_run(np_: int) -> None:
    """Refuse to start a labelling run that cannot work: no GPAW, or ``np_ > 1`` without mpiexec.

    Parameters
    ----------
    np_ : int
        MPI ranks the run would use (at least 1).

    Raises
    ------
    dpqtb.InputError
        ``np_ < 1``, GPAW not installed, or ``mpiexec`` not found for ``np_ > 1``.
    """
    import importlib.util
    import shutil

    if np_ < 1:
        raise InputError(f"--np must be at least 1, got {np_}")
    if importlib.util.find_spec("gpaw") is None:
        raise InputError("GPAW is not installed: run scripts/install_gpaw.sh")
    if np_ > 1 and shutil.which("mpiexec") is None:
        raise InputError("mpiexec not found: run scripts/install_gpaw.sh or use --np 1")


def stop_runner(store: str) -> str:
    """Ask the labelling process of ``store`` to end after the frame in flight (SIGUSR1).

    Parameters
    ----------
    store : str
        Job store directory.

    Returns
    -------
    str
        What happened, one line: no process running, or which process stops.

    Raises
    ------
    dpqtb.InputError
        ``store`` is no job store, or its labelling process is still starting.
    """
    if not (Path(store) / "jobs").is_dir():
        raise InputError(f"no job store at {store}")
    pid = lock_holder(store)
    if pid is None:
        return f"{store}: no labelling process running"
    if pid < 0:
        raise InputError(f"{store}: its labelling process is starting; try again in a second")
    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        return f"{store}: no labelling process running"
    return (f"{store}: process {pid} stops after its frame in flight is written "
            f"(dpqtb label --store {shlex.quote(store)} --status)")


def eta(store) -> str:
    """Mean wall time per class of frame (cell size and k-point spacing) of the labelled frames and the time
    left at that pace.

    Parameters
    ----------
    store : dpqtb.dft.store.JobStore
        The job store.

    Returns
    -------
    str
        One line: mean wall time (s) per frame for each class (atoms, k spacing in 1/Å) and the estimated time
        left (h) for the pending jobs. A class not labelled yet is scaled from a labelled one as the k-point count,
        (spacing ratio)³, from the same cell size where there is one, else from the largest cell, times the atom
        ratio: a plane-wave step costs ~N² per k-point and a cell N times larger needs N times fewer k-points at
        the same spacing (LaH10 at 0.25 1/A on one rank: 44 atoms 4.5x the time of 11).
    """
    import numpy as np

    def klass(rec: dict) -> tuple[int, float]:
        return len(rec["symbols"]), float((rec.get("settings") or {}).get("kspacing_invA") or 0.0)

    walls: dict[tuple[int, float], list[float]] = {}
    for fr in store.frames():
        walls.setdefault(klass(fr), []).append(fr["provenance"]["wall_s"])
    if not walls:
        return "no frames yet: no time estimate"
    left: dict[tuple[int, float], int] = {}
    for jid in store.pending():
        c = klass(store.job_record(jid))
        left[c] = left.get(c, 0) + 1
    mean = {c: float(np.mean(w)) for c, w in walls.items()}

    def kfactor(k_ref: float, k: float) -> float:  # k-points ∝ spacing⁻³
        return (k_ref / k) ** 3 if k_ref > 0 and k > 0 else 1.0

    def estimate(c: tuple[int, float]) -> float:
        if c in mean:
            return mean[c]
        n, k = c
        same = [(cn, ck) for cn, ck in mean if cn == n]
        if same:
            ref = min(same, key=lambda r: abs(r[1] - k))
            return mean[ref] * kfactor(ref[1], k)
        ref = max(mean)
        return mean[ref] * (n / ref[0]) * kfactor(ref[1], k)

    secs = sum(cnt * estimate(c) for c, cnt in left.items())
    per = ", ".join(f"{n} atoms{f' at {k:g} 1/A' if k else ''} {m:.0f} s" for (n, k), m in sorted(mean.items()))
    return f"mean wall time per frame: {per}; estimated time left: {secs / 3600:.1f} h"


def start_background(cmd: list[str], store: str) -> tuple[int, Path]:
    """Start ``cmd`` detached (its own session), appending its output to ``STORE/runner.log``.

    Parameters
    ----------
    cmd : list of str
        The labelling command (:func:`runner_command`).
    store : str
        Job store directory.

    Returns
    -------
    pid : int
        Process id of the started command.
    log : pathlib.Path
        Its log file.
    """
    log = Path(store) / "runner.log"
    with open(log, "a") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=gpaw_env(),
                                start_new_session=True)
    return proc.pid, log


def run_with_progress(cmd: list[str], store, n_todo: int) -> int:
    """Run ``cmd`` in the foreground with a progress bar of the frames it writes.

    Its output goes to ``STORE/runner.log``; Ctrl-C terminates it and is raised again.

    Parameters
    ----------
    cmd : list of str
        The labelling command (:func:`runner_command`).
    store : dpqtb.dft.store.JobStore
        The job store it labels.
    n_todo : int
        Frames the run is expected to write (the length of the bar).

    Returns
    -------
    int
        0 once the run ended with status 0 (the store's progress is printed).

    Raises
    ------
    dpqtb.InputError
        The run ended with another status (the last line of its log is in the message).
    """
    from tqdm import tqdm

    start = len(store.done_ids())
    log = store.root / "runner.log"
    with open(log, "a") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=gpaw_env())
        bar = tqdm(total=n_todo, unit="config", desc="labelling", file=sys.stderr)
        try:
            while True:
                rc = proc.poll()
                n = len(store.done_ids()) - start
                bar.update(n - bar.n)
                if rc is not None:
                    break
                time.sleep(1.0)
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            raise
        finally:
            bar.close()
    done, total, failed = store.progress()
    print(f"{store.root}: {done}/{total} labelled, {failed} failed (log: {log})")
    if rc != 0:
        tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
        raise InputError(f"labelling stopped with status {rc}: {' '.join(tail)}")
    return 0
