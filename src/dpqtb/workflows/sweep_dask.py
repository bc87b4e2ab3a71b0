"""``dpqtb sweep`` on Dask: the client (dpqtb's own LocalCluster, or an existing scheduler), one task per point,
points recorded as they finish, and the points Dask gives up on after lost workers submitted again where they
were not at fault (docs/sweep.md)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import uuid
from pathlib import Path

from dpqtb import InputError
from dpqtb.rundir import POINT_LOG
from dpqtb.workflows.sweep_stop import (IGNORE_PLUGIN, SIGTERM_PLUGIN, STOP_GRACE_S, PointStopped, SweepInterrupted,
                                        _raise_signalled, _stop_running, ignore_signals_plugin, worker_sigterm_plugin)


def make_client(workers: int | None = None, scheduler: str | None = None, scheduler_file: str | None = None):
    """A Dask client: of an existing scheduler, else of a new LocalCluster with ``workers`` single-threaded
    worker processes (default: one per core).  Returns ``(client, cluster or None)``."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise InputError("dpqtb sweep needs dask[distributed] (pip install 'dask[distributed]'), "
                         "or run with --serial") from None
    if scheduler_file:
        if not Path(scheduler_file).is_file():  # distributed would wait for it forever
            raise InputError(f"--scheduler-file {scheduler_file}: no such file (start the scheduler first, "
                             "e.g. `dask scheduler --scheduler-file FILE`)")
        return Client(scheduler_file=scheduler_file), None
    if scheduler:
        return Client(scheduler), None
    n = workers or os.cpu_count() or 1
    if n < 1:
        raise InputError("--workers must be >= 1")
    import dask

    # Dask's nanny gives each worker MALLOC_TRIM_THRESHOLD_=65536 (return freed memory to the OS at once):
    # torch then unmaps and maps its step buffers every step. A Deep Potential point spends 18-25 % of its
    # CPU time in the kernel and takes 1.25-1.46x as long alone, 2x with two workers on two cores
    # (benchmarks/results/sweep_malloc_trim.json). A point holds its memory to the end anyway.
    from dpqtb.signals import handling

    # Ctrl-C in a terminal goes to the whole process group, and so does a SIGTERM to the group (a batch job
    # holding client and workers, `timeout`): workers that inherit SIGINT and SIGTERM ignored stay up (neither
    # Python nor asyncio replaces an inherited SIG_IGN), so the client alone decides how its points stop
    # (stop_points: a checkpoint at the step in flight) instead of losing them. The nanny (in this process)
    # still stops them with its stop queue, and SIGKILL after its timeout.
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), \
            handling(signal.SIGINT, signal.SIG_IGN), handling(signal.SIGTERM, signal.SIG_IGN):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    try:
        client.register_plugin(ignore_signals_plugin(), name=IGNORE_PLUGIN)  # workers the nanny restarts, too
    except BaseException:
        client.close()
        cluster.close()
        raise
    return client, cluster


def _run_dask(todo: list[dict], finish, workers, scheduler, scheduler_file, client=None) -> None:
    from dask.distributed import as_completed

    from dpqtb.signals import handling, interrupt_handling
    from dpqtb.workflows.sweep import _one_line, run_point

    own = client is None
    cluster = None
    if own:
        client, cluster = make_client(workers, scheduler, scheduler_file)
    token = uuid.uuid4().hex  # this run's name for stop requests
    plugin = None
    if cluster is None:  # workers of another cluster: each checkpoints its points on SIGTERM (a batch walltime)
        try:
            name = f"{SIGTERM_PLUGIN}-{token[:12]}"  # this sweep's: another sweep's end does not remove it
            client.register_plugin(worker_sigterm_plugin(), name=name)
            plugin = name
        except Exception as exc:  # noqa: BLE001 - an old or restricted scheduler: the periodic checkpoints remain
            print(f"dpqtb: warning: the workers do not checkpoint on SIGTERM ({_one_line(exc)}); a point of a "
                  "worker ended by its batch system resumes from its last periodic checkpoint", file=sys.stderr)
    by_key: dict = {}
    consumed: set = set()
    logged: dict = {}  # hash -> log_state of the point when it was (re)submitted
    retries: dict = {}
    unstarted: dict = {}  # hash -> resubmissions because it never started

    def submit(s: dict):
        n = retries.get(s["hash"], 0)
        # the run's token in the key: a scheduler keeps the first task of a key, so two sweeps (or two runs of
        # one) sharing a scheduler and a point must not share its task (the other's directory, stop token)
        key = f"point-{s['hash']}-{token[:12]}" + (f"-retry{n}" if n else "")
        logged[s["hash"]] = log_state(Path(s["dir"]))  # before the task can write to it
        fut = client.submit(run_point, {**s, "stop_token": token}, pure=False, key=key)
        by_key[fut.key] = (fut, s)
        return fut

    try:
        # SIGINT as `dpqtb md` handles it (left ignored where the process inherited it ignored: a job put in
        # the background by a script, which a Ctrl-C to that script must not stop)
        with handling(signal.SIGTERM, _raise_signalled), interrupt_handling(_raise_signalled):
            try:
                for s in todo:
                    submit(s)
                ac = as_completed([f for f, _ in by_key.values()])
                for fut in ac:
                    consumed.add(fut.key)  # first: an interrupt inside _collect must not collect it twice
                    s = by_key[fut.key][1]
                    why = _lost_but_not_bad(fut, logged[s["hash"]], log_state(Path(s["dir"])),
                                            unstarted.get(s["hash"], 0))
                    if why:  # Dask gave up on it after allowed-failures lost workers: submit it again
                        fut.release()
                        retries[s["hash"]] = retries.get(s["hash"], 0) + 1
                        if why == NEVER_STARTED:
                            unstarted[s["hash"]] = unstarted.get(s["hash"], 0) + 1
                        print(f"dpqtb: point {s['hash'][:16]} lost its workers past Dask's allowed-failures but "
                              f"{why}: submitted again ({retries[s['hash']]})", file=sys.stderr, flush=True)
                        ac.add(submit(s))
                        continue
                    step = _collect(fut, by_key, finish)
                    if step is not None:  # stopped by a request that was not this client's interrupt
                        finish(s, None, PointStopped(f"stopped with a checkpoint at step {step} by a stop request "
                                                     "from outside this command; the same command resumes it", step))
            except KeyboardInterrupt as exc:
                signum = getattr(exc, "signum", signal.SIGINT)
                stopped, late = _stop_running(client, token, {k: v for k, v in by_key.items() if k not in consumed},
                                              lambda f: _collect(f, by_key, finish))
                raise SweepInterrupted(signum, f"sweep interrupted by {signal.Signals(signum).name}: {stopped} running "
                                       f"point(s) stopped with a checkpoint at their current step"
                                       + (f", {late} not stopped within {STOP_GRACE_S:g} s (they resume from their "
                                          "last periodic checkpoint)" if late else "")
                                       + "; the same command resumes the sweep") from None
    finally:
        if plugin is not None:  # the workers' own SIGTERM handling again once this sweep is over
            with contextlib.suppress(Exception):
                client.unregister_worker_plugin(plugin)
        if own:
            client.close()
        if cluster is not None:
            cluster.close()


