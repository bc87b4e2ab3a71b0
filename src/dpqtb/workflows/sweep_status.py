"""``dpqtb sweep --status DIR``: where each point of a sweep stands, read from its files alone.

Nothing here talks to Dask or loads a model: the state of a point is read from its directory, so the
status of a sweep running elsewhere (another terminal, a cluster sharing the file system) costs
milliseconds and disturbs nothing.

* ``done``: ``result.json`` of the point's hash (``stale_analysis``: made by an older analysis version,
  brought up to date by ``dpqtb sweep --reanalyze DIR``);
* ``running``: another process holds the point's ``point.lock`` (an exclusive ``flock``; the test takes
  and drops a non-blocking one, so it never waits);
* ``failed``: the last attempt in ``point.log`` ended in a ``failed:`` line;
* ``stopped``: a checkpoint and nobody running it (the same sweep command resumes it);
* ``pending``: nothing yet.

The steps come from ``point.log`` (and, for a running point, the last row of ``thermo.csv`` where it is
further on; a stopped point shows its checkpoint's step, where it resumes): every (re)start and every checkpoint of a point writes a line
``<local time> step <step>/<target> (<event>)`` (:func:`dpqtb.workflows.sweep.progress_line`). The rate is
that of the current attempt (from its first such line to the last one, or to thermo.csv's last row and
the file's modification time where that is further on), the remaining time (target − that step) / rate
less the time since.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import re
import time
from pathlib import Path

from dpqtb import InputError
from dpqtb.rundir import (CHECKPOINT, POINT_JSON, POINT_LOCK, POINT_LOG, POINT_RESULT, SWEEP_JSON, SWEEP_POINTS_DIR,
                          THERMO)

_STEP_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[+-]\d{4})?) step (\d+)/(\d+) \((\w+)\)\s*$")
_EVENT_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d) (start|resume|failed:|stopped|done)(?=\s|$)")

STATES = ("done", "running", "stopped", "failed", "pending", "unknown")


def _when(stamp: str) -> float:
    """Epoch seconds of a log time: with its UTC offset (progress lines), else read as this machine's local time."""
    if len(stamp) > 19:
        from datetime import datetime

        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))


