"""Export labelled frames to DeePMD (deepmd/npy via dpdata) and extxyz, and summarise a data set.

Energies are the Fermi–Dirac free energies (consistent with the forces), eV; forces eV/Å;
virials eV (dpdata's convention: virial = -V · stress).  Type map [La, H].
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from dpqtb import InputError
from dpqtb.dft.store import TYPE_MAP, JobStore, frame_to_atoms


def load_frames(stores: list[str | os.PathLike]) -> list[dict]:
    """All labelled frames of the given job stores (sorted by store then id)."""
    frames = []
    for s in stores:
        if not Path(s).is_dir():
            raise InputError(f"no job store at {s}")
        frames.extend(JobStore(s).frames())
    return frames


def to_multisystems(frames: list[dict], ids_by_system: dict | None = None):
    """A dpdata.MultiSystems of the frames (grouped by formula by dpdata), type map [La, H].

    ``ids_by_system``, if given, is filled with the frame ids of each system in frame order, keyed
    by the system's directory name in a deepmd/npy export (dpdata's short name)."""
    try:
        import dpdata
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise InputError("dpdata is not installed: pip install 'dpqtb[dft]'") from exc
    if not frames:
        raise InputError("no labelled frames to export")
    ms = dpdata.MultiSystems(type_map=list(TYPE_MAP))
    for fr in frames:
        atoms = frame_to_atoms(fr)
        ls = dpdata.LabeledSystem(atoms, fmt="ase/structure", type_map=list(TYPE_MAP))
        ms.append(ls)
        if ids_by_system is not None:
            ids_by_system.setdefault(ls.short_name, []).append(fr["id"])
    if ids_by_system is not None:  # the export writes one directory per system, frames in order
        counts = {ss.short_name: ss.get_nframes() for ss in ms.systems.values()}
        if counts != {k: len(v) for k, v in ids_by_system.items()}:
            raise InputError("internal: dpdata grouped the frames differently than expected")
    return ms


def export_deepmd_npy(frames: list[dict], outdir: str | os.PathLike, set_size: int = 5000) -> int:
    """Write deepmd/npy systems (one per composition) under ``outdir``; returns the frame count."""
    ids: dict[str, list[str]] = {}
    ms = to_multisystems(frames, ids)
    ms.to("deepmd/npy", str(outdir), set_size=set_size)
    # provenance travels with the data: one record per frame (DeePMD's format has no place for it)
    records = [{"id": fr["id"], "natoms": len(fr["symbols"]), "settings": fr["settings"],
                "kpts": fr.get("kpts"), "meta": fr.get("meta", {}),
                "provenance": fr.get("provenance", {})} for fr in frames]
    with open(Path(outdir) / "provenance.json", "w") as fh:
        json.dump({"type_map": list(TYPE_MAP), "units": {"energy": "eV", "force": "eV/Å",
                   "virial": "eV", "coord": "Å"}, "frames": records,
                   "system_frame_ids": ids}, fh, indent=0)
    return ms.get_nframes()


def export_extxyz(frames: list[dict], path: str | os.PathLike) -> int:
    """Write the frames (with energy, forces, stress and metadata) to an extxyz file."""
    from ase.io import write

    if not frames:
        raise InputError("no labelled frames to export")
    images = [frame_to_atoms(fr) for fr in frames]
    for img, fr in zip(images, frames):
        prov = fr.get("provenance", {})
        img.info["codes"] = " ".join(f"{k}={v}" for k, v in prov.get("codes", {}).items())
        img.info.update({f"dft_{k}": v for k, v in fr["settings"].items()})
    write(str(path), images, format="extxyz")
    return len(images)


def pressure_bin(p: float, width: float = 50.0) -> str:
    lo = width * np.floor(p / width)
    return f"{lo:.0f}–{lo + width:.0f}"


def phase_label(meta: dict) -> str:
    """The phase of a frame for the summary: the sampled phase, or for an MD snapshot chosen by model
    deviation the phase the MD started from ("Fm-3m MD")."""
    if "phase" in meta:
        return str(meta["phase"])
    if "phase_start" in meta:
        return f"{meta['phase_start']} MD"
    return "?"


def repeated_frames(frames: list[dict], de_eV: float = 5e-5, dv_A3: float = 1e-4) -> list[list[str]]:
    """Groups of frames (ids, one per frame) that are probably one configuration counted more than
    once: the same id (one structure in two stores), or the same composition with the energy per
    atom within ``de_eV`` and the volume per atom within ``dv_A3`` — what a supercell, translated or
    relabelled copy of a frame has (distinct thermal or strained samples differ by far more)."""
    def key(fr):
        n = len(fr["symbols"])
        frac = tuple((el, c / n) for el, c in sorted(Counter(fr["symbols"]).items()))
        return frac, fr["energy_eV"] / n, abs(np.linalg.det(np.asarray(fr["cell_A"]))) / n

    rows = sorted(((key(fr), fr["id"]) for fr in frames), key=lambda r: (r[0][0], r[0][1]))
    parent = list(range(len(rows)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, ((comp, e, v), fid) in enumerate(rows):
        for k in range(i + 1, len(rows)):
            (comp2, e2, v2), fid2 = rows[k]
            if comp2 != comp or e2 - e > de_eV:
                break
            if fid2 == fid or abs(v2 - v) <= dv_A3:
                parent[root(k)] = root(i)
    groups = defaultdict(list)
    for i, (_, fid) in enumerate(rows):
        groups[root(i)].append(fid)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def summary_table(frames: list[dict], bin_GPa: float = 50.0,
                  core_GPa: tuple[float, float] = (100.0, 350.0)) -> str:
    """Markdown summary: counts by DFT pressure bin × phase × cell size, and force ranges; the
    totals also count the frames whose DFT pressure lies in ``core_GPa`` (the study's 100–350 GPa:
    displaced cells of a plan aimed at that range can land outside it)."""
    if not frames:
        return "No labelled frames yet.\n"
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for fr in frames:
        key = (pressure_bin(fr["pressure_GPa"], bin_GPa), phase_label(fr.get("meta", {})), len(fr["symbols"]))
        groups[key].append(fr)

    def fstats(frs):
        f = np.concatenate([np.linalg.norm(np.asarray(x["forces_eV_per_A"]), axis=1) for x in frs])
        return f.max(), np.sqrt(np.mean(f**2))

    lines = ["| DFT pressure (GPa) | phase | atoms | configurations | T range (K) | "
             "max |F| (eV/Å) | RMS |F| (eV/Å) |", "|---|---|---|---|---|---|---|"]
    for key in sorted(groups, key=lambda k: (float(k[0].split("–")[0]), k[1], k[2])):
        frs = groups[key]
        fmax, frms = fstats(frs)
        ts = [x.get("meta", {}).get("temperature_K") for x in frs]
        ts = [t for t in ts if t is not None]
        trange = f"{min(ts):.0f}–{max(ts):.0f}" if ts else "–"
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {len(frs)} | {trange} | {fmax:.2f} | "
                     f"{frs and frms:.2f} |")
    n_atoms = Counter(len(fr["symbols"]) for fr in frames)
    kinds = Counter(fr.get("meta", {}).get("kind", "?") for fr in frames)
    p = np.array([fr["pressure_GPa"] for fr in frames])
    fmax, frms = fstats(frames)
    lines.append("")
    lines.append(f"Total: {len(frames)} configurations "
                 f"({', '.join(f'{v} × {k} atoms' for k, v in sorted(n_atoms.items()))}); "
                 f"kinds: {', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}; "
                 f"DFT pressure {p.min():.0f}–{p.max():.0f} GPa; "
                 f"|F| max {fmax:.2f} eV/Å, RMS {frms:.2f} eV/Å.")
    lo, hi = core_GPa
    core = [fr for fr in frames if lo <= fr["pressure_GPa"] <= hi]
    n_core = Counter(len(fr["symbols"]) for fr in core)
    lines.append(f"DFT pressure within {lo:.0f}–{hi:.0f} GPa: {len(core)} configurations"
                 + (f" ({', '.join(f'{v} × {k} atoms' for k, v in sorted(n_core.items()))})"
                    if core else "") + ".")
    rep = repeated_frames(frames)
    lines.append("")
    lines.append("Repeats: " + ("none (no id in two stores, and no two frames of one composition with "
                                "the energy per atom within 0.05 meV and the volume per atom within "
                                "1e-4 Å³, as a supercell or relabelled copy would be)." if not rep else
                                f"{len(rep)} configuration(s) probably counted more than once "
                                f"({sum(len(g) - 1 for g in rep)} extra frame(s)): "
                                + "; ".join(" = ".join(g) for g in rep) + "."))
    return "\n".join(lines) + "\n"
