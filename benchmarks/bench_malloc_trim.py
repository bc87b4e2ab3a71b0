"""What Dask's worker environment costs a Deep Potential MD point: MALLOC_TRIM_THRESHOLD_=65536 vs unset.

Dask's nanny starts every worker process with ``MALLOC_TRIM_THRESHOLD_=65536`` (glibc then returns freed
memory to the OS at once). A torch MD step frees and re-allocates its buffers every step, so with that
setting they are unmapped and mapped again (page faults, system time) every step. ``dpqtb sweep``'s own
LocalCluster starts its workers without it (``dpqtb.workflows.sweep.make_client``); this benchmark
measures the difference on the sweep's own point kinds: ``dpqtb md`` in a subprocess (as a worker runs
it: one thread), ``builtin:lah10`` 44 atoms at 200 GPa NPT, QTB (1 bead) and TRPMD (8 beads), the two
environments alternating ``--repeats`` times. Wall, user and system CPU seconds of each child come from
``os.wait4``; medians are reported with the machine's load average (the same load for both variants).

    python benchmarks/bench_malloc_trim.py [--repeats 2] [--out benchmarks/results/sweep_malloc_trim.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = {  # name -> (thermostat lines, steps)
    "qtb_1bead": ('kind = "qtb"\ndamp_fs = 100.0\nf_max_THz = 200.0\nn_f = 100\n', 400),
    "trpmd_8beads": ('kind = "trpmd"\nbeads = 8\ndamp_fs = 100.0\n', 100),
}
VARIANTS = {"dask_default_65536": "65536", "unset": None}


def _config(thermostat: str, steps: int) -> str:
    return f"""[system]
structure = "builtin:lah10"
supercell = [1, 1, 1]
pressure_GPa = 200
[potential]
kind = "deepmd"
model = "builtin:lah10"
[md]
timestep_fs = 0.5
steps = {steps}
seed = 7
[thermostat]
temperature_K = 200
{thermostat}[barostat]
pressure_GPa = 200.0
damp_fs = 1000.0
[output]
thermo_every = 10
trajectory_every = 8
trajectory_velocities = true
progress = false
"""


def _run(cfg: Path, out: Path, trim: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    env.update({"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")})
    if trim is not None:
        env["MALLOC_TRIM_THRESHOLD_"] = trim
    cmd = [sys.executable, "-c", "import sys; from dpqtb.cli import main; sys.exit(main(sys.argv[1:]))",
           "--threads", "1", "md", str(cfg), "--out", str(out)]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    err = proc.stderr.read()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"dpqtb md failed: {err[-500:]}")
    return {"wall_s": wall, "user_s": ru.ru_utime, "sys_s": ru.ru_stime, "minor_faults": ru.ru_minflt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "sweep_malloc_trim.json"))
    args = ap.parse_args()
    results, load = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for case, (th, steps) in CASES.items():
            cfg = tmp / f"{case}.toml"
            cfg.write_text(_config(th, steps))
            runs = {v: [] for v in VARIANTS}
            for r in range(args.repeats):
                for v, trim in VARIANTS.items():
                    load.append(os.getloadavg()[0])
                    runs[v].append(_run(cfg, tmp / f"{case}_{v}_{r}", trim))
                    print(case, v, r, {k: round(x, 2) for k, x in runs[v][-1].items()}, flush=True)
            med = {v: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for v, rs in runs.items()}
            results[case] = {"steps": steps, "runs": runs, "median": med,
                             "wall_ratio_dask_default_over_unset": med["dask_default_65536"]["wall_s"] / med["unset"]["wall_s"],
                             "sys_share_dask_default": med["dask_default_65536"]["sys_s"]
                             / (med["dask_default_65536"]["sys_s"] + med["dask_default_65536"]["user_s"]),
                             "sys_share_unset": med["unset"]["sys_s"] / (med["unset"]["sys_s"] + med["unset"]["user_s"])}
    doc = {"what": __doc__.splitlines()[0], "date": time.strftime("%Y-%m-%d"), "host": platform.node(),
           "cpus": os.cpu_count(), "python": platform.python_version(), "repeats": args.repeats,
           "load_average_1min": {"min": min(load), "max": max(load)}, "results": results,
           "note": "wall includes the model load (~5-10 s) of each dpqtb md process; user+sys is the CPU the run used"}
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    for case, r in results.items():
        print(f"{case}: wall {r['wall_ratio_dask_default_over_unset']:.2f}x with Dask's default, system time "
              f"{100 * r['sys_share_dask_default']:.0f} % vs {100 * r['sys_share_unset']:.0f} % of the CPU time")


if __name__ == "__main__":
    main()
