"""The verdict sentence, chosen from the rows by the rules of docs/paper.md ("Verdict rules").

The rules (fixed before any LaH10 verdict run existed):

1. The verdict condition is P* = 200 GPa and T* = the lowest temperature with a QTB run there (the
   paper's Fig. 5: 5 K).  Each method is taken in its largest cell unless a rule says otherwise.
2. A D is *diffusive* when D > 1e-6 cm²/s and D > 3σ (:func:`dpqtb.workflows.paper.verdict.diffusive`).
3. No QTB run at P* → **no verdict** (the sentence says which runs are missing).
4. QTB diffusive at no γ in no cell at T* → **the claim does not hold**: QTB shows no diffusion.
5. QTB diffusive at some γ (in some cell) at T*: the mechanisms, each tested when its runs exist:
   * *model* — classical Langevin at T* is diffusive too (diffusion without zero-point motion);
   * *finite size* — QTB (same γ) is diffusive in the smaller cell but not in the largest one;
   * *friction* / *leakage* — the γ → 0 intercept D0 of the weighted linear fit is not diffusive
     (the diffusion is made by the bath): *leakage* if adQTB at T* is not diffusive, *friction* if
     adQTB is diffusive, *friction or leakage* without an adQTB run; with D0 diffusive, adQTB not
     diffusive alone means *leakage*;
   * *unidentified* — none of the above, but TRPMD/PIMD (bead-converged, T ≥ 100 K) is not diffusive
     at a temperature where QTB (same P, largest cell) is.
   One or more mechanisms → **the claim does not hold**, caused by them.  None → **the claim holds**
   (the sentence names the checks that could not be made for lack of runs).
"""

from __future__ import annotations

import math

from dpqtb.analysis.msd import D_MIN_CM2_PER_S, N_SIGMA
from dpqtb.workflows.paper.verdict import BEADS_MIN_T_K, CLASSICAL, VERDICT_PRESSURE_GPA

PAPER_D = 3.5e-5


def _d(g: dict) -> str:
    return f"{g['D_H_cm2_per_s']:.2g} ± {g['D_H_err_cm2_per_s']:.1g} cm²/s"


def _largest(gs: list[dict]) -> list[dict]:
    if not gs:
        return []
    n = max(g["n_atoms"] for g in gs)
    return [g for g in gs if g["n_atoms"] == n]


def classical_onset(groups: list[dict]) -> float | None:
    """The lowest temperature at which classical Langevin (largest cell) is diffusive (information for
    the report: where classical diffusion sets in; None when it is nowhere in the runs)."""
    ts = [g["temperature_K"] for g in _largest([g for g in groups if g["method"] in CLASSICAL]) if g["diffusive"]]
    return min(ts) if ts else None


