"""Stopping a sweep without losing steps: the client's stop request to its workers (Ctrl-C / SIGTERM to
``dpqtb sweep``) and a worker's own SIGTERM (a batch system ending the job), both a checkpoint at the step
in flight (docs/sweep.md, "Stopping a sweep" and "A worker ended on its own")."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

from dpqtb import RunInterrupted

#: how long (s) a stopped client waits for its running points to write their checkpoints
STOP_GRACE_S = 120.0
#: the stop requests this process has received: tokens of sweep runs (one per client run) whose points stop
_STOP_TOKENS: set[str] = set()


def stop_points(token: str) -> None:
    """Ask this process's points of the sweep run ``token`` to stop after their current step, with a
    checkpoint; points of that run not started yet do not start. Run on every worker by a stopping client
    (``client.run``); a new run of the same sweep has a new token, so the request never outlives its run."""
    _STOP_TOKENS.add(token)


#: set by a SIGTERM to this worker process: its points stop after their current step with a checkpoint
_WORKER_STOP = threading.Event()
#: points of this process inside run_point's lock, and those of them parked after their checkpoint
_POINTS = {"running": 0, "parked": 0}
_POINTS_LOCK = threading.Lock()
#: how long (s) a worker sent SIGTERM waits for its running points' checkpoints before it exits anyway
WORKER_GRACE_S = 60.0


def _on_worker_sigterm(signum, frame) -> None:
    """SIGTERM in a Dask worker process (installed by :func:`worker_sigterm_plugin`): the batch system is
    ending the job. The running points stop after their current step with a checkpoint and are *parked*
    (their tasks never return, so no worker reports them as failed); once all are parked, or after
    :data:`WORKER_GRACE_S`, the process exits 128 + signum, the scheduler finds the worker gone and reruns
    the points elsewhere, from their checkpoints. A second SIGTERM exits at once."""
    if _WORKER_STOP.is_set():
        os._exit(128 + signum)
    _WORKER_STOP.set()
    threading.Thread(target=_exit_when_parked, args=(signum,), daemon=True, name="dpqtb-worker-exit").start()


def _exit_when_parked(signum: int) -> None:
    deadline = time.monotonic() + WORKER_GRACE_S
    while time.monotonic() < deadline:
        with _POINTS_LOCK:
            if _POINTS["running"] <= _POINTS["parked"]:
                break
        time.sleep(0.02)
    # a point that finished meanwhile: let its result reach the scheduler (else it is rerun, and read back)
    time.sleep(max(0.0, min(1.0, deadline - time.monotonic())))
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(128 + signum)


def _park(counted: bool) -> None:
    """Never return: a point of a worker that is ending waits here for the process to exit. ``counted``: the
    point is one of the running ones (:func:`_counted`), which the exit waits for; a task that has not started
    its point is not."""
    if counted:
        with _POINTS_LOCK:
            _POINTS["parked"] += 1
    threading.Event().wait()


#: sweeps whose plugin installed :func:`_on_worker_sigterm` in this worker process, and the handler it replaced:
#: two sweeps sharing a cluster each register their own plugin, and the worker's own handler comes back only
#: when the last of them ends (not when the first does, which would leave the other's points unprotected)
_SIGTERM_USERS = [0, None]


def _install_sigterm() -> bool:
    """Install :func:`_on_worker_sigterm` (main thread only) for one more sweep; whether this sweep counts."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if _SIGTERM_USERS[0] == 0:
        _SIGTERM_USERS[1] = signal.signal(signal.SIGTERM, _on_worker_sigterm)
    _SIGTERM_USERS[0] += 1
    return True


def _restore_sigterm(counted: bool) -> None:
    """One sweep fewer; the worker's own SIGTERM handler again when none is left (unless a SIGTERM is being
    acted on)."""
    if not counted or _SIGTERM_USERS[0] == 0:
        return
    _SIGTERM_USERS[0] -= 1
    if _SIGTERM_USERS[0] == 0 and threading.current_thread() is threading.main_thread() \
            and not _WORKER_STOP.is_set() and _SIGTERM_USERS[1] is not None:
        signal.signal(signal.SIGTERM, _SIGTERM_USERS[1])


#: the name of :func:`worker_sigterm_plugin` on a cluster (followed by the sweep run's token: one per sweep)
SIGTERM_PLUGIN = "dpqtb-checkpoint-on-sigterm"


