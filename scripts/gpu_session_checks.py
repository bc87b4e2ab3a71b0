"""Checks that scripts/gpu_session.sh runs on a lent GPU machine (each writes one JSON file).

    python scripts/gpu_session_checks.py env --device cuda --out OUT/env.json
        torch, CUDA, DeePMD-kit (which copy, whether its PyTorch ops loaded), vesin, ase; exit 1
        when deepmd.pt does not import or the device is not usable.
    python scripts/gpu_session_checks.py builtin --device cuda --out OUT/builtin_cuda.json
        the shipped compressed model builtin:lah10 (float32, tabulated embedding: DeePMD-kit's
        custom ops, on CUDA its CUDA kernels) on DEVICE against the CPU at 44 and 352 atoms, then
        seconds per force call on DEVICE at larger cells (--time-sizes).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np


def _write(path: str, out: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


def check_env(args) -> int:
    out: dict = {"python": sys.version.split()[0], "platform": platform.platform()}
    ok = True
    import torch

    out["torch"] = torch.__version__
    out["torch_cuda"] = torch.version.cuda
    out["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        out["device_name"] = torch.cuda.get_device_name()
        out["device_capability"] = list(torch.cuda.get_device_capability())
        free, total = torch.cuda.mem_get_info()
        out["gpu_memory_free_GB"], out["gpu_memory_total_GB"] = free / 1e9, total / 1e9
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ok = False
        out["error_cuda"] = "torch sees no CUDA device"
    try:
        import deepmd
        import deepmd.pt
        from deepmd.pt.cxx_op import ENABLE_CUSTOMIZED_OP

        out["deepmd"] = deepmd.__version__
        out["deepmd_file"] = deepmd.__file__
        out["deepmd_ops_loaded"] = bool(ENABLE_CUSTOMIZED_OP)
        ops = torch.ops.deepmd
        out["deepmd_tabulate_op"] = hasattr(ops, "tabulate_fusion_se_a")
        from deepmd.pt.utils.env import DEVICE

        out["deepmd_default_device"] = str(DEVICE)
        from deepmd.infer import DeepPot  # noqa: F401  (pulls mendeleev, lmdb, ...)
    except Exception as exc:  # noqa: BLE001  (report whatever breaks the import)
        ok = False
        out["error_deepmd"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-2000:]
    for name in ("vesin", "ase", "dpqtb"):
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "?") + " @ " + str(Path(mod.__file__).parent)
        except Exception as exc:  # noqa: BLE001
            ok = False
            out[f"error_{name}"] = repr(exc)
    # the neighbour list built on the device (vesin-torch) must equal the host build exactly
    try:
        import numpy as np

        from dpqtb.potential.neighbors import VerletList

        import vesin_torch

        from dpqtb.structures.lah10 import fm3m, supercell

        out["vesin_torch"] = getattr(vesin_torch, "__version__", "?")
        dev = args.device
        cases = []
        # LaH10 at ~300 GPa with the DP list's cutoff + skin (7 Å: ~520 pairs per atom), 44 and 352
        # atoms (many periodic images in the small cell), full and half lists, atoms a cell away
        for reps in (1, 2):
            at = supercell(fm3m(4.75, "conventional"), reps)
            at.rattle(0.1, seed=1)
            pos = at.positions + np.round(np.random.default_rng(2).normal(0, 0.7, (len(at), 3))) @ at.cell.array
            for full in (True, False):
                lists = {}
                for b in ("vesin", "vesin-torch"):
                    vl = VerletList(6.0, 1.0, full=full, backend=b)
                    vl.update(torch.tensor(pos, device=dev), torch.tensor(at.cell.array, device=dev),
                              (True, True, True))
                    lists[b] = [t.cpu() for t in (vl.i, vl.j, vl.shifts)]
                cases.append({"atoms": len(at), "full": full, "pairs": int(len(lists["vesin"][0])),
                              "equal": all(torch.equal(a, c) for a, c in zip(lists["vesin"], lists["vesin-torch"]))})
        out["neighbour_list_cases"] = cases
        out["neighbour_list_device_equals_host"] = all(c["equal"] for c in cases)
    except Exception as exc:  # noqa: BLE001
        out["error_neighbour_list_device"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-2000:]
    out["ok"] = ok
    _write(args.out, out)
    return 0 if ok else 1


def _cell(n_atoms: int, seed: int = 0):
    from dpqtb.structures.lah10 import fm3m

    k = round((n_atoms / 44) ** (1 / 3))
    assert 44 * k**3 == n_atoms, n_atoms
    atoms = fm3m(4.95, cell="conventional").repeat((k, k, k))
    atoms.positions += np.random.default_rng(seed).normal(0.0, 0.05, atoms.positions.shape)
    return atoms


def _call(pot, atoms, device, positions=None):
    import torch

    type_map = ("La", "H")
    sp = torch.tensor([type_map.index(s) for s in atoms.get_chemical_symbols()], device=device)
    x = torch.tensor(atoms.positions if positions is None else positions, device=device)
    return pot(x, torch.tensor(atoms.cell.array, device=device), sp)


def check_builtin(args) -> int:
    import torch

    from dpqtb.potential.builtin import resolve
    from dpqtb.potential.deepmd import DeepPotential

    path = resolve("builtin:lah10")
    out: dict = {"model": "builtin:lah10 (compressed, float32 se_e2_a)", "device": args.device,
                 "torch": torch.__version__, "compare": [], "timing": []}
    ok = True
    for n in [int(s) for s in args.compare_sizes.split(",") if s]:
        atoms = _cell(n)
        entry: dict = {"n_atoms": n}
        try:
            res = {}
            for dev in (args.device, "cpu"):
                pot = DeepPotential(path, device=dev, skin_A=1.0, chunk_atoms=args.chunk_atoms)
                pot.bind(("La", "H"))
                o = _call(pot, atoms, dev)
                res[dev] = (float(o.energy), o.forces.cpu().numpy(), o.virial.cpu().numpy())
            (e1, f1, v1), (e0, f0, v0) = res[args.device], res["cpu"]
            entry.update(energy_eV=e0, energy_rel_diff=abs(e1 - e0) / abs(e0),
                         force_max_abs_diff_eV_per_A=float(np.abs(f1 - f0).max()),
                         force_max_abs_eV_per_A=float(np.abs(f0).max()),
                         virial_max_abs_diff_eV=float(np.abs(v1 - v0).max()))
            # float32 model: agreement to float32 round-off, not to 1e-10
            entry["ok"] = entry["energy_rel_diff"] < 1e-5 and \
                entry["force_max_abs_diff_eV_per_A"] < 1e-3 * max(1.0, entry["force_max_abs_eV_per_A"])
        except Exception as exc:  # noqa: BLE001
            entry["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-1500:]
            entry["ok"] = False
        ok &= entry["ok"]
        out["compare"].append(entry)
        _write(args.out, out)
    for n in [int(s) for s in args.time_sizes.split(",") if s]:
        entry = {"n_atoms": n, "chunk_atoms": args.time_chunk_atoms or None}
        try:
            atoms = _cell(n)
            pot = DeepPotential(path, device=args.device, skin_A=1.0, chunk_atoms=args.time_chunk_atoms or None)
            pot.bind(("La", "H"))
            rng = np.random.default_rng(1)
            times = []
            for k in range(args.repeats + 1):
                x = atoms.positions + rng.uniform(-0.05, 0.05, atoms.positions.shape)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                o = _call(pot, atoms, args.device, x)
                float(o.energy)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                dt = time.perf_counter() - t0
                if k:
                    times.append(dt)
                else:
                    entry["first_call_s"] = dt  # includes the neighbour-list build
            entry.update(s_per_call=float(np.median(times)), s_per_call_all=times,
                         atom_steps_per_s=n / float(np.median(times)),
                         neighbour_list_builds=pot._lists[0].vl.n_builds)
            if args.device.startswith("cuda"):
                entry["peak_gpu_MB"] = torch.cuda.max_memory_allocated() / 1e6
            del pot
        except Exception as exc:  # noqa: BLE001
            entry["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-1500:]
        out["timing"].append(entry)
        _write(args.out, out)
    out["ok"] = ok
    _write(args.out, out)
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["env", "builtin"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", required=True)
    ap.add_argument("--compare-sizes", default="44,352")
    ap.add_argument("--chunk-atoms", type=int, default=None, help="chunk of the comparison (default: none)")
    ap.add_argument("--time-sizes", default="5500,44000")
    ap.add_argument("--time-chunk-atoms", type=int, default=4096, help="0: all atoms in one call")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    return check_env(args) if args.what == "env" else check_builtin(args)


if __name__ == "__main__":
    sys.exit(main())
