"""DeePMD-kit training cost per batch (s/batch) of the `dpqtb train` networks on the labelled data.

Runs `dp --pt train` for a few hundred steps of one member with the default config (and variants)
on the current job store, in a temporary folder, and records DeePMD-kit's own "average training
time" (s/batch, the first 10 batches excluded).  The budget of a production run follows from it:
numb_steps × s/batch per member.

    OMP_NUM_THREADS=1 python benchmarks/bench_train.py [--steps 200] [--threads 1] [--store DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from dpqtb.train import config as tconfig
from dpqtb.train.dataset import prepare_dataset, read_systems
from dpqtb.train.runner import _env, _run_dp, _s_per_batch, code_versions
from dpqtb.train.sel import sel_statistics, structures_from_systems

VARIANTS = {
    "default (se_e2_a [25,50,100]/16, fit [240,240,240], float64)": {},
    "default net, float32": {"descriptor": {"precision": "float32"}, "fitting": {"precision": "float32"}},
    "small ([16,32,64]/8, fit [120,120,120], float64)": {
        "descriptor": {"neuron": [16, 32, 64], "axis_neuron": 8}, "fitting": {"neuron": [120, 120, 120]}},
}


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default=str(root / "data" / "labels" / "round0"))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(root / "benchmarks" / "results" / "train_cpu.json"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = prepare_dataset([args.store], tmp / "data")
        base = tconfig.validate({})
        stats = sel_statistics(structures_from_systems(read_systems(tmp / "data" / "train")),
                               base["descriptor"]["rcut_A"], base["descriptor"]["sel_margin"])
        systems = [os.path.join("..", "data", "train", s) for s in manifest["train"]["systems"]]
        for k, (name, raw) in enumerate(VARIANTS.items()):
            raw = json.loads(json.dumps(raw))
            raw["training"] = {"numb_steps": args.steps, "disp_freq": 50, "save_freq": args.steps}
            cfg = tconfig.validate(raw)
            jd = tconfig.deepmd_input(cfg, stats["sel"], 0, systems)
            mdir = tmp / f"v{k}"
            mdir.mkdir()
            (mdir / "input.json").write_text(json.dumps(jd))
            t0 = time.time()
            _run_dp(["--pt", "train", "input.json"], mdir, mdir / "train.log", _env(args.threads), name)
            spb = _s_per_batch(mdir / "train.log")[-1]
            rows.append({"variant": name, "s_per_batch": spb, "wall_s": round(time.time() - t0, 1),
                         "hours_per_40000_steps": round(spb * 40000 / 3600, 2)})
            print(json.dumps(rows[-1]), flush=True)
    out = {"benchmark": "dp --pt train s/batch", "steps": args.steps, "threads": args.threads,
           "sel": stats["sel"], "train_frames": manifest["train"]["frames"],
           "by_natoms": manifest["train"]["by_natoms"], "batch_size": "auto (32 atoms)",
           "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                       "load_avg_1min": os.getloadavg()[0]},
           "codes": code_versions(), "date": time.strftime("%Y-%m-%d"), "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
