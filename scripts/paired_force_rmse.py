#!/usr/bin/env python3
"""Paired comparison of held-out force RMSEs: is model A better than model B on the same frames?

    .venv/bin/python scripts/paired_force_rmse.py --data models/iter2/data/test \
        --model new=models/iter2/model_0/frozen_model.pth --model shipped=builtin:lah10 --out FILE.json

Every model is evaluated (DeePMD-kit DeepPot.eval) on every frame of the deepmd/npy systems under
--data. Printed/written: each model's force RMSE over all components (eV/Å, as `dp test` and
`dpqtb validate`), and for the first model against each other one the RMSE ratio with a 95 %
bootstrap interval over frames (the frames are resampled together for both models: paired) and the
number of frames on which the first model's per-frame RMSE is lower.
"""
import argparse
import json
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder of deepmd/npy systems (e.g. a dpqtb train test/ split)")
    ap.add_argument("--model", action="append", required=True, metavar="NAME=PATH",
                    help="model (*.pth or builtin:NAME); the first is compared with each other one")
    ap.add_argument("--bootstrap", type=int, default=20000, help="bootstrap resamples (default 20000)")
    ap.add_argument("--out", default=None, help="write the result as JSON")
    a = ap.parse_args()
    from deepmd.infer import DeepPot
    from dpqtb.potential.builtin import resolve

    systems = sorted(p for p in Path(a.data).iterdir() if (p / "type.raw").is_file())
    if not systems:
        raise SystemExit(f"paired_force_rmse: no deepmd/npy systems under {a.data}")
    names, ss, count = [], {}, None
    for spec in a.model:
        name, _, path = spec.partition("=")
        dp = DeepPot(str(resolve(path)))  # a path, or builtin:NAME
        per, n = [], []
        for sysd in systems:
            tmap = (sysd / "type_map.raw").read_text().split()
            if tmap != dp.get_type_map():
                raise SystemExit(f"paired_force_rmse: {sysd} type map {tmap} != model's {dp.get_type_map()}")
            types = np.loadtxt(sysd / "type.raw", dtype=int).reshape(-1)
            for s in sorted(sysd.glob("set.*")):
                c, b, f = (np.load(s / f"{k}.npy") for k in ("coord", "box", "force"))
                for i in range(len(c)):
                    _, ff, _ = dp.eval(c[i:i + 1], b[i:i + 1], types)
                    per.append(float(((ff.reshape(-1) - f[i]) ** 2).sum()))
                    n.append(f[i].size)
        names.append(name)
        ss[name], count = np.array(per), np.array(n)
    rmse = lambda v, idx: float(np.sqrt(v[idx].sum() / count[idx].sum()))
    every = np.arange(len(count))
    res = {"data": a.data, "frames": int(len(count)), "models": dict(zip(names, a.model)),
           "rmse_f_eV_per_A": {k: rmse(v, every) for k, v in ss.items()}, "comparisons": {}}
    rng = np.random.default_rng(0)
    boot = [rng.integers(0, len(count), len(count)) for _ in range(a.bootstrap)]
    first = names[0]
    for other in names[1:]:
        r = np.array([rmse(ss[first], i) / rmse(ss[other], i) for i in boot])
        res["comparisons"][f"{first}/{other}"] = {
            "rmse_ratio": rmse(ss[first], every) / rmse(ss[other], every),
            "rmse_ratio_ci95": [float(np.quantile(r, 0.025)), float(np.quantile(r, 0.975))],
            "frames_first_lower": int(((ss[first] / count) < (ss[other] / count)).sum())}
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
