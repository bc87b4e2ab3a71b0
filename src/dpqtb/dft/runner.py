"""Label the pending jobs of a store; meant to run under ``mpiexec`` (every rank runs this).

    OMP_NUM_THREADS=1 GPAW_MPI_BACKEND=cgpaw mpiexec --allow-run-as-root -n 2 \\
        python -m dpqtb.dft.runner STORE [--max-jobs N] [--skip-failed]

Rank 0 takes the store lock, decides the pending list and broadcasts it; all ranks compute each
job together; rank 0 writes each frame atomically as soon as it is done.  Use ``dpqtb label`` for
a progress display and to launch this under MPI.

SIGUSR1 to rank 0 (its pid is in STORE/runner.lock; ``dpqtb label --store S --stop``) ends the run
after the frame in flight is written: nothing is lost and no job is marked interrupted.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import traceback
from contextlib import nullcontext

from dpqtb import DpqtbError, InputError
from dpqtb.dft.lock import acquire_lock
from dpqtb.dft.store import JobStore, atomic_write_json, compute_frame
from dpqtb.entry import entry_point
from dpqtb.signals import handling


def _world():
    try:
        from gpaw.mpi import world

        return world
    except ImportError:  # pragma: no cover
        return None


def _broadcast(obj, comm):
    if comm is None or comm.size == 1:
        return obj
    from gpaw.mpi import broadcast

    return broadcast(obj, 0, comm=comm)


def _attempts(store: JobStore, jid: str) -> int:
    path = store.failed_dir / f"{jid}.json"
    if not path.exists():
        return 0
    try:
        return int(json.loads(path.read_text()).get("interrupted", 0))
    except (ValueError, OSError):
        return 0


def skipped_failures(store: JobStore) -> set[str]:
    """The failed jobs that ``--skip-failed`` leaves out: those that raised an error and those that
    were in flight when a run died twice (they may be what kills it).  A job interrupted once (a run
    stopped or killed by hand, a session that ended) is not a failure and is labelled as usual."""
    return {j for j in store.failed_ids() if _attempts(store, j) != 1}


_STOP = {"requested": False}


def _request_stop(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    _STOP["requested"] = True


def _record_interrupted(store: JobStore) -> None:
    """A job left in flight by a killed or crashed run is recorded as interrupted."""
    path = store.root / "inflight.json"
    if not path.exists():
        return
    try:
        jid = json.loads(path.read_text())["id"]
    except (ValueError, KeyError, OSError):
        path.unlink(missing_ok=True)
        return
    if not store.has_frame(jid):
        n = _attempts(store, jid) + 1
        store.write_failure(jid, "interrupted (the labelling process was killed or crashed)")
        rec = json.loads((store.failed_dir / f"{jid}.json").read_text())
        rec["interrupted"] = n
        atomic_write_json(store.failed_dir / f"{jid}.json", rec)
    path.unlink(missing_ok=True)


def run_store(store: JobStore, max_jobs: int | None = None, retry_failed: bool = True,
              calc_factory=None, verbose: bool = True, smallest_first: bool = False,
              max_atoms: int | None = None) -> int:
    """Label pending jobs; returns the number of frames written in this run.

    ``smallest_first``: cells with fewer atoms first (the cost of a frame grows steeply with its
    size: most frames per hour), else the store's order; jobs that killed the runner twice go last
    either way.  ``max_atoms``: only the jobs with at most this many atoms (the others stay pending).
    ``retry_failed=False`` leaves out :func:`skipped_failures`.  SIGUSR1 (on rank 0) ends the run
    once the frame in flight is written."""
    if max_atoms is not None and max_atoms < 1:
        raise InputError(f"max_atoms must be >= 1, got {max_atoms}")
    comm = _world()
    rank = 0 if comm is None else comm.rank
    # the stop handler goes in before the lock names this process (a stop request can come as soon
    # as the lock file holds its pid) and stays only for this run
    _STOP["requested"] = False
    with handling(signal.SIGUSR1, _request_stop) if rank == 0 else nullcontext():
        return _run_store(store, comm, rank, max_jobs, retry_failed, calc_factory, verbose,
                          smallest_first, max_atoms)


def _run_store(store, comm, rank, max_jobs, retry_failed, calc_factory, verbose, smallest_first,
               max_atoms) -> int:
    plan: list[str] | str | None
    lock = None
    if rank == 0:
        try:
            lock = acquire_lock(store.root)
            _record_interrupted(store)
            skip = set() if retry_failed else skipped_failures(store)
            plan = [j for j in store.pending() if j not in skip]
            size = ({j: len(store.job_record(j)["symbols"]) for j in plan}
                    if smallest_first or max_atoms is not None else {})
            if max_atoms is not None:
                plan = [j for j in plan if size[j] <= max_atoms]
            # jobs that killed the runner twice (crash, not a Python error) go last
            plan.sort(key=lambda j: (_attempts(store, j) >= 2, size.get(j, 0)))
            if max_jobs is not None:
                plan = plan[:max_jobs]
        except DpqtbError as exc:
            plan = f"error: {exc}"
    else:
        plan = None
    plan = _broadcast(plan, comm)
    if isinstance(plan, str):
        raise InputError(plan[len("error: "):])
    written = 0
    try:
        for n, jid in enumerate(plan):
            # a stop request (SIGUSR1) or a job retired while this run was going (dpqtb label
            # --retire-kind): rank 0 decides so that all ranks act together
            stop = _broadcast(_STOP["requested"] if rank == 0 else None, comm)
            if stop:
                if rank == 0 and verbose:
                    print(f"stop requested: ended after {written} frame(s), "
                          f"{len(plan) - n} job(s) left pending", flush=True)
                break
            retired = _broadcast(store.is_retired(jid) if rank == 0 else None, comm)
            if retired:
                continue
            job = store.job(jid)
            txt = None
            if rank == 0:
                store.logs_dir.mkdir(parents=True, exist_ok=True)
                txt = str(store.logs_dir / f"{jid}.txt")
            t0 = time.time()
            if rank == 0:
                atomic_write_json(store.root / "inflight.json", {"id": jid})
            try:
                frame = compute_frame(job, txt=txt if rank == 0 else None,
                                      calc_factory=calc_factory)
                error = None
            except Exception as exc:  # noqa: BLE001 - recorded and the run goes on
                frame = None
                error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            if rank == 0:
                if frame is not None:
                    store.write_frame(frame)
                    written += 1
                else:
                    store.write_failure(jid, error or "unknown error")
                (store.root / "inflight.json").unlink(missing_ok=True)
                if verbose:
                    status = "ok" if frame is not None else f"FAILED: {error}"
                    print(f"[{n + 1}/{len(plan)}] {jid} {len(job.atoms)} atoms "
                          f"{time.time() - t0:.1f} s {status}", flush=True)
            if comm is not None:
                comm.barrier()
    finally:
        if rank == 0 and lock is not None:
            lock.release()
    return written


@entry_point
def main(argv: list[str] | None = None) -> int:
    """``python -m dpqtb.dft.runner STORE [options]``: label the pending jobs of STORE."""
    ap = argparse.ArgumentParser(prog="python -m dpqtb.dft.runner", description=__doc__)
    ap.add_argument("store")
    ap.add_argument("--max-jobs", type=int, default=None)
    ap.add_argument("--skip-failed", action="store_true",
                    help="do not retry failed jobs (a job interrupted only once is retried)")
    ap.add_argument("--smallest-first", action="store_true",
                    help="label the cells with the fewest atoms first")
    ap.add_argument("--max-atoms", type=int, default=None,
                    help="label only the cells with at most this many atoms")
    args = ap.parse_args(argv)
    run_store(JobStore(args.store), max_jobs=args.max_jobs, retry_failed=not args.skip_failed,
              smallest_first=args.smallest_first, max_atoms=args.max_atoms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
