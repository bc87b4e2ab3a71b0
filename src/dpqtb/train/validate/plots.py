"""Figures of the validation report: parity plots (energy, force, virial) and the Fm-3m EOS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dpqtb.train.validate.eos import EOS_RANGE_GPA


def parity_plots(arrays: dict, outdir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []

    def panel(x, y, label, unit, name, groups=None):
        fig, ax = plt.subplots(figsize=(4.2, 4.0))
        if groups is None:
            ax.plot(x, y, ".", ms=3, alpha=0.6)
        else:
            for g in sorted(set(groups.tolist())):
                m = groups == g
                ax.plot(x[m], y[m], ".", ms=2, alpha=0.5, label=g)
            ax.legend(loc="upper left", markerscale=4)
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k-", lw=0.8)
        r = float(np.sqrt(np.mean((y - x) ** 2)))
        ax.set_xlabel(f"DFT {label} ({unit})")
        ax.set_ylabel(f"DP {label} ({unit})")
        ax.set_title(f"{label}: RMSE {r:.4g} {unit}", fontsize=10)
        fig.tight_layout()
        fig.savefig(outdir / name, dpi=120)
        plt.close(fig)
        files.append(name)

    panel(arrays["e_dft"], arrays["e_dp"], "energy", "eV/atom", "parity_energy.png")
    species = np.repeat(arrays["f_species"], 3)
    panel(arrays["f_dft"].ravel(), arrays["f_dp"].ravel(), "force component", "eV/Å",
          "parity_force.png", groups=species)
    if "v_dft" in arrays:
        panel(1000 * arrays["v_dft"].ravel(), 1000 * arrays["v_dp"].ravel(), "virial/atom",
              "meV/atom", "parity_virial.png")
    return files



def eos_plot(eos: dict, outdir: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dpqtb.structures.eos import birch_murnaghan_pressure, eos_path

    fig, ax = plt.subplots(figsize=(5, 4))
    pts = json.loads(eos_path().read_text())["points"]
    v = np.array([p["a_A"] ** 3 / 44.0 for p in pts])
    ax.plot(v, [p["pressure_GPa"] for p in pts], "o", mfc="none", label="DFT (GPAW PBE)")
    f = eos["dft_fit"]
    vv = np.linspace(v.min(), v.max(), 200)
    ax.plot(vv, birch_murnaghan_pressure(vv * 11, f["v0_A3_per_11_atoms"], f["b0_GPa"], f["b0_prime"]),
            "-", color="C0", lw=1, label="DFT BM3")
    g = eos["dp_grid"]
    ax.plot([x["a_A"] ** 3 / 44.0 for x in g], [x["pressure_GPa"] for x in g], "s", ms=3, color="C1",
            label="DP (x relaxed by DP)")
    if eos["at_dft_points"]:
        ax.plot([s["volume_A3_per_atom"] for s in eos["at_dft_points"]],
                [s["pressure_dp_same_geometry_GPa"] for s in eos["at_dft_points"]], "x", color="C3",
                label="DP at the DFT geometries")
    ax.axhspan(*EOS_RANGE_GPA, color="0.92", zorder=0)
    ax.set_xlabel("volume (Å³/atom)")
    ax.set_ylabel("pressure (GPa)")
    ax.set_title("Fm-3m LaH10 equation of state", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(outdir / "eos.png", dpi=120)
    plt.close(fig)
    return "eos.png"
