"""Sweep throughput: N local Dask workers against the same points run serially in one process.

Both runs use the points of examples/sweep_morse.toml (8 Morse points; ``--production-steps`` sets
their length) in fresh directories, in the same run of this script.  Before timing, the serial
process and every worker import dpqtb's MD and analysis (the LocalCluster start-up is timed apart).

* speed-up = t_serial / t_parallel (the issue's target: >= 0.9 N);
* per-point overhead (s) = (N t_parallel - sum of the points' own wall times on the workers) / points:
  the worker-slot time not spent inside a point (scheduling, transfers, idle slots at the end);
* task latency (s): the mean round trip of a no-op task submitted and gathered one at a time;
* the two points.csv files are compared byte for byte.

    python benchmarks/bench_sweep.py [--workers 2] [--production-steps 200] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "examples" / "sweep_morse.toml"


def _warm() -> int:
    import torch

    import dpqtb.analysis.pipeline  # noqa: F401
    import dpqtb.md.build  # noqa: F401

    torch.set_num_threads(1)
    return os.getpid()


def _noop(x):
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--production-steps", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sweep_cpu.json"))
    args = ap.parse_args()

    from dask.distributed import Client, LocalCluster

    from dpqtb.config_schema import load_toml
    from dpqtb.rundir import SWEEP_POINTS_CSV
    from dpqtb.workflows.sweep import run_sweep
    from dpqtb.workflows.sweep_spec import parse_sweep

    raw = load_toml(TOY)
    raw["sweep"]["production_steps"] = args.production_steps
    sweep = parse_sweep(raw, TOY.parent)
    n_pts = len(sweep.points)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _warm()
        t = time.perf_counter()
        res_s = run_sweep(sweep, tmp / "serial", serial=True, progress=False, plots=False)
        t_serial = time.perf_counter() - t
        walls_serial = [json.loads((tmp / "serial" / "points" / p.hash / "result.json").read_text())["timing"]["wall_s"]
                        for p in sweep.points]

        t = time.perf_counter()
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            client.run(_warm)
            t_start = time.perf_counter() - t
            lat = []
            for i in range(20):
                t1 = time.perf_counter()
                client.submit(_noop, i, pure=False).result()
                lat.append(time.perf_counter() - t1)
            t = time.perf_counter()
            res_p = run_sweep(sweep, tmp / "parallel", client=client, progress=False, plots=False)
            t_par = time.perf_counter() - t
        walls_par = [json.loads((tmp / "parallel" / "points" / p.hash / "result.json").read_text())["timing"]["wall_s"]
                     for p in sweep.points]
        same = (tmp / "serial" / SWEEP_POINTS_CSV).read_bytes() == (tmp / "parallel" / SWEEP_POINTS_CSV).read_bytes()
    assert res_s["done"] == res_p["done"] == n_pts, (res_s, res_p)
    speedup = t_serial / t_par
    out = {
        "benchmark": "sweep_throughput",
        "sweep": str(TOY.relative_to(ROOT)), "points": n_pts,
        "steps_per_point": sweep.points[0].equilibration_steps + sweep.points[0].production_steps,
        "workers": args.workers, "threads_per_worker": 1, "cpu_count": os.cpu_count(),
        "machine": platform.machine(), "python": platform.python_version(),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "serial_s": t_serial, "parallel_s": t_par, "cluster_start_s": t_start,
        "speedup": speedup, "target_speedup": 0.9 * args.workers, "meets_target": speedup >= 0.9 * args.workers,
        "point_wall_s_serial_mean": sum(walls_serial) / n_pts, "point_wall_s_parallel_mean": sum(walls_par) / n_pts,
        "per_point_overhead_s": (args.workers * t_par - sum(walls_par)) / n_pts,
        "per_point_overhead_serial_s": (t_serial - sum(walls_serial)) / n_pts,
        "noop_task_latency_s": sum(lat) / len(lat),
        "points_csv_identical": same,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
