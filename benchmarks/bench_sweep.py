"""Sweep throughput: N local Dask workers against the same points run serially in one process.

Both runs use the points of examples/sweep_morse.toml (8 Morse points; ``--production-steps`` sets
their length) in fresh directories, in the same run of this script.  Before timing, the serial
process and every worker import dpqtb's MD and analysis (the LocalCluster start-up is timed apart).

* speed-up = t_serial / t_parallel (the issue's target: >= 0.9 N);
* per-point overhead (s) = (N t_parallel - sum of the points' own wall times on the workers) / points:
  the worker-slot time not spent inside a point (scheduling, transfers, idle slots at the end);
* the CPU share of a point (its CPU time / its wall time): 1 on an idle machine; below 1 the points
  waited for a core held by other jobs, which no scheduler can give back;
* serial and parallel runs alternate ``--repeats`` times on one warm cluster; medians are reported;
* task latency (s): the mean round trip of a no-op task submitted and gathered one at a time;
* the two points.csv files are compared byte for byte.

    python benchmarks/bench_sweep.py [--workers 2] [--production-steps 400] [--repeats 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
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


def _timed(run, out: Path, sweep) -> dict:
    t = time.perf_counter()
    res = run(out)
    wall = time.perf_counter() - t
    assert res["done"] == len(sweep.points), res
    timing = [json.loads((out / "points" / p.hash / "result.json").read_text())["timing"] for p in sweep.points]
    return {"wall_s": wall, "point_wall_s": [x["wall_s"] for x in timing], "point_cpu_s": [x["cpu_s"] for x in timing]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--production-steps", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=2, help="serial/parallel pairs, alternating (median taken)")
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
    n_pts, n = len(sweep.points), args.workers
    load_before = os.getloadavg()
    serial, parallel = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _warm()
        t = time.perf_counter()
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            client.run(_warm)
            t_start = time.perf_counter() - t
            lat = []
            for i in range(20):
                t1 = time.perf_counter()
                client.submit(_noop, i, pure=False).result()
                lat.append(time.perf_counter() - t1)
            for k in range(args.repeats):  # alternate, so that a change of the machine's load hits both
                serial.append(_timed(lambda o: run_sweep(sweep, o, serial=True, progress=False, plots=False),
                                     tmp / f"serial{k}", sweep))
                parallel.append(_timed(lambda o: run_sweep(sweep, o, client=client, progress=False, plots=False),
                                       tmp / f"parallel{k}", sweep))
        same = all((tmp / f"{m}{k}" / SWEEP_POINTS_CSV).read_bytes() == (tmp / "serial0" / SWEEP_POINTS_CSV).read_bytes()
                   for m in ("serial", "parallel") for k in range(args.repeats))
    med = statistics.median
    t_serial, t_par = med(r["wall_s"] for r in serial), med(r["wall_s"] for r in parallel)
    speedups = [s_["wall_s"] / p_["wall_s"] for s_, p_ in zip(serial, parallel)]
    par_walls = [sum(r["point_wall_s"]) for r in parallel]
    out = {
        "benchmark": "sweep_throughput",
        "sweep": str(TOY.relative_to(ROOT)), "points": n_pts,
        "steps_per_point": sweep.points[0].equilibration_steps + sweep.points[0].production_steps,
        "workers": n, "threads_per_worker": 1, "cpu_count": os.cpu_count(), "repeats": args.repeats,
        "machine": platform.machine(), "python": platform.python_version(),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "serial_s": [r["wall_s"] for r in serial], "parallel_s": [r["wall_s"] for r in parallel],
        "cluster_start_s": t_start,
        "speedup_per_pair": speedups, "speedup": med(speedups),
        "target_speedup": 0.9 * n, "meets_target": med(speedups) >= 0.9 * n,
        "point_wall_s_serial_mean": med(sum(r["point_wall_s"]) for r in serial) / n_pts,
        "point_wall_s_parallel_mean": med(par_walls) / n_pts,
        # the share of a core a point got: 1 on an idle machine, less when other jobs hold the cores
        "point_cpu_share_serial": med(sum(r["point_cpu_s"]) / sum(r["point_wall_s"]) for r in serial),
        "point_cpu_share_parallel": med(sum(r["point_cpu_s"]) / sum(r["point_wall_s"]) for r in parallel),
        # derived, not measured: the speed-up had the points of both runs got the same share of a core
        "speedup_at_equal_cpu_share": med(speedups) * (
            med(sum(r["point_cpu_s"]) / sum(r["point_wall_s"]) for r in serial)
            / med(sum(r["point_cpu_s"]) / sum(r["point_wall_s"]) for r in parallel)),
        "per_point_overhead_s": med((n * r["wall_s"] - w) / n_pts for r, w in zip(parallel, par_walls)),
        "per_point_overhead_serial_s": med((r["wall_s"] - sum(r["point_wall_s"])) / n_pts for r in serial),
        "noop_task_latency_s": sum(lat) / len(lat),
        "points_csv_identical": same,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
