"""Thermostat and barostat cost per MD step and noise-state memory at 44,000 atoms (LaH10 composition).

Compares, in the same run and on the same device: an NVE step (no thermostat), a classical Langevin
step, a QTB step and an adQTB step, all on the same cheap potential (Einstein springs, so the
thermostat dominates), plus one Morse force call on the same 44,000-atom cell as a stand-in for the
cheapest possible force call. Thermostat cost = step time - NVE step time; barostat cost (stochastic
cell rescaling, isotropic and flexible) = NPT step time - the same bath's NVT step time. Memory: bytes of the QTB
noise state (16-bit ring buffers) and of the adQTB spectra buffers, computed from the tensors, and
the process peak RSS.

    python benchmarks/bench_thermostat.py [--device cpu|cuda] [--steps N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import torch
from ase import Atoms

from timing import time_steps

from dpqtb.md.barostat import StochasticCellRescaling
from dpqtb.md.integrators import NVE, QTB, Langevin, TemperatureSchedule
from dpqtb.md.state import MDState, maxwell_boltzmann_momenta
from dpqtb.potential import EinsteinCrystal, Morse
from dpqtb.structures.lah10 import fm3m, supercell


def lah10_cell(n_cells: int = 10) -> Atoms:
    """Fm-3m LaH10 conventional cell (44 atoms, a = 5.1 Å) repeated n³: 44,000 atoms at n = 10."""
    return supercell(fm3m(5.1, cell="conventional"), n_cells)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--cells", type=int, default=10)
    ap.add_argument("--out", default=None)
    ap.add_argument("--dp-json", default=None,
                    help="bench_deepmd.py result with the Deep Potential call time on the same cell (default: "
                         "benchmarks/results/deepmd_<device>.json) for the bath's share of a production step")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (1: stable timings on a shared 2-core machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = args.device
    atoms = lah10_cell(args.cells)
    base = MDState.from_atoms(atoms, type_map=("La", "H"), device=dev)
    base.momenta = maxwell_boltzmann_momenta(base.masses, 300.0, torch.Generator(device=dev).manual_seed(1))
    n = base.n_atoms

    def pot():
        return EinsteinCrystal(base.positions.clone(), base.cell.clone(), k_by_species={"La": 10.0, "H": 20.0})

    dt = 0.5
    sched = TemperatureSchedule(300.0)
    results = {}
    for name, make in {
        "nve": lambda: NVE(pot(), dt),
        "langevin": lambda: Langevin(pot(), dt, sched, 100.0, 1),
        "qtb": lambda: QTB(pot(), dt, sched, 100.0, 1, f_max_THz=200.0, n_f=100, fd_diagnostic=False,
                           kinetic_correction=False),
        # what `dpqtb md` runs by default: mass-weighted net-impulse removal, spectra, kinetic correction
        "qtb_default": lambda: QTB(pot(), dt, sched, 100.0, 1, f_max_THz=200.0, n_f=100),
        "qtb_with_fd_diagnostic": lambda: QTB(pot(), dt, sched, 100.0, 1, f_max_THz=200.0, n_f=100, fd_diagnostic=True,
                                              kinetic_correction=False),
        "adqtb": lambda: QTB(pot(), dt, sched, 100.0, 1, f_max_THz=200.0, n_f=100, adaptive=True),
        # constant pressure (stochastic cell rescaling): the barostat's cost = step - the same bath's NVT step
        "langevin_npt": lambda: Langevin(pot(), dt, sched, 100.0, 1, barostat=StochasticCellRescaling(1.0, seed=2)),
        "langevin_npt_flexible": lambda: Langevin(pot(), dt, sched, 100.0, 1,
                                                  barostat=StochasticCellRescaling(1.0, seed=2, cell="flexible")),
        "qtb_default_npt": lambda: QTB(pot(), dt, sched, 100.0, 1, f_max_THz=200.0, n_f=100,
                                       barostat=StochasticCellRescaling(1.0, seed=2)),
    }.items():
        state = base.clone()
        integ = make()
        t = time_steps(integ, state, args.steps)
        entry = {"step_ms": t * 1e3}
        if isinstance(integ, QTB):
            entry["alpha_steps_per_noise_update"] = integ.bath.alpha
            entry["noise_state_MB"] = integ.bath.noise.memory_bytes() / 1e6
            if integ.bath.fd is not None:
                fd_bytes = sum(v.numel() * v.element_size() for v in integ.bath.fd.vbuf + integ.bath.fd.rbuf + integ.bath.fd.vsum)
                entry["fd_buffers_MB"] = fd_bytes / 1e6
            entry["thermostat_state_MB"] = entry["noise_state_MB"] + entry.get("fd_buffers_MB", 0.0)
        results[name] = entry
    nve = results["nve"]["step_ms"]
    for name, nvt in (("langevin_npt", "langevin"), ("langevin_npt_flexible", "langevin"),
                      ("qtb_default_npt", "qtb_default")):
        results[name]["barostat_ms_per_step"] = results[name]["step_ms"] - results[nvt]["step_ms"]
    for name, entry in results.items():
        if name != "nve" and "barostat_ms_per_step" not in entry:
            entry["thermostat_ms_per_step"] = entry["step_ms"] - nve
            entry["ratio_to_langevin_thermostat"] = (entry["thermostat_ms_per_step"]
                                                     / max(results["langevin"]["step_ms"] - nve, 1e-9))
    # a force call of the cheapest real potential on the same cell
    morse = Morse(0.3429, 1.3588, 1.4, 3.0)
    morse(base.positions, base.cell, base.species)
    if base.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(3):
        morse(base.positions + 1e-9, base.cell, base.species)
    if base.device.type == "cuda":
        torch.cuda.synchronize()  # CUDA kernels run asynchronously: time them to completion
    morse_ms = (time.perf_counter() - t0) / 3 * 1e3
    for name, entry in results.items():
        if "thermostat_ms_per_step" in entry:
            entry["thermostat_over_morse_force_call"] = entry["thermostat_ms_per_step"] / morse_ms
    # share of a production step (Deep Potential force call on the same 44,000-atom cell, measured by
    # benchmarks/bench_deepmd.py on this machine) taken by each bath
    dp_s = None
    dp_path = Path(args.dp_json) if args.dp_json else Path(__file__).parent / "results" / f"deepmd_{dev.split(':')[0]}.json"
    if dp_path.exists():
        rows = [r for r in json.loads(dp_path.read_text()).get("results", [])
                if r.get("method") == "dpqtb" and r.get("n_atoms") == n]
        dp_s = rows[0]["s_per_call"] if rows else None
    if dp_s:
        for name, entry in results.items():
            if "barostat_ms_per_step" in entry:
                entry["barostat_share_of_dp_step"] = entry["barostat_ms_per_step"] / (
                    results["langevin"]["step_ms"] - nve + entry["barostat_ms_per_step"] + dp_s * 1e3)
            if "thermostat_ms_per_step" in entry:
                entry["share_of_dp_step"] = entry["thermostat_ms_per_step"] / (entry["thermostat_ms_per_step"]
                                                                              + dp_s * 1e3)
    out = {
        "benchmark": "thermostat_cost", "n_atoms": n, "device": dev,
        "dp_force_call_s_same_cell": dp_s, "dp_force_call_source": str(dp_path.name) if dp_s else None,
        "target_share_of_step": 0.05,
        "device_name": torch.cuda.get_device_name() if dev.startswith("cuda") else platform.processor() or platform.machine(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "timestep_fs": dt, "n_f": 100,
        "f_max_THz": 200.0, "steps_timed": args.steps, "results": results,
        "morse_force_call_ms": morse_ms,
        "lammps_fix_qtb_noise_state_MB_same_cell": n * 6 * 100 * 8 / 1e6,
        "target_noise_state_MB": 100.0,
        "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
    }
    if dev.startswith("cuda"):
        out["peak_gpu_MB"] = torch.cuda.max_memory_allocated() / 1e6
    text = json.dumps(out, indent=2)
    print(text)
    path = Path(args.out or Path(__file__).parent / "results" / f"thermostat_{dev.split(':')[0]}.json")
    path.write_text(text + "\n")


if __name__ == "__main__":
    main()
