"""The figures of a sweep, from ``DIR/points.csv`` alone (``dpqtb sweep --plot DIR``).

Written to ``DIR/figures/``, each as PNG and as the CSV of what it plots (paper figure numbers):

* ``fig2a_distortion``: two heat maps side by side, classical | quantum bath, temperature across and
  pressure up, colour = cage distortion |θ − 90°| of the time-averaged structure (``[plots] distortion``
  picks another column, e.g. the face-angle spread ``face_spread_avg_deg``); a "D" marks the points where
  the protons diffuse (:func:`dpqtb.analysis.msd.diffusive` on D_H), whose time-averaged cage is not a
  structure (the CSV has D_H, its error, ``H_diffusive`` and the exchanged fraction of H);
* ``fig2b_face_angles``: largest and smallest H4-face angle against T at the reference pressure;
* ``fig3a_energy``: E/(3N k_B) against T at the reference pressure, every bath, with E = 3N k_B T;
* ``fig3b_t_zero``: T_zero against P at the lowest temperature, every bath.

With ``[plots] model_trusted_from_GPa`` every CSV has a ``model_trusted`` column, and the pressures below it are
hatched (2a), shaded (3b) or named in the title (2b, 3a at such a reference pressure).

Points that share bath, pressure and temperature (seeds, sizes) are averaged; failed and unfinished
points are left out; an observable that does not apply (NaN: the cage of a non-clathrate) leaves its
panel empty rather than failing.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

from dpqtb import InputError
from dpqtb.analysis.msd import D_MIN_CM2_PER_S, N_SIGMA, diffusive
from dpqtb.rundir import SWEEP_FIGURES_DIR, SWEEP_JSON, SWEEP_POINTS_CSV, atomic_write_text

FIGURES = ("fig2a_distortion", "fig2b_face_angles", "fig3a_energy", "fig3b_t_zero")
#: the protons' diffusion coefficient column of points.csv (analysis version ≥ 3)
D_H = "D_H_cm2_per_s"
NAN = float("nan")


def _float(s: str | None) -> float:
    try:
        return float(s) if s not in (None, "") else NAN
    except ValueError:
        return NAN


def read_points(out_dir: str | Path) -> list[dict]:
    """The rows of ``DIR/points.csv`` as dicts of strings."""
    path = Path(out_dir) / SWEEP_POINTS_CSV
    if not path.is_file():
        raise InputError(f"{path} does not exist (not a sweep directory?)")
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _group(rows: list[dict], columns: list[str]) -> dict:
    """(bath, P, T) -> {column: (mean, err)} over the finished rows (seeds and sizes averaged)."""
    acc: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.get("status") != "done":
            continue
        key = (r.get("bath") or "", _float(r.get("pressure_GPa")), _float(r.get("temperature_K")))
        for c in columns:
            acc[key][c].append((_float(r.get(c)), _float(r.get(c + "_err"))))
    out = {}
    for key, cols in acc.items():
        out[key] = {}
        for c, vals in cols.items():
            v = [x for x, _ in vals if math.isfinite(x)]
            e = [x for _, x in vals if math.isfinite(x)]
            mean = sum(v) / len(v) if v else NAN
            err = math.sqrt(sum(x * x for x in e)) / len(e) if e else NAN
            out[key][c] = (mean, err)
    return out


def _settings(out_dir: Path, groups: dict) -> dict:
    plots = {}
    try:
        plots = json.loads((out_dir / SWEEP_JSON).read_text()).get("plots", {})
    except (OSError, ValueError):
        pass
    baths = sorted({k[0] for k in groups})
    pressures = sorted({k[1] for k in groups if math.isfinite(k[1])})
    ref = plots.get("pressure_GPa")
    if ref is None:
        ref = 150.0 if 150.0 in pressures else (pressures[len(pressures) // 2] if pressures else NAN)
    elif pressures:
        ref = min(pressures, key=lambda p: abs(p - ref))
    classical = plots.get("classical", "langevin")
    quantum = plots.get("quantum", "qtb" if "qtb" in baths else next((b for b in baths if b != classical), "qtb"))
    trusted = plots.get("model_trusted_from_GPa")
    return {"ref_P": ref, "classical": classical, "quantum": quantum, "baths": baths,
            "distortion": plots.get("distortion", "distortion_avg_deg"),
            "trusted_from": float(trusted) if isinstance(trusted, (int, float)) and not isinstance(trusted, bool)
            else NAN}


def model_trusted(p: float, trusted_from: float) -> bool:
    """Whether the model is trusted at pressure ``p`` (GPa) given ``[plots] model_trusted_from_GPa`` (NaN: no
    limit, trusted everywhere). The one rule of the figures, their CSVs and the paper report's tables."""
    return not (p < trusted_from)


def _trusted(p: float, st: dict) -> bool:
    return model_trusted(p, st["trusted_from"])