def decide(groups: list[dict], extrapolations: list[dict], beads: list[dict],
           pressure_GPa: float = VERDICT_PRESSURE_GPA) -> dict:
    """Apply the rules; returns ``verdict`` (one sentence), ``status`` (``no_verdict``, ``holds``,
    ``does_not_hold``), ``mechanisms``, ``temperature_K``, ``pressure_GPa``, ``checks`` (each rule's
    inputs and outcome) and ``not_checked``."""
    at_p = [g for g in groups if g["pressure_GPa"] == pressure_GPa]
    onset = classical_onset(at_p)
    qtb = [g for g in at_p if g["method"] == "qtb" and math.isfinite(g["D_H_cm2_per_s"])]
    base = {"pressure_GPa": pressure_GPa, "D_min_cm2_per_s": D_MIN_CM2_PER_S, "n_sigma": N_SIGMA,
            "classical_onset_K": onset}
    if not qtb:
        have = sorted({g["method"] for g in at_p})
        return {**base, "status": "no_verdict", "mechanisms": [], "temperature_K": None, "checks": {},
                "not_checked": ["qtb"],
                "verdict": (f"No verdict yet: no finished QTB run at {pressure_GPa:g} GPa was collected "
                            f"({'runs of ' + ', '.join(have) if have else 'no runs at all'}; docs/paper.md gives the run plan).")}
    t = min(g["temperature_K"] for g in qtb)
    q_t = [g for g in qtb if g["temperature_K"] == t]
    q_big = _largest(q_t)
    best = max(q_t, key=lambda g: g["D_H_cm2_per_s"])
    checks: dict = {"qtb": {"diffusive_gammas_largest_cell": sorted(g["gamma_per_ps"] for g in q_big if g["diffusive"]),
                            "largest_D": best["D_H_cm2_per_s"], "largest_D_err": best["D_H_err_cm2_per_s"],
                            "n_atoms": best["n_atoms"]}}
    where = f"at {t:g} K and {pressure_GPa:g} GPa"
    sizes = " and ".join(str(n) for n in sorted({g["n_atoms"] for g in q_t}))  # every cell size run at T*
    if not any(g["diffusive"] for g in q_t):
        return {**base, "status": "does_not_hold", "mechanisms": [], "temperature_K": t, "checks": checks,
                "not_checked": [],
                "verdict": (f"The paper's claim does not hold on this model: QTB {where} ({sizes} atoms) "
                            f"shows no resolved proton diffusion (largest D_H = {_d(best)} in {best['n_atoms']} "
                            f"atoms, the paper: {PAPER_D:.2g} cm²/s).")}
    mech, phrases, not_checked = [], [], []
    diff_q = [g for g in q_t if g["diffusive"]]
    shown = max(diff_q, key=lambda g: g["D_H_cm2_per_s"])
    # model: classical diffusion at T*
    cl = _largest([g for g in at_p if g["method"] in CLASSICAL and g["temperature_K"] == t])
    if cl:
        c = max(cl, key=lambda g: g["D_H_cm2_per_s"])
        checks["model"] = {"classical_D": c["D_H_cm2_per_s"], "classical_D_err": c["D_H_err_cm2_per_s"],
                           "flag": c["diffusive"]}
        if c["diffusive"]:
            mech.append("model")
            phrases.append(f"the model itself (classical Langevin diffuses at the same temperature, D_H = {_d(c)})")
    else:
        not_checked.append("model (classical Langevin at T*)")
    # finite size: diffusive in a smaller cell at some γ, not in the largest at that γ
    sizes = sorted({g["n_atoms"] for g in q_t})
    if len(sizes) >= 2:
        flag = False
        for g in q_t:
            if g["n_atoms"] < sizes[-1] and g["diffusive"]:
                big = [h for h in q_big if h.get("gamma_per_ps") == g.get("gamma_per_ps")]
                if big and not big[0]["diffusive"]:
                    flag = True
        checks["finite_size"] = {"sizes": sizes, "flag": flag}
        if flag:
            mech.append("finite_size")
            phrases.append(f"finite size (it vanishes in the {sizes[-1]}-atom cell)")
    else:
        not_checked.append("finite size (a second cell size)")
    # friction / leakage
    ex = [e for e in extrapolations if e["method"] == "qtb" and e["temperature_K"] == t
          and e["pressure_GPa"] == pressure_GPa]
    ex = max(ex, key=lambda e: e["n_atoms"]) if ex else None
    ad = _largest([g for g in at_p if g["method"] == "adqtb" and g["temperature_K"] == t])
    ad_none = bool(ad) and not any(g["diffusive"] for g in ad)
    if ad:
        a = max(ad, key=lambda g: g["D_H_cm2_per_s"])
        checks["adqtb"] = {"D": a["D_H_cm2_per_s"], "D_err": a["D_H_err_cm2_per_s"], "diffusive": not ad_none}
    else:
        not_checked.append("leakage (adQTB at T*)")
    if ex is not None:
        checks["gamma_to_zero"] = {"D0": ex["D0_cm2_per_s"], "D0_err": ex["D0_err_cm2_per_s"],
                                   "D0_diffusive": ex["D0_diffusive"], "n_atoms": ex["n_atoms"]}
        d0 = f"D_H → {ex['D0_cm2_per_s']:.2g} ± {ex['D0_err_cm2_per_s']:.1g} cm²/s as γ → 0"
        if not ex["D0_diffusive"]:
            if not ad:
                mech.append("friction_or_leakage")
                phrases.append(f"the bath, by friction or leakage ({d0}; no adQTB run to tell them apart)")
            elif ad_none:
                mech.append("leakage")
                phrases.append(f"zero-point-energy leakage ({d0}, and adQTB, which cures leakage, gives D_H = {_d(a)})")
            else:
                mech.append("friction")
                phrases.append(f"the bath friction ({d0}, while adQTB still diffuses)")
        elif ad_none:
            mech.append("leakage")
            phrases.append(f"zero-point-energy leakage (adQTB, which cures it, gives D_H = {_d(a)})")
    else:
        not_checked.append("friction (QTB at two or more γ)")
        if ad_none:
            mech.append("leakage")
            phrases.append(f"zero-point-energy leakage (adQTB, which cures it, gives D_H = {_d(a)})")
    # exact quantum statistics: TRPMD/PIMD, bead-converged, T >= 100 K
    contra, usable = [], []
    for b in beads:
        if b["pressure_GPa"] != pressure_GPa or b["temperature_K"] < BEADS_MIN_T_K or b["converged"] is not True:
            continue
        usable.append(b["temperature_K"])
        q_b = _largest([g for g in qtb if g["temperature_K"] == b["temperature_K"]])
        if q_b and any(g["diffusive"] for g in q_b) and not b["diffusive"]:
            contra.append(b["temperature_K"])
    if any(b["pressure_GPa"] == pressure_GPa for b in beads):
        checks["beads"] = {"bead_converged_at_K": usable, "qtb_diffusive_trpmd_not_at_K": contra}
    if not usable:
        not_checked.append("TRPMD centroid diffusion (no bead-converged TRPMD at T >= 100 K)")
    if not mech and contra:
        mech.append("unidentified")
        phrases.append(f"an unidentified QTB artefact (TRPMD shows no diffusion at {', '.join(f'{x:g}' for x in contra)} K "
                       "where QTB does; neither friction, leakage, finite size nor the model explains it)")
    base.update({"temperature_K": t, "checks": checks, "not_checked": not_checked, "mechanisms": mech})
    if mech:
        return {**base, "status": "does_not_hold",
                "verdict": (f"The paper's claim does not hold on this model: the proton diffusion QTB shows {where} "
                            f"(D_H = {_d(shown)}) is caused by {' and by '.join(phrases)}.")}
    rest = f" (not checked: {'; '.join(not_checked)})" if not_checked else ""
    return {**base, "status": "holds",
            "verdict": (f"The paper's claim holds on this model: QTB {where} gives D_H = {_d(shown)} (the paper: "
                        f"{PAPER_D:.2g} cm²/s), which survives every check that was run{rest}.")}
