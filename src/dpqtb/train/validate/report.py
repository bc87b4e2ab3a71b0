"""``dpqtb validate``: the report of a model on held-out data (errors, comparison, EOS, Table I,
phases), written as ``report.json``, ``report.md`` and PNGs."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from dpqtb import InputError
from dpqtb.train.dataset import file_sha256, read_systems
from dpqtb.train.validate.compare import compare_models
from dpqtb.train.validate.eos import PAPER, eos_and_table1
from dpqtb.train.validate.evaluator import DeepPotentialEvaluator
from dpqtb.train.validate.markdown import _markdown
from dpqtb.train.validate.metrics import per_frame_errors, subset_errors, subset_labels, test_errors
from dpqtb.train.validate.phases import phase_enthalpies
from dpqtb.train.validate.plots import eos_plot, parity_plots
from dpqtb.train.validate.splits import (_all_frames_as_test, find_test_data, frame_meta, groups_of, job_stores,
                                         model_test_modulus, model_train_ids)


def validate(model: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike, *,
             evaluator=None, structure: bool = True, plots: bool = True, compare=(),
             test_modulus: int | None = 10, phases: str | os.PathLike | None = None,
             quantum_data=None, phases_dense: str | os.PathLike | None = None, log=print) -> dict:
    """Write the validation report of ``model`` on the held-out data ``data`` to ``out``.

    ``data``: a ``dpqtb train`` output, a dataset folder with ``manifest.json``, a folder of
    deepmd/npy systems, or one or more DFT job stores (their held-out split with ``test_modulus``,
    exported on the fly; ``test_modulus=None``: all their frames).  No frame a model was trained on
    may count as held out: checked frame by frame where its training ids are recorded, else by
    requiring the modulus it was trained with.

    ``compare``: other models (paths, or evaluator objects with a ``label``) evaluated on the same
    frames; the report then has a paired comparison of ``model`` with each (:func:`compare_models`).

    ``phases``: a folder of ``dpqtb.dft.relax`` records; the report then compares the relative
    enthalpies of the distorted phases at their DFT minima and the model's own minima next to them
    (:func:`phase_enthalpies`).

    ``phases_dense``: a job store of converged-k single points of the phase records (their ΔH at converged
    k beside the label-rule ones; the acceptance then judges against them).

    ``quantum_data``: DFT job stores of QTB-MD and path-integral bead frames that the model never trained
    on; every labelled frame is a test frame, errors reported per sample kind (``report["quantum"]``).

    A LaH10 report (EOS computed) also gets the acceptance table of issue 27
    (:func:`dpqtb.train.validate.acceptance.acceptance`).
    """
    if phases_dense is not None and phases is None:
        raise InputError("--phases-dense needs --phases (the records whose converged-k single points it holds)")
    model = Path(model)
    out_path = Path(out)
    if out_path.exists() and not out_path.is_dir():
        raise InputError(f"report directory {out_path} is a file")
    if evaluator is None:
        evaluator = DeepPotentialEvaluator(model)
    others = {}
    for k, c in enumerate(compare):
        ev = DeepPotentialEvaluator(c) if isinstance(c, (str, os.PathLike)) else c
        label = str(c) if isinstance(c, (str, os.PathLike)) else getattr(c, "label", f"model_{k + 1}")
        if label == str(model) or label in others:
            label = f"{label} [{k + 1}]"
        others[label] = ev
    stores = job_stores(data)
    train_ids = {m: model_train_ids(m) for m in [model, *[c for c in compare if isinstance(c, (str, os.PathLike))]]}
    if stores:
        for m in train_ids:
            trained = model_test_modulus(m)
            if train_ids[m] is None and trained is not None and trained != test_modulus:
                raise InputError(f"{m} was trained with test_modulus {trained}, not "
                                 f"{test_modulus or 'all frames'}: its training frames would count as "
                                 f"held out (use --test-modulus {trained})")
        # the held-out split of job stores, exported for this report only (the split rule is the
        # training's: a frame held out here was never trained on by any dpqtb model)
        import tempfile

        from dpqtb.train.dataset import prepare_dataset

        with tempfile.TemporaryDirectory(prefix="dpqtb-validate-") as tmp:
            if test_modulus is None:
                manifest = _all_frames_as_test(stores, tmp)
            else:
                manifest = prepare_dataset(stores, tmp, test_modulus)
            if manifest["test"]["frames"] == 0:
                raise InputError(f"no held-out frames in {', '.join(map(str, stores))} (label more frames)")
            systems = read_systems(Path(tmp) / "test", type_map=None)
            metas = frame_meta(Path(tmp) / "test", systems)
        test_dir = "held-out split of the job stores " + ", ".join(map(str, stores))
    else:
        if test_modulus is None:
            raise InputError("--all-frames applies to DFT job stores only (a dataset folder has its own split)")
        if not isinstance(data, (str, os.PathLike)):
            if len(data) != 1:
                raise InputError("several --data folders are only accepted when all are job stores")
            data = data[0]
        test_dir, manifest = find_test_data(data)
        systems = read_systems(test_dir, type_map=None)
        metas = frame_meta(test_dir, systems)
    # no frame a model was trained on may count as held out (checked wherever both id lists are known)
    held = set((manifest or {}).get("test", {}).get("ids") or [])
    for m, ids in train_ids.items():
        seen = held & (ids or set())
        if seen:
            rule = ("--all-frames" if test_modulus is None and stores else
                    f"test_modulus {manifest.get('test_modulus', test_modulus)}")
            trained = model_test_modulus(m)
            hint = f"use --test-modulus {trained}, or " if trained and stores else "use "
            raise InputError(f"{len(seen)} of the {len(held)} frames held out with {rule} were trained on "
                             f"by {m} ({hint}data it never saw)")
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    res = test_errors(evaluator, systems)
    m = res["metrics"]
    log(f"held-out: {m['frames']} frames, energy RMSE {m['rmse_e_meV_per_atom']:.3f} meV/atom, "
        f"force RMSE {m['rmse_f_eV_per_A']:.4f} eV/Å"
        + (f", virial RMSE {m['rmse_v_meV_per_atom']:.3f} meV/atom" if "rmse_v_meV_per_atom" in m else ""))
    rep = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "evaluator": getattr(evaluator, "name", type(evaluator).__name__),
           "model": {"path": str(model), "sha256": file_sha256(model) if model.is_file() else "",
                     "type_map": list(evaluator.type_map)},
           "data": {"dir": str(test_dir),
                    "dataset_version": manifest.get("dataset_version") if manifest else None,
                    "split_rule": manifest.get("split_rule") if manifest else None,
                    "test_ids": manifest["test"]["ids"] if manifest else None},
           "test": m, "paper": PAPER, "files": []}
    rep["by_subset"] = {name: subset_errors(res["arrays"], labels)
                        for name, labels in subset_labels(res["arrays"], metas).items()}
    if others:
        a = res["arrays"]
        errs = {str(model): {"sq_f": a["frame_sq_f"], "n_f": a["frame_n_f"], "de": a["frame_de"]}}
        errs.update({k: per_frame_errors(ev, systems) for k, ev in others.items()})
        rep["comparison"] = compare_models(errs, groups=groups_of(metas))
        rep["comparison"]["sha256"] = {k: file_sha256(Path(k)) if Path(k).is_file() else ""
                                       for k in errs}
        for pair, r in rep["comparison"]["pairs"].items():
            log(f"{pair}: force RMSE ratio {r['rmse_f_ratio']:.3f} (95 % {r['rmse_f_ratio_ci95'][0]:.3f}–"
                f"{r['rmse_f_ratio_ci95'][1]:.3f}, {r['verdict_f']})")
    if plots:
        rep["files"] += parity_plots(res["arrays"], outdir)
    if structure:
        if set(evaluator.type_map) >= {"La", "H"}:
            eos, table = eos_and_table1(evaluator)
            rep["eos"], rep["table1"] = eos, table
            if plots:
                rep["files"].append(eos_plot(eos, outdir))
            for p, r in table["pressures"].items():
                log(f"{p} GPa: a DFT {r['dft']['a_A']:.4f} Å, DP "
                    + ("not found" if r["dp"] is None else f"{r['dp']['a_A']:.4f} Å"))
        else:
            log("skipping EOS/Table I: the model has no La and H types")
    if quantum_data:
        rep["quantum"] = _quantum_errors(evaluator, quantum_data, train_ids, log)
    if phases is not None:
        rep["phases"] = phase_enthalpies(evaluator, phases, dense=phases_dense)
        for r in rep["phases"]["rows"]:
            log(f"{r['phase_start']} {r['pressure_GPa']:g} GPa ({r['natoms']} atoms, seed {r['seed']}): ΔH DFT "
                f"{r['dH_dft_meV_per_atom']:+.2f}, DP {r['dH_dp_meV_per_atom']:+.2f} meV/atom")
    if "eos" in rep:
        from dpqtb.train.validate.acceptance import acceptance

        rep["acceptance"] = acceptance(rep)
        log(f"acceptance (issue 27): {'passed' if rep['acceptance']['passed'] else 'not passed'} "
            f"({sum(c['passed'] is True for c in rep['acceptance']['criteria'])} of "
            f"{len(rep['acceptance']['criteria'])} criteria)")
    rep["wall_s"] = round(time.time() - t0, 2)
    (outdir / "report.json").write_text(json.dumps(rep, indent=1, default=float))
    (outdir / "report.md").write_text(_markdown(rep))
    log(f"report written to {outdir / 'report.md'}")
    return rep


def _quantum_errors(evaluator, data, train_ids: dict, log=print) -> dict:
    """Errors on every labelled frame of the job stores ``data`` (none trained on), per sample kind."""
    import tempfile

    stores = job_stores(data)
    if not stores:
        raise InputError("--quantum-data takes DFT job stores (e.g. data/labels/heldout_quantum)")
    with tempfile.TemporaryDirectory(prefix="dpqtb-validate-q-") as tmp:
        manifest = _all_frames_as_test(stores, tmp)
        if manifest["test"]["frames"] == 0:
            raise InputError(f"no labelled frames in {', '.join(map(str, stores))} (label them first: dpqtb label)")
        held = set(manifest["test"]["ids"])
        for m, ids in train_ids.items():
            seen = held & (ids or set())
            if seen:
                raise InputError(f"{len(seen)} frames of the quantum store were trained on by {m}")
        systems = read_systems(Path(tmp) / "test", type_map=None)
        metas = frame_meta(Path(tmp) / "test", systems)
    res = test_errors(evaluator, systems)
    if metas is None:  # an export always writes provenance.json; without it the kinds cannot be told apart
        raise InputError(f"the frames of {', '.join(map(str, stores))} carry no job-store metadata (kinds)")
    kinds = [(m or {}).get("kind", "unknown") for m in metas]
    out = {"stores": [str(s) for s in stores], "metrics": res["metrics"],
           "by_kind": subset_errors(res["arrays"], kinds)}
    temps = [(m or {}).get("temperature_K") for m in metas]
    if any(isinstance(t, (int, float)) for t in temps):  # registered with --meta temperature_K=T
        labels, order = [], {}  # kind, then temperature in numbers (not as strings: 5 K before 50 K before 100 K)
        for k, t in zip(kinds, temps):
            num = isinstance(t, (int, float))
            labels.append(f"{k}, {t:g} K" if num else f"{k}, T not recorded")
            order[labels[-1]] = (k, t if num else math.inf)
        by = subset_errors(res["arrays"], labels)
        out["by_kind_temperature"] = {lab: by[lab] for lab in sorted(by, key=order.__getitem__)}
    for k, e in out["by_kind"].items():
        log(f"quantum held-out {k}: {e['frames']} frames, energy RMSE {e['rmse_e_meV_per_atom']:.3f} meV/atom, "
            f"force RMSE {e['rmse_f_eV_per_A']:.4f} eV/Å")
    return out
