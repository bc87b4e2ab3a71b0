"""``dpqtb analyze RUN_DIR``: one streaming pass computing every observable, then CSV/JSON/PNG."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from dpqtb import DpqtbError, InputError
from dpqtb.analysis.cage import AngleAccumulator, quadrilateral_angles, angle_stats
from dpqtb.analysis.exchange import SiteTracker, pick_examples, plot_examples
from dpqtb.analysis.msd import MSDAccumulator, ReorderedMSD, diffusion_coefficient
from dpqtb.analysis.rdf import RDFAccumulator, plot_rdf
from dpqtb.analysis.trajectory import Trajectory, _extxyz_blocks, read_run_json, read_thermo
from dpqtb.analysis.vdos import ALIAS_LIMIT, VDOSAccumulator, energy_vs_temperature, zero_point_temperature
from dpqtb.md.run import QTB_DOS


def _write_csv(path: Path, header: list[str], rows) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            w.writerow([f"{v:.8g}" if isinstance(v, (float, np.floating)) else v for v in r])


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _frame_dt(traj: Trajectory) -> float:
    it = iter(traj)
    f0 = next(it)
    try:
        f1 = next(it)
    except StopIteration:
        raise InputError(f"{traj.path}: need at least 2 frames for time-dependent analysis") from None
    return f1.time_fs - f0.time_fs


def analyze(run_dir: str | Path, out_dir: str | Path | None = None, *, max_lag_fs: float | None = None,
            origin_every_fs: float | None = None, msd_prime_every: int = 1, rdf_every: int = 1,
            rdf_r_max_A: float = 6.0, rdf_bin_A: float = 0.02, vdos_max_lag_fs: float | None = None,
            angle_every: int = 1, compare: str | Path | None = None, e_ref_eV: float | str = 0.0,
            start: int = 0, stop: int | None = None, stride: int = 1, metal: str = "La",
            hydrogen: str = "H", plots: bool = True, reference: str | Path | None = None,
            frame_dt_fs: float | None = None) -> dict:
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise InputError(f"run directory {run_dir} does not exist")
    out = Path(out_dir) if out_dir else (run_dir / "analysis" if run_dir.is_dir() else run_dir.parent / "analysis")
    if out.exists() and not out.is_dir():
        raise InputError(f"output directory {out} is a file")
    for name, v in (("max_lag_fs", max_lag_fs), ("origin_every_fs", origin_every_fs), ("rdf_r_max_A", rdf_r_max_A),
                    ("rdf_bin_A", rdf_bin_A), ("vdos_max_lag_fs", vdos_max_lag_fs)):
        if v is not None and not (np.isfinite(v) and v > 0):
            raise InputError(f"{name} must be a finite number > 0, got {v!r}")
    if frame_dt_fs is not None and not frame_dt_fs > 0:
        raise InputError("--frame-dt-fs must be positive")
    traj = Trajectory(run_dir, start=start, stop=stop, stride=stride,
                      timestep_fs=frame_dt_fs)
    first = traj.first()
    symbols = first.symbols
    species = traj.species()
    dt = _frame_dt(traj)
    if not np.all(np.abs(np.linalg.det(first.cell)) > 0):
        raise InputError("trajectory has no periodic cell (Lattice missing)")
    n_frames_hint = None
    max_lag = max(1, int(round(max_lag_fs / dt))) if max_lag_fs else None
    is_lah = metal in species and hydrogen in species

    # first pass: count frames cheaply is not possible without reading; use lazily-sized accumulators
    frames_seen = 0
    msd = None
    msdp = ReorderedMSD(first.positions[symbols == hydrogen]) if hydrogen in species else None
    msdp_rows = []
    rdf = RDFAccumulator(symbols, rdf_r_max_A, rdf_bin_A)
    vmax = max(4, int(round((vdos_max_lag_fs or 0) / dt))) if vdos_max_lag_fs else None
    vdos_frames: list = []
    vdos = None
    angles = AngleAccumulator(symbols) if is_lah else None
    angle_error = None
    site_ref = first.positions
    if reference is not None:
        from ase.io import read

        try:
            ref_atoms = read(str(reference))
        except Exception as exc:
            raise InputError(f"cannot read reference structure {reference}: {exc}") from exc
        if ref_atoms.get_chemical_symbols() != symbols.tolist():
            raise InputError(f"reference structure {reference} does not have the trajectory's species order")
        site_ref = ref_atoms.positions
    tracker = SiteTracker(site_ref, symbols, first.cell, metal, hydrogen) if is_lah else None
    pos_sum = np.zeros_like(first.positions)
    cell_sum = np.zeros((3, 3))

    # the MSD/VDOS lag defaults need the trajectory length: count frames (cheap header scan)
    n_total = sum(1 for _ in _count_frames(traj))
    if n_total < 2:
        raise InputError("trajectory has fewer than 2 frames")
    try:  # the input is readable: now the output directory
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output directory {out}: {exc.strerror or exc}") from None
    n_frames_hint = n_total
    if max_lag is None:
        max_lag = max(1, n_total // 2)
    max_lag = min(max_lag, n_total - 1)
    origin_every = max(1, int(round(origin_every_fs / dt))) if origin_every_fs else max(1, max_lag // 20)
    msd = MSDAccumulator(symbols, max_lag, origin_every)
    if vmax is None:
        vmax = max(4, min(500, n_total // 4))
    if n_total > vmax + 1:
        vdos = VDOSAccumulator(symbols, dt, vmax, segment_frames=min(n_total, 2 * vmax))

    for k, fr in enumerate(traj):
        frames_seen += 1
        msd.update(fr.positions, fr.time_fs)
        if msdp is not None and k % msd_prime_every == 0:
            hpos = fr.positions[symbols == hydrogen]
            m = msdp(hpos, fr.cell)
            plain = float(np.mean(np.sum((hpos - msdp.ref) ** 2, axis=1)))  # same origin, labels kept
            msdp_rows.append((fr.time_fs, m.msd_A2, plain, int(np.sum(m.assignment != np.arange(len(m.assignment))))))
        if k % rdf_every == 0:
            rdf.update(fr.positions, fr.cell)
        if vdos is not None:
            vdos.update(fr.velocities, fr.positions)
        if angles is not None and angle_error is None and k % angle_every == 0:
            try:
                angles.update(fr.positions, fr.cell, fr.time_fs)
            except DpqtbError as exc:  # not a LaH10 clathrate: skip θ, report why
                angle_error = str(exc)
        if tracker is not None:
            tracker.update(fr.positions, fr.cell, fr.time_fs)
        pos_sum += fr.positions
        cell_sum += fr.cell

    summary: dict = {"run_dir": str(run_dir), "n_frames": frames_seen, "frame_dt_fs": dt,
                     "n_atoms": int(len(symbols)),
                     "species": {s: int(np.sum(symbols == s)) for s in species}}
    # MSD and diffusion
    mres = msd.result()
    _write_csv(out / "msd.csv", ["time_fs", *[f"msd_{s}_A2" for s in mres.species]],
               [(t, *row) for t, row in zip(mres.time_fs, mres.msd_A2)])
    summary["diffusion"] = {}
    for s in mres.species:
        try:
            summary["diffusion"][s] = asdict(diffusion_coefficient(mres, s))
        except DpqtbError as exc:
            summary["diffusion"][s] = {"error": str(exc)}
    if msdp_rows:
        _write_csv(out / "msd_prime.csv", ["time_fs", f"msd_prime_{hydrogen}_A2", f"msd_origin0_{hydrogen}_A2",
                                           "n_relabelled"], msdp_rows)
        summary["msd_prime_final_A2"] = msdp_rows[-1][1]
    # RDF
    rres = rdf.result(label=run_dir.name)
    _write_csv(out / "rdf.csv", ["r_A", *[f"g_{k}" for k in rres.g], *[f"n_{k}" for k in rres.g]],
               [(r, *[rres.g[k][b] for k in rres.g], *[rres.coordination[k][b] for k in rres.g])
                for b, r in enumerate(rres.r_A)])
    rdf_list = [rres]
    if compare:
        other = Trajectory(compare)
        acc = RDFAccumulator(other.symbols, rdf_r_max_A, rdf_bin_A)
        for k, fr in enumerate(other):
            if k % rdf_every == 0:
                acc.update(fr.positions, fr.cell)
        rdf_list.append(acc.result(label=Path(compare).name))
    # VDOS
    meta = read_run_json(run_dir) if run_dir.is_dir() else {}
    vres, vdos_error = None, "trajectory too short for the VDOS lag window"
    if vdos is not None:
        vres = vdos.result()
        if vres.alias_fraction() > ALIAS_LIMIT:
            nyq = 0.5 / dt * 1e3
            vdos_error = (f"frames {dt:g} fs apart (Nyquist {nyq:.0f} THz) cannot resolve the velocity spectrum: "
                          f"{100 * vres.alias_fraction():.1f} % of it lies in the top 10 % of the band (aliased); "
                          "write frames more often (output.trajectory_every) or use the engine's qtb_dos.csv "
                          "(QTB runs)")
            if vdos_max_lag_fs:
                raise InputError(f"VDOS: {vdos_error}")
            import sys

            print(f"dpqtb: warning: VDOS skipped: {vdos_error}", file=sys.stderr)
            vres = None
    if run_dir.is_dir() and (run_dir / QTB_DOS).exists():
        tab = np.genfromtxt(run_dir / QTB_DOS, delimiter=",", names=True)
        cols = [c for c in tab.dtype.names if c.startswith("g_")]
        summary["vdos_qtb"] = {
            "source": f"{QTB_DOS}: phonon DOS deconvolved from the engine's QTB spectra (every step, up to f_max)",
            "T_zero_K": {c[2:-len("_per_THz")]: zero_point_temperature(tab["freq_THz"], tab[c]) for c in cols},
            "peak_THz": {c[2:-len("_per_THz")]: float(tab["freq_THz"][np.argmax(tab[c])]) for c in cols}}
    if vres is not None:
        keys = list(vres.g_per_THz)
        _write_csv(out / "vdos.csv", ["freq_THz", *[f"g_{k}_per_THz" for k in keys]],
                   [(f, *[vres.g_per_THz[k][b] for k in keys]) for b, f in enumerate(vres.freq_THz)])
        summary["vdos"] = {"velocities": not vdos.use_positions, "max_lag_fs": vmax * dt,
                           "segments": vres.n_segments, "alias_fraction": vres.alias_fraction(),
                           "peak_THz": {k: vres.peak_THz(k) for k in keys}}
        t_zero = {k: vres.zero_point_temperature_K(k) for k in keys}
        if meta.get("integrator") in ("qtb", "adqtb", "pimd", "trpmd"):
            # a quantum bath's velocity spectrum is θ-weighted (QTB) or a centroid's (PIMD), not the phonon
            # DOS of the paper's T_zero: report the integral under another name
            summary["vdos"]["velocity_spectrum_hnu_half_K"] = t_zero
            summary["vdos"]["note"] = ("velocity spectrum of a quantum-bath run, not the phonon DOS: T_zero (paper's "
                                       "definition) is in vdos_qtb (QTB runs, from the engine's spectra)")
        else:
            summary["vdos"]["T_zero_K"] = t_zero
    else:
        summary["vdos"] = {"error": vdos_error}
    # cage angle
    if angles is not None:
        if angle_error:
            summary["cage_angle"] = {"error": angle_error}
        else:
            _write_csv(out / "theta.csv", ["time_fs", "theta_mean_deg", "theta_std_deg", "theta_min_deg",
                                           "theta_max_deg", "face_max_mean_deg", "face_min_mean_deg",
                                           "deviation_mean_deg"],
                       [(t, *asdict(st).values()) for t, st in angles.rows])
            mean_pos = pos_sum / frames_seen
            try:
                avg = asdict(angle_stats(quadrilateral_angles(mean_pos, cell_sum / frames_seen, symbols)))
            except DpqtbError as exc:
                avg = {"error": str(exc)}
            per = np.array([list(asdict(st).values()) for _, st in angles.rows])
            summary["cage_angle"] = {"frames_mean": dict(zip(asdict(angles.rows[0][1]), per.mean(axis=0).tolist())),
                                     "time_averaged_structure": avg}
    # exchanges
    if tracker is not None:
        xres = tracker.result()
        _write_csv(out / "exchanges.csv", ["time_fs", "n_off_initial_site", "n_pair_exchanges", "n_ring_protons"],
                   zip(xres.time_fs, xres.n_off_initial, xres.n_pair_exchanges, xres.n_ring_protons))
        _write_csv(out / "hop_events.csv", ["frame", "proton", "from_site", "to_site"], xres.events)
        summary["exchanges"] = {"capture_radius_A": tracker.r_capture, "n_hops": int(xres.hops.sum()),
                                "classes": xres.class_counts(),
                                "final_pair_exchanges": int(xres.n_pair_exchanges[-1])}
    # thermo
    if run_dir.is_dir() and (run_dir / "thermo.csv").exists():
        th = read_thermo(run_dir)
        if e_ref_eV == "first":  # the starting structure's potential energy (static lattice for ideal crystals)
            if th["step"][0] != 0:
                raise InputError(f"--e-ref-eV first: {run_dir}/thermo.csv does not start at step 0")
            e_ref_eV = float(th["potential_eV"][0])
        e = energy_vs_temperature(th, len(symbols), e_ref_eV)
        summary["energy"] = {k: float(v[0]) for k, v in e.items()}
        summary["energy"]["e_ref_eV"] = e_ref_eV
    try:
        summary["target_temperature_K"] = meta["config"]["thermostat"]["temperature_K"]
    except (KeyError, TypeError):
        if "energy" in summary:  # API-made runs have no config: use the thermo log's target
            summary["target_temperature_K"] = summary["energy"]["target_temperature_K"]

    if plots:
        _plots(out, mres, msdp_rows, hydrogen, rdf_list, vres, angles if (angles and not angle_error) else None)
        if tracker is not None:
            _plot_exchange(out, traj, xres, tracker, symbols, metal)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return summary


def _count_frames(traj: Trajectory):
    """Iterate frame headers of an extxyz quickly (fallback: the full reader)."""
    if traj.path.suffix not in (".extxyz", ".xyz"):
        yield from traj
        return
    for k, _, _ in _extxyz_blocks(traj.path):
        if k >= traj.start and (traj.stop is None or k < traj.stop) and (k - traj.start) % traj.stride == 0:
            yield k


def _plots(out, mres, msdp_rows, hydrogen, rdf_list, vres, angles) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for s, col in zip(mres.species, mres.msd_A2.T):
        ax.plot(mres.time_fs / 1000, col, label=f"MSD {s}")
    if msdp_rows:
        r = np.array(msdp_rows)
        ax.plot(r[:, 0] / 1000, r[:, 2], "--", label=f"MSD {hydrogen} (origin 0)")
        ax.plot(r[:, 0] / 1000, r[:, 1], "o", ms=3, label=f"MSD′ {hydrogen} (origin 0)")
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("MSD (Å²)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "msd.png", dpi=120)
    plt.close(fig)
    plot_rdf(rdf_list, out / "rdf.png")
    if vres is not None:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for k, g in vres.g_per_THz.items():
            ax.plot(vres.freq_THz, g, label=k)
        cum = np.cumsum(np.abs(vres.g_per_THz["total"]))
        fmax = vres.freq_THz[min(np.searchsorted(cum, 0.999 * cum[-1]) + 1, len(cum) - 1)]
        ax.set_xlim(0, 1.2 * fmax)  # the band holding 99.9 % of the weight
        ax.set_xlabel("frequency (THz)")
        ax.set_ylabel("VDOS (1/THz)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "vdos.png", dpi=120)
        plt.close(fig)
    if angles is not None and angles.rows:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
        t = np.array([r[0] for r in angles.rows]) / 1000
        a1.plot(t, [r[1].face_max_mean_deg for r in angles.rows], "r.", label="face max")
        a1.plot(t, [r[1].face_min_mean_deg for r in angles.rows], "b.", label="face min")
        a1.axhline(90, color="k", lw=0.5)
        a1.set_xlabel("time (ps)")
        a1.set_ylabel("θ (deg)")
        a1.legend()
        c = 0.5 * (angles.edges[1:] + angles.edges[:-1])
        sel = angles.hist > 0
        a2.bar(c[sel], angles.hist[sel] / angles.hist.sum(), width=angles.edges[1] - angles.edges[0])
        a2.set_xlabel("θ (deg)")
        a2.set_ylabel("fraction")
        fig.tight_layout()
        fig.savefig(out / "theta.png", dpi=120)
        plt.close(fig)


def _plot_exchange(out, traj, xres, tracker, symbols, metal) -> None:
    ex = pick_examples(xres)
    if not ex:
        return
    first = traj.first()
    la = tracker.la
    picks = {}
    from dpqtb.analysis.neighbors import min_image

    shift = {}
    for name, p in ex.items():
        atom = int(tracker.h[p])
        raw = first.positions[la] - first.positions[atom]
        dvec = min_image(raw, first.cell)
        d = np.linalg.norm(dvec, axis=1)
        sel = d <= 1.3 * d.min()
        near = la[sel]
        for j, sh in zip(near, (dvec - raw)[sel]):
            shift[(name, int(j))] = sh  # draw each La in the periodic image next to the proton
        picks[name] = (atom, near)
    wanted = sorted({int(a) for a, _ in picks.values()} | {int(j) for _, nr in picks.values() for j in nr})
    col = {a: k for k, a in enumerate(wanted)}
    track = np.array([pos for _, pos in traj.iter_atoms(wanted)])  # (T, len(wanted), 3)
    paths = {name: (track[:, col[atom]], {int(j): track[:, col[int(j)]] + shift[(name, int(j))] for j in near})
             for name, (atom, near) in picks.items()}
    plot_examples({n: (np.array(h), [np.array(v) for v in las.values()]) for n, (h, las) in paths.items()},
                  out / "exchange_examples.png")
