"""Model deviation of a Deep Potential ensemble and the selection step of concurrent learning.

For each configuration the ensemble (models k = 1..M) predicts forces F_i^k; the force deviation of
atom i is ε_i = sqrt(⟨|F_i^k − ⟨F_i⟩|²⟩_k) (eV/Å) and the configuration's ``max_devi_f_eV_per_A``
is max_i ε_i (the DP-GEN definition, :mod:`dpqtb.potential.ensemble`). Configurations with
``trust_lo ≤ max_devi_f < trust_hi`` are candidates for DFT labelling; below the window the ensemble agrees (accurate), above it the
configuration is unphysical (failed) and is not labelled.

    dpqtb deviation --models m0.pth m1.pth m2.pth m3.pth --trajectory run/trajectory.extxyz \
        --trust-lo-eV-per-A 0.05 --trust-hi-eV-per-A 0.25 --out explore/devi [--store data/labels/round1]
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from dpqtb import DpqtbError, CalculationError, InputError


def ensemble_predictions(models, atoms) -> tuple[np.ndarray, np.ndarray]:
    """Energies (M,) eV and forces (M, N, 3) eV/Å of one configuration for every model."""
    type_map = tuple(dict.fromkeys(atoms.get_chemical_symbols()))
    species = torch.tensor([type_map.index(s) for s in atoms.get_chemical_symbols()])
    pos = torch.tensor(atoms.positions)
    cell = torch.tensor(atoms.cell.array)
    es, fs = [], []
    for m in models:
        m.bind(type_map)
        out = m(pos.to(m.device), cell.to(m.device), species.to(m.device))
        es.append(float(out.energy))
        fs.append(out.forces.cpu().numpy())
    return np.array(es), np.stack(fs)


def deviation(energies: np.ndarray, forces: np.ndarray) -> dict:
    """DP-GEN model-deviation measures of one configuration from (M,) energies and (M, N, 3) forces
    (:func:`dpqtb.potential.ensemble.model_deviation`, as floats)."""
    from dpqtb.potential.ensemble import model_deviation

    d = model_deviation(torch.as_tensor(np.asarray(energies, dtype=float)),
                        torch.as_tensor(np.asarray(forces, dtype=float)))
    return {k: float(v) for k, v in d.items()}


def select(devi: list[dict], trust_lo: float, trust_hi: float, max_select: int | None = None,
           seed: int = 0) -> tuple[list[int], dict]:
    """Indices of the candidates (trust window, at most ``max_select`` drawn at random) and statistics."""
    if not 0 <= trust_lo < trust_hi:
        raise InputError(f"trust window must satisfy 0 <= lo < hi, got [{trust_lo}, {trust_hi}) eV/Å")
    d = np.array([x["max_devi_f_eV_per_A"] for x in devi])
    acc, cand, fail = d < trust_lo, (d >= trust_lo) & (d < trust_hi), d >= trust_hi
    idx = np.flatnonzero(cand)
    if max_select is not None and len(idx) > max_select:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_select, replace=False))
    n = max(len(d), 1)
    stats = {"frames": int(len(d)), "accurate": int(acc.sum()), "candidate": int(cand.sum()),
             "failed": int(fail.sum()), "accurate_fraction": float(acc.sum() / n),
             "candidate_fraction": float(cand.sum() / n), "failed_fraction": float(fail.sum() / n),
             "selected": int(len(idx)), "trust_lo_eV_per_A": trust_lo, "trust_hi_eV_per_A": trust_hi,
             "max_devi_f_quantiles_eV_per_A": {q: float(np.quantile(d, float(q))) for q in
                                              ("0.1", "0.5", "0.9", "0.99")} if len(d) else {}}
    return [int(i) for i in idx], stats


def _one_line(exc: BaseException) -> str:
    """The exception's type and the first line of its message (dpqtb's own errors: the message only)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, DpqtbError) and first:
        return first
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _read_frames(traj: Path, every: int):
    """(file frame index, Atoms) of every ``every``-th frame, read lazily; a read failure (unknown
    format, unparseable or truncated frame) is a one-line DpqtbError naming the file."""
    from ase.io import iread

    k = 0
    try:
        it = iter(iread(str(traj), index=f"::{every}"))
    except Exception as exc:
        raise InputError(f"cannot read trajectory {traj}: {_one_line(exc)}") from None
    while True:
        try:
            atoms = next(it)
        except StopIteration:
            return
        except Exception as exc:
            where = f" after frame {(k - 1) * every}" if k else ""
            raise InputError(f"cannot read trajectory {traj}{where}: {_one_line(exc)}") from None
        yield k * every, atoms
        k += 1


