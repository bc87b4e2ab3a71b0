"""Zero-point expansion and zero-point pressure of Fm-3m LaH10 with the shipped model (issue 23).

For each pressure P: NVT at the static-DFT lattice constant (classical Langevin and QTB, 5 K) gives the
zero-point pressure ⟨P⟩_QTB − ⟨P⟩_classical at that volume; NPT at P (stochastic cell rescaling, same
baths) gives the zero-point expansion ⟨a⟩_QTB − ⟨a⟩_classical. Every run is resumable (``--resume``
semantics through the Python API): re-running the script continues where it stopped.

    python scripts/zero_point_expansion.py [--pressures 200 150 300] [--out data/npt] [--threads 1]
    python scripts/zero_point_expansion.py --report   # JSON + the table in docs/barostat.md from what is done
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
T_K = 5.0
STEPS = {"nvt": 6000, "npt": 20000}   # 0.5 fs: 3 ps NVT, 10 ps NPT (10 τ_p)
DISCARD = {"nvt": 0.25, "npt": 0.3}


def _raw(method: str, ensemble: str, pressure: float) -> dict:
    raw = {"system": {"structure": "builtin:lah10", "pressure_GPa": pressure, "supercell": [1, 1, 1]},
           "potential": {"kind": "deepmd", "model": "builtin:lah10"},
           "md": {"timestep_fs": 0.5, "steps": STEPS[ensemble], "seed": 2026},
           "thermostat": {"kind": "langevin" if method == "classical" else "qtb", "temperature_K": T_K,
                          "damp_fs": 100.0},
           "output": {"thermo_every": 10, "trajectory_every": 200, "checkpoint_every": 1000, "progress": False}}
    if method == "qtb":
        raw["thermostat"].update({"f_max_THz": 200.0, "n_f": 100})
    if ensemble == "npt":
        raw["barostat"] = {"pressure_GPa": pressure, "damp_fs": 1000.0}
    return raw


def _block(x: np.ndarray, n: int = 10) -> tuple[float, float]:
    b = x[: len(x) // n * n].reshape(n, -1).mean(1)
    return float(b.mean()), float(b.std(ddof=1) / math.sqrt(n))


def run_all(pressures, out: Path) -> None:
    from dpqtb.md.build import build_simulation
    from dpqtb.md.config import validate
    from dpqtb.rundir import CHECKPOINT, last_thermo

    for p in pressures:
        for ensemble in ("nvt", "npt"):
            for method in ("classical", "qtb"):
                d = out / f"P{p:g}_{ensemble}_{method}"
                cfg = validate(_raw(method, ensemble, p))
                if (d / CHECKPOINT).is_file():
                    last = last_thermo(d)
                    if last is not None and int(last.step) >= cfg.md.steps:
                        continue
                    resume = True
                else:
                    resume = False
                print(f"run {d.name} ({'resume' if resume else 'start'})", flush=True)
                sim = build_simulation(cfg, output_dir=d, progress=False)
                sim.run(cfg.md.steps, resume=resume, overwrite=not resume)


def _model_sha256(run_dir: Path) -> str | None:
    """The SHA-256 of the model a run used: its run.json, else (runs before the record) its checkpoint; None where
    neither says (a clone has the committed run.json and thermo.csv only)."""
    from dpqtb import DpqtbError
    from dpqtb.md.run import checkpoint_physics_config, model_sha256

    try:
        meta = json.loads((run_dir / "run.json").read_text())
        if "model_sha256" in meta:
            return meta["model_sha256"]
        return model_sha256(checkpoint_physics_config(run_dir / "checkpoint.pt"))
    except (OSError, ValueError, DpqtbError):
        return None


def report(pressures, out: Path) -> dict:
    from dpqtb.rundir import read_thermo

    rows, models = [], set()
    for p in pressures:
        row = {"pressure_GPa": p}
        for ensemble in ("nvt", "npt"):
            for method in ("classical", "qtb"):
                d = out / f"P{p:g}_{ensemble}_{method}"
                try:
                    th = read_thermo(d)
                except Exception:  # noqa: BLE001 - not run yet
                    continue
                if len(th["step"]) == 0 or th["step"][-1] < STEPS[ensemble]:
                    continue
                models.add(_model_sha256(d))
                keep = slice(int(len(th["step"]) * DISCARD[ensemble]), None)
                if ensemble == "nvt":
                    row[f"P_{method}_GPa"], row[f"P_{method}_err_GPa"] = _block(th["pressure_GPa"][keep])
                    row["a_static_A"] = float(th["volume_A3"][0]) ** (1 / 3)
                else:
                    row[f"a_{method}_A"], row[f"a_{method}_err_A"] = _block(th["a_A"][keep])
        if "P_qtb_GPa" in row and "P_classical_GPa" in row:
            row["zero_point_pressure_GPa"] = row["P_qtb_GPa"] - row["P_classical_GPa"]
            row["zero_point_pressure_err_GPa"] = math.hypot(row["P_qtb_err_GPa"], row["P_classical_err_GPa"])
        if "a_qtb_A" in row and "a_classical_A" in row:
            da = row["a_qtb_A"] - row["a_classical_A"]
            row["zero_point_expansion_A"] = da
            row["zero_point_expansion_err_A"] = math.hypot(row["a_qtb_err_A"], row["a_classical_err_A"])
            row["zero_point_expansion_percent"] = 100.0 * da / row["a_classical_A"]
        rows.append(row)
    result = {"what": "Fm-3m LaH10, 44 atoms, builtin:lah10, 5 K: classical Langevin vs QTB (damp 100 fs, "
                      "f_max 200 THz); NVT at the static-DFT lattice constant (3 ps) and NPT (10 ps, "
                      "stochastic cell rescaling, tau_p 1 ps); errors from 10 blocks after the discarded start",
              "steps": STEPS, "discard_fraction": DISCARD, "rows": rows}
    models.discard(None)
    if len(models) > 1:
        raise SystemExit(f"the runs in {out} were made with {len(models)} models ({sorted(models)}): "
                         "rerun those of the old one")
    previous = out / "zero_point_expansion.json"
    if not models and previous.is_file():  # the runs do not say (a clone): keep what the file recorded
        models = {json.loads(previous.read_text()).get("model_sha256")}
    result["model_sha256"] = next(iter(models)) if models else None  # the model file every run used
    (out / "zero_point_expansion.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pressures", type=float, nargs="+", default=[200.0, 150.0, 300.0])
    ap.add_argument("--out", default=str(ROOT / "data" / "npt"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if not args.report:
        run_all(args.pressures, out)
    print(json.dumps(report(args.pressures, out), indent=2))


if __name__ == "__main__":
    main()