def _title_at_P(st: dict) -> str:
    """The title of a figure at the reference pressure; it says so where the model is not trusted there."""
    p = st["ref_P"]
    return f"P = {p:g} GPa" + ("" if _trusted(p, st) else f" (model not trusted below {st['trusted_from']:g} GPa)")


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _csv(path: Path, header: list[str], rows: list) -> None:
    def f(v):
        return "nan" if isinstance(v, float) and math.isnan(v) else (f"{v:.10g}" if isinstance(v, float) else str(v))

    atomic_write_text(path, "\n".join([",".join(header), *(",".join(f(v) for v in r) for r in rows)]) + "\n")


def plot_sweep(out_dir: str | Path) -> list[Path]:
    """Write the four figures (PNG + CSV) of a sweep directory; returns the PNG paths.

    Parameters
    ----------
    out_dir : path
        A sweep directory (with points.csv).

    Returns
    -------
    list of Path
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    rows = read_points(out_dir)
    cols = ["distortion_avg_deg", "face_spread_avg_deg", "distortion_frames_deg", "face_max_avg_deg",
            "face_min_avg_deg", "E_per_3NkB_K", "E_per_3NkB_raw_K", "T_zero_K", "T_kin_K", D_H, "exchanged_fraction"]
    groups = _group(rows, cols)
    st = _settings(out_dir, groups)
    if st["distortion"] not in cols:
        groups = _group(rows, cols + [st["distortion"]])
    fig_dir = out_dir / SWEEP_FIGURES_DIR
    fig_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fn in zip(FIGURES, (_fig2a, _fig2b, _fig3a, _fig3b)):
        fig = fn(plt, groups, st, fig_dir / f"{name}.csv")
        fig.savefig(fig_dir / f"{name}.png", dpi=110)
        plt.close(fig)
        written.append(fig_dir / f"{name}.png")
    return written


def _fig2a(plt, groups, st, csv_path):
    import numpy as np

    col = st["distortion"]
    temps = sorted({k[2] for k in groups if math.isfinite(k[2])})
    press = sorted({k[1] for k in groups if math.isfinite(k[1])}) or [NAN]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True, layout="constrained")
    rows_csv, grids, moving = [], [], {}
    for bath in (st["classical"], st["quantum"]):
        grid = np.full((len(press), len(temps)), np.nan)
        for (b, p, t), vals in groups.items():
            if b == bath and t in temps and any(_same(p, q) for q in press):
                i = next(i for i, q in enumerate(press) if _same(p, q))
                grid[i, temps.index(t)] = vals[col][0]
                d, d_err = vals[D_H]
                moves = diffusive(d, d_err)
                rows_csv.append((bath, p, t, vals[col][0], _trusted(p, st), d, d_err, moves,
                                 vals["exchanged_fraction"][0]))
                if moves:
                    moving.setdefault(bath, []).append((temps.index(t), i))
        grids.append(grid)
    finite = np.concatenate([g[np.isfinite(g)] for g in grids]) if grids else np.array([])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    im = None
    for ax, what, bath, grid in zip(axes, ("classical", "quantum"), (st["classical"], st["quantum"]), grids):
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax or 1.0)
        ax.set_xticks(range(len(temps)), [f"{t:g}" for t in temps])
        ax.set_yticks(range(len(press)), [f"{p:g}" for p in press])
        ax.set_xlabel("T (K)")
        ax.set_title(f"{what} ({bath})" + ("" if finite.size else ": no cage data"))
        for x, y in moving.get(bath, []):  # protons diffuse: the time-averaged cage is not a structure
            ax.text(x, y, "D", ha="center", va="center", color="white", fontsize=11, fontweight="bold")
        untrusted = [i for i, q in enumerate(press) if not _trusted(q, st)]
        if untrusted:  # the rows where the model's phases are not trusted: hatched, and said so
            ax.axhspan(-0.5, max(untrusted) + 0.5, facecolor="none", edgecolor="red", hatch="//", linewidth=0)
            ax.text(0.02, (max(untrusted) + 0.5) / len(press) - 0.02, f"model not trusted < {st['trusted_from']:g} GPa",
                    transform=ax.transAxes, va="top", fontsize=7, color="red")
    axes[0].set_ylabel("P (GPa)")
    fig.colorbar(im, ax=list(axes), label=col.replace("_deg", " (deg)"))
    if moving:
        fig.suptitle(f"D: protons diffuse (D_H > {D_MIN_CM2_PER_S:g} cm²/s and > {N_SIGMA:g}σ); the time-averaged "
                     "cage there is not a structure", fontsize=8)
    _csv(csv_path, ["bath", "pressure_GPa", "temperature_K", col, "model_trusted", D_H, D_H + "_err", "H_diffusive",
                    "exchanged_fraction"], sorted(rows_csv, key=lambda r: (r[0], r[1], r[2])))
    return fig


def _series(groups, bath, fixed_P=None, fixed_T=None):
    pts = []
    for (b, p, t), vals in groups.items():
        if b != bath:
            continue
        if fixed_P is not None and not _same(p, fixed_P):
            continue
        if fixed_T is not None and not _same(t, fixed_T):
            continue
        pts.append(((t if fixed_P is not None else p), vals))
    return sorted(pts, key=lambda x: x[0])


def _fig2b(plt, groups, st, csv_path):
    fig, ax = plt.subplots(figsize=(5, 3.8), layout="constrained")
    rows_csv = []
    for bath, ls in ((st["classical"], "--"), (st["quantum"], "-")):
        s = _series(groups, bath, fixed_P=st["ref_P"])
        for col, colour in (("face_max_avg_deg", "tab:red"), ("face_min_avg_deg", "tab:blue")):
            ax.plot([t for t, _ in s], [v[col][0] for _, v in s], ls, marker="o", color=colour,
                    label=f"{bath}: {'largest' if 'max' in col else 'smallest'}")
        rows_csv += [(bath, st["ref_P"], t, v["face_max_avg_deg"][0], v["face_min_avg_deg"][0],
                      _trusted(st["ref_P"], st)) for t, v in s]
    ax.axhline(90.0, color="k", lw=0.5)
    ax.set_xlabel("T (K)")
    ax.set_ylabel("H4-face angle (deg)")
    ax.set_title(_title_at_P(st), fontsize=9)
    ax.legend(fontsize=7)
    _csv(csv_path, ["bath", "pressure_GPa", "temperature_K", "face_max_avg_deg", "face_min_avg_deg", "model_trusted"],
         rows_csv)
    return fig


def _fig3a(plt, groups, st, csv_path):
    fig, ax = plt.subplots(figsize=(5, 3.8), layout="constrained")
    rows_csv, tmax = [], 0.0
    for bath in st["baths"]:
        s = _series(groups, bath, fixed_P=st["ref_P"])
        if not s:
            continue
        t = [x for x, _ in s]
        tmax = max(tmax, max(t))
        line = ax.errorbar(t, [v["E_per_3NkB_K"][0] for _, v in s], yerr=[v["E_per_3NkB_K"][1] for _, v in s],
                           marker="o", capsize=2, label=bath)
        raw = [v.get("E_per_3NkB_raw_K", (math.nan, math.nan)) for _, v in s]
        if any(math.isfinite(r[0]) for r in raw):  # QTB: also as a code without the kinetic correction reports it
            ax.errorbar(t, [r[0] for r in raw], yerr=[r[1] for r in raw], marker="o", mfc="none", ls="--", capsize=2,
                        color=line[0].get_color(), label=f"{bath}, uncorrected K (as fix qtb)")
        rows_csv += [(bath, st["ref_P"], x, v["E_per_3NkB_K"][0], v["E_per_3NkB_K"][1], r[0], r[1],
                      _trusted(st["ref_P"], st)) for (x, v), r in zip(s, raw)]
    ax.plot([0, tmax or 1.0], [0, tmax or 1.0], "k:", lw=0.8, label="E = 3Nk_B T")
    ax.set_xlabel("T (K)")
    ax.set_ylabel("E / 3Nk_B (K)")
    ax.set_title(_title_at_P(st), fontsize=9)
    ax.legend(fontsize=7)
    _csv(csv_path, ["bath", "pressure_GPa", "temperature_K", "E_per_3NkB_K", "E_per_3NkB_K_err", "E_per_3NkB_raw_K",
                    "E_per_3NkB_raw_K_err", "model_trusted"], rows_csv)
    return fig


def _fig3b(plt, groups, st, csv_path):
    fig, ax = plt.subplots(figsize=(5, 3.8), layout="constrained")
    temps = sorted({k[2] for k in groups if math.isfinite(k[2])})
    t_low = temps[0] if temps else NAN
    rows_csv = []
    for bath in st["baths"]:
        s = _series(groups, bath, fixed_T=t_low)
        if not s:
            continue
        ax.plot([p for p, _ in s], [v["T_zero_K"][0] for _, v in s], marker="o", label=bath)
        rows_csv += [(bath, p, t_low, v["T_zero_K"][0], _trusted(p, st)) for p, v in s]
    p_low = min((r[1] for r in rows_csv), default=NAN)
    if p_low < st["trusted_from"]:  # False while either is NaN
        ax.axvspan(p_low, st["trusted_from"], color="red", alpha=0.1,
                   label=f"model not trusted (< {st['trusted_from']:g} GPa)")
    ax.set_xlabel("P (GPa)")
    ax.set_ylabel("T_zero (K)")
    ax.set_title(f"T = {t_low:g} K")
    ax.legend(fontsize=7)
    _csv(csv_path, ["bath", "pressure_GPa", "temperature_K", "T_zero_K", "model_trusted"], rows_csv)
    return fig
