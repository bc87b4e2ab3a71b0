"""Deep Potential force call: dpqtb's DeepPotential (vesin list + forward_lower, chunked) against
DeePMD-kit's own ``DeepPot.eval`` on the same model, cells and machine, in the same run.

Fm-3m LaH10 supercells (a = 4.95 Å ≈ 200 GPa, thermally rattled by 0.05 Å) of 352, 5,500 and 44,000
atoms (any 44·k³ atoms: the conventional cell repeated k×k×k, e.g. 352,000 = 44·20³). Each case runs
in its own subprocess (so its peak RSS and GPU memory are its own) under an address-space limit (CPU
only), so that an out-of-memory case is recorded as such instead of taking the machine down; a case
that outlives ``--case-timeout-s`` (or the ``--deadline-s`` of the whole run) is recorded as timed
out. The JSON is rewritten after every case (``"complete": false`` until the last), so a run that is
killed keeps what it measured.
Reported: seconds per force call (median of the timed calls after one warm-up call, which also
builds the neighbour list; the timed calls move the atoms by < skin/2 so the list is reused as in
MD), atom-steps per second, peak RSS, and the ratio dpqtb / DeepPot.eval. On CUDA also the peak GPU
memory of the torch allocator (allocated and reserved); both methods then run on the GPU (DeepPot
picks CUDA when it is available), DeepPot.eval including its host<->device copies of coordinates
and results (its API takes and returns numpy arrays), dpqtb's timed calls starting from positions
already on the GPU, as in MD.

The model: ``--model PATH`` (a frozen .pth), else a randomly initialised se_e2_a model with the
architecture of dpqtb's default training input (timings do not depend on the weights).

    python benchmarks/bench_deepmd.py [--device cpu|cuda] [--sizes 352,5500,44000] [--out FILE]
    python benchmarks/bench_deepmd.py --device cuda --methods dpqtb --sizes 44000,352000 --chunk-atoms 8192
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CELLS = {352: (2, 2, 2), 5500: (5, 5, 5), 44000: (10, 10, 10)}


def _repeat(n_atoms: int) -> tuple[int, int, int]:
    """k×k×k repeat of the 44-atom conventional cell with n_atoms = 44·k³."""
    if n_atoms in CELLS:
        return CELLS[n_atoms]
    k = round((n_atoms / 44) ** (1 / 3))
    if k < 1 or 44 * k**3 != n_atoms:
        raise SystemExit(f"unsupported size {n_atoms}: not 44·k³ (e.g. {sorted(CELLS)}, 352000)")
    return (k, k, k)


def _atoms(n_atoms: int):
    from dpqtb.structures.lah10 import fm3m

    atoms = fm3m(4.95, cell="conventional").repeat(_repeat(n_atoms))
    atoms.positions += np.random.default_rng(0).normal(0.0, 0.05, atoms.positions.shape)
    return atoms


def default_model(path: Path, sel=(48, 408), rcut=6.0) -> Path:
    """A random se_e2_a model with DeePMD's standard network sizes (embedding 25-50-100, axis 16,
    fitting 240-240-240): same cost as a trained model of that architecture."""
    import torch
    import deepmd.pt  # noqa: F401
    from deepmd.pt.model.model import get_model
    from deepmd.utils.argcheck import normalize

    params = {"type_map": ["La", "H"],
              "descriptor": {"type": "se_e2_a", "sel": list(sel), "rcut_smth": 0.5, "rcut": rcut,
                             "neuron": [25, 50, 100], "axis_neuron": 16, "seed": 1},
              "fitting_net": {"neuron": [240, 240, 240], "seed": 1}}
    full = normalize({"model": params, "training": {"training_data": {"systems": ["x"]}, "numb_steps": 1},
                      "learning_rate": {"type": "exp", "start_lr": 1e-3}, "loss": {"type": "ener"}})
    model = get_model(full["model"]).eval()
    torch.jit.save(torch.jit.script(model), str(path), {"data_modifier.pth": ""})
    return path


def run_case(method: str, n_atoms: int, model: str, device: str, repeats: int, chunk: int | None) -> dict:
    """One case in this process: returns timings and memory."""
    import torch

    torch.set_num_threads(int(os.environ.get("DPQTB_BENCH_THREADS", "1")))
    atoms = _atoms(n_atoms)
    rng = np.random.default_rng(1)
    moves = [atoms.positions + rng.uniform(-0.05, 0.05, atoms.positions.shape) for _ in range(repeats + 1)]
    times = []
    first = None
    if method == "dpqtb":
        from dpqtb.potential.deepmd import DeepPotential

        pot = DeepPotential(model, device=device, skin_A=1.0, chunk_atoms=chunk,
                            neighbour_backend=os.environ.get("DPQTB_BENCH_NL_BACKEND", "auto"))
        type_map = ("La", "H")
        pot.bind(type_map)
        species = torch.tensor([type_map.index(s) for s in atoms.get_chemical_symbols()], device=device)
        cell = torch.tensor(atoms.cell.array, device=device)
        for k, x in enumerate(moves):
            pos = torch.tensor(x, device=device)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = pot(pos, cell, species)
            float(out.energy)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if k:
                times.append(time.perf_counter() - t0)
            else:
                first = time.perf_counter() - t0
        energy = float(out.energy)
        extra = {"chunk_atoms": chunk, "neighbour_list_builds": pot._lists[0].vl.n_builds,
                 "neighbour_list_backend": pot._lists[0].vl.backend_used,
                 "candidate_pairs": int(pot._lists[0].n_pairs)}
    else:
        from deepmd.infer import DeepPot

        dp = DeepPot(model)
        try:
            from deepmd.pt.utils.env import DEVICE as dp_device
            extra_dev = {"deeppot_device": str(dp_device)}
        except ImportError:
            extra_dev = {}
        atype = np.array([dp.get_type_map().index(s) for s in atoms.get_chemical_symbols()])
        box = atoms.cell.array.reshape(1, 9)
        for k, x in enumerate(moves):
            t0 = time.perf_counter()
            e, _, _ = dp.eval(x.reshape(1, -1), box, atype)
            if k:
                times.append(time.perf_counter() - t0)
            else:
                first = time.perf_counter() - t0
        energy = float(np.ravel(e)[0])
        extra = extra_dev
    t = float(np.median(times))
    res = {"method": method, "n_atoms": n_atoms, "s_per_call": t, "atom_steps_per_s": n_atoms / t,
           "calls_timed": len(times), "energy_eV": energy,
           "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3}
    if device.startswith("cuda"):
        res["peak_gpu_MB"] = torch.cuda.max_memory_allocated() / 1e6
        res["peak_gpu_reserved_MB"] = torch.cuda.max_memory_reserved() / 1e6
        res["device_name"] = torch.cuda.get_device_name()
    res["s_per_call_all"] = times
    res["first_call_s"] = first  # the untimed warm-up call (dpqtb: includes the neighbour-list build)
    res.update(extra)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="frozen DeePMD-kit model (.pth); default: random, standard size")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="352,5500,44000")
    ap.add_argument("--methods", default="dpqtb,deeppot_eval")
    ap.add_argument("--chunk-atoms", type=int, default=512,
                    help="DeepPotential local atoms per model call (0: all atoms in one call)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--mem-limit-GB", type=float, default=16.0,
                    help="address-space limit per case (an OOM case is recorded, not fatal)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--case-timeout-s", type=float, default=None,
                    help="wall-clock limit per case (a case over it is recorded as timed out)")
    ap.add_argument("--deadline-s", type=float, default=None,
                    help="wall-clock limit of the whole run: later cases get what is left, or are skipped")
    ap.add_argument("--nl-backend", default="auto", choices=["auto", "vesin", "vesin-torch"],
                    help="where dpqtb builds its neighbour list (auto: vesin-torch on CUDA, vesin on CPU)")
    ap.add_argument("--load-note", default="", help="what else ran on the machine during the measurement")
    ap.add_argument("--out", default=None)
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.case:  # child process
        method, n = args.case.split(":")
        res = run_case(method, int(n), args.model, args.device, args.repeats, args.chunk_atoms or None)
        print("RESULT " + json.dumps(res))
        return

    t_start = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="bench_dp_")
    model = args.model or str(default_model(Path(tmp) / "standard_se_e2_a.pth"))
    env = dict(os.environ, DPQTB_BENCH_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads),
               DPQTB_BENCH_NL_BACKEND=args.nl_backend)
    limit = int(args.mem_limit_GB * 1e9)
    path = Path(args.out or HERE / "results" / f"deepmd_{args.device.split(':')[0]}.json")
    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        _repeat(n)  # fail early on a size that is not 44·k³
        for method in args.methods.split(","):
            def _limit():
                if args.device == "cpu":
                    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

            timeout = args.case_timeout_s
            if args.deadline_s is not None:
                left = args.deadline_s - (time.perf_counter() - t_start)
                timeout = left if timeout is None else min(timeout, left)
            t0 = time.perf_counter()
            if timeout is not None and timeout < 10:
                res = {"method": method, "n_atoms": n, "failed": "skipped: no time left in the run"}
            else:
                try:
                    proc = subprocess.run([sys.executable, __file__, "--case", f"{method}:{n}", "--model", model,
                                           "--device", args.device, "--repeats", str(args.repeats),
                                           "--chunk-atoms", str(args.chunk_atoms)],
                                          capture_output=True, text=True, env=env, preexec_fn=_limit,
                                          timeout=timeout)
                except subprocess.TimeoutExpired:
                    res = {"method": method, "n_atoms": n, "failed": f"timed out after {timeout:.0f} s"}
                else:
                    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                    if proc.returncode == 0 and line:
                        res = json.loads(line[0][7:])
                    else:
                        err = (proc.stderr.strip().splitlines() or ["?"])[-1]
                        low = proc.stderr.lower()
                        oom = "memory" in low or "alloc" in low or proc.returncode < 0
                        res = {"method": method, "n_atoms": n,
                               "failed": ("out of memory: " if oom else "") + err[:300]}
                        if args.device == "cpu":
                            res["mem_limit_GB"] = args.mem_limit_GB
            res["case_wall_s"] = time.perf_counter() - t0
            print(json.dumps(res), flush=True)
            results.append(res)
            _write(path, _summary(args, results, complete=False))
    _write(path, _summary(args, results, complete=True))
    print(f"written {path}")


def _write(path: Path, out: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(path)


def _summary(args, results: list[dict], complete: bool) -> dict:
    """The JSON of the run so far (the parent never touches the GPU: the device name and torch
    version of a CUDA run come from its cases)."""
    by = {(r["method"], r["n_atoms"]): r for r in results}
    ratios = {}
    for n in sorted({r["n_atoms"] for r in results}):
        a, b = by.get(("dpqtb", n)), by.get(("deeppot_eval", n))
        if a and b and "s_per_call" in a and "s_per_call" in b:
            ratios[str(n)] = {"speedup_vs_deeppot_eval": b["s_per_call"] / a["s_per_call"],
                              "memory_ratio_deeppot_eval_over_dpqtb": b["peak_rss_MB"] / a["peak_rss_MB"],
                              "energy_rel_diff": abs(a["energy_eV"] - b["energy_eV"]) / abs(b["energy_eV"])}
            if "peak_gpu_MB" in a and "peak_gpu_MB" in b:
                ratios[str(n)]["gpu_memory_ratio_deeppot_eval_over_dpqtb"] = b["peak_gpu_MB"] / a["peak_gpu_MB"]
    import torch

    cuda = args.device.startswith("cuda")
    names = [r["device_name"] for r in results if "device_name" in r]
    fitted = [r["n_atoms"] for r in results if r["method"] == "dpqtb" and "s_per_call" in r]
    return {"benchmark": "deep_potential_force_call", "device": args.device,
            "device_name": (names[0] if names else "cuda (no case finished)") if cuda
            else platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads": args.threads, "model": args.model or "random se_e2_a "
            "(rcut 6 Å, sel [48, 408], embedding 25-50-100, axis 16, fitting 240-240-240), float64",
            "structure": "Fm-3m LaH10, a = 4.95 Å, rattled 0.05 Å", "chunk_atoms": args.chunk_atoms or None,
            "repeats": args.repeats,
            "load_note": args.load_note, "neighbour_list_backend": args.nl_backend,
            "largest_dpqtb_cell_measured": max(fitted) if fitted else None,
            "complete": complete, "results": results, "ratios": ratios}

if __name__ == "__main__":
    main()
