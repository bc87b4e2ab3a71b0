"""Collect sweep directories (and the committed validation data) into ``verdict.json`` and ``report.html``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from dpqtb import InputError
from dpqtb.rundir import (POINT_RESULT, SWEEP_FIGURES_DIR, SWEEP_POINTS_CSV, SWEEP_POINTS_DIR, atomic_write_json,
                          atomic_write_text)
from dpqtb.workflows.paper.reference import load_reference
from dpqtb.workflows.paper.rules import decide
from dpqtb.workflows.paper.verdict import (bead_convergence, collect_rows, exchange_statistics, find_sweeps,
                                           gamma_extrapolations, group_rows, harmonic_kinetic, harmonic_residual_check,
                                           planned_points, quantum_expansion, sweep_meta)

VERDICT_JSON = "verdict.json"
REPORT_HTML = "report.html"
#: the repository of a source checkout (examples/, docs/, data/); absent in an installed wheel
REPO = Path(__file__).resolve().parents[4]
DEFAULT_VALIDATION = REPO / "docs" / "validation_builtin" / "report.json"
#: where scripts/ship_model.py keeps the validation of a model a newer ship replaced: ARCHIVE/<sha256[:12]>/
VALIDATION_ARCHIVE = REPO / "docs" / "validation_archive"
DEFAULT_ZERO_POINT = REPO / "data" / "npt" / "zero_point_expansion.json"
#: scripts/qha_zero_point.py's output, read from beside the zero-point file
QHA_NAME = "qha_zero_point.json"
SWEEP_FIGURES = ("fig2a_distortion", "fig2b_face_angles", "fig3a_energy", "fig3b_t_zero")


def _jsonable(x):
    """NaN -> None (strict JSON), recursively."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def sweep_models(sweep_dirs: list[Path]) -> dict[str, int]:
    """How many finished points of the sweeps each model made: the SHA-256 of its file (result.json
    ``model_sha256``), ``"none"`` for an analytic potential, ``"unrecorded"`` for a result of a session before
    the record (``dpqtb sweep --reanalyze DIR`` fills it in from the point's checkpoint)."""
    counts: dict[str, int] = {}
    for sd in sweep_dirs:
        pts = Path(sd) / SWEEP_POINTS_DIR
        for p in sorted(pts.iterdir()) if pts.is_dir() else []:
            try:
                res = json.loads((p / POINT_RESULT).read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(res, dict) or res.get("status") != "done":
                continue
            key = (res["model_sha256"] or "none") if "model_sha256" in res else "unrecorded"
            counts[key] = counts.get(key, 0) + 1
    return counts


def _report_model(path: Path | None) -> str | None:
    """The model SHA-256 a validation report (``dpqtb validate``'s report.json) describes, if it says."""
    rep = _load_json(path, "validation report")
    sha = ((rep or {}).get("model") or {}).get("sha256") if isinstance(rep, dict) else None
    return sha if isinstance(sha, str) else None


def _same_file(a, b) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _known(models: dict[str, int]) -> list[str]:
    """The model SHA-256s among :func:`sweep_models`' keys (not "none" or "unrecorded")."""
    return sorted(m for m in models if m not in ("none", "unrecorded"))


def _other_model(data: dict | None, models: dict[str, int]) -> str | None:
    """The model SHA-256 a data file (``model_sha256``) names when it is not the sweeps' single model; None when
    they agree, or either does not say."""
    sha = data.get("model_sha256") if isinstance(data, dict) else None
    known = _known(models)
    return sha if isinstance(sha, str) and len(known) == 1 and sha != known[0] else None


def validation_for(models: dict[str, int], validation: Path | None, default: bool) -> Path | None:
    """The validation report of the sweeps' model. One report describes one model, so sweeps run with two
    models are refused; a report of another model than the sweeps' is refused too, except that the default
    (``docs/validation_builtin``, the model shipped now) falls back to the archived report of the sweeps' model
    (:data:`VALIDATION_ARCHIVE`, kept by scripts/ship_model.py when a newer model replaced it). A report that
    names no model, and sweeps whose model is unrecorded or analytic, are not checked."""
    known = _known(models)
    if len(known) > 1:
        raise InputError("the sweeps were run with " + ", ".join(f"model sha256 {m[:12]} ({models[m]} runs)"
                                                                  for m in known)
                         + ": one report describes one model; collect each model's sweeps on their own")
    if not known or validation is None or not Path(validation).is_file():
        return validation
    sha, have = known[0], _report_model(validation)
    if have is None or have == sha:
        return validation
    archived = VALIDATION_ARCHIVE / sha[:12] / "report.json"
    if default and _report_model(archived) == sha:
        return archived
    raise InputError(f"the sweeps were run with model sha256 {sha[:12]} but the validation report {validation} "
                     f"describes {have[:12]}: give --validation the report of {sha[:12]} (a replaced builtin "
                     f"model's is kept in {_rel(VALIDATION_ARCHIVE / sha[:12])})")


def _warn_stale(rows: list[dict]) -> None:
    """One stderr line when some runs were analysed by an older sweep analysis (their numbers are used as
    they are: the MD is right, only the analysis has changed since)."""
    import sys

    from dpqtb.workflows.sweep import ANALYSIS_VERSION

    stale = [r for r in rows if r.get("analysis_version", ANALYSIS_VERSION) < ANALYSIS_VERSION]
    if stale:
        sweeps = sorted({str(Path(r["dir"]).parent.parent) for r in stale})
        print(f"dpqtb: warning: {len(stale)} run(s) analysed by an older analysis version: "
              + "; ".join(f"dpqtb sweep --reanalyze {s}" for s in sweeps), file=sys.stderr)


def model_trusted_from(sweep_dirs: list[Path], metas: dict | None = None) -> float:
    """The highest ``[plots] model_trusted_from_GPa`` among the sweeps' sweep.json (``metas[dir]`` where given;
    NaN where none gives one): the report marks results below it as the model's, not LaH10's
    (docs/phases.md)."""
    best = math.nan
    for d in sweep_dirs:
        plots = sweep_meta(d, metas).get("plots", {})
        v = plots.get("model_trusted_from_GPa") if isinstance(plots, dict) else None
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            best = v if math.isnan(best) else max(best, float(v))
    return best


def spans_pressures(sweep_dir: Path, meta: dict | None = None) -> bool:
    """Whether a sweep's planned points (sweep.json, or ``meta``) lie at more than one pressure: a P–T sweep
    (the ``pt`` stage), which gives Figs. 2–3, not the verdict."""
    points = (sweep_meta(sweep_dir) if meta is None else meta).get("points", [])
    if not isinstance(points, list):
        return False
    return len({(p.get("axes") or {}).get("pressure_GPa") if isinstance(p, dict) else None for p in points}) > 1


def build_verdict(sweep_dirs: list[Path]) -> dict:
    """The verdict dict: sentence and rule outcome (:func:`dpqtb.workflows.paper.rules.decide`), the
    γ → 0 fits, bead convergence, Fig. 4 exchange statistics, the combined groups and every run.

    The verdict is drawn from the sweeps at one pressure (its plan, ``examples/verdict_lah10_*.toml``) only;
    a sweep across pressures (:func:`spans_pressures`: the ``pt`` stage) gives ``pt_groups`` and ``pt_plan``
    for Figs. 2–3, so that its short runs at P* neither join the verdict's seeds nor keep it provisional."""
    metas = {d: sweep_meta(d) for d in sweep_dirs}  # each sweep.json read once
    pt = [d for d in sweep_dirs if spans_pressures(d, metas[d])]
    sweep_dirs = [d for d in sweep_dirs if d not in pt]
    pt_rows = collect_rows(pt)
    rows = collect_rows(sweep_dirs)
    _warn_stale(rows + pt_rows)
    groups = group_rows(rows)
    ex, beads = gamma_extrapolations(groups), bead_convergence(groups)
    for b in beads:  # the harmonic reference from the classical run's VDOS (informative, not a rule)
        b["harmonic"] = harmonic_kinetic(rows, b["temperature_K"], b["pressure_GPa"], b["n_atoms"], b["beads"])
        harmonic_residual_check(b)
    out = decide(groups, ex, beads)
    plan = planned_points(sweep_dirs, metas)
    out["provisional"] = bool(plan["pending"])
    if plan["pending"]:  # the rules ran on what finished; say what may still change the sentence
        shown = "; ".join(plan["pending"][:12]) + (f"; and {len(plan['pending']) - 12} more" if len(plan["pending"]) > 12 else "")
        out["verdict"] = (f"Provisional ({plan['done']} of {plan['planned']} planned runs finished; still to run: "
                          f"{shown}). " + out["verdict"])
    out.update({"rules": "docs/paper.md#verdict-rules", "plan": plan, "gamma_extrapolation": ex,
                "bead_convergence": beads, "quantum_expansion": quantum_expansion(groups),
                "exchange_statistics": exchange_statistics(groups),
                "model_trusted_from_GPa": model_trusted_from(sweep_dirs + pt, metas), "groups": groups,
                "pt_plan": planned_points(pt, metas), "pt_groups": group_rows(pt_rows),
                "runs": rows})
    return out


def _sweep_figures(sweep_dirs: list[Path]) -> dict:
    """Each P–T figure from the sweep with the most points that has it (base64 URIs). A sweep whose figures are
    missing or older than its points.csv (a clone has the committed points.csv) is plotted first, as
    ``dpqtb sweep --plot DIR`` does."""
    from dpqtb.workflows.paper.figures import embed_png
    from dpqtb.workflows.sweep_plots import plot_sweep

    for d in sweep_dirs:
        table = d / SWEEP_POINTS_CSV
        pngs = [d / SWEEP_FIGURES_DIR / f"{name}.png" for name in SWEEP_FIGURES]
        if table.is_file() and any(not p.is_file() or p.stat().st_mtime < table.stat().st_mtime for p in pngs):
            plot_sweep(d)
    ranked = sorted(sweep_dirs, key=lambda d: -len(list((d / SWEEP_POINTS_DIR).iterdir())))
    out = {}
    for name in SWEEP_FIGURES:
        for d in ranked:
            uri = embed_png(d / SWEEP_FIGURES_DIR / f"{name}.png")
            if uri:
                out[name] = uri
                break
    return out


def _rel(path) -> str:
    """``path`` relative to the working directory when it lies below it (reproducible reports)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def _load_json(path: Path | None, what: str) -> dict | None:
    if path is None or not Path(path).is_file():
        return None
    try:
        return json.loads(Path(path).read_text())
    except ValueError as exc:
        raise InputError(f"{what} {path}: not JSON ({exc})") from None


def collect(from_dir: str | Path, out_dir: str | Path, *, validation: str | Path | None = DEFAULT_VALIDATION,
            zero_point: str | Path | None = DEFAULT_ZERO_POINT) -> dict:
    """Write ``out_dir/verdict.json`` and ``out_dir/report.html`` from the sweeps under ``from_dir``.

    Parameters
    ----------
    from_dir : path
        A sweep directory or a folder of sweep directories (need not hold any: every section is then
        marked missing).
    out_dir : path
        Where the two files go.
    validation, zero_point : path, optional
        The model validation report (Table I, Fig. 1) and data/npt/zero_point_expansion.json (Fig. 3);
        absent files leave their sections missing. The report must describe the model the sweeps were run with
        (:func:`validation_for`: the default falls back to the archived report of that model).

    Returns
    -------
    dict
        The verdict (in memory: NaN kept, run directories absolute).
    """
    sweeps = find_sweeps(from_dir)
    models = sweep_models(sweeps)
    validation = validation_for(models, Path(validation) if validation else None,
                                default=validation is not None and _same_file(validation, DEFAULT_VALIDATION))
    verdict = build_verdict(sweeps)
    verdict["models"] = models
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {out}: {exc.strerror or exc}") from None
    val_path = Path(validation) if validation else None
    val = _load_json(val_path, "validation report")
    zp = _load_json(Path(zero_point) if zero_point else None, "zero-point file")
    # the quasi-harmonic reference beside it (scripts/qha_zero_point.py), when present
    qha_path = Path(zero_point).with_name(QHA_NAME) if zero_point else None
    qha = _load_json(qha_path, "quasi-harmonic file") if qha_path is not None and qha_path.is_file() else None
    # the zero-point data (and the quasi-harmonic reference beside it) must be of the runs' model too: given
    # explicitly, another model is an error; the checkout's default of another model is left out, said in Sources
    left_out = []
    for what, data, path in (("zero-point file", zp, zero_point), ("quasi-harmonic file", qha, qha_path)):
        other = _other_model(data, models)
        if other is None:
            continue
        if zero_point is not None and not _same_file(zero_point, DEFAULT_ZERO_POINT):
            raise InputError(f"{what} {path} was made with model sha256 {other[:12]}, the sweeps with "
                             f"{_known(models)[0][:12]}: give --zero-point the file of the sweeps' model")
        left_out.append(f"{what} {_rel(path)} left out: model sha256 {other[:12]}, not the runs' "
                        f"{_known(models)[0][:12]}")
        zp, qha = (None, qha) if what == "zero-point file" else (zp, None)
    sources = [f"sweep {_rel(d)}" for d in sweeps] + [f"validation {_rel(val_path)}" if val else "validation: none",
                                                       f"zero point {_rel(zero_point)}" if zp else "zero point: none"] \
        + ([f"quasi-harmonic {_rel(qha_path)}"] if qha else []) \
        + left_out + [f"model sha256 {m} ({n} runs)" if m not in ("none", "unrecorded") else
           f"{'analytic potential' if m == 'none' else 'model not recorded'} ({n} runs)"
           for m, n in sorted(models.items())]
    from dpqtb.workflows.paper.report import build_html

    html = build_html(verdict, load_reference(), validation=val, validation_dir=val_path.parent if val else None,
                      zero_point=zp, sweep_figs=_sweep_figures(sweeps), sources=sources, qha=qha)
    atomic_write_text(out / REPORT_HTML, html)
    base = Path(from_dir).resolve()
    stored = dict(verdict)
    stored["runs"] = [{**r, "dir": os.path.relpath(r["dir"], base)} for r in verdict["runs"]]
    atomic_write_json(out / VERDICT_JSON, _jsonable(stored), indent=2)
    return verdict
