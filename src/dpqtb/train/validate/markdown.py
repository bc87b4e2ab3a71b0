"""``report.md`` of ``dpqtb validate`` from the report dictionary (``report.json``)."""

from __future__ import annotations

import math

from dpqtb.train.validate.eos import PAPER, X_BOUNDS


def _fmt(v, spec=".4f"):
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _markdown(rep: dict) -> str:
    m = rep["test"]
    L = [f"# Deep Potential validation: `{rep['model']['path']}`", "",
         f"Generated {rep['date']} by `dpqtb validate` (evaluator: {rep['evaluator']}). "
         f"Model sha256 `{rep['model']['sha256'][:16]}…`; test data `{rep['data']['dir']}`"
         + (f", dataset {rep['data']['dataset_version']}" if rep['data'].get('dataset_version') else "")
         + ".", "",
         "## Held-out test split", "",
         f"{m['frames']} frames ({m['atoms']} atoms){', split rule: ' + rep['data']['split_rule'] if rep['data'].get('split_rule') else ''}; "
         "never used in training.", "",
         "| quantity | RMSE | MAE |", "|---|---|---|",
         f"| energy (meV/atom) | {_fmt(m['rmse_e_meV_per_atom'], '.3f')} | {_fmt(m['mae_e_meV_per_atom'], '.3f')} |",
         f"| force (eV/Å) | {_fmt(m['rmse_f_eV_per_A'])} | {_fmt(m['mae_f_eV_per_A'])} |"]
    if "rmse_v_meV_per_atom" in m:
        L.append(f"| virial (meV/atom) | {_fmt(m['rmse_v_meV_per_atom'], '.3f')} | {_fmt(m['mae_v_meV_per_atom'], '.3f')} |")
        L.append(f"| pressure (GPa) | {_fmt(m['rmse_p_GPa'], '.3f')} | |")
    L += ["", "Force RMSE by species (eV/Å): " + ", ".join(
        f"{k} {_fmt(v)}" for k, v in m["rmse_f_by_species_eV_per_A"].items())
        + f"; RMS DFT force {_fmt(m['force_rms_dft_eV_per_A'], '.3f')} eV/Å.", "",
        f"For orientation (not a target): the paper reports {PAPER['rmse_e_meV_per_atom']} meV/atom and "
        f"{PAPER['rmse_f_eV_per_A']} eV/Å on its own data (25,427 configurations, 80–500 GPa, its own DFT "
        "settings); the numbers above are on our held-out GPAW frames, so the comparison is indicative only.",
        "", "![energy](parity_energy.png) ![force](parity_force.png)"
        + (" ![virial](parity_virial.png)" if "rmse_v_meV_per_atom" in m else ""), ""]
    for name, sub in (rep.get("by_subset") or {}).items():
        if len(sub) < 2:
            continue
        L += [f"### Errors by {name}", "", f"| {name} | frames | energy RMSE (meV/atom) | energy mean DP − DFT "
              "(meV/atom) | force RMSE (eV/Å) |", "|---|---|---|---|---|"]
        L += [f"| {k} | {r['frames']} | {_fmt(r['rmse_e_meV_per_atom'], '.2f')} | "
              f"{r['mean_e_meV_per_atom']:+.2f} | {_fmt(r['rmse_f_eV_per_A'])} |" for k, r in sub.items()]
        L.append("")
    if rep.get("comparison"):
        c = rep["comparison"]
        L += ["## Paired comparison on the same held-out frames", "",
              f"Every model evaluated on the same {c['frames']} frames. Ratios are first/other (pair “first vs other”); the 95 % "
              f"intervals come from {c['bootstrap_resamples']} bootstrap resamples "
              + (f"of {c['groups']} groups (candidates from one exploration run form a group, every other "
                 "frame its own; whole groups are resampled, since frames of one run are correlated)"
                 if c.get("resampled") == "groups" else "of the frames")
              + ", the same resample for both models (paired). They cover data sampling only: a model "
              "picked on these frames (the best seed of an ensemble) should also be compared with its "
              "siblings.", "",
              "| model | force RMSE (eV/Å) | energy RMSE (meV/atom) |", "|---|---|---|"]
        for k in c["rmse_f_eV_per_A"]:
            L.append(f"| `{k}` | {_fmt(c['rmse_f_eV_per_A'][k])} | {_fmt(c['rmse_e_meV_per_atom'][k], '.3f')} |")
        L += ["", "| pair | force RMSE ratio | 95 % | frames first lower | energy RMSE ratio | 95 % | force verdict |",
              "|---|---|---|---|---|---|---|"]
        for pair, r in c["pairs"].items():
            L.append(f"| `{pair}` | {_fmt(r['rmse_f_ratio'], '.3f')} | {_fmt(r['rmse_f_ratio_ci95'][0], '.3f')}–"
                     f"{_fmt(r['rmse_f_ratio_ci95'][1], '.3f')} | {r['frames_first_lower_f']}/{c['frames']} | "
                     f"{_fmt(r['rmse_e_ratio'], '.3f')} | {_fmt(r['rmse_e_ratio_ci95'][0], '.3f')}–"
                     f"{_fmt(r['rmse_e_ratio_ci95'][1], '.3f')} | {r['verdict_f']} |")
        L.append("")
    if rep.get("eos"):
        eos = rep["eos"]
        L += ["## Equation of state of Fm-3m LaH10 (100–350 GPa)", "",
              "DFT: stored GPAW PBE points (11-atom cell, x relaxed). DP at the same geometries, and "
              "with x relaxed by DP.", "",
              "| a (Å) | V (Å³/atom) | P DFT (GPa) | P DP same geometry (GPa) | ΔP (GPa) | x DFT | x DP | P DP relaxed x (GPa) |",
              "|---|---|---|---|---|---|---|---|"]
        for s in eos["at_dft_points"]:
            L.append(f"| {s['a_A']:.3f} | {s['volume_A3_per_atom']:.4f} | {s['pressure_dft_GPa']:.1f} | "
                     f"{s['pressure_dp_same_geometry_GPa']:.1f} | "
                     f"{s['pressure_dp_same_geometry_GPa'] - s['pressure_dft_GPa']:+.1f} | "
                     f"{s['x32f_dft']:.4f} | {s['x32f_dp']:.4f}{'†' if s['x32f_dp_at_bound'] else ''} | "
                     f"{s['pressure_dp_relaxed_x_GPa']:.1f} |")
        if any(s["x32f_dp_at_bound"] for s in eos["at_dft_points"]):
            L += ["", f"† DP's x sits at the edge of the scanned interval {X_BOUNDS}: no minimum inside."]
        L += ["", f"Max |ΔP| at the DFT geometries: {_fmt(eos['max_abs_dP_same_geometry_GPa'], '.2f')} GPa, "
              f"RMS {_fmt(eos['rms_dP_same_geometry_GPa'], '.2f')} GPa.", "",
              "| P (GPa) | a DFT (Å) | a DP (Å) | V_DP/V_DFT − 1 |", "|---|---|---|---|"]
        for r in eos["lattice_constant_at_pressure"]:
            L.append(f"| {r['pressure_GPa']:g} | {r['a_dft_A']:.4f} | {_fmt(r['a_dp_A'])} | "
                     f"{'–' if r['volume_rel_diff'] is None else format(100 * r['volume_rel_diff'], '+.2f') + ' %'} |")
        fit = eos.get("dp_fit") or {}
        dfit = eos["dft_fit"]
        L += ["", f"BM3 fits: DFT V0 = {dfit['v0_A3_per_11_atoms']:.3f} Å³/11 atoms, B0 = {dfit['b0_GPa']:.1f} GPa, "
              f"B0' = {dfit['b0_prime']:.2f}; DP "
              + (f"V0 = {fit['v0_A3_per_11_atoms']:.3f}, B0 = {fit['b0_GPa']:.1f} GPa, B0' = {fit['b0_prime']:.2f}."
                 if "v0_A3_per_11_atoms" in fit else f"not fitted ({fit.get('error', 'too few points')})."),
              "", "![eos](eos.png)", ""]
        t = rep["table1"]
        L += ["## Table I quantities (Fm-3m, 0 K, static lattice)", "",
              f"DFT: lattice constant from the stored GPAW EOS at the target pressure; {t['x_source_dft']}. "
              "DP: lattice constant where the DP pressure of the cell with x relaxed by DP equals the "
              "target. Paper columns: Table I of the paper (its DFT and DP, ≈300 GPa).", ""]
        keys = [("a_A", "a (Å)"), ("alpha_deg", "α (°)"), ("La-H1_A", "La–H¹ (Å)"), ("La-H2_A", "La–H² (Å)"),
                ("H-H1_A", "H–H¹ (Å)"), ("H-H2_A", "H–H² (Å)"), ("La-La_A", "La–La (Å)"), ("x32f", "x (32f)")]
        head = "| quantity |"
        sep = "|---|"
        for p in t["pressures"]:
            head += f" DFT {p} GPa | DP {p} GPa |"
            sep += "---|---|"
        head += " paper DFT | paper DP |"
        sep += "---|---|"
        L += [head, sep]
        for k, name in keys:
            row = f"| {name} |"
            spec = ".0f" if k == "alpha_deg" else ".4f"
            for p, r in t["pressures"].items():
                dp = r["dp"]
                row += f" {_fmt(r['dft'].get(k), spec)} | {_fmt(None if dp is None else dp.get(k), spec)} |"
            pd, pp = t["paper_approx_300GPa"]["dft"].get(k), t["paper_approx_300GPa"]["dp"].get(k)
            if k == "alpha_deg":
                pd = pp = 90.0
            row += f" {_fmt(pd, spec)} | {_fmt(pp, spec)} |"
            L.append(row)
        missing = [p for p, r in t["pressures"].items() if r["dp"] is None]
        if missing:
            L += ["", f"DP: no lattice constant found at {', '.join(missing)} GPa (the DP pressure of "
                  "the relaxed cubic cell does not reach it in the scanned range)."]
        L.append("")
    if rep.get("phases"):
        ph = rep["phases"]
        L += ["## Distorted phases at the DFT minima (static, 0 K)", "",
              f"Structures relaxed by GPAW under the start's symmetry (`{ph['dir']}`, `docs/phases.md`). "
              "ΔH = H − H(Fm-3m) per atom at the target pressure, H = (E + PV)/N; DP evaluated at the "
              "same DFT structures. A negative ΔH: the distorted cell is more stable than Fm-3m.", "",
              "| start | P (GPa) | atoms | seed | DFT group (0.01 Å) | ΔH DFT (meV/atom) | ΔH DP (meV/atom) | "
              "DP − DFT (meV/atom) | P DFT / DP (GPa) | DP max F at the DFT minimum (eV/Å) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for r in ph["rows"]:
            L.append(f"| {r['phase_start']} | {r['pressure_GPa']:g} | {r.get('natoms', '')} | {r['seed']} | {r['space_group_dft']} | "
                     f"{r['dH_dft_meV_per_atom']:+.2f} | {r['dH_dp_meV_per_atom']:+.2f} | "
                     f"{r['error_meV_per_atom']:+.2f} | {r['pressure_dft_GPa']:.1f} / {r['pressure_dp_GPa']:.1f} | "
                     f"{r['max_force_dp_eV_per_A']:.3f} |")
        L += ["", f"Max |DP − DFT| {ph['max_abs_error_meV_per_atom']:.2f} meV/atom, RMS "
              f"{ph['rms_error_meV_per_atom']:.2f} meV/atom over {len(ph['rows'])} structures.", ""]
        dense = [r for r in ph["rows"] if r.get("dH_dft_dense_meV_per_atom") is not None]
        if dense:
            L += ["At converged k (single points of the same DFT structures, docs/dft_convergence.md):", "",
                  "| start | P (GPa) | atoms | seed | k-spacing (Å⁻¹) | ΔH DFT converged (meV/atom) | ΔH DFT label rule | "
                  "ΔH DP | DP − DFT converged |", "|---|---|---|---|---|---|---|---|---|"]
            for r in dense:
                L.append(f"| {r['phase_start']} | {r['pressure_GPa']:g} | {r.get('natoms', '')} | {r['seed']} | {r.get('kspacing_dense_invA')} | "
                         f"{r['dH_dft_dense_meV_per_atom']:+.2f} | {r['dH_dft_meV_per_atom']:+.2f} | "
                         f"{r['dH_dp_meV_per_atom']:+.2f} | {r['error_dense_meV_per_atom']:+.2f} |")
            L.append("")
        if any("dp_min_rmsd_A" in r for r in ph["rows"]):
            L += ["The model's own minimum next to each DFT minimum: the DFT structure relaxed with the model "
                  "(positions and cell at the target pressure, BFGS with ASE's FrechetCellFilter, no symmetry "
                  "imposed; Fm-3m the same way). RMSD: internal displacements from the DFT structure (rigid "
                  "translation removed); strain: largest Green–Lagrange component of the cell change.", "",
                  "| start | P (GPa) | atoms | seed | DFT group | model's group (0.01 Å) | RMSD / max (Å) | cell strain | "
                  "V ratio | ΔH of the model's own minima (meV/atom) | BFGS steps |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
            for r in ph["rows"]:
                if "dp_min_rmsd_A" not in r:
                    continue
                L.append(f"| {r['phase_start']} | {r['pressure_GPa']:g} | {r.get('natoms', '')} | {r['seed']} | {r['space_group_dft']} | "
                         f"{r['space_group_dp_min']} | {r['dp_min_rmsd_A']:.3f} / {r['dp_min_max_displacement_A']:.3f} | "
                         f"{r['dp_min_cell_strain_max']:.4f} | {r['dp_min_volume_ratio']:.4f} | "
                         f"{r['dH_dp_min_meV_per_atom']:+.2f} | {r['dp_min_steps']}"
                         f"{'' if r.get('dp_min_converged', True) else ' (not converged)'} |")
            L.append("")
    if rep.get("quantum"):
        q = rep["quantum"]
        L += ["## Quantum configurations (held out, never trained on)", "",
              f"Every labelled frame of {', '.join(f'`{s}`' for s in q['stores'])}: QTB-MD frames and "
              "path-integral beads (docs/dataset.md).", "",
              "| kind | frames | energy RMSE (meV/atom) | mean DP − DFT (meV/atom) | force RMSE (eV/Å) |",
              "|---|---|---|---|---|"]
        rows = list(q["by_kind"].items()) + list((q.get("by_kind_temperature") or {}).items())
        for k, e in rows:  # per kind, then per kind and the temperature of the run the frames came from
            L.append(f"| {k} | {e['frames']} | {e['rmse_e_meV_per_atom']:.2f} | {e['mean_e_meV_per_atom']:+.2f} | "
                     f"{e['rmse_f_eV_per_A']:.4f} |")
        L.append("")
    if rep.get("acceptance"):
        from dpqtb.train.validate.acceptance import acceptance_markdown

        L += acceptance_markdown(rep["acceptance"])
    return "\n".join(L)
