"""STORE/runner.lock: the one labelling process of a job store holds it (``flock``).

    python -m dpqtb.dft.lock STORE [STORE ...]

prints ``STORE PID`` for each store that a live process is labelling (scripts/label_queue.sh uses
this to skip, wait for, or stop a store's runner)."""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

from dpqtb import InputError


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


def lock_holder(root: str | Path) -> int | None:
    """Pid of the live process holding ROOT/runner.lock (-1 if it holds it but wrote no pid yet),
    else None."""
    try:
        fd = os.open(Path(root) / "runner.lock", os.O_RDONLY)
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


def acquire_lock(root: str | Path) -> RunnerLock:
    """Take ROOT/runner.lock (``flock``, non-blocking); DpqtbError if another live process holds it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lock = root / "runner.lock"
    for _ in range(5):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _lock_info(fd).get("pid", "?")
            os.close(fd)
            raise InputError(f"store {root} is being labelled by process {pid}") from None
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
            raise InputError(f"store {root} is being labelled by process {legacy} "
                             f"(remove {lock} if that is wrong)")
        text = json.dumps({"pid": os.getpid(), "start": time.strftime("%Y-%m-%dT%H:%M:%S"),
                           "flock": True}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, text, 0)
        return RunnerLock(lock, fd)
    raise InputError(f"cannot take the lock {lock}")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        pid = lock_holder(arg)
        if pid is not None:
            print(arg, pid)