def worker_sigterm_plugin():
    """A Dask WorkerPlugin that installs :func:`_on_worker_sigterm` in each worker process (its event loop
    runs in the process's main thread; elsewhere the plugin does nothing)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class CheckpointOnSigterm(WorkerPlugin):
        name = SIGTERM_PLUGIN  # registered as SIGTERM_PLUGIN-<token>

        # the methods call module functions only: cloudpickle sends this local class by value, and a global it
        # referenced directly (an Event) would be copied, or fail to pickle
        def setup(self, worker):
            self._previous = _install_sigterm()

        def teardown(self, worker):  # unregistered at the end of the sweep: the worker's own handling again
            _restore_sigterm(self._previous)

    return CheckpointOnSigterm()


def _ignore_stop_signals() -> None:
    """SIGINT and SIGTERM ignored in this process (main thread only; elsewhere nothing)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


#: the name of :func:`ignore_signals_plugin` on dpqtb's own LocalCluster
IGNORE_PLUGIN = "dpqtb-ignore-stop-signals"


def ignore_signals_plugin():
    """A WorkerPlugin for dpqtb's own LocalCluster: each worker, also one its nanny restarts after a crash or an
    out-of-memory kill, ignores SIGINT and SIGTERM, so a Ctrl-C to the terminal's process group reaches the client
    alone, which stops the points with a checkpoint at their current step. (The workers started with the cluster
    inherit SIG_IGN anyway; a restarted one is spawned later, from the client's handlers, and gets the defaults.)"""
    from distributed.diagnostics.plugin import WorkerPlugin

    class IgnoreStopSignals(WorkerPlugin):
        name = IGNORE_PLUGIN

        def setup(self, worker):
            _ignore_stop_signals()

    return IgnoreStopSignals()


class PointStopped(Exception):
    """A point stopped at the request of its sweep's client (``step``: the step of its checkpoint; None
    when it had not started). Internal: from a worker to its client, never shown to a user."""

    def __init__(self, message: str, step: int | None = None):
        super().__init__(message)
        self.message, self.step = message, step

    def __reduce__(self):  # to the client, with its step
        return (PointStopped, (self.message, self.step))


class SweepInterrupted(RunInterrupted):
    """``dpqtb sweep`` stopped by SIGINT/SIGTERM after its running points wrote checkpoints; exit 128 + signal."""

    def __init__(self, signum: int, message: str):
        KeyboardInterrupt.__init__(self, message)
        self.signum, self.step, self.directory = int(signum), None, None
        self.exit_code = 128 + self.signum


class _Signalled(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_signalled(signum, frame):
    raise _Signalled(signum)


# ------------------------------------------------------------------------------------ one point


@contextlib.contextmanager
def _counted():
    with _POINTS_LOCK:
        _POINTS["running"] += 1
    try:
        yield
    finally:
        with _POINTS_LOCK:
            _POINTS["running"] -= 1


def _stop_running(client, token: str, by_key: dict, collect) -> tuple[int, int]:
    """Ask every worker to stop this run's points (:func:`stop_points`) and wait for the futures of ``by_key``
    (those not recorded yet). Returns (points stopped with a checkpoint, points still running after
    :data:`STOP_GRACE_S`). Points that finish meanwhile are recorded as usual. A second Ctrl-C ends the wait."""
    from dask.distributed import as_completed

    pending = [f for f, _ in by_key.values()]
    if not pending:
        return 0, 0
    print(f"dpqtb: stopping: {len(pending)} point(s) not recorded yet; running ones write a checkpoint "
          "(Ctrl-C again: stop at once)", file=sys.stderr, flush=True)
    stopped, seen = 0, set()
    try:
        _ask_workers(client, stop_points, token, timeout=min(30.0, STOP_GRACE_S))
        for fut in as_completed(pending, timeout=STOP_GRACE_S):
            seen.add(fut.key)
            step = collect(fut)
            stopped += step is not None and step >= 0
    except (TimeoutError, KeyboardInterrupt):  # the grace time is over, or a second Ctrl-C / SIGTERM
        pass
    return stopped, len(pending) - len(seen)


def _ask_workers(client, function, *args, timeout: float) -> None:
    """``client.run(function, *args)`` on every worker, waiting at most ``timeout`` s; a worker that is gone,
    closing or hung is skipped (its points resume from their last periodic checkpoint)."""
    def call():
        try:
            client.run(function, *args, on_error="ignore")
        except Exception:  # noqa: BLE001 - a closing comm, a worker that left: nothing to stop there
            pass

    t = threading.Thread(target=call, daemon=True, name="dpqtb-stop-points")
    t.start()
    t.join(timeout)