def run_deviation(model_paths: list[str | os.PathLike], trajectory: str | os.PathLike, out: str | os.PathLike,
                  trust_lo: float, trust_hi: float, max_select: int | None = None, every: int = 1,
                  store: str | os.PathLike | None = None, device: str = "cpu", seed: int = 0) -> dict:
    """Deviation of every ``every``-th frame of a trajectory; candidates optionally queued for labelling.

    Failures are :class:`DpqtbError` in one line: a trajectory that is missing, empty or cannot be
    parsed names the file ("cannot read trajectory ..."); a model that fails on a frame names the
    frame's index in the file and the model ("model evaluation failed on frame k of ... with model ...").
    """
    from dpqtb.potential.deepmd import DeepPotential

    if len(model_paths) < 2:
        raise InputError("model deviation needs an ensemble of at least 2 models (--models)")
    traj = Path(trajectory)
    if not traj.is_file():
        raise InputError(f"trajectory not found: {traj}")
    models = [DeepPotential(p, device=device) for p in model_paths]
    frames, devi = [], []
    for frame, atoms in _read_frames(traj, every):
        # one model at a time, so that a failure names the model (same numbers as all at once)
        es, fs = [], []
        for path, m in zip(model_paths, models):
            try:
                e, f = ensemble_predictions([m], atoms)
            except Exception as exc:
                raise CalculationError(f"model evaluation failed on frame {frame} of {traj} with model {path}: "
                                 f"{_one_line(exc)}") from exc
            es.append(e)
            fs.append(f)
        d = deviation(np.concatenate(es), np.concatenate(fs))
        d["frame"] = frame
        devi.append(d)
        frames.append(atoms)
    if not frames:
        raise InputError(f"cannot read trajectory {traj}: it holds no frames")
    idx, stats = select(devi, trust_lo, trust_hi, max_select, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cols = ["frame", "max_devi_f_eV_per_A", "min_devi_f_eV_per_A", "avg_devi_f_eV_per_A", "devi_e_eV_per_atom"]
    with open(out / "model_devi.csv", "w") as fh:
        fh.write(",".join(cols) + "\n")
        for d in devi:
            fh.write(",".join(str(d[c]) for c in cols) + "\n")
    stats.update({"models": [str(p) for p in model_paths], "trajectory": str(traj), "every": every,
                  "selected_frames": [devi[i]["frame"] for i in idx]})
    if store is not None:
        from dpqtb.dft.settings import PRODUCTION
        from dpqtb.dft.store import JobStore

        js = JobStore(store)
        ids = [js.add(frames[i], PRODUCTION, meta={"kind": "model_deviation", "source": str(traj),
                                                   "frame": devi[i]["frame"],
                                                   "max_devi_f_eV_per_A": devi[i]["max_devi_f_eV_per_A"]})
               for i in idx]
        stats["queued_job_ids"] = ids
        stats["store"] = str(store)
    (out / "deviation.json").write_text(json.dumps(stats, indent=1) + "\n")
    return stats


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr

    if len(x) < 3:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def check_against_labels(model_paths: list[str | os.PathLike], store: str | os.PathLike,
                         out: str | os.PathLike, device: str = "cpu", plot: bool = True) -> dict:
    """Is the model deviation a good proxy for the true force error? Checked on labelled candidates.

    For every labelled frame of ``store`` (typically the candidates of one concurrent-learning
    iteration, each carrying the ε = ``max_devi_f_eV_per_A`` its exploration predicted), the models
    are evaluated on the DFT configuration and compared with the DFT forces:

    * ``max_err_f_eV_per_A`` = max over atoms of |F_i^DP − F_i^DFT| (the quantity ε stands for), and
      the RMS force error, for the mean force of the given models;
    * with ≥ 2 models, ε is also recomputed on the DFT configuration (``max_devi_f_eV_per_A``).

    Writes ``deviation_check.csv`` and ``deviation_check.json`` (Spearman rank correlation of ε and
    the true max error; ratio true/ε quantiles) and, with ``plot``, ``deviation_check.png``.
    """
    from dpqtb.dft.store import JobStore, frame_to_atoms
    from dpqtb.potential.deepmd import DeepPotential

    js = JobStore(store)
    if not js.frames_dir.is_dir():
        raise InputError(f"{store}: no labelled frames")
    frames = js.frames()
    if not frames:
        raise InputError(f"{store}: no labelled frames")
    if not model_paths:
        raise InputError("give at least one model (--models)")
    models = [DeepPotential(p, device=device) for p in model_paths]
    rows = []
    for fr in frames:
        atoms = frame_to_atoms(fr)
        es, fs = ensemble_predictions(models, atoms)
        f_dft = np.asarray(fr["forces_eV_per_A"])
        f_dp = fs.mean(axis=0)
        err = np.linalg.norm(f_dp - f_dft, axis=1)
        row = {"frame_id": fr["id"], "natoms": len(atoms),
               "explore_run": fr.get("meta", {}).get("explore_run", ""),
               "predicted_max_devi_f_eV_per_A": fr.get("meta", {}).get("max_devi_f_eV_per_A", float("nan")),
               "max_devi_f_eV_per_A": deviation(es, fs)["max_devi_f_eV_per_A"] if len(models) > 1
               else float("nan"),
               "max_err_f_eV_per_A": float(err.max()),
               "rms_err_f_eV_per_A": float(np.sqrt(((f_dp - f_dft) ** 2).mean())),
               "rms_f_dft_eV_per_A": float(np.sqrt((f_dft ** 2).mean()))}
        rows.append(row)
    pred = np.array([r["predicted_max_devi_f_eV_per_A"] for r in rows], dtype=float)
    true = np.array([r["max_err_f_eV_per_A"] for r in rows])
    have = np.isfinite(pred)
    nat = np.array([r["natoms"] for r in rows])
    stats = {"store": str(store), "models": [str(p) for p in model_paths], "frames": len(rows),
             "frames_with_predicted_devi": int(have.sum()),
             # over all force components of all frames (frames weighted by their atoms)
             "rms_err_f_eV_per_A": float(np.sqrt((np.array([r["rms_err_f_eV_per_A"] ** 2 for r in rows]) * nat).sum()
                                                 / nat.sum())),
             "max_err_f_quantiles_eV_per_A": {q: float(np.quantile(true, float(q))) for q in ("0.1", "0.5", "0.9")}}
    if have.sum() >= 3:
        ratio = true[have] / pred[have]
        stats.update({"spearman_predicted_devi_vs_max_err": spearman(pred[have], true[have]),
                      "max_err_over_predicted_devi_quantiles": {q: float(np.quantile(ratio, float(q)))
                                                               for q in ("0.1", "0.5", "0.9")}})
    if len(models) > 1:
        rec = np.array([r["max_devi_f_eV_per_A"] for r in rows])
        stats["spearman_devi_vs_max_err"] = spearman(rec, true)
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    import csv

    with open(outp / "deviation_check.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    # strict JSON: undefined values (fewer than 3 frames, a single model) are null, not NaN
    clean = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in stats.items()}
    (outp / "deviation_check.json").write_text(json.dumps(clean, indent=1, allow_nan=False) + "\n")
    if plot and have.any():
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.2, 4.0))
        ax.scatter(pred[have], true[have], s=14)
        hi = float(max(pred[have].max(), true[have].max())) * 1.1
        ax.plot([0, hi], [0, hi], "k--", lw=0.8, label="true error = ε")
        ax.set_xlabel("predicted max force deviation ε (eV/Å)")
        ax.set_ylabel("true max force error |F_DP − F_DFT| (eV/Å)")
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        fig.savefig(outp / "deviation_check.png", dpi=130)
        plt.close(fig)
    return stats
