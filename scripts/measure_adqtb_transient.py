"""How much the adQTB adaptation transient weighs in a run's reported spectra (audit item B, session 26).

The QTB bath averages every Δ_FD segment since the start (after ``fd_skip_segments``) into the phonon DOS
(``qtb_dos.csv`` → T_zero), the kinetic-energy correction and ``qtb_fd_*.csv``. Under adQTB the first
few τ_ad are the adaptation transient, where γ_r(ω) is still moving. This reruns a finished sweep point
(same config, same seeds) with a recorder on the bath, keeps every segment's m C_vv/θ, Δ_FD and γ_r, and
compares what the run reported (all segments) with the same quantities from the segments after a cut
(1 and 2 τ_ad), with segment-to-segment (block) errors of the difference.

    .venv/bin/python scripts/measure_adqtb_transient.py data/paper/sweeps/verdict/points/<hash> --out X.json

The recorder only reads. The result says whether the rerun reproduced the committed thermo.csv and, where not,
which columns depart from which step (a run of another code version or numerical environment may differ).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("point", type=Path, help="a finished sweep point directory (point.json, thermo.csv)")
    ap.add_argument("--out", type=Path, required=True, help="JSON result")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from dpqtb.analysis.vdos import zero_point_temperature
    from dpqtb.md.build import build_simulation
    from dpqtb.md.config import validate
    from dpqtb.md.qtb import frequency_grid, theta_qtb
    from dpqtb.md.qtb_response import deconvolve_richardson_lucy, kinetic_correction_factor, kinetic_kernel_matrix
    from dpqtb.units import KB

    point = json.loads((args.point / "point.json").read_text())
    cfg_dict = json.loads(json.dumps(point["config"]))
    cfg_dict["output"]["progress"] = False
    cfg = validate(cfg_dict, base_dir=point.get("base_dir", "."))
    with tempfile.TemporaryDirectory() as tmp:
        sim = build_simulation(cfg, output_dir=tmp)
        bath = sim.integrator.bath
        record = []  # per averaged segment: (s0 = mCvv/θ, Δ_FD, γ_r/γ in force during it)
        original = bath._accumulate_s0

        def recorder(mcvv, _orig=original):
            theta = bath._theta_grid()
            s0 = np.where(theta > 0, mcvv / np.maximum(theta, 1e-300), 0.0)
            record.append((s0.copy(), bath.fd.last[2].copy(), bath.noise.gamma_ratio.copy()))
            return _orig(mcvv)

        bath._accumulate_s0 = recorder
        sim.run(cfg.md.steps)
        th_new = np.genfromtxt(Path(tmp) / "thermo.csv", delimiter=",", names=True)
    th = np.genfromtxt(args.point / "thermo.csv", delimiter=",", names=True)
    common = [c for c in th.dtype.names if c in th_new.dtype.names]
    same = bool(len(th) == len(th_new) and all(np.array_equal(th[c], th_new[c]) for c in common))
    diff = {}  # where the rerun departs from the committed run (a run of older code may differ)
    if not same and len(th) == len(th_new):
        for c in common:
            bad = np.flatnonzero(th[c] != th_new[c])
            if len(bad):
                diff[c] = {"first_step": int(th["step"][bad[0]]),
                           "max_rel": float(np.max(np.abs(th[c] - th_new[c]) / np.maximum(np.abs(th[c]), 1e-300)))}
    th = th_new  # the rerun's rows carry the per-species raw temperatures too

    noise = bath.noise
    f = frequency_grid(noise.n_f, noise.h)
    theta = theta_qtb(2 * np.pi * f, noise.temperature_K, False)
    resp_open = kinetic_kernel_matrix(noise.n_f, noise.h, bath.gamma)
    resp = kinetic_kernel_matrix(noise.n_f, noise.h, bath.gamma, open_last_bin=False)
    t_seg_ps = noise.L * noise.h / 1000.0
    tau_ad_ps = cfg.thermostat.tau_ad_fs / 1000.0
    s0 = np.array([r[0] for r in record])  # (segments, groups, bins)
    gr = np.array([r[2] for r in record])
    n_seg = len(record)
    first_seg_end_ps = (1 + bath.fd.skip_segments) * t_seg_ps  # end time of the first averaged segment

    def quantities(sel):
        out = {}
        for g, name in enumerate(bath.group_names):
            dos = deconvolve_richardson_lucy(s0[sel, g].mean(0), resp_open)
            area = dos.sum() * (f[1] - f[0]) * 1e3
            out[name] = {"T_zero_K": zero_point_temperature(f * 1e3, dos / area),
                         "kinetic_correction": kinetic_correction_factor(dos, theta, resp)}
        return out

    # E/3NkB corrected with a factor: E_pot part unchanged, K/kc per group (here: per species)
    n_atoms = int(sim.state.n_atoms)
    cuts = {"all (as reported)": 0.0, "after 1 tau_ad": tau_ad_ps, "after 2 tau_ad": 2 * tau_ad_ps}
    res = {"point": str(args.point), "reproduces_committed_thermo": same, "differs_from_committed": diff, "n_segments": n_seg,
           "segment_ps": t_seg_ps, "tau_ad_ps": tau_ad_ps, "temperature_K": noise.temperature_K,
           "damp_fs": cfg.thermostat.damp_fs, "n_atoms": n_atoms, "cuts": {}}
    seg_end_ps = first_seg_end_ps + t_seg_ps * np.arange(n_seg)
    for label, cut in cuts.items():
        sel = seg_end_ps - t_seg_ps >= cut - 1e-9
        if sel.sum() < 4:
            continue
        q = quantities(sel)
        # block errors: the same quantity from 4 contiguous blocks of the selected segments
        idx = np.flatnonzero(sel)
        blocks = [quantities(b) for b in np.array_split(idx, 4)]
        for name in q:
            for k in list(q[name]):
                vals = np.array([b[name][k] for b in blocks])
                q[name][k + "_err"] = float(vals.std(ddof=1) / np.sqrt(len(vals)))
        q["segments"] = int(sel.sum())
        q["from_ps"] = float(seg_end_ps[idx[0]] - t_seg_ps)
        res["cuts"][label] = q
    # γ_r history: the mean of γ_r/γ over the spectrum, weighted by the species' m C_vv, per segment
    weights = s0.mean(0) * theta  # (groups, bins)
    res["gamma_r_history"] = {name: [float((gr[i, g] * weights[g]).sum() / weights[g].sum()) for i in range(n_seg)]
                              for g, name in enumerate(bath.group_names)}
    # the production E/3NkB with each cut's correction (rows after the equilibration, as the sweep): the
    # potential energy stays, each species' raw kinetic energy is divided by that cut's factor
    eq = int(point.get("equilibration_steps", 0))
    prod = th["step"] > eq
    prod &= th["kinetic_eV"] != th["kinetic_raw_eV"]  # from the first corrected row, as the sweep
    dof = bath.species_n_dof(sim.state)
    k_raw = {n: 0.5 * dof[i] * KB * th[f"temperature_raw_{n}_K"][prod] for i, n in enumerate(sim.state.type_map)}
    e_pot = th["potential_eV"][prod] - th["potential_eV"][0]
    res["E_per_3NkB_K_committed"] = float(((th["total_eV"][prod] - th["potential_eV"][0]) / (3 * n_atoms * KB)).mean())
    for label, q in res["cuts"].items():
        e = e_pot + sum(k_raw[n] / q[n]["kinetic_correction"] for n in k_raw)
        q["E_per_3NkB_K"] = float((e / (3 * n_atoms * KB)).mean())
    res["note"] = ("kinetic_correction: the factor K_raw/K_corrected per group; T_zero from the deconvolved DOS; "
                   "errors: 4 blocks of the selected segments; E_per_3NkB_K: the production rows with that "
                   "cut's factors (the factor in force during the run is the running one)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k != "gamma_r_history"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
