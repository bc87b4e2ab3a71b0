"""Register v3's quantum held-out frames (issue 27 item 4; docs/training.md, "v3"): configurations that QTB
and path-integral MD of builtin:lah10 (v2) visit, in a job store no model trains on
(data/labels/heldout_quantum), validated whole with ``dpqtb validate --data STORE --all-frames``, per kind:

* ``qtb-md``: QTB trajectories of the verdict sweep (200 GPa, 44 atoms, γ = 10/ps, 5 / 100 / 200 K) and of
  the flexible-cell distortion sweep (100 and 150 GPa, 50 K): 6 frames of each after its equilibration;
* ``pimd-bead``: every 67th bead frame after 1 ps of ``examples/heldout_trpmd_lah10.toml`` (TRPMD, 16 beads,
  200 K, 150 GPa, NPT), run here first (resumed if a checkpoint exists; ~30 min on one core).

Each frame's meta carries the temperature and pressure of its run (``--meta``; frames registered before get them
when this runs again), so that ``dpqtb validate --quantum-data`` reports errors per kind and temperature.

Labelling is not started: ``scripts/label_queue.sh data/labels/heldout_quantum`` (44-atom frames, ~6 min each
on one rank at the production settings). Re-running registers nothing twice (frames are content-hashed).

    .venv/bin/python scripts/queue_quantum_heldout.py [--store DIR] [--no-md]
"""
import argparse
import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DPQTB = [sys.executable, "-m", "dpqtb.cli", "--threads", "1"]
QTB_SWEEPS = {  # sweep dir -> (which of its QTB points, which frames: 6 after equilibration)
    "data/paper/sweeps/verdict": (lambda r: (r["bath"] == "qtb" and r["n_atoms"] == "44" and not r.get("seed")
                                             and float(r["thermostat.damp_fs"]) == 100.0), "1000::350"),  # of 2751
    "data/sweeps/distortion_lah10": (lambda r: r["bath"] == "qtb", "300::100"),  # of 801
}
TRPMD_CONFIG = "examples/heldout_trpmd_lah10.toml"
TRPMD_DIR = "data/heldout/trpmd_150GPa_200K"
BEAD_INDEX = "640::67"  # 16 beads x sample (every 50 steps): frame 640 is step 2000 (1 ps)


def run(cmd):
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=ROOT, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="data/labels/heldout_quantum", help="job store (relative to the repository)")
    ap.add_argument("--no-md", action="store_true", help="register only what exists (no TRPMD run)")
    a = ap.parse_args()
    for sweep, (keep, index) in QTB_SWEEPS.items():
        with open(ROOT / sweep / "points.csv", newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r["status"] == "done" and keep(r)]
        for r in rows:
            traj = ROOT / sweep / "points" / r["hash"] / "trajectory.extxyz"
            # the run's temperature and pressure in each frame's meta (errors by temperature in dpqtb validate;
            # frames registered before get them too)
            cond = ["--meta", f"temperature_K={r['temperature_K']}",
                    "--meta", f"pressure_GPa={r.get('pressure_GPa') or r['P_target_GPa']}"]
            if traj.is_file():
                run(DPQTB + ["label", "--store", a.store, "--no-run", "--kind", "qtb-md", "--index", index, *cond, traj])
            else:
                print(f"skipped (no trajectory on this machine): {traj}")
    beads = ROOT / TRPMD_DIR / "trajectory_beads.extxyz"
    if not a.no_md:
        # a checkpoint: resume it (a finished run: 0 steps); none: start afresh over whatever is there
        resume = ["--resume"] if (ROOT / TRPMD_DIR / "checkpoint.pt").is_file() else ["--overwrite"]
        run(DPQTB + ["md", TRPMD_CONFIG, *resume])
    if beads.is_file():
        import tomllib

        cfg = tomllib.loads((ROOT / TRPMD_CONFIG).read_text())
        cond = ["--meta", f"temperature_K={cfg['thermostat']['temperature_K']}",
                "--meta", f"pressure_GPa={cfg['barostat']['pressure_GPa']}"]
        run(DPQTB + ["label", "--store", a.store, "--no-run", "--kind", "pimd-bead", "--index", BEAD_INDEX, *cond,
                     beads])


if __name__ == "__main__":
    main()
