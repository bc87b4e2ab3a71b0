"""Label the pending jobs of a store; meant to run under ``mpiexec`` (every rank runs this).

    OMP_NUM_THREADS=1 GPAW_MPI_BACKEND=cgpaw mpiexec --allow-run-as-root -n 2 \\
        python -m dpqtb.dft.runner STORE [--max-jobs N] [--skip-failed]

Rank 0 takes the store lock, decides the pending list and broadcasts it; all ranks compute each
job together; rank 0 writes each frame atomically as soon as it is done.  Use ``dpqtb label`` for
a progress display and to launch this under MPI.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time
import traceback
from pathlib import Path

from dpqtb import DpqtbError
from dpqtb.dft.store import JobStore, atomic_write_json, compute_frame


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    return True


def _lock_info(fd: int) -> dict:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return info if isinstance(info, dict) else {}
    except (ValueError, OSError):
        return {}


def _legacy_holder(info: dict) -> int | None:
    """A lock written before runners held it with ``flock`` (no ``"flock"`` key) is held while the
    process it names is alive; a flock-held lock is never judged by its pid (pids are reused)."""
    try:
        pid = int(info.get("pid", -1))
    except (TypeError, ValueError):
        return None
    return pid if not info.get("flock") and pid > 0 and _pid_alive(pid) else None


class RunnerLock:
    """STORE/runner.lock, held with ``flock`` by the one labelling process: the kernel drops the
    lock when that process dies, however it dies, so a stale file is taken over safely, and two
    processes that find the same stale file cannot both take it (the race of create-if-absent plus
    remove-if-dead). The file names the holder's pid for ``--status`` and scripts/label_queue.sh."""

    def __init__(self, path: Path, fd: int):
        self.path, self._fd = path, fd

    def release(self) -> None:
        if self._fd is None:
            return
        # remove while still holding: a process that opened the old file meanwhile finds, after its
        # flock, that the path no longer names its file and starts again (acquire_lock)
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


def lock_holder(store: JobStore) -> int | None:
    """Pid of the live process holding STORE/runner.lock (-1 if it holds it but wrote no pid yet),
    else None."""
    try:
        fd = os.open(store.root / "runner.lock", os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        info = _lock_info(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return int(info.get("pid", -1)) if str(info.get("pid", "")).isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return _legacy_holder(info)
    finally:
        os.close(fd)


def acquire_lock(store: JobStore) -> RunnerLock:
    """Take STORE/runner.lock (``flock``, non-blocking); DpqtbError if another live process holds it."""
    store.root.mkdir(parents=True, exist_ok=True)
    lock = store.root / "runner.lock"
    for _ in range(5):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _lock_info(fd).get("pid", "?")
            os.close(fd)
            raise DpqtbError(f"store {store.root} is being labelled by process {pid}") from None
        try:  # the previous holder may have removed the file between our open and our flock
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        legacy = _legacy_holder(_lock_info(fd))
        if legacy is not None:
            os.close(fd)
            raise DpqtbError(f"store {store.root} is being labelled by process {legacy} "
                             f"(remove {lock} if that is wrong)")
        text = json.dumps({"pid": os.getpid(), "start": time.strftime("%Y-%m-%dT%H:%M:%S"),
                           "flock": True}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, text, 0)
        return RunnerLock(lock, fd)
    raise DpqtbError(f"cannot take the lock {lock}")


def _attempts(store: JobStore, jid: str) -> int:
    path = store.failed_dir / f"{jid}.json"
    if not path.exists():
        return 0
    try:
        return int(json.loads(path.read_text()).get("interrupted", 0))
    except (ValueError, OSError):
        return 0


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
              calc_factory=None, verbose: bool = True) -> int:
    """Label pending jobs; returns the number of frames written in this run."""
    comm = _world()
    rank = 0 if comm is None else comm.rank
    plan: list[str] | str | None
    lock = None
    if rank == 0:
        try:
            lock = acquire_lock(store)
            _record_interrupted(store)
            skip = set() if retry_failed else store.failed_ids()
            plan = [j for j in store.pending() if j not in skip]
            # jobs that killed the runner twice (crash, not a Python error) go last
            plan.sort(key=lambda j: _attempts(store, j) >= 2)
            if max_jobs is not None:
                plan = plan[:max_jobs]
        except DpqtbError as exc:
            plan = f"error: {exc}"
    else:
        plan = None
    plan = _broadcast(plan, comm)
    if isinstance(plan, str):
        raise DpqtbError(plan[len("error: "):])
    written = 0
    try:
        for n, jid in enumerate(plan):
            # a job retired while this run was going (dpqtb label --retire-kind) is skipped;
            # rank 0 decides so that all ranks skip together
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dpqtb.dft.runner", description=__doc__)
    ap.add_argument("store")
    ap.add_argument("--max-jobs", type=int, default=None)
    ap.add_argument("--skip-failed", action="store_true", help="do not retry failed jobs")
    args = ap.parse_args(argv)
    try:
        run_store(JobStore(args.store), max_jobs=args.max_jobs,
                  retry_failed=not args.skip_failed)
    except DpqtbError as exc:
        print(f"dpqtb: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
