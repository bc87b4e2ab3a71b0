"""The verdict of issue 25: collect sweep run directories into rows, combine seeds, extrapolate D(γ) to
γ → 0 and choose the verdict sentence by the fixed rules of docs/paper.md ("Verdict rules").

Nothing here runs MD: the input is one or more sweep directories (``DIR/points/<hash>/`` with
``point.json``, ``result.json`` and ``analysis/``, docs/sweep.md).  The sentence is computed from the
rows; the thresholds are the module constants below, written down before any LaH10 data existed.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from dpqtb import InputError
from dpqtb.analysis.msd import diffusive
from dpqtb.rundir import (POINT_ANALYSIS_DIR, POINT_JSON, POINT_RESULT, SWEEP_JSON, SWEEP_POINTS_DIR, THERMO,
                          qtb_fd_name, read_thermo)

#: the pressure of the verdict (GPa) and the paper's Fig. 4 temperature (K)
VERDICT_PRESSURE_GPA = 200.0
FIG4_TEMPERATURE_K = 200.0
#: TRPMD/PIMD: the lowest temperature the verdict uses (K)
BEADS_MIN_T_K = 100.0
#: K_cv(P) converged when the largest bead count is within 1 % of the P → ∞ limit at 2σ: the limit from the
#: two largest counts by the 1/P² law of the ring-polymer (Trotter) error, |r| + 2σ_r < 1 % for the
#: largest count's relative residual r (a noisy pair does not pass by its error bar)
KCV_REL_TOL = 0.01
KCV_N_SIGMA = 2.0
CLASSICAL = ("langevin", "nve")
FRICTION_BATHS = ("langevin", "qtb", "adqtb")
BEAD_BATHS = ("pimd", "trpmd")
GROUP_KEYS = ("method", "temperature_K", "pressure_GPa", "n_atoms", "gamma_per_ps", "beads")


def _f(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def find_sweeps(root: str | Path) -> list[Path]:
    """The sweep directories under ``root``: ``root`` itself if it has ``points/``, else its sub-folders
    and their sub-folders (two levels: ``DIR/sweeps/<stage>`` of ``dpqtb paper --out DIR``) that have
    one, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"--from {root}: not a directory")
    if (root / SWEEP_POINTS_DIR).is_dir():
        return [root]
    found = []
    for p in sorted(q for q in root.iterdir() if q.is_dir()):
        if (p / SWEEP_POINTS_DIR).is_dir():
            found.append(p)
        else:
            found += sorted(q for q in p.iterdir() if q.is_dir() and (q / SWEEP_POINTS_DIR).is_dir())
    return found


