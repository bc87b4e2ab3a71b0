"""``report.html``: one self-contained file (figures base64-embedded), each of the paper's tables and
figures beside the paper's own numbers (:mod:`dpqtb.workflows.paper.reference`), and the verdict.

Every section is ``<section id="…">`` with one of :data:`SECTIONS`; a section whose stage has no data
says ``missing:`` and how to produce it — no number is ever made up.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from dpqtb.workflows.paper import figures as F
from dpqtb.workflows.paper.verdict import VERDICT_PRESSURE_GPA
from dpqtb.workflows.sweep_plots import model_trusted

SECTIONS = ("table1", "fig1a", "fig1cd", "fig2", "fig3", "fig4", "fig5", "fig6", "verdict", "runs")
TITLES = {"table1": "Table I — lattice of Fm-3m at 0 K, DFT vs DP", "fig1a": "Fig. 1a — enthalpy of distorted phases vs P",
          "fig1cd": "Fig. 1c–d — DP vs DFT parity (energies, forces)", "fig2": "Fig. 2a–b — cage distortion θ(P, T)",
          "fig3": "Fig. 3a–b — E/3Nk_B vs T, zero-point temperature vs P",
          "fig4": "Fig. 4 — proton exchanges (none / one / several) at 200 K, 200 GPa",
          "fig5": "Fig. 5 — MSD and reordered MSD′ at 5 K, 200 GPa (QTB)",
          "fig6": "Fig. 6 — La–H pRDF, classical vs quantum at the lowest temperature",
          "verdict": "Verdict — is the zero-point proton diffusion real on this model?", "runs": "Every run"}
CSS = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}table{border-collapse:collapse;"
       "margin:.5em 0}td,th{border:1px solid #bbb;padding:2px 6px;font-size:90%}th{background:#eee}"
       ".missing{color:#a00;font-weight:bold}.verdict{font-size:120%;background:#ffd;padding:.5em;"
       "border:1px solid #cc8}img{max-width:100%}.src{color:#555;font-size:85%}")


def num(x, fmt: str = ".6g") -> str:
    """A number as the report writes it (``–`` for None/NaN)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return html.escape(str(x))
    return format(x, fmt)


def _esc(s) -> str:
    return html.escape(str(s))