def lock_held(path: Path) -> bool | None:
    """True if another process holds an flock on ``path``, False if not (or no such file), None if the file
    system cannot tell (an flock emulation that refuses the test: the point's state is then unknown).

    A shared non-blocking lock is tried and dropped at once: it never waits and conflicts only with the
    exclusive lock of a running point. On a file system whose locks are local to each node (Lustre with
    ``localflock``), points running on other nodes are not seen as running."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return True if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES) else None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def parse_log(text: str) -> dict:
    """The current (last) attempt of a point.log: its progress lines and whether it ended in failure.

    Returns ``{"steps": [(time_s, step, target, event), ...], "failed": str | None, "where": str | None}`` for
    the lines after the last ``start`` / ``resume`` line (the whole log if there is none); ``where``: the host
    and pid that line names.
    """
    lines = text.splitlines()
    begin, where = 0, None
    for i, ln in enumerate(lines):
        m = _EVENT_LINE.match(ln)
        if m and m.group(2) in ("start", "resume"):
            begin = i
            on = re.search(r" on (\S+) pid (\d+)", ln)
            where = f"{on.group(1)}:{on.group(2)}" if on else None
    steps, failed = [], None
    for ln in lines[begin:]:
        m = _STEP_LINE.match(ln)
        if m:
            try:
                steps.append((_when(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)))
            except (ValueError, OverflowError):  # a time that matches the pattern but is no date (a damaged line)
                pass
            continue
        m = _EVENT_LINE.match(ln)
        if m and m.group(2) == "failed:":
            failed = ln[m.end():].strip()
        elif m and m.group(2) in ("stopped", "done"):
            failed = None
    return {"steps": steps, "failed": failed, "where": where}


def point_status(point_dir: Path, point_hash: str, now: float | None = None) -> dict:
    """The state of one point directory (see the module docstring).

    Returns
    -------
    dict
        ``status``, ``step`` and ``target`` (None where unknown), ``steps_per_min`` and ``eta_h`` (None
        unless running with two progress lines), ``last_line_min`` (minutes since the last progress line),
        ``error`` (the failure line of a failed point), ``where`` (host:pid of a running point).
    """
    now = time.time() if now is None else now
    d = Path(point_dir)
    row = {"status": "pending", "step": None, "target": None, "steps_per_min": None, "eta_h": None,
           "last_line_min": None, "error": None, "where": None}
    spec = _read_json(d / POINT_JSON)
    if spec is not None:
        try:
            row["target"] = int(spec["equilibration_steps"]) + int(spec["production_steps"])
        except (KeyError, TypeError, ValueError):
            pass
    res = _read_json(d / POINT_RESULT)
    if res is not None and res.get("hash") == point_hash and res.get("status") == "done":
        from dpqtb.workflows.sweep import ANALYSIS_VERSION, analysis_version

        row.update(status="done", step=row["target"], stale_analysis=analysis_version(res) < ANALYSIS_VERSION)
        return row
    try:
        log = parse_log((d / POINT_LOG).read_text(errors="replace"))
    except OSError:
        log = {"steps": [], "failed": None, "where": None}
    if log["steps"]:
        t1, s1, target, _ = log["steps"][-1]
        row.update(step=s1, target=target, last_line_min=max(0.0, (now - t1) / 60.0))
    points = [(t, s) for t, s, _, _ in log["steps"]]
    held = lock_held(d / POINT_LOCK)
    # a stopped point resumes from its checkpoint's step (thermo.csv may hold rows past it after a kill -9)
    last = _last_thermo_step(d / THERMO) if held or not log["steps"] else None
    if last is not None and (row["step"] is None or last > row["step"]):
        row["step"] = last
        try:
            points.append((os.stat(d / THERMO).st_mtime, last))
        except OSError:
            pass
    if held is None:
        row.update(status="unknown", error="the file system cannot test point.lock")
    elif held:
        row.update(status="running", where=log.get("where"))
        if len(points) >= 2 and row["target"] is not None:
            (t0, s0), (t1, s1) = points[0], points[-1]
            if t1 > t0 and s1 > s0:
                rate = (s1 - s0) / (t1 - t0)  # steps per second
                row["steps_per_min"] = 60.0 * rate
                row["eta_h"] = max(0.0, (row["target"] - s1) / rate - (now - t1)) / 3600.0
    elif log["failed"] is not None:
        row.update(status="failed", error=log["failed"])
    elif _is_file(d / CHECKPOINT):
        row["status"] = "stopped"
    return row


def sweep_status(out: str | os.PathLike, now: float | None = None) -> list[dict]:
    """One row per point of the sweep directory ``out`` (from its sweep.json, in the sweep's order):
    ``hash``, ``axes`` and :func:`point_status`'s keys.

    Raises
    ------
    InputError
        ``out`` has no readable sweep.json (not a sweep directory, or never run).
    """
    out = Path(out)
    meta = _read_json(out / SWEEP_JSON)
    if meta is None or not isinstance(meta.get("points"), list):
        raise InputError(f"{out} is not a sweep directory (no readable {SWEEP_JSON}; run the sweep first)")
    rows = []
    for p in meta["points"]:
        if not isinstance(p, dict) or "hash" not in p:
            raise InputError(f"{out / SWEEP_JSON}: damaged (a point without a hash); run the sweep again to rewrite it")
        h = str(p["hash"])
        rows.append({"hash": h, "axes": p.get("axes", {}), **point_status(out / SWEEP_POINTS_DIR / h, h, now)})
    return rows


def format_status(rows: list[dict]) -> str:
    """The table ``dpqtb sweep --status`` prints, and a last line with the counts."""
    head = f"{'point':16s}  {'status':8s}  {'step/target':>13s}  {'%':>5s}  {'steps/min':>9s}  {'ETA_h':>6s}  " \
           f"{'last_min':>8s}  axes"
    out = [head]

    def num(x, fmt):
        return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)

    for r in rows:
        st = "-" if r["step"] is None else f"{r['step']}/{r['target'] if r['target'] is not None else '?'}"
        pct = 100.0 * r["step"] / r["target"] if r["step"] is not None and r["target"] else None
        axes = " ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["axes"].items())
        if r["error"]:
            axes += f"  [{r['error']}]"
        if r.get("where"):
            axes += f"  (on {r['where']})"
        if r.get("stale_analysis"):
            axes += "  (older analysis version)"
        out.append(f"{r['hash'][:16]:16s}  {r['status']:8s}  {st:>13s}  {num(pct, '.1f'):>5s}  "
                   f"{num(r['steps_per_min'], '.1f'):>9s}  {num(r['eta_h'], '.1f'):>6s}  "
                   f"{num(r['last_line_min'], '.0f'):>8s}  {axes}")
    counts = {s: sum(r["status"] == s for r in rows) for s in STATES}
    tail = f"{len(rows)} points: " + ", ".join(f"{counts[s]} {s}" for s in STATES)
    etas = [r["eta_h"] for r in rows if r["eta_h"] is not None]
    if etas:
        tail += f"; the running points end in {max(etas):.1f} h at their current rates"
    stale = sum(bool(r.get("stale_analysis")) for r in rows)
    if stale:
        tail += f"; {stale} done point(s) analysed by an older version: dpqtb sweep --reanalyze DIR"
    out.append(tail)
    return "\n".join(out)


def _last_thermo_step(path: Path) -> int | None:
    """The step of the last complete row of thermo.csv (its first column), or None."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 8192))
            tail = fh.read().decode(errors="replace")
    except OSError:
        return None
    for ln in reversed(tail.split("\n")[1:-1] if size > 8192 else tail.split("\n")[:-1]):
        try:
            return int(ln.split(",", 1)[0])
        except ValueError:
            continue
    return None


def _read_json(path: Path) -> dict | None:
    """A JSON object from ``path``, or None (absent, unreadable, damaged, or not an object)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a directory that cannot be searched (Python 3.11 raises PermissionError here)
        return False
