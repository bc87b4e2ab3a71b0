"""The figures of ``report.html``, each returned as a ``data:image/png;base64,…`` URI (self-contained)."""

from __future__ import annotations

import base64
import csv
import io
import math
from pathlib import Path

import numpy as np

from dpqtb.rundir import POINT_ANALYSIS_DIR, qtb_fd_name


def embed_png(path: str | Path) -> str | None:
    """An existing PNG file as a data URI (None when it does not exist)."""
    p = Path(path)
    if not p.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode("ascii")


def _uri(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _fig(w=5.0, h=3.4):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(w, h))


def read_columns(path: Path) -> dict:
    """A CSV file as column name -> float array ({} when absent)."""
    if not Path(path).is_file():
        return {}
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    out = {}
    for k in rows[0]:
        try:
            out[k] = np.array([float(r[k]) for r in rows])
        except (TypeError, ValueError):
            continue
    return out


def fig_enthalpy(rows: list[dict]) -> str | None:
    """Fig. 1a analogue: ΔH (distorted − Fm-3m) vs P, DFT and the model, one line per starting phase and cell
    size (11 or 44 atoms: each ΔH is referenced to Fm-3m in its own cell)."""
    if not rows:
        return None
    fig, ax = _fig()
    series = sorted({(r["phase_start"], r.get("natoms", 11)) for r in rows})
    for k, (ph, n) in enumerate(series):
        rs = sorted((r for r in rows if (r["phase_start"], r.get("natoms", 11)) == (ph, n)),
                    key=lambda r: r["pressure_GPa"])
        p = [r["pressure_GPa"] for r in rs]
        c, name = f"C{k}", ph if n == 11 else f"{ph} ({n} atoms)"
        ax.plot(p, [r["dH_dft_meV_per_atom"] for r in rs], "o-", color=c, label=f"{name} PBE")
        ax.plot(p, [r["dH_dp_meV_per_atom"] for r in rs], "s--", color=c, mfc="none", label=f"{name} DP")
    ax.axhline(0, color="k", lw=0.8, label="Fm-3m")
    ax.set_xlabel("P (GPa)")
    ax.set_ylabel("H − H(Fm-3m) (meV/atom)")
    ax.legend(fontsize=7)
    return _uri(fig)


def fig_msd(point_dir: Path, species: str) -> str | None:
    """Fig. 5 analogue: MSD of H and La and the reordered MSD′ of H against time."""
    a = Path(point_dir) / POINT_ANALYSIS_DIR
    msd, prime = read_columns(a / "msd.csv"), read_columns(a / "msd_prime.csv")
    if not msd and not prime:
        return None
    fig, ax = _fig()
    for k, v in msd.items():
        if k.startswith("msd_") and k.endswith("_A2"):
            ax.plot(msd["time_fs"] / 1000, v, label=f"MSD {k[4:-3]}")
    col = f"msd_prime_{species}_A2"
    if col in prime:
        ax.plot((prime["time_fs"] - prime["time_fs"][0]) / 1000, prime[col], label=f"MSD′ {species} (from the first frame)")
    ax.set_xlabel("lag / time since the first production frame (ps)")
    ax.set_ylabel("Å²")
    ax.legend(fontsize=7)
    return _uri(fig)


def first_peak(r: np.ndarray, g: np.ndarray) -> float:
    """Position of the largest maximum of g(r) (Å)."""
    if not len(g) or not np.isfinite(g).any():
        return math.nan
    return float(r[int(np.nanargmax(g))])


def peak_fwhm(r: np.ndarray, g: np.ndarray) -> float:
    """Full width at half maximum of the largest peak of g(r) (Å; NaN when it is not bracketed)."""
    if not len(g) or not np.isfinite(g).any():
        return math.nan
    k = int(np.nanargmax(g))
    half = g[k] / 2
    lo = k
    while lo > 0 and g[lo] > half:
        lo -= 1
    hi = k
    while hi < len(g) - 1 and g[hi] > half:
        hi += 1
    if g[lo] > half or g[hi] > half:
        return math.nan
    return float(r[hi] - r[lo])


