"""The barostat's whole cost with the real model: a Deep Potential MD step at constant pressure vs at
constant volume, same bath, same cell, same run.

The thermostat benchmark (bench_thermostat.py) prices the barostat's own arithmetic on Einstein springs.
With a real model a changing cell also touches the neighbour list: until 2026-12-06 every cell change
rebuilt the Verlet list (a barostat changes the cell every step), now the list is kept while the
strain-aware bound of ``VerletList._needs_rebuild`` allows. This measures NPT vs NVT step time of
QTB 5 K on ``builtin:lah10`` (Fm-3m, 200 GPa, 0.5 fs), isotropic and flexible cell, and counts the list
builds per step. The variants alternate ``--repeat`` times (the same load for each) and the medians
are reported; the machine's load average is written beside them.

    python benchmarks/bench_npt.py [--sizes 44 352] [--steps 200] [--repeat 3] [--device cpu] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_lammps import _config, _toml  # noqa: E402  (one base config for the LaH10 benchmarks)

from dpqtb.config_schema import load_toml  # noqa: E402
from dpqtb.md.build import build_simulation  # noqa: E402
from dpqtb.md.config import validate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"nvt": None,
            "npt_isotropic": {"pressure_GPa": 200.0, "damp_fs": 1000.0, "cell": "isotropic"},
            "npt_flexible": {"pressure_GPa": 200.0, "damp_fs": 1000.0, "cell": "flexible"}}


def _lists(sim):
    """The Verlet lists of the simulation's Deep Potential (one per replica/bead)."""
    pot = sim.integrator.potential
    return [gl.vl for gl in getattr(pot, "_lists", [])]


def _build(n_atoms: int, variant: str, work: Path, device: str):
    cells = round((n_atoms / 44) ** (1 / 3))
    assert 44 * cells ** 3 == n_atoms, n_atoms
    raw = _config(cells, 10, str(work / variant / "run"))
    raw["output"].update(trajectory_every=0, thermo_every=10)
    raw["potential"]["chunk_atoms"] = 512
    raw["system"]["device"] = device
    if VARIANTS[variant]:
        raw["barostat"] = dict(VARIANTS[variant])
    (work / variant).mkdir(parents=True, exist_ok=True)
    (work / variant / "config.toml").write_text(_toml(raw))
    cfg = validate(load_toml(work / variant / "config.toml"), base_dir=work / variant)
    sim = build_simulation(cfg, work / variant / "run", progress=False)
    sim.integrator.setup(sim.state)
    for _ in range(3):  # warm-up: model load, first list
        sim.integrator.step(sim.state)
    return sim


def _block(sim, steps: int) -> tuple[float, int]:
    """Seconds per step over ``steps`` steps, and the list builds they made."""
    builds0 = sum(vl.n_builds for vl in _lists(sim))
    cuda = sim.state.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        sim.integrator.step(sim.state)
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps, sum(vl.n_builds for vl in _lists(sim)) - builds0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[44, 352])
    ap.add_argument("--steps", type=int, nargs="+", default=None,
                    help="steps per timed block, one per size (default: 8,800 atom-steps / size, at least 5)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "npt_cpu.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    steps = args.steps or [max(5, 8800 // n) for n in args.sizes]
    doc = {"benchmark": "dp_md_step_npt_vs_nvt", "device": args.device, "threads": args.threads,
           "machine": platform.machine(), "torch": torch.__version__,
           "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor(),
           "model": "builtin:lah10", "system": "Fm-3m LaH10, QTB 5 K (gamma 10/ps), 200 GPa, 0.5 fs",
           "barostat": "stochastic cell rescaling, damp 1000 fs (isotropic; flexible: fully flexible cell)",
           "load_note": "2-core machine: other jobs may run beside (load_average_1min_after); variants alternate",
           "results": []}
    for n_atoms, n_steps in zip(args.sizes, steps):
        with tempfile.TemporaryDirectory() as tmp:
            sims = {v: _build(n_atoms, v, Path(tmp), args.device) for v in args.variants}
            times = {v: [] for v in args.variants}
            builds = {v: 0 for v in args.variants}
            for _ in range(args.repeat):
                for v in args.variants:
                    sec, nb = _block(sims[v], n_steps)
                    times[v].append(sec)
                    builds[v] += nb
        row = {"n_atoms": n_atoms, "steps_per_block": n_steps, "repeats": args.repeat}
        for v in args.variants:
            row[f"{v}_s_per_step"] = float(np.median(times[v]))
            row[f"{v}_s_per_step_each"] = times[v]
            row[f"{v}_list_builds_per_step"] = builds[v] / (n_steps * args.repeat)
        for v in args.variants:
            if v != "nvt" and "nvt" in times:
                row[f"{v}_over_nvt"] = row[f"{v}_s_per_step"] / row["nvt_s_per_step"]
        row["load_average_1min_after"] = os.getloadavg()[0]
        doc["results"].append(row)
        print(json.dumps({k: v for k, v in row.items() if not k.endswith("_each")}), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
