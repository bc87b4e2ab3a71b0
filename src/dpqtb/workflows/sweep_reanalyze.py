"""``dpqtb sweep --reanalyze DIR``: bring the analysis of a sweep's finished points up to date from their run
files (thermo.csv, trajectory.extxyz, the bath's spectra), without running any MD.

A point's ``result.json`` records the :data:`~dpqtb.workflows.sweep.ANALYSIS_VERSION` that made it (absent:
1). When the analysis changes (a fix that changes numbers), the version goes up and this command re-analyses
every finished point of an older version: the MD is expensive, its analysis is not.

Nothing is lost: a point is re-analysed into ``analysis.new/`` beside its ``analysis/``, which is swapped in
only when the whole analysis has succeeded, then ``result.json`` is rewritten atomically (its timing, seed and
axes kept); an interruption anywhere is repaired or redone by the next call (:func:`_reanalyze_point`). Every
analysis writes its version into ``analysis/summary.json`` too, so a reader can tell a mismatch. A point
without its trajectory (e.g. a clone that has the committed results but not the large run files) keeps its
result and is named in the error at the end.

It also records which model made each finished point where its result.json does not say (points of sessions
before ``model_sha256``): the SHA-256 of the model file, from the physics config in the point's checkpoint, so that
``dpqtb paper`` can tell the model its sweeps were run with (:func:`fill_model_sha256`).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from dpqtb import CalculationError, InputError
from dpqtb.rundir import (CHECKPOINT, POINT_ANALYSIS_DIR, POINT_JSON, POINT_LOCK, POINT_RESULT, SWEEP_JSON, SWEEP_POINTS_CSV,
                          SWEEP_POINTS_DIR, THERMO, TRAJECTORY, atomic_write_json, atomic_write_text)
from dpqtb.workflows.sweep import (ANALYSIS_VERSION, _locked, _one_client, _one_line, _stub, analysis_version,
                                   analyze_point, points_csv, read_result)
from dpqtb.workflows.sweep_status import _read_json, point_status


def reanalyze_sweep(out: str | Path, *, plots: bool = True, log=None) -> dict:
    """Re-analyse the finished points of the sweep directory ``out`` whose analysis is older than
    :data:`ANALYSIS_VERSION`, then rewrite points.csv and the figures.

    Returns
    -------
    dict
        ``n_points``, ``reanalyzed`` (hashes), ``current`` (finished points already up to date),
        ``unfinished`` (points without a result), ``failed`` ({hash: one-line reason}), ``points_csv``.

    Raises
    ------
    InputError
        ``out`` is not a sweep directory, or another client runs it (DIR/sweep.lock).
    CalculationError
        Some points could not be re-analysed (each keeps its previous result); the others are done.
    """
    out = Path(out).resolve()
    meta = _read_json(out / SWEEP_JSON)
    if meta is None or not isinstance(meta.get("points"), list) or not isinstance(meta.get("axes"), list):
        raise InputError(f"{out} is not a sweep directory (no readable {SWEEP_JSON}; run the sweep first)")
    with _one_client(out):
        rows, done, current, unfinished, failed = [], [], [], [], {}
        for p in meta["points"]:
            h = str(p.get("hash", "")) if isinstance(p, dict) else ""
            if not h:
                raise InputError(f"{out / SWEEP_JSON}: damaged (a point without a hash); run the sweep again")
            d = out / SWEEP_POINTS_DIR / h
            res = read_result(d, h)
            if res is None:
                unfinished.append(h)
                spec = _read_json(d / POINT_JSON) or {}
                st = point_status(d, h)
                # the sweep's own words for a row without a result: 'running' (a lock held elsewhere) or
                # 'unknown' (no flock) describe this moment, not the file; the sweep writes them 'pending'
                status = st["status"] if st["status"] in ("failed", "stopped") else "pending"
                rows.append(_stub({"hash": h, "axes": p.get("axes", {}), "md_seed": spec.get("md_seed"),
                                   "equilibration_steps": spec.get("equilibration_steps"),
                                   "production_steps": spec.get("production_steps")},
                                  status, st.get("error")))
                continue
            if analysis_version(res) >= ANALYSIS_VERSION:
                current.append(h)
                rows.append(fill_model_sha256(d, h, res))
                continue
            try:
                res = fill_model_sha256(d, h, _reanalyze_point(d, h, res))
                done.append(h)
                if log is not None:
                    print(f"{h} re-analysed (analysis version {ANALYSIS_VERSION})", file=log, flush=True)
            except Exception as exc:  # noqa: BLE001 - this point keeps its result; the others go on (as a sweep)
                failed[h] = _one_line(exc)
                if log is not None:
                    print(f"{h} not re-analysed: {failed[h]}", file=log, flush=True)
            rows.append(res)
        atomic_write_text(out / SWEEP_POINTS_CSV, points_csv(meta["axes"], rows))
        if plots:
            from dpqtb.workflows.sweep_plots import plot_sweep

            plot_sweep(out)
    summary = {"n_points": len(rows), "reanalyzed": done, "current": current, "unfinished": unfinished,
               "failed": failed, "points_csv": str(out / SWEEP_POINTS_CSV)}
    if failed:
        first = next(iter(failed.items()))
        raise CalculationError(f"{len(failed)} finished point(s) not re-analysed (they keep their previous "
                               f"result), e.g. {first[0][:16]}: {first[1]}")
    return summary


def fill_model_sha256(d: Path, h: str, res: dict) -> dict:
    """``res`` with ``model_sha256`` (the SHA-256 of the point's model file; None for an analytic potential) taken
    from the physics config in the point's checkpoint and written into its result.json, where the result does not
    record it yet. Left as it is (the model stays unrecorded, and ``dpqtb paper`` says so) where the checkpoint is
    missing or unreadable, stores no physics config, or names a Deep Potential by path (checkpoints written before
    the configs hashed model files), and where result.json cannot be written."""
    from dpqtb.md.run import checkpoint_physics_config, model_sha256

    if "model_sha256" in res or not (d / CHECKPOINT).is_file():
        return res
    try:
        with _locked(d / POINT_LOCK):
            res = read_result(d, h) or res  # read again under the lock
            if "model_sha256" in res:
                return res
            cfg = checkpoint_physics_config(d / CHECKPOINT)
            kind = ((cfg or {}).get("potential") or {}).get("kind")
            sha = model_sha256(cfg)
            if cfg is None or (kind == "deepmd" and sha is None):
                return res
            res = {**res, "model_sha256": sha}
            atomic_write_json(d / POINT_RESULT, res, indent=2)
    except (OSError, InputError, AttributeError, TypeError):  # provenance only: the point's numbers stand
        return res
    return res


def _reanalyze_point(d: Path, h: str, old: dict) -> dict:
    """Re-analyse one finished point under its lock and return its new result (also written).

    The order makes every interruption recoverable: the analysis goes to ``analysis.new/``; then
    ``analysis/`` → ``analysis.old/``, ``analysis.new/`` → ``analysis/``, result.json, and ``analysis.old/`` is
    removed. A call that finds ``analysis.old/`` without ``analysis/`` (stopped between the renames) puts it
    back first; one stopped after the second rename left a version-2 ``analysis/`` (its summary.json says so)
    beside an older result.json, which the next call redoes."""
    analysis = d / POINT_ANALYSIS_DIR
    new_dir, old_dir = d / (POINT_ANALYSIS_DIR + ".new"), d / (POINT_ANALYSIS_DIR + ".old")
    with _locked(d / POINT_LOCK):
        if not analysis.exists() and old_dir.is_dir():
            old_dir.rename(analysis)
        old = read_result(d, h) or old  # read again under the lock
        spec = _read_json(d / POINT_JSON)
        if spec is None or spec.get("hash") != h:
            raise InputError(f"{d / POINT_JSON} is missing, unreadable or of another point")
        for name in (THERMO, TRAJECTORY):
            if not (d / name).is_file():
                raise InputError(f"{name} is missing from {d} (only the MD's own files can be re-analysed; "
                                 "delete its result.json to rerun the point)")
        shutil.rmtree(new_dir, ignore_errors=True)
        t0 = time.perf_counter()
        n_atoms, obs = analyze_point(spec, d, new_dir)
        shutil.rmtree(old_dir, ignore_errors=True)
        if analysis.exists():
            analysis.rename(old_dir)
        new_dir.rename(analysis)
        result = {**old, "n_atoms": n_atoms, "analysis_version": ANALYSIS_VERSION, "observables": obs,
                  "timing": {**(old.get("timing") or {}), "reanalysis_s": time.perf_counter() - t0,
                             "reanalyzed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}}
        atomic_write_json(d / POINT_RESULT, result, indent=2)
        shutil.rmtree(old_dir, ignore_errors=True)
    return result