def fig_rdf(curves: list[tuple[str, Path]], pair: str = "La-H") -> tuple[str | None, dict]:
    """Fig. 6 analogue: g_pair(r) of each (label, point_dir); returns the URI and, per curve, the
    largest peak's position and FWHM (Å)."""
    fig, ax = _fig()
    peaks = {}
    for label, d in curves:
        t = read_columns(Path(d) / POINT_ANALYSIS_DIR / "rdf.csv")
        col = f"g_{pair}" if f"g_{pair}" in t else next((k for k in t if k.startswith("g_")), None)
        if col is None:
            continue
        ax.plot(t["r_A"], t[col], label=f"{label} ({col[2:]})")
        peaks[label] = (first_peak(t["r_A"], t[col]), peak_fwhm(t["r_A"], t[col]))
    if not peaks:
        import matplotlib.pyplot as plt

        plt.close(fig)
        return None, {}
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("g(r)")
    ax.legend(fontsize=7)
    return _uri(fig), peaks


def fig_d_vs_gamma(groups: list[dict], extrapolations: list[dict]) -> str | None:
    """D_H against γ for QTB/adQTB at each T (largest cell), with the weighted fit and its γ → 0 value."""
    gs = [g for g in groups if g["method"] in ("qtb", "adqtb") and math.isfinite(g["D_H_cm2_per_s"])]
    if not gs:
        return None
    fig, ax = _fig()
    keys = sorted({(g["method"], g["temperature_K"], g["n_atoms"]) for g in gs})
    for k, (m, t, n) in enumerate(keys):
        sel = sorted((g for g in gs if (g["method"], g["temperature_K"], g["n_atoms"]) == (m, t, n)),
                     key=lambda g: g["gamma_per_ps"])
        c = f"C{k % 10}"
        ax.errorbar([g["gamma_per_ps"] for g in sel], [g["D_H_cm2_per_s"] for g in sel],
                    yerr=[g["D_H_err_cm2_per_s"] for g in sel], fmt="o", color=c, label=f"{m} {t:g} K, {n} at.")
        for e in extrapolations:
            if (e["method"], e["temperature_K"], e["n_atoms"]) == (m, t, n):
                x = np.array([0.0, max(e["gamma_per_ps"])])
                ax.plot(x, e["D0_cm2_per_s"] + e["slope_cm2_per_s_ps"] * x, "--", color=c)
                ax.errorbar([0], [e["D0_cm2_per_s"]], yerr=[e["D0_err_cm2_per_s"]], fmt="s", color=c, mfc="none")
    ax.axhline(3.5e-5, color="k", ls=":", label="paper (QTB 5 K)")
    ax.set_xlabel("γ (1/ps)")
    ax.set_ylabel("D_H (cm²/s)")
    ax.legend(fontsize=6)
    return _uri(fig)


def fig_d_vs_t(groups: list[dict], pressure_GPa: float) -> str | None:
    """D_H against T at the verdict pressure, every method (largest cell; QTB at each γ)."""
    gs = [g for g in groups if g["pressure_GPa"] == pressure_GPa and math.isfinite(g["D_H_cm2_per_s"])]
    if not gs:
        return None
    fig, ax = _fig()
    labels = sorted({(g["method"], g.get("gamma_per_ps"), g.get("beads"), g["n_atoms"]) for g in gs},
                    key=lambda x: tuple(str(v) for v in x))
    for k, lab in enumerate(labels):
        sel = sorted((g for g in gs if (g["method"], g.get("gamma_per_ps"), g.get("beads"), g["n_atoms"]) == lab),
                     key=lambda g: g["temperature_K"])
        name = lab[0] + (f" γ={lab[1]:g}" if lab[1] is not None else "") + (f" P={lab[2]}" if lab[2] else "") \
            + f" {lab[3]} at."
        ax.errorbar([g["temperature_K"] for g in sel], [g["D_H_cm2_per_s"] for g in sel],
                    yerr=[g["D_H_err_cm2_per_s"] for g in sel], fmt="o-", color=f"C{k % 10}", label=name)
    ax.set_xlabel("T (K)")
    ax.set_ylabel("D_H (cm²/s)")
    ax.legend(fontsize=6)
    return _uri(fig)


def fig_delta_fd(points: list[tuple[str, Path]], species: str = "H") -> str | None:
    """Δ_FD(ω) of the quantum baths (qtb_fd_<species>.csv): 0 where the fluctuation–dissipation
    theorem holds; the adQTB evidence that leakage is cured."""
    fig, ax = _fig()
    n = 0
    for label, d in points:
        t = read_columns(Path(d) / qtb_fd_name(species))
        if "frequency_THz" in t and "delta_fd_eV" in t:
            ax.plot(t["frequency_THz"], t["delta_fd_eV"], label=label)
            n += 1
    if not n:
        import matplotlib.pyplot as plt

        plt.close(fig)
        return None
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("ν (THz)")
    ax.set_ylabel(f"Δ_FD {species} (eV)")
    ax.legend(fontsize=6)
    return _uri(fig)