#: resubmissions of a point that lost its workers before it ever ran (a cluster whose workers keep dying)
MAX_UNSTARTED_RETRIES = 10


NEVER_STARTED = "it never started"


def _lost_but_not_bad(fut, before: tuple, now: tuple, unstarted: int) -> str | None:
    """Why a point whose future failed with Dask's KilledWorker (its workers died ``allowed-failures`` + 1 times
    under it: batch walltimes on a long sweep of short jobs) is not a bad point, or None. ``before`` / ``now``:
    :func:`log_state` when it was submitted and now. Not bad: it finished (result.json; read back when submitted
    again), advanced its checkpoint, was stopped with a checkpoint by a SIGTERM to its worker, or never started
    (it was only queued on the dying workers; ``unstarted`` such resubmissions so far, at most
    MAX_UNSTARTED_RETRIES). A point that started and crashed its workers without advancing is bad (failed, as
    Dask says)."""
    from distributed import KilledWorker

    try:
        if fut.status != "error" or not isinstance(fut.exception(timeout=5), KilledWorker):
            return None
    except Exception:  # noqa: BLE001 - a cancelled or lost future: not this case
        return None
    if now[3] > before[3]:
        return "it finished"
    if now[1] > before[1]:
        return f"its checkpoint advanced to step {now[1]}" + (f" from {before[1]}" if before[1] >= 0 else "")
    if now[2] > before[2]:
        return "a SIGTERM to its worker stopped it with a checkpoint"
    if now[0] == before[0] and unstarted < MAX_UNSTARTED_RETRIES:
        return NEVER_STARTED
    return None


def log_state(point_dir: Path) -> tuple[int, int, int, int]:
    """(attempts started, last step, worker-SIGTERM stops, done) of a point's point.log: its start/resume lines,
    the step of its last checkpoint or (re)start (-1: none), its "stopped … (SIGTERM to its worker" lines and
    its "done in" lines."""
    try:
        text = (point_dir / POINT_LOG).read_text(errors="replace")
    except OSError:
        return 0, -1, 0, 0
    from dpqtb.workflows.sweep_status import _EVENT_LINE, _STEP_LINE  # the one reader of point.log's lines

    lines = text.splitlines()
    steps = [int(m.group(2)) for m in map(_STEP_LINE.match, lines) if m]
    events = [m.group(2) for m in map(_EVENT_LINE.match, lines) if m]
    starts = sum(e in ("start", "resume") for e in events)
    return starts, (steps[-1] if steps else -1), text.count("(SIGTERM to its worker"), events.count("done")


def _collect(fut, by_key: dict, finish) -> int | None:
    """Record one finished future; the step of a point that stopped on request (else None)."""
    spec = by_key[fut.key][1]
    try:
        result = fut.result()  # a result lost with its worker is recomputed (read back) elsewhere
    except PointStopped as exc:
        return -1 if exc.step is None else exc.step
    except Exception as exc:  # noqa: BLE001 - the point failed (unstable, bad input, KilledWorker)
        finish(spec, None, exc)
    else:
        finish(spec, result, None)
    finally:
        fut.release()
    return None