def _table(header: list[str], rows: list[list]) -> str:
    h = "".join(f"<th>{_esc(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, str) else num(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _img(uri: str | None, alt: str) -> str:
    return f'<img alt="{_esc(alt)}" src="{uri}">' if uri else ""


def missing(how: str) -> str:
    return f'<p class="missing">missing: {_esc(how)}</p>'


def _ratio(a, b) -> float:
    try:
        return a / b if b else math.nan
    except TypeError:
        return math.nan


def _src(ref: dict, key: str) -> str:
    e = ref["numbers"].get(key, {})
    return f'<p class="src">paper: {_esc(e.get("source", ""))}{" — " + _esc(e["note"]) if e.get("note") else ""}</p>'


# ------------------------------------------------------------------------------------ sections
def sec_table1(val: dict | None, ref: dict) -> str:
    t1 = (val or {}).get("table1", {}).get("pressures", {})
    if "300" not in t1:
        return missing("the model validation report (dpqtb validate → docs/validation_builtin/report.json, table1)")
    pd, pp = ref["numbers"]["table1_dft"]["value"], ref["numbers"]["table1_dp"]["value"]
    ours = t1["300"]
    rows = []
    for k in pd:
        od, op = ours["dft"].get(k, math.nan), ours["dp"].get(k, math.nan)
        rows.append([k, od, pd[k], od - pd[k], op, pp[k], op - pp[k], op - od])
    out = "<p>Ours at 300 GPa (the pressure at which our PBE a matches the paper's 4.749 Å; the paper states none).</p>"
    out += _table(["quantity", "our DFT", "paper DFT", "diff", "our DP", "paper DP", "diff", "our DP − our DFT"], rows)
    if "200" in t1:
        out += "<p>Ours at 200 GPa (the verdict pressure):</p>" + _table(
            ["quantity", "our DFT", "our DP", "DP − DFT"],
            [[k, t1["200"]["dft"].get(k, math.nan), t1["200"]["dp"].get(k, math.nan),
              t1["200"]["dp"].get(k, math.nan) - t1["200"]["dft"].get(k, math.nan)] for k in pd])
    return out + _src(ref, "table1_dft") + _src(ref, "table1_pressure_GPa")


def sec_fig1a(val: dict | None, ref: dict) -> str:
    rows = ((val or {}).get("phases") or {}).get("rows") or []
    if not rows:
        return missing("symmetry-lowering relaxations (scripts/relax_phases.sh, docs/phases.md) in the validation report")
    out = _img(F.fig_enthalpy(rows), "enthalpy vs pressure")
    out += ("<p>Reference: Fm-3m relaxed the same way, in the same cell (11 or 44 atoms; the paper's Fig. 1a uses "
            "C2 as reference).</p>")
    out += _table(["structure", "P (GPa)", "atoms", "DFT group", "ΔH PBE (meV/atom)", "ΔH DP (meV/atom)", "DP − PBE"],
                  [[r["name"], r["pressure_GPa"], r.get("natoms", 11), r.get("space_group_dft", ""), r["dH_dft_meV_per_atom"],
                    r["dH_dp_meV_per_atom"], r["dH_dp_meV_per_atom"] - r["dH_dft_meV_per_atom"]] for r in rows])
    return out + _src(ref, "fig1a_low_enthalpy_range_GPa") + f'<p class="src">{_esc(ref["figure_only"]["fig1a"])}</p>'


def sec_fig1cd(val: dict | None, val_dir: Path | None, ref: dict) -> str:
    test = (val or {}).get("test")
    if not test:
        return missing("the model validation report (dpqtb validate → docs/validation_builtin/report.json)")
    n = ref["numbers"]
    out = _table(["quantity", "ours (held-out test set)", "paper", "ratio ours/paper"],
                 [["energy RMSE (meV/atom)", test["rmse_e_meV_per_atom"], n["rmse_e_meV_per_atom"]["value"],
                   _ratio(test["rmse_e_meV_per_atom"], n["rmse_e_meV_per_atom"]["value"])],
                  ["force RMSE (eV/Å)", test["rmse_f_eV_per_A"], n["rmse_f_eV_per_A"]["value"],
                   _ratio(test["rmse_f_eV_per_A"], n["rmse_f_eV_per_A"]["value"])],
                  ["test frames", test.get("frames"), "–", "–"]])
    if val_dir is not None:
        for name in ("parity_energy.png", "parity_force.png"):
            out += _img(F.embed_png(val_dir / name), name)
    return out + _src(ref, "rmse_e_meV_per_atom")


#: the cage counts as cubic when |θ − 90°| of the time-averaged structure is below this (degrees)
CUBIC_TOL_DEG = 1.0


def cubic_boundary(groups: list[dict], method: str) -> float:
    """The lowest pressure from which on (every higher pressure too) the cage is cubic at every
    temperature run for ``method`` (NaN when none is, or fewer than two pressures were run)."""
    by: dict = {}
    for g in groups:
        if g["method"] == method and math.isfinite(g.get("distortion_avg_deg", math.nan)):
            by.setdefault(g["pressure_GPa"], []).append(g["distortion_avg_deg"])
    best = math.nan
    if len(by) < 2:
        return best
    for p in sorted(by, reverse=True):
        if max(by[p]) >= CUBIC_TOL_DEG:
            break
        best = p
    return best


def _trust_note(trusted_from: float) -> str:
    """The sweeps' ``[plots] model_trusted_from_GPa`` said once (nothing without one)."""
    if not math.isfinite(trusted_from):
        return ""
    return (f"<p><b>Model limit:</b> below {num(trusted_from)} GPa the model misorders the distorted phases "
            "(docs/phases.md); results there (hatched or shaded in the figures, 'no' in the tables' 'model trusted' "
            "column) are the model's, not LaH10's.</p>")


def _trusted(p: float, trusted_from: float) -> str:
    return "yes" if model_trusted(p, trusted_from) else "no"


def sec_fig2(groups: list[dict], sweep_figs: dict, ref: dict, trusted_from: float = math.nan,
             plan: dict | None = None) -> str:
    out = "".join(_img(sweep_figs.get(k), k) for k in ("fig2a_distortion", "fig2b_face_angles"))
    if plan and plan.get("pending"):
        out = (f"<p><b>Provisional:</b> {plan['done']} of {plan['planned']} points of the P–T sweep have finished "
               "(dpqtb paper resumes it).</p>") + out
    pc, pq = cubic_boundary(groups, "langevin"), cubic_boundary(groups, "qtb")
    n = ref["numbers"]
    if any(math.isfinite(x) for x in (pc, pq)):
        out += _table(["quantity", "ours", "paper", "difference (GPa)", "model trusted at ours"],
                      [[f"lowest P (GPa) cubic at every T run (|θ−90°| < {CUBIC_TOL_DEG:g}°), classical", pc,
                        n["cubic_stable_classical_min_P_GPa"]["value"], pc - n["cubic_stable_classical_min_P_GPa"]["value"],
                        _trusted(pc, trusted_from) if math.isfinite(pc) else "–"],
                       ["the same, QTB", pq, n["qtb_cubic_min_P_GPa"]["value"], pq - n["qtb_cubic_min_P_GPa"]["value"],
                        _trusted(pq, trusted_from) if math.isfinite(pq) else "–"]])
    if out:
        out += _trust_note(trusted_from)
    if not out:
        return missing("the P–T sweep: dpqtb paper (stage pt: examples/pt_lah10_small.toml, full: "
                       "examples/sweep_lah10.toml), or dpqtb sweep FILE then dpqtb paper --from DIR")
    return out + _src(ref, "cubic_stable_classical_min_P_GPa") + _src(ref, "fig2b_transition_T_K") \
        + _src(ref, "qtb_cubic_min_P_GPa")


def sec_fig3(groups: list[dict], sweep_figs: dict, zp: dict | None, ref: dict, qha: dict | None = None,
             trusted_from: float = math.nan) -> str:
    out = "".join(_img(sweep_figs.get(k), k) for k in ("fig3a_energy", "fig3b_t_zero"))
    paper_zpe = ref["numbers"]["fig3a_zero_point_energy_K"]["value"]
    q = [g for g in groups if g["method"] in ("qtb", "adqtb") and math.isfinite(g.get("E_per_3NkB_K", math.nan))]
    if q:
        t = min(g["temperature_K"] for g in q)
        # the paper's QTB (LAMMPS fix qtb) has no kinetic correction: its like-for-like number is ours uncorrected
        out += _table(["method", "T (K)", "P (GPa)", "γ (1/ps)", "atoms", "production (ps)", "E/3Nk_B (K), ours",
                       "ours, uncorrected K (as fix qtb)", "paper (~, Fig. 3a)", "ratio (uncorrected)", "model trusted"],
                      [[g["method"], g["temperature_K"], g["pressure_GPa"], g.get("gamma_per_ps"), g["n_atoms"],
                        g.get("production_ps"), g["E_per_3NkB_K"], g.get("E_per_3NkB_raw_K", math.nan), paper_zpe,
                        _ratio(g.get("E_per_3NkB_raw_K", math.nan), paper_zpe), _trusted(g["pressure_GPa"], trusted_from)]
                       for g in sorted(q, key=lambda g: (g["pressure_GPa"], g["method"])) if g["temperature_K"] == t])
    tz = [g for g in groups if g["method"] == "qtb" and math.isfinite(g.get("T_zero_K", math.nan))]
    if tz:
        t0 = min(g["temperature_K"] for g in tz)
        tz = [g for g in tz if g["temperature_K"] == t0]
        # one series: the friction and cell size found at the most pressures (the P-T sweep's), not a mean over
        # the verdict's γ and sizes at its one pressure
        at = {}
        for g in tz:
            at.setdefault((g.get("gamma_per_ps"), g.get("n_atoms")), set()).add(g["pressure_GPa"])
        gamma, n_atoms = max(at, key=lambda k: (len(at[k]), k[1] or 0))
        by_p: dict = {}
        for g in tz:
            if (g.get("gamma_per_ps"), g.get("n_atoms")) == (gamma, n_atoms):
                by_p.setdefault(g["pressure_GPa"], []).append(g["T_zero_K"])
        ps = sorted(by_p)
        vals = [sum(by_p[p]) / len(by_p[p]) for p in ps]
        rising = "yes" if len(vals) > 1 and all(b > a for a, b in zip(vals, vals[1:])) else (
            "no" if len(vals) > 1 else "one pressure only")
        out += (f"<p>T_zero of QTB at {num(t0)} K (Fig. 3b; γ = {num(gamma)}/ps, {n_atoms} atoms): increases with "
                f"pressure — ours: {rising}; paper: yes.</p>")
        out += _table(["P (GPa)", "T_zero (K)", "model trusted"],
                      [[p, v, _trusted(p, trusted_from)] for p, v in zip(ps, vals)])
        if ps and ps[0] < trusted_from:
            out += _trust_note(trusted_from)
    rows = [r for r in (zp or {}).get("rows", []) if "zero_point_pressure_GPa" in r]
    harm = {float(p["pressure_GPa"]): p for p in (qha or {}).get("pressures", [])}
    if rows:
        out += ("<p>Zero-point pressure and expansion, 44 atoms, 5 K, QTB vs classical (data/npt/zero_point_expansion.json)"
                + (", beside the quasi-harmonic phonons of the same model (data/npt/qha_zero_point.json: the harmonic "
                   "reference; imaginary modes mean the static Fm-3m is not a harmonic minimum and the QHA is invalid)"
                   if harm else "") + ":</p>")

        def qh(r, key):
            h = harm.get(float(r["pressure_GPa"]))
            return None if h is None else h[key]

        out += _table(["P (GPa)", "zero-point pressure (GPa)", "±", "a classical (Å)", "a QTB (Å)", "expansion (%)"]
                      + (["QHA zero-point pressure (GPa)", "QHA expansion (%)", "QHA imaginary modes (fraction)"]
                         if harm else []),
                      [[r["pressure_GPa"], r["zero_point_pressure_GPa"], r["zero_point_pressure_err_GPa"],
                        r["a_classical_A"], r["a_qtb_A"], r["zero_point_expansion_percent"]]
                       + ([qh(r, "zero_point_pressure_GPa"), qh(r, "zero_point_expansion_percent"),
                           qh(r, "imaginary_fraction_max")] if harm else []) for r in rows])
    if not out:
        return missing("QTB runs at low T (the P–T sweep, or the verdict sweep's 5 K points) and data/npt/zero_point_expansion.json")
    if not q:
        out += missing("E/3Nk_B of QTB at low T: the verdict or P–T sweep")
    return out + _src(ref, "fig3a_zero_point_energy_K") + _src(ref, "fig3b_trend")


def sec_fig4(verdict: dict, ref: dict) -> str:
    ex = verdict.get("exchange_statistics") or {}
    if not ex:
        return missing("runs at 200 K, 200 GPa with the cage analysis (the verdict sweep, examples/verdict_lah10_small.toml)")
    rows = []
    for label, e in ex.items():
        fr = e.get("fractions", {})
        rows.append([label, e["n_atoms"]] + [x for c in ("none", "one", "several")
                                             for x in (e.get(c, 0), fr.get(c, math.nan))])
    return _table(["method", "atoms", "none", "fraction", "one", "fraction", "several", "fraction"], rows) \
        + _src(ref, "fig4_classes")


def _pick(groups, rows, method, t, p):
    gs = [g for g in groups if g["method"] == method and g["temperature_K"] == t and g["pressure_GPa"] == p]
    if not gs:
        return None, None
    g = max(gs, key=lambda g: (g["n_atoms"], -g.get("gamma_per_ps", 0)))
    r = next(r for r in rows if all(r.get(k) == g.get(k) for k in ("method", "temperature_K", "pressure_GPa",
                                                                    "n_atoms", "gamma_per_ps", "beads")))
    return g, r


def sec_fig5(groups: list[dict], rows: list[dict], ref: dict) -> str:
    cond = ref["numbers"]["fig5_condition"]["value"]
    qt = [g for g in groups if g["method"] == "qtb" and g["pressure_GPa"] == cond["pressure_GPa"]]
    if not qt:
        return missing("QTB at 5 K and 200 GPa (the verdict sweep, examples/verdict_lah10_small.toml)")
    t = cond["temperature_K"] if any(g["temperature_K"] == cond["temperature_K"] for g in qt) \
        else min(g["temperature_K"] for g in qt)
    g, r = _pick(groups, rows, "qtb", t, cond["pressure_GPa"])
    paper = ref["numbers"]["D_H_cm2_per_s"]["value"]
    sel = sorted((h for h in qt if h["temperature_K"] == t), key=lambda h: (h["n_atoms"], h["gamma_per_ps"]))
    out = _table(["T (K)", "atoms", "γ (1/ps)", "seeds", "D_H ours (cm²/s)", "±", "paper", "ratio", "MSD′ plateau (Å²)", "±"],
                 [[h["temperature_K"], h["n_atoms"], h["gamma_per_ps"], h["n_seeds"], h["D_H_cm2_per_s"],
                   h["D_H_err_cm2_per_s"], paper, _ratio(h["D_H_cm2_per_s"], paper), h["msd_prime_plateau_A2"],
                   h["msd_prime_plateau_err_A2"]] for h in sel])
    out += _img(F.fig_msd(Path(r["dir"]), r["species"]), "MSD")
    return out + _src(ref, "D_H_cm2_per_s") + _src(ref, "fig5_msd_prime")


def sec_fig6(groups: list[dict], rows: list[dict], ref: dict) -> str:
    p = VERDICT_PRESSURE_GPA
    both = [g for g in groups if g["pressure_GPa"] == p and g["method"] in ("langevin", "qtb")]
    ts = sorted({g["temperature_K"] for g in both if g["method"] == "langevin"}
                & {g["temperature_K"] for g in both if g["method"] == "qtb"})
    if not ts:
        return missing("classical Langevin and QTB at the same low temperature and 200 GPa (verdict sweep: 5 K small, 1 K full)")
    curves = []
    for m in ("langevin", "qtb"):
        g, r = _pick(groups, rows, m, ts[0], p)
        curves.append((f"{m} {ts[0]:g} K", Path(r["dir"])))
    bead = [g for g in groups if g["pressure_GPa"] == p and g["method"] in ("pimd", "trpmd")]
    if bead:  # the path-integral structure (centroids) at its lowest temperature, most beads
        g = min(bead, key=lambda g: (g["temperature_K"], -g["beads"], -g["n_atoms"]))
        _, r = _pick([g], rows, g["method"], g["temperature_K"], p)
        curves.append((f"{g['method']} {g['temperature_K']:g} K, {g['beads']} beads (centroids)", Path(r["dir"])))
    uri, peaks = F.fig_rdf(curves)
    if uri is None:
        return missing("rdf.csv of the analysis of the 1 K points")
    out = _img(uri, "pRDF") + _table(["curve", "largest peak at (Å)", "its FWHM (Å)"],
                                          [[k, v[0], v[1]] for k, v in peaks.items()])
    return out + _src(ref, "fig6_condition") + _src(ref, "fig6_statement")


def sec_verdict(verdict: dict, groups: list[dict], rows: list[dict]) -> str:
    out = f'<p class="verdict" id="verdict-sentence">{_esc(verdict["verdict"])}</p>'
    out += _table(["status", "mechanisms", "T* (K)", "P* (GPa)", "classical diffusion from (K)", "not checked"],
                  [[verdict["status"], ", ".join(verdict.get("mechanisms", [])) or "–", verdict.get("temperature_K"),
                    verdict.get("pressure_GPa"), verdict.get("classical_onset_K"),
                    "; ".join(verdict.get("not_checked", [])) or "–"]])
    out += "<p>Rules: docs/paper.md, “Verdict rules” (D resolved when D > " \
           f"{num(verdict.get('D_min_cm2_per_s'))} cm²/s and D > {num(verdict.get('n_sigma'))}σ).</p>"
    at_p = sorted((g for g in groups if g["pressure_GPa"] == verdict.get("pressure_GPa")),
                  key=lambda g: (g["method"], g["temperature_K"], g.get("gamma_per_ps", 0), g.get("beads", 0), g["n_atoms"]))
    if at_p:
        out += "<p>Every method at P* (seeds combined; θ and volume: PIMD/TRPMD of the centroids):</p>" + _table(
            ["method", "T (K)", "γ (1/ps)", "beads", "atoms", "seeds", "D_H (cm²/s)", "±", "diffusive",
             "MSD′ plateau (Å²)", "±", "θ (°)", "V (Å³)", "E/3Nk_B (K)", "Σ|Δ_FD|/Σmγ_rC_vv (H)"],
            [[g["method"], g["temperature_K"], g.get("gamma_per_ps"), g.get("beads"), g["n_atoms"], g["n_seeds"],
              g["D_H_cm2_per_s"], g["D_H_err_cm2_per_s"], str(g["diffusive"]), g["msd_prime_plateau_A2"],
              g["msd_prime_plateau_err_A2"], g.get("theta_deg"), g.get("V_A3"), g.get("E_per_3NkB_K"),
              g.get("fd_ratio_H")] for g in at_p])
    ex = verdict.get("gamma_extrapolation") or []
    if ex:
        out += _table(["method", "T (K)", "atoms", "γ values (1/ps)", "D0 (γ→0)", "±", "slope", "D0 resolved"],
                      [[e["method"], e["temperature_K"], e["n_atoms"], ", ".join(num(x) for x in e["gamma_per_ps"]),
                        e["D0_cm2_per_s"], e["D0_err_cm2_per_s"], e["slope_cm2_per_s_ps"], str(e["D0_diffusive"])]
                       for e in ex])
    else:
        out += missing("QTB at ≥ 2 friction values γ (verdict sweep) for D vs γ and its γ → 0 limit")
    out += _img(F.fig_d_vs_gamma(groups, ex), "D vs gamma") + _img(F.fig_d_vs_t(groups, VERDICT_PRESSURE_GPA), "D vs T")
    ad = [(f"{r['method']} {r['temperature_K']:g} K γ={r.get('gamma_per_ps', 0):g}", Path(r["dir"]))
          for r in sorted(rows, key=lambda r: (r["method"] != "adqtb", r["temperature_K"]))
          if r["method"] in ("adqtb", "qtb")]
    fd = F.fig_delta_fd(ad[:8]) if ad else None
    out += ("<p>Δ_FD(ω) of H (0 where the fluctuation–dissipation theorem holds; adQTB drives it to 0):</p>"
            + _img(fd, "Delta_FD")) if fd else missing("qtb_fd_H.csv of QTB/adQTB points (verdict sweep)")
    bc = verdict.get("bead_convergence") or []
    if bc:
        def harm(b):
            h = b.get("harmonic")
            return "–" if not h else (", ".join(num(x, ".4g") for x in h["K_meV_per_atom"])
                                      + f"; P → ∞: {num(h['K_inf_meV_per_atom'], '.4g')}")

        def extra(b):
            e = b.get("extrapolation")
            if not e:
                return "–"
            scaled = e.get("residual_rel_harmonic_scaled")
            return (f"{num(e['K_inf_meV_per_atom'], '.5g')} ± {num(e['K_inf_err_meV_per_atom'], '.2g')}; "
                    f"{num(100 * e['residual_rel'], '.2f')} ± {num(100 * e['residual_rel_err'], '.2f')} %"
                    + ("" if scaled is None else f" (scaled by the harmonic ladder's miss: {num(100 * scaled, '.2f')} %)"))

        out += _table(["method", "T (K)", "atoms", "beads", "K_cv ± σ (meV/atom)", "harmonic K(P) (meV/atom)",
                       "production (ps)", "K_cv(P → ∞) by 1/P² (meV/atom); residual of the largest P",
                       "converged (|residual| + 2σ < 1 %)", "D_H from (beads)", "D_H (cm²/s)", "±"],
                      [[b["method"], b["temperature_K"], b["n_atoms"], ", ".join(str(x) for x in b["beads"]),
                        ", ".join(f"{num(x, '.5g')} ± {num(e, '.2g')}" for x, e in
                                  zip(b["K_cv_meV_per_atom"], b["K_cv_err_meV_per_atom"])), harm(b),
                        ", ".join(num(x, "g") for x in b.get("production_ps", [])), extra(b), str(b["converged"]),
                        b.get("D_beads"), b["D_H_cm2_per_s"], b["D_H_err_cm2_per_s"]] for b in bc])
        out += ("<p>Harmonic K(P): what P beads give for the modes of the classical run at the same T, P and size "
                "(its VDOS per species, exact ring-polymer sums; docs/paper.md). A measured K_cv(P) far from it "
                "means anharmonicity or an unconverged run, not necessarily too few beads. K_cv(P → ∞): the two largest "
                "counts through K(P) = K∞ − c/P² (the Trotter error); converged when the largest count's residual "
                "(K∞ − K_cv)/K∞ is below 1 % at 2σ. On the harmonic ladder, where K∞ is known, the same two-count "
                "extrapolation misses the true residual (higher orders than 1/P²); the scaled residual in brackets "
                "multiplies the measured one by that miss (informative: the rule is the one fixed before the runs).</p>")
    else:
        out += missing("TRPMD at ≥ 2 bead counts at 100 and 200 K (verdict sweep) for K_cv vs P and the centroid MSD")
    qe = verdict.get("quantum_expansion") or []
    if qe:
        out += ("<p>Quantum expansion at constant pressure: the lattice constant of each bath against classical "
                "Langevin at the same T, P and size (a = (V/k³)^(1/3) for k×k×k conventional cells; "
                "PIMD/TRPMD: the cell under the centroid-virial pressure). Short path-integral runs (2 ps) "
                "were still expanding (docs/paper.md): their volumes are not a result.</p>")
        out += _table(["method", "T (K)", "P (GPa)", "atoms", "γ (1/ps)", "beads", "production (ps)", "a (Å)", "±",
                       "a classical (Å)", "±", "Δa (Å)", "±", "Δa/a (%)", "±"],
                      [[r["method"], r["temperature_K"], r["pressure_GPa"], r["n_atoms"], r.get("gamma_per_ps"),
                        r.get("beads"), r["production_ps"], num(r["a_A"], ".5f"), num(r["a_err_A"], ".1g"),
                        num(r["a_classical_A"], ".5f"), num(r["a_classical_err_A"], ".1g"),
                        num(r["expansion_A"], ".4f"), num(r["expansion_err_A"], ".1g"),
                        num(r["expansion_percent"], ".3f"), num(r["expansion_err_percent"], ".1g")] for r in qe])
    return out


def sec_runs(rows: list[dict]) -> str:
    if not rows:
        return missing("no finished run: dpqtb paper (runs the verdict sweep) or dpqtb paper --from DIR")
    cols = ["method", "temperature_K", "pressure_GPa", "n_atoms", "gamma_per_ps", "beads", "seed", "D_H_cm2_per_s",
            "D_H_err_cm2_per_s", "msd_prime_plateau_A2", "K_per_atom_meV", "theta_deg", "production_ps", "hash"]
    return _table(cols, [[r.get(c) if c != "seed" else str(r.get(c)) for c in cols] for r in rows])


def build_html(verdict: dict, ref: dict, *, validation: dict | None = None, validation_dir: Path | None = None,
               zero_point: dict | None = None, sweep_figs: dict | None = None, sources: list[str] = (),
               qha: dict | None = None) -> str:
    """The report as one HTML string (see module doc)."""
    rows, groups = verdict.get("runs", []), verdict.get("groups", [])
    pt_groups = groups + verdict.get("pt_groups", [])  # Figs. 2-3: the P-T sweep beside the verdict's runs
    sweep_figs = sweep_figs or {}
    trusted = verdict.get("model_trusted_from_GPa")
    trusted = float(trusted) if isinstance(trusted, (int, float)) else math.nan  # None in a stored verdict.json
    body = {"table1": sec_table1(validation, ref), "fig1a": sec_fig1a(validation, ref),
            "fig1cd": sec_fig1cd(validation, validation_dir, ref),
            "fig2": sec_fig2(pt_groups, sweep_figs, ref, trusted, verdict.get("pt_plan")),
            "fig3": sec_fig3(pt_groups, sweep_figs, zero_point, ref, qha, trusted), "fig4": sec_fig4(verdict, ref),
            "fig5": sec_fig5(groups, rows, ref), "fig6": sec_fig6(groups, rows, ref),
            "verdict": sec_verdict(verdict, groups, rows), "runs": sec_runs(rows)}
    toc = "".join(f'<li><a href="#{k}">{_esc(TITLES[k])}</a></li>' for k in SECTIONS)
    secs = "".join(f'<section id="{k}"><h2>{_esc(TITLES[k])}</h2>{body[k]}</section>' for k in SECTIONS)
    src = "".join(f"<li>{_esc(s)}</li>" for s in sources) or "<li>none</li>"
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>dpqtb paper report</title><style>{CSS}</style>'
            f'</head><body><h1>LaH10 zero-point proton diffusion: the paper vs this model</h1>'
            f'<p>{_esc(ref.get("paper", ""))}</p><p class="verdict">{_esc(verdict["verdict"])}</p>'
            f"<ul>{toc}</ul>{secs}<h2>Inputs</h2><ul>{src}</ul></body></html>\n")
