"""Memory of DeepPotential's neighbour list (``_GhostList``) before and after the compact storage.

Measured: the bytes of every tensor held by a ``_GhostList`` (its Verlet list included; shared
storages counted once) right after ``update`` on a rattled Fm-3m LaH10 supercell (a = 4.95 Å,
10x10x10 conventional cells = 44,000 atoms; optionally 5x5x5 = 5,500), with the default model's
list parameters (r_cut 6 Å, skin 1 Å, sel [48, 408] for [La, H]) and chunks of 512 local atoms as
in ``bench_deepmd.py``. The model is not evaluated. "before" is ``src/dpqtb/potential/deepmd.py``
as of ``--before-rev`` (extracted with ``git show`` into a temporary directory and imported from
there), "after" the working tree; both use the same ``neighbors.py``. Each variant runs in its own
subprocess with 1 thread, which also reports its peak RSS (the transient memory of the build) and
the time of the build and of one pass that forms every chunk's DeePMD neighbour list; a SHA-256 of
those neighbour lists and chunk coordinates checks that both variants hand the model the same bits.

    python benchmarks/bench_list_memory.py [--sizes 44000[,5500]] [--before-rev REV] [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
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
ROOT = HERE.parent
MODULE = "src/dpqtb/potential/deepmd.py"
#: last commit of deepmd.py with the int64/float pair arrays
BEFORE_REV = "dde286c84605efc84a82ade83448b30d6e05b8ac"
CELLS = {5500: (5, 5, 5), 44000: (10, 10, 10)}
RCUT, SKIN, SEL, TYPE_MAP = 6.0, 1.0, [48, 408], ("La", "H")


def _atoms(n_atoms: int):
    from dpqtb.structures.lah10 import fm3m

    atoms = fm3m(4.95, cell="conventional").repeat(CELLS[n_atoms])
    atoms.positions += np.random.default_rng(0).normal(0.0, 0.05, atoms.positions.shape)
    return atoms


def _load(variant: str, rev: str):
    if variant == "after":
        from dpqtb.potential import deepmd

        return deepmd
    src = subprocess.run(["git", "show", f"{rev}:{MODULE}"], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="bench_list_")) / "deepmd_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("deepmd_before", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tensor_bytes(obj) -> tuple[int, dict]:
    """Bytes of all tensors reachable from a _GhostList (attributes, its VerletList, chunk dicts);
    each storage counted once. Also a breakdown by attribute path."""
    import torch

    seen: set[int] = set()
    parts: dict[str, int] = {}

    def walk(x, name):
        if isinstance(x, torch.Tensor):
            st = x.untyped_storage()
            if st.data_ptr() in seen or st.nbytes() == 0:
                return
            seen.add(st.data_ptr())
            key = name
            parts[key] = parts.get(key, 0) + st.nbytes()
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{name}.{k}" if name else str(k))
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v, name + "[*]")
        elif hasattr(x, "__dict__") and type(x).__module__.startswith(("dpqtb", "deepmd_before")):
            walk(vars(x), name)

    walk(obj, "")
    return sum(parts.values()), parts


def run_case(variant: str, n_atoms: int, rev: str, chunk: int) -> dict:
    import torch

    torch.set_num_threads(1)
    mod = _load(variant, rev)
    atoms = _atoms(n_atoms)
    pos = torch.tensor(atoms.positions)
    cell = torch.tensor(atoms.cell.array)
    mtype = torch.tensor([TYPE_MAP.index(s) for s in atoms.get_chemical_symbols()])
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    gl = mod._GhostList(RCUT, SKIN, SEL)
    t0 = time.perf_counter()
    gl.update(pos, cell, (True, True, True), mtype, chunk)
    t_build = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    total, parts = tensor_bytes(gl)
    n_pairs = int(gl.vl.i.shape[0]) if getattr(gl.vl, "i", None) is not None else int(gl.n_pairs)
    n_ext = int(gl.ext_atom.shape[0])
    # one pass over the chunks: the DeePMD neighbour lists the model would receive (no model call)
    h = hashlib.sha256()
    t0 = time.perf_counter()
    ext_pos = gl.extended_positions(pos, cell)
    n_over = 0
    for c in gl.chunks:
        if variant == "after":
            coord = gl.chunk_coords(c, ext_pos)
            nlist, over = gl.chunk_nlist(c, coord, gl.chunk_types(c), pos)
        else:
            coord = ext_pos[c["ext_ids"]]
            nlist, over = gl.chunk_nlist(c, ext_pos, pos)
        n_over += over
        h.update(nlist.numpy().tobytes())
        h.update(coord.numpy().tobytes())
    t_nlist = time.perf_counter() - t0
    return {"variant": variant, "n_atoms": n_atoms, "chunk_atoms": chunk, "candidate_pairs": n_pairs,
            "extended_atoms": n_ext, "chunks": len(gl.chunks), "list_bytes": total,
            "list_bytes_per_atom": total / n_atoms, "list_bytes_per_pair": total / n_pairs,
            "breakdown_bytes": dict(sorted(parts.items(), key=lambda kv: -kv[1])),
            "build_s": t_build, "nlist_pass_s": t_nlist, "sel_overflow_slots": int(n_over),
            "rss_before_update_MB": rss0, "peak_rss_after_update_MB": rss1,
            "nlist_sha256": h.hexdigest()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="44000", help="comma-separated: 44000 and/or 5500")
    ap.add_argument("--before-rev", default=BEFORE_REV)
    ap.add_argument("--chunk-atoms", type=int, default=512)
    ap.add_argument("--out", default=str(HERE / "results" / "deepmd_list_memory.json"))
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.case:  # child process
        variant, n = args.case.split(":")
        print("RESULT " + json.dumps(run_case(variant, int(n), args.before_rev, args.chunk_atoms)))
        return

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        if n not in CELLS:
            raise SystemExit(f"unsupported size {n} (known: {sorted(CELLS)})")
        for variant in ("before", "after"):
            proc = subprocess.run([sys.executable, __file__, "--case", f"{variant}:{n}", "--before-rev",
                                   args.before_rev, "--chunk-atoms", str(args.chunk_atoms)],
                                  capture_output=True, text=True, env=env)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not line:
                raise SystemExit(f"{variant}:{n} failed:\n{proc.stderr[-3000:]}")
            res = json.loads(line[0][7:])
            print(json.dumps({k: v for k, v in res.items() if k != "breakdown_bytes"}), flush=True)
            results.append(res)
    summary = {}
    for n in {r["n_atoms"] for r in results}:
        b, a = (next(r for r in results if r["n_atoms"] == n and r["variant"] == v) for v in ("before", "after"))
        summary[str(n)] = {"bytes_per_atom_before": b["list_bytes_per_atom"],
                           "bytes_per_atom_after": a["list_bytes_per_atom"],
                           "bytes_per_pair_before": b["list_bytes_per_pair"],
                           "bytes_per_pair_after": a["list_bytes_per_pair"],
                           "reduction_factor": b["list_bytes"] / a["list_bytes"],
                           "list_MB_before": b["list_bytes"] / 1e6, "list_MB_after": a["list_bytes"] / 1e6,
                           "peak_rss_MB_before": b["peak_rss_after_update_MB"],
                           "peak_rss_MB_after": a["peak_rss_after_update_MB"],
                           "identical_neighbour_lists": b["nlist_sha256"] == a["nlist_sha256"]}
    import torch

    out = {"benchmark": "deepmd_neighbour_list_memory",
           "what_was_measured": "bytes of all tensors held by DeepPotential's _GhostList (incl. its VerletList; "
           "shared storages once) right after update(), no model evaluation; rattled (0.05 Å) Fm-3m LaH10, "
           f"a = 4.95 Å; r_cut {RCUT} Å + skin {SKIN} Å, sel {SEL} ([La, H]), chunk_atoms {args.chunk_atoms}; "
           f"before = {MODULE} at {args.before_rev[:12]}, after = this commit; 1 thread, one subprocess per variant "
           "(peak RSS = whole process, build transients included)",
           "device": "cpu", "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
           "threads": 1, "before_rev": args.before_rev, "summary": summary, "results": results}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=1))
    print(f"written {path}")


if __name__ == "__main__":
    main()