def _plateau(path: Path, column: str) -> tuple[float, float]:
    """Mean and block error (4 blocks) of the second half of an MSD′ column."""
    if not path.is_file():
        return math.nan, math.nan
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    y = np.array([_f(r.get(column)) for r in rows], dtype=float)
    y = y[len(y) // 2:]
    y = y[np.isfinite(y)]
    if not len(y):
        return math.nan, math.nan
    blocks = [b.mean() for b in np.array_split(y, min(4, len(y)))]
    err = float(np.std(blocks, ddof=1) / math.sqrt(len(blocks))) if len(blocks) > 1 else math.nan
    return float(y.mean()), err


def fd_ratio(run_dir: Path, species: str) -> float:
    """Σ|Δ_FD| / Σ m γ_r C_vv over the frequency grid of ``qtb_fd_<species>.csv`` (0 when the
    fluctuation–dissipation theorem holds at every frequency; the same number as the bath's
    ``fd_summary``); NaN without the file."""
    path = run_dir / qtb_fd_name(species)
    if not path.is_file():
        return math.nan
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    try:
        num = sum(abs(float(r["delta_fd_eV"])) for r in rows)
        den = sum(float(r["gamma_r_per_ps"]) * 1e-3 * float(r["mCvv_eV_fs"]) for r in rows)
    except (KeyError, ValueError):
        return math.nan
    return num / den if den > 0 else math.nan


def _kinetic_per_atom_meV(run_dir: Path, eq_steps: int, n_atoms: int) -> tuple[float, float]:
    """Mean kinetic energy per atom over production (meV): for PIMD/TRPMD the centroid-virial K_cv."""
    if not (run_dir / THERMO).is_file():
        return math.nan, math.nan
    th = read_thermo(run_dir)
    k = np.asarray(th["kinetic_eV"], dtype=float)[np.asarray(th["step"]) > eq_steps] * 1e3 / n_atoms
    if len(k) < 4:
        return math.nan, math.nan
    blocks = [b.mean() for b in np.array_split(k, 10 if len(k) >= 20 else 2)]
    return float(k.mean()), float(np.std(blocks, ddof=1) / math.sqrt(len(blocks)))


def point_row(point_dir: str | Path) -> dict | None:
    """One row of verdict.json from a finished sweep point (None when it is not finished).

    Keys: ``method``, ``temperature_K``, ``pressure_GPa``, ``n_atoms``, ``gamma_per_ps`` (friction
    baths: 1000/damp_fs), ``beads`` (PIMD/TRPMD), ``seed``, ``D_H_cm2_per_s``, ``D_H_err_cm2_per_s``,
    ``msd_prime_plateau_A2`` (+ ``_err``), ``exchanges`` (none/one/several), ``K_per_atom_meV``
    (+ ``_err``; PIMD/TRPMD: centroid virial), ``theta_deg``, ``V_A3``, ``E_per_3NkB_K``, ``T_zero_K``,
    ``production_ps``, ``species``, ``hash``, ``dir``, ``analysis_version`` (of the sweep analysis that made its
    numbers: :data:`dpqtb.workflows.sweep.ANALYSIS_VERSION`; an older one is brought up to date by
    ``dpqtb sweep --reanalyze``).
    """
    d = Path(point_dir)
    try:
        res = json.loads((d / POINT_RESULT).read_text())
        spec = json.loads((d / POINT_JSON).read_text())
        summary = json.loads((d / POINT_ANALYSIS_DIR / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    if res.get("status") != "done":
        return None
    cfg, axes, obs = spec.get("config", {}), res.get("axes", {}), res.get("observables", {})
    th, baro = cfg.get("thermostat", {}), cfg.get("barostat", {})
    method = str(axes.get("bath", th.get("kind", "nve")))
    hyd = spec.get("analysis", {}).get("hydrogen", "H")
    diff = summary.get("diffusion", {})
    species = hyd if hyd in diff else (next(iter(diff)) if diff else hyd)
    dh = diff.get(species, {})
    n_atoms = int(res.get("n_atoms") or summary.get("n_atoms"))
    eq, prod = int(res.get("equilibration_steps", 0)), int(res.get("production_steps", 0))
    dt = _f(cfg.get("md", {}).get("timestep_fs"))
    row = {"method": method, "temperature_K": _f(axes.get("temperature_K", th.get("temperature_K"))),
           "pressure_GPa": _f(axes.get("pressure_GPa", baro.get("pressure_GPa"))), "n_atoms": n_atoms}
    if method in FRICTION_BATHS:
        damp = th.get("damp_fs")
        if damp is None:
            from dpqtb.md.config import DEFAULT_DAMP_fs, DEFAULT_DAMP_fs_BY_KIND

            damp = DEFAULT_DAMP_fs_BY_KIND.get(method, DEFAULT_DAMP_fs)
        # rounded to 9 significant digits: damp_fs = 33.33333333 is γ = 30/ps, and a grouping key must not
        # split 30.000000003 from 30.0
        row["gamma_per_ps"] = float(f"{1000.0 / float(damp):.9g}")
    if method in BEAD_BATHS:
        row["beads"] = int(th.get("beads", 1))
    prime = _plateau(d / POINT_ANALYSIS_DIR / "msd_prime.csv", f"msd_prime_{species}_A2")
    if not _finite(prime[0]):
        prime = (_f(summary.get("msd_prime_final_A2")), math.nan)
    kin = _kinetic_per_atom_meV(d, eq, n_atoms)
    row.update({
        "seed": axes.get("seed", res.get("md_seed")), "md_seed": res.get("md_seed"),
        "D_H_cm2_per_s": _f(dh.get("D_cm2_per_s")), "D_H_err_cm2_per_s": _f(dh.get("D_err_cm2_per_s")),
        "msd_prime_plateau_A2": prime[0], "msd_prime_plateau_err_A2": prime[1],
        "exchanges": dict((summary.get("exchanges") or {}).get("classes") or {}),
        "K_per_atom_meV": kin[0], "K_per_atom_err_meV": kin[1], "fd_ratio_H": fd_ratio(d, species),
        "theta_deg": _f(obs.get("theta_frames_deg")), "distortion_avg_deg": _f(obs.get("distortion_avg_deg")),
        "V_A3": _f(obs.get("V_A3")), "V_A3_err": _f(obs.get("V_A3_err")),
        # the cell under constant pressure ("isotropic", "flexible", ...; None at a fixed cell)
        "barostat_cell": (str(baro.get("cell", "isotropic")) if baro.get("pressure_GPa") is not None
                          or baro.get("stress_GPa") is not None else None),
        "E_per_3NkB_K": _f(obs.get("E_per_3NkB_K")), "E_per_3NkB_raw_K": _f(obs.get("E_per_3NkB_raw_K")),
        "T_zero_K": _f(obs.get("T_zero_K")),
        "production_ps": prod * dt / 1000.0 if _finite(dt) else math.nan,
        "species": species, "hash": res.get("hash", d.name), "dir": str(d),
        "analysis_version": _analysis_version(res, summary)})
    return row


def _analysis_version(result: dict, summary: dict) -> int:
    """The analysis version a point's numbers come from: result.json's, or the older of it and
    analysis/summary.json's where they differ (a re-analysis stopped between its two writes)."""
    from dpqtb.workflows.sweep import analysis_version

    v, s = analysis_version(result), summary.get("analysis_version")
    return min(v, s) if isinstance(s, int) else v


def collect_rows(sweep_dirs) -> list[dict]:
    """Every finished point of the sweep directories, sorted by method, T, γ, beads, size, seed."""
    rows = []
    for sd in sweep_dirs:
        pts = Path(sd) / SWEEP_POINTS_DIR
        for p in sorted(pts.iterdir()) if pts.is_dir() else []:
            r = point_row(p)
            if r is not None:
                rows.append(r)
    rows.sort(key=lambda r: (r["method"], r["pressure_GPa"], r["temperature_K"], r.get("gamma_per_ps", 0),
                             r.get("beads", 0), r["n_atoms"], str(r["seed"])))
    return rows


def _point_label(axes: dict) -> str:
    """A planned point in a few words: ``qtb 5 K γ=10/ps``, ``trpmd 200 K 8 beads``, ``qtb 5 K [2, 2, 2]``."""
    words = [str(axes.get("bath", "")), f"{axes['temperature_K']:g} K" if "temperature_K" in axes else ""]
    if "pressure_GPa" in axes:
        words.append(f"{axes['pressure_GPa']:g} GPa")
    damp = axes.get("thermostat.damp_fs")
    if damp:
        words.append(f"γ={1000.0 / float(damp):.3g}/ps")
    if axes.get("thermostat.beads"):
        words.append(f"{axes['thermostat.beads']} beads")
    if axes.get("supercell"):
        words.append(str(list(axes["supercell"])))
    if axes.get("seed") is not None:
        words.append(f"seed {axes['seed']}")
    return " ".join(w for w in words if w)


def sweep_meta(sweep_dir, metas: dict | None = None) -> dict:
    """A sweep's ``sweep.json`` ({} where it is missing or unreadable), or ``metas[sweep_dir]`` where given:
    read once per sweep by ``dpqtb paper`` and passed to :func:`planned_points` and
    :mod:`~dpqtb.workflows.paper.collect`'s readers."""
    if metas is not None and sweep_dir in metas:
        return metas[sweep_dir]
    try:
        meta = json.loads((Path(sweep_dir) / SWEEP_JSON).read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def planned_points(sweep_dirs, metas: dict | None = None) -> dict:
    """What the sweeps planned (their ``sweep.json``, or ``metas[dir]`` where given) against what finished:
    ``planned``, ``done`` and ``pending`` (the unfinished points' labels, in the sweep's order: a verdict
    drawn before they finish is provisional)."""
    planned, done, pending = 0, 0, []
    for sd in sweep_dirs:
        points = sweep_meta(sd, metas).get("points", [])
        for p in points if isinstance(points, list) else []:
            if not isinstance(p, dict):
                continue
            planned += 1
            try:
                finished = json.loads((Path(sd) / SWEEP_POINTS_DIR / p["hash"] / POINT_RESULT).read_text()).get(
                    "status") == "done"
            except (OSError, ValueError):
                finished = False
            if finished:
                done += 1
            else:
                pending.append(_point_label(p.get("axes", {})))
    return {"planned": planned, "done": done, "pending": pending}


def _key(r: dict) -> tuple:
    return tuple(r.get(k) for k in GROUP_KEYS)


def combine(values, errors) -> tuple[float, float]:
    """Mean of independent seeds and its error: the larger of the standard error over seeds
    (n ≥ 2) and the block error of the mean, sqrt(Σσ²)/n."""
    v = np.asarray(values, dtype=float)
    e = np.asarray(errors, dtype=float)
    ok = np.isfinite(v)
    if not ok.any():
        return math.nan, math.nan
    v, e = v[ok], e[ok]
    n = len(v)
    block = float(math.sqrt(np.sum(e ** 2)) / n) if np.all(np.isfinite(e)) else math.nan
    seed = float(np.std(v, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    err = np.nanmax([block, seed]) if np.isfinite([block, seed]).any() else math.nan
    return float(v.mean()), float(err)


def group_rows(rows: list[dict]) -> list[dict]:
    """Rows sharing method, T, P, size, γ and beads combined over seeds (:func:`combine`)."""
    groups: dict = {}
    for r in rows:
        groups.setdefault(_key(r), []).append(r)
    out = []
    for key, rs in groups.items():
        g = {k: v for k, v in zip(GROUP_KEYS, key) if v is not None}
        g["n_seeds"] = len(rs)
        g["D_H_cm2_per_s"], g["D_H_err_cm2_per_s"] = combine([r["D_H_cm2_per_s"] for r in rs],
                                                             [r["D_H_err_cm2_per_s"] for r in rs])
        g["msd_prime_plateau_A2"], g["msd_prime_plateau_err_A2"] = combine(
            [r["msd_prime_plateau_A2"] for r in rs], [r["msd_prime_plateau_err_A2"] for r in rs])
        g["K_per_atom_meV"], g["K_per_atom_err_meV"] = combine([r["K_per_atom_meV"] for r in rs],
                                                               [r["K_per_atom_err_meV"] for r in rs])
        g["production_ps"] = min((r.get("production_ps", math.nan) for r in rs), default=math.nan)
        g["V_A3"], g["V_A3_err"] = combine([r.get("V_A3", math.nan) for r in rs], [r.get("V_A3_err", math.nan) for r in rs])
        cells = {r.get("barostat_cell") for r in rs}
        g["barostat_cell"] = cells.pop() if len(cells) == 1 else None
        for k in ("E_per_3NkB_K", "E_per_3NkB_raw_K", "theta_deg", "distortion_avg_deg", "T_zero_K", "fd_ratio_H"):
            v = np.array([r.get(k, math.nan) for r in rs], dtype=float)
            g[k] = float(np.mean(v[np.isfinite(v)])) if np.isfinite(v).any() else math.nan
        ex: dict = {}
        for r in rs:
            for c, n in r.get("exchanges", {}).items():
                ex[c] = ex.get(c, 0) + int(n)
        g["exchanges"] = ex
        g["diffusive"] = diffusive(g["D_H_cm2_per_s"], g["D_H_err_cm2_per_s"])
        out.append(g)
    return out


def weighted_line(x, y, sigma) -> dict:
    """Weighted least squares y = a + b x, weights 1/σ² (σ not rescaled by χ²).

    Returns ``intercept``, ``intercept_err``, ``slope``, ``slope_err``, ``n``; σ_a = sqrt(Sxx/Δ),
    σ_b = sqrt(S/Δ), Δ = S·Sxx − Sx².
    """
    x, y, s = (np.asarray(a, dtype=float) for a in (x, y, sigma))
    if len(x) < 2 or len(set(x.tolist())) < 2:
        raise InputError("the γ → 0 fit needs at least two different γ")
    if not np.all(np.isfinite(s) & (s > 0)):
        raise InputError("the γ → 0 fit needs a positive error bar on every D")
    w = 1.0 / s ** 2
    S, Sx, Sxx, Sy, Sxy = w.sum(), (w * x).sum(), (w * x * x).sum(), (w * y).sum(), (w * x * y).sum()
    delta = S * Sxx - Sx ** 2
    return {"intercept": float((Sxx * Sy - Sx * Sxy) / delta), "intercept_err": float(math.sqrt(Sxx / delta)),
            "slope": float((S * Sxy - Sx * Sy) / delta), "slope_err": float(math.sqrt(S / delta)), "n": int(len(x))}


def gamma_extrapolations(groups: list[dict]) -> list[dict]:
    """D(γ) → γ = 0 for every (method, T, P, size) with ≥ 2 values of γ (QTB and adQTB)."""
    by: dict = {}
    for g in groups:
        if g["method"] in ("qtb", "adqtb") and _finite(g["D_H_cm2_per_s"]) and _finite(g["D_H_err_cm2_per_s"]) \
                and g["D_H_err_cm2_per_s"] > 0:
            by.setdefault((g["method"], g["temperature_K"], g["pressure_GPa"], g["n_atoms"]), []).append(g)
    out = []
    for (m, t, p, n), gs in sorted(by.items()):
        if len({g["gamma_per_ps"] for g in gs}) < 2:
            continue
        fit = weighted_line([g["gamma_per_ps"] for g in gs], [g["D_H_cm2_per_s"] for g in gs],
                            [g["D_H_err_cm2_per_s"] for g in gs])
        out.append({"method": m, "temperature_K": t, "pressure_GPa": p, "n_atoms": n,
                    "gamma_per_ps": sorted(g["gamma_per_ps"] for g in gs),
                    "D0_cm2_per_s": fit["intercept"], "D0_err_cm2_per_s": fit["intercept_err"],
                    "slope_cm2_per_s_ps": fit["slope"], "slope_err_cm2_per_s_ps": fit["slope_err"],
                    "D0_diffusive": diffusive(fit["intercept"], fit["intercept_err"])})
    return out


#: atoms in the conventional cell of Fm-3m LaH10 (4 La + 40 H): a cell of 44·k³ atoms is k×k×k of it
CONVENTIONAL_ATOMS = 44


def quantum_expansion(groups: list[dict]) -> list[dict]:
    """The lattice constant of every constant-pressure group against the classical (Langevin) group at the
    same T, P and size: the quantum (zero-point and thermal-quantum) expansion each bath gives.

    a = (V/k³)^(1/3) for a cell of 44·k³ atoms (k×k×k conventional cells; other sizes are left out),
    σ_a = a σ_V/(3V); the expansion Δa = a − a_classical with σ = sqrt(σ_a² + σ_a,cl²), and 100 Δa/a_classical
    in %. PIMD/TRPMD volumes are those of the (shared) cell under the centroid-virial pressure. Only groups
    whose cell was isotropic under a barostat (a cubic cell stays cubic) take part; where several Langevin
    groups share T, P and size, the reference is the one with the longest production, then the smallest γ
    (``classical_gamma_per_ps`` says which).

    Returns
    -------
    list of dict
        ``method``, ``temperature_K``, ``pressure_GPa``, ``n_atoms``, ``gamma_per_ps``?, ``beads``?,
        ``production_ps``, ``V_A3`` (+ ``_err``), ``a_A`` (+ ``_err``), ``a_classical_A`` (+ ``_err``),
        ``expansion_A`` (+ ``_err``), ``expansion_percent`` (+ ``_err``); sorted by T, P, size, method, γ, beads.
    """
    def lattice(g):
        n, v, s = g["n_atoms"], g.get("V_A3", math.nan), g.get("V_A3_err", math.nan)
        k = round((n / CONVENTIONAL_ATOMS) ** (1.0 / 3.0))
        if k < 1 or CONVENTIONAL_ATOMS * k ** 3 != n or not _finite(v) or v <= 0:
            return None
        a = (v / k ** 3) ** (1.0 / 3.0)
        return a, (a * s / (3.0 * v) if _finite(s) else math.nan)

    def npt(g):
        return g.get("barostat_cell") == "isotropic"

    ref = {}
    for g in groups:
        if g["method"] == "langevin" and npt(g) and lattice(g) is not None:
            key = (g["temperature_K"], g["pressure_GPa"], g["n_atoms"])
            rank = (-_finite_or(g.get("production_ps"), -1.0), g.get("gamma_per_ps", math.inf))
            if key not in ref or rank < ref[key][0]:
                ref[key] = (rank, g)
    out = []
    for g in groups:
        c = ref.get((g["temperature_K"], g["pressure_GPa"], g["n_atoms"]), (None, None))[1]
        la = lattice(g)
        if g["method"] in CLASSICAL or c is None or la is None or not npt(g):
            continue
        (a, sa), (ac, sc) = la, lattice(c)
        da, sda = a - ac, math.hypot(sa, sc)
        row = {k: g[k] for k in GROUP_KEYS if k in g}
        row.update({"classical_gamma_per_ps": c.get("gamma_per_ps"), "production_ps": g.get("production_ps", math.nan), "V_A3": g["V_A3"],
                    "V_A3_err": g.get("V_A3_err", math.nan), "a_A": a, "a_err_A": sa, "a_classical_A": ac,
                    "a_classical_err_A": sc, "expansion_A": da, "expansion_err_A": sda,
                    "expansion_percent": 100.0 * da / ac, "expansion_err_percent": 100.0 * sda / ac})
        out.append(row)
    out.sort(key=lambda r: (r["temperature_K"], r["pressure_GPa"], r["n_atoms"], r["method"],
                            r.get("gamma_per_ps", 0), r.get("beads", 0)))
    return out


def _finite_or(x, default: float) -> float:
    return float(x) if _finite(x) else default


def _longest(g: dict) -> tuple:
    """Rank of a group as the source of D and exchanges: the longest production, then the most beads."""
    p = g.get("production_ps", math.nan)
    return (p if _finite(p) else -1.0, g.get("beads", 0))


def trotter_extrapolation(p_a: int, k_a: float, s_a: float, p_b: int, k_b: float, s_b: float) -> dict:
    """K(P) = K∞ − c/P² through two bead counts p_a < p_b (the Trotter error of the ring polymer is O(1/P²)):
    K∞ = (p_b² K_b − p_a² K_a)/(p_b² − p_a²) and the largest count's relative residual
    r = (K∞ − K_b)/K∞ = w (K_b − K_a)/K∞ with w = p_a²/(p_b² − p_a²) (1/3 for a doubling), σ_r = w σ_diff/K∞
    (independent runs). Exact for K(P) = K∞ − c/P²; for harmonic modes the higher orders make r a slight
    underestimate at small P (docs/paper.md)."""
    w = p_a * p_a / (p_b * p_b - p_a * p_a)
    k_inf = k_b + w * (k_b - k_a)
    return {"K_inf_meV_per_atom": k_inf, "K_inf_err_meV_per_atom": math.hypot((1 + w) * s_b, w * s_a),
            "residual_rel": (k_inf - k_b) / k_inf, "residual_rel_err": w * math.hypot(s_a, s_b) / abs(k_inf)}


def bead_convergence(groups: list[dict]) -> list[dict]:
    """K_cv vs beads per (method, T, P, size). Converged when the largest bead count is within 1 % of the
    1/P²-extrapolated limit of the two largest counts at 2σ (|r| + 2σ_r < 1 %, :func:`trotter_extrapolation`):
    two close counts that agree say little (8 vs 10 beads 0.9 % apart leave 1.6 %), a doubling that moves
    by 1.1 % leaves 0.37 %. D_H is that of the longest run (then the most beads: short runs for K_cv(P)
    beside one long run for the centroid MSD)."""
    by: dict = {}
    for g in groups:
        if g["method"] in BEAD_BATHS:
            by.setdefault((g["method"], g["temperature_K"], g["pressure_GPa"], g["n_atoms"]), []).append(g)
    out = []
    for (m, t, p, n), gs in sorted(by.items()):
        gs = sorted(gs, key=lambda g: g["beads"])
        conv, ext = None, None
        if len(gs) >= 2 and gs[-2]["beads"] < gs[-1]["beads"]:
            a, b = gs[-2], gs[-1]
            ext = trotter_extrapolation(a["beads"], a["K_per_atom_meV"], a["K_per_atom_err_meV"],
                                        b["beads"], b["K_per_atom_meV"], b["K_per_atom_err_meV"])
            conv = bool(abs(ext["residual_rel"]) + KCV_N_SIGMA * ext["residual_rel_err"] < KCV_REL_TOL)
        d = max(gs, key=_longest)
        out.append({"method": m, "temperature_K": t, "pressure_GPa": p, "n_atoms": n,
                    "beads": [g["beads"] for g in gs], "K_cv_meV_per_atom": [g["K_per_atom_meV"] for g in gs],
                    "K_cv_err_meV_per_atom": [g["K_per_atom_err_meV"] for g in gs],
                    "production_ps": [g.get("production_ps", math.nan) for g in gs], "converged": conv,
                    "extrapolation": ext,
                    "D_beads": d["beads"], "D_H_cm2_per_s": d["D_H_cm2_per_s"],
                    "D_H_err_cm2_per_s": d["D_H_err_cm2_per_s"], "diffusive": d["diffusive"]})
    return out


def harmonic_kinetic(rows: list[dict], temperature_K: float, pressure_GPa: float, n_atoms: int,
                     beads: list[int]) -> dict | None:
    """The harmonic reference of a bead ladder: K per atom (meV) that P beads give for the modes of a
    classical run at the same T, P and size (its ``analysis/vdos.csv`` per species, the species counts of
    its ``summary.json``; :func:`dpqtb.analysis.vdos.ring_polymer_kinetic_energy`), for each P of ``beads``
    and P → ∞. None when no such classical run has a VDOS. Independent of the path-integral runs: it
    says how far from converged a measured K_cv(P) should be if the modes were harmonic."""
    from dpqtb.analysis.vdos import ring_polymer_kinetic_energy

    for r in rows:
        if r["method"] not in CLASSICAL or (r["temperature_K"], r["pressure_GPa"], r["n_atoms"]) != \
                (temperature_K, pressure_GPa, n_atoms):
            continue
        d = Path(r["dir"]) / POINT_ANALYSIS_DIR
        try:
            counts = json.loads((d / "summary.json").read_text())["species"]
            with open(d / "vdos.csv", newline="") as fh:
                table = list(csv.DictReader(fh))
            f = np.array([float(x["freq_THz"]) for x in table])
            g = {s: np.array([float(x[f"g_{s}_per_THz"]) for x in table]) for s in counts}
        except (OSError, ValueError, KeyError):
            continue
        n = sum(counts.values())

        def k_cell(p):
            return 1000.0 * sum(counts[s] * 3.0 * ring_polymer_kinetic_energy(f, g[s], temperature_K, p)
                                for s in counts) / n

        return {"source": r["hash"], "K_meV_per_atom": [k_cell(p) for p in beads], "K_inf_meV_per_atom": k_cell(None)}
    return None


def harmonic_residual_check(bead: dict) -> None:
    """How far the 1/P² extrapolation of the two largest bead counts misses on the harmonic ladder of the same
    modes (``bead["harmonic"]``, :func:`harmonic_kinetic`), where the answer is known: its true residual
    (K∞ − K(P_b))/K∞ and the one the two-count extrapolation gives, in ``bead["harmonic"]``; and the measured
    residual scaled by their ratio, ``bead["extrapolation"]["residual_rel_harmonic_scaled"]``. Higher orders than
    1/P² make the estimate low at small P (one mode at ħω/k_BT = 20: 3.59 vs 4.55 % at 16/32 beads, 1.12 vs 1.20 %
    at 32/64).
    Informative only: the convergence rule stays the one fixed before the runs."""
    h, e = bead.get("harmonic"), bead.get("extrapolation")
    if not h or not e or len(bead["beads"]) < 2:
        return
    pa, pb = bead["beads"][-2], bead["beads"][-1]
    ka, kb = h["K_meV_per_atom"][-2], h["K_meV_per_atom"][-1]
    est = trotter_extrapolation(pa, ka, 0.0, pb, kb, 0.0)["residual_rel"]
    true = (h["K_inf_meV_per_atom"] - kb) / h["K_inf_meV_per_atom"]
    h["residual_rel_true"], h["residual_rel_by_1_over_P2"] = true, est
    if est > 1e-4:  # a ladder already converged to 0.01 % says nothing about the miss
        e["residual_rel_harmonic_scaled"] = e["residual_rel"] * true / est


def exchange_statistics(groups: list[dict], temperature_K: float = FIG4_TEMPERATURE_K,
                        pressure_GPa: float = VERDICT_PRESSURE_GPA) -> dict:
    """Fig. 4's classes (none / one / several) per method at the Fig. 4 condition, the largest cell
    (then the longest run, then the most beads), summed over seeds; with the fractions."""
    best: dict = {}
    for g in groups:
        if g["temperature_K"] != temperature_K or g["pressure_GPa"] != pressure_GPa or not g["exchanges"]:
            continue
        label = g["method"] + (f" γ={g['gamma_per_ps']:g}/ps" if "gamma_per_ps" in g else "")
        rank = (g["n_atoms"], *_longest(g))
        if label not in best or rank > best[label][0]:
            best[label] = (rank, g)
    out = {}
    for label, (_, g) in sorted(best.items()):
        total = sum(g["exchanges"].values())
        out[label] = {**g["exchanges"], "n_atoms": g["n_atoms"],
                      "fractions": {c: n / total for c, n in g["exchanges"].items()} if total else {}}
    return out
