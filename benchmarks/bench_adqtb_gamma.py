"""adQTB vs plain QTB against exact diagonalisation as a function of the friction γ: the evidence behind
the adQTB default damp_fs = 100 fs (γ = 10 ps⁻¹) in docs/qtb.md.

Model: dpqtb.workflows.fermi, a stiff mode (60 THz, H mass) in Fermi resonance with a soft one (30 THz),
300 independent pairs × 3 directions, T = 100 K (ground state), cubic coupling κ, quartic wall; exact
⟨x²⟩, ⟨y²⟩ by diagonalisation. Errors are of positions (no kinetic broadening enters). adQTB: per-species
adaptation, τ_ad = 1 ps, 12 ps of adaptation then 8 ps of averages. Statistical error ≈ 0.5 %.

    python benchmarks/bench_adqtb_gamma.py [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from dpqtb.md.integrators import QTB, TemperatureSchedule
from dpqtb.md.state import maxwell_boltzmann_momenta
from dpqtb.workflows.fermi import FermiModel

T = 100.0


def run(kappa: float, damp_fs: float, adaptive: bool, n_equil=24_000, n_prod=16_000) -> dict:
    model = FermiModel.resonant(60.0, 1.008, kappa)
    state, pot, sites = model.build(300)
    state.momenta = maxwell_boltzmann_momenta(state.masses, T, torch.Generator().manual_seed(11), zero_com=False)
    integ = QTB(pot, 0.5, TemperatureSchedule(T), damp_fs, seed=11, f_max_THz=150.0, n_f=200, zero_net_force=False,
                adaptive=adaptive, tau_ad_fs=1000.0)
    t0 = time.perf_counter()
    integ.setup(state)
    for _ in range(n_equil):
        integ.step(state)
    acc, n = np.zeros(2), 0
    for i in range(n_prod):
        integ.step(state)
        if i % 10 == 0:
            d = state.positions - sites
            acc += [(d[0::2] ** 2).mean().item(), (d[1::2] ** 2).mean().item()]
            n += 1
    acc /= n
    ex = model.exact(T)
    return {"kappa": kappa, "gamma_per_ps": 1e3 / damp_fs, "damp_fs": damp_fs, "method": "adqtb" if adaptive else "qtb",
            "x2_rel_err": acc[0] / ex["x2_A2"] - 1, "y2_rel_err": acc[1] / ex["y2_A2"] - 1,
            "diagnosis": integ.bath.diagnose(), "wall_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "adqtb_gamma_cpu.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for kappa, damps in ((0.02, (1000.0, 333.0, 100.0, 33.0)), (0.04, (100.0, 33.0))):
        for damp in damps:
            for adaptive in (False, True):
                rows.append(run(kappa, damp, adaptive))
                print(json.dumps(rows[-1]), flush=True)
                Path(args.out).write_text(json.dumps({"benchmark": "adqtb_vs_gamma", "temperature_K": T,
                                                      "model": "Fermi resonance 60/30 THz, 300 pairs",
                                                      "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
