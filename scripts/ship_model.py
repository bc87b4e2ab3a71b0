#!/usr/bin/env python
"""Ship a trained ensemble member as dpqtb's built-in Deep Potential (``builtin:NAME``), and optionally the
members trained beside it as ``builtin:NAME-ensemble`` (for the model deviation during MD).

    .venv/bin/python scripts/ship_model.py --train-dir models/iter0 --member 0 \
        --validation models/iter0/validation_0 --name lah10 --status "preliminary: ..." [--ensemble 1,2,3]

Copies the member's compressed (else frozen) model to src/dpqtb/data/models/NAME.pth and writes the
model card NAME.json: dataset version and size, the training config and DeePMD-kit input, the
held-out errors, EOS summary and (with --phases) distorted-phase enthalpies of `dpqtb validate`, sha256 of the file.
With ``--ensemble K,...`` those members (same training directory: same data, other seeds) go to NAME-mK.pth and
the card NAME-ensemble.json lists NAME.pth and them (``files``, each with its sha256, seed and machine): the
shipped member is one of the ensemble, so ``potential.ensemble = ["builtin:NAME-ensemble"]`` beside
``potential.model = "builtin:NAME"`` gives the deviation over all of them.

The validation report of the model this one replaces is copied to ``--archive-dir``/<its sha256[:12]>/ (default
docs/validation_archive): the sweeps and the paper report made with it stay collectable (``dpqtb paper --from``
finds the report of the sweeps' own model there).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from dpqtb.potential.builtin import MODELS_DIR  # noqa: E402
from dpqtb.train.dataset import dataset_version, file_sha256  # noqa: E402


def _rel(p: str) -> str:
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-dir", required=True, type=Path)
    ap.add_argument("--member", type=int, default=0)
    ap.add_argument("--validation", required=True, type=Path, help="dpqtb validate output dir (report.json)")
    ap.add_argument("--name", default="lah10")
    ap.add_argument("--status", required=True, help="one line: what this model is good for")
    ap.add_argument("--limitation", action="append", default=[], metavar="TEXT",
                    help="a known limitation for the card (repeatable; `dpqtb models` prints each)")
    ap.add_argument("--report-dir", type=Path, default=ROOT / "docs" / "validation_builtin",
                    help="copy the validation report (report.md/json, PNGs) here (committed with the model)")
    ap.add_argument("--archive-dir", type=Path, default=None,
                    help="where the replaced model's validation report goes, a folder per model sha256[:12] "
                         "(default: validation_archive beside --report-dir, i.e. docs/validation_archive)")
    ap.add_argument("--ensemble", type=_members, default=[], metavar="K,K,...",
                    help="also ship these members of --train-dir as builtin:NAME-ensemble (with NAME)")
    ap.add_argument("--models-dir", type=Path, default=MODELS_DIR, help=argparse.SUPPRESS)  # tests
    a = ap.parse_args(argv)
    ens = json.loads((a.train_dir / "ensemble.json").read_text())
    mem = ens["members"][str(a.member)]
    others = [k for k in a.ensemble if k != a.member]
    if len(set(others)) != len(others) or not all(str(k) in ens["members"] for k in others):
        sys.exit(f"--ensemble {a.ensemble}: each member once, among those of {a.train_dir}/ensemble.json "
                 f"({', '.join(sorted(ens['members']))})")
    if a.ensemble and not others:
        sys.exit("--ensemble names no member other than --member")
    src = a.train_dir / mem["model"]
    rep = json.loads((a.validation / "report.json").read_text())
    if file_sha256(src) != rep["model"]["sha256"]:
        sys.exit(f"{a.validation}/report.json validates another model file than {src}")
    metrics = json.loads((a.train_dir / f"model_{a.member}" / "metrics.json").read_text())
    manifest = json.loads((a.train_dir / "data" / "manifest.json").read_text())
    if dataset_version(manifest["train"]["ids"]) != ens["dataset_version"]:
        sys.exit(f"{a.train_dir}/data/manifest.json lists other training frames than ensemble.json's dataset "
                 f"{ens['dataset_version']}")
    # everything is read and checked before anything is written: a member's missing file or record stops the
    # ship with the installed models untouched
    members = {a.member: (mem, metrics)}
    for k in others:
        m = ens["members"][str(k)]
        for need in (a.train_dir / m["model"], a.train_dir / f"model_{k}" / "metrics.json"):
            if not need.is_file():
                sys.exit(f"{need}: missing (member {k}); nothing shipped")
        members[k] = (m, json.loads((a.train_dir / f"model_{k}" / "metrics.json").read_text()))
    models_dir = a.models_dir
    dst = models_dir / f"{a.name}.pth"
    files = {dst.name if k == a.member else f"{a.name}-m{k}.pth": k for k in members}
    sha = {name: file_sha256(a.train_dir / members[k][0]["model"]) for name, k in files.items()}
    t = rep["test"]
    eos = rep.get("eos") or {}
    card = {
        "name": a.name, "file": dst.name, "sha256": sha[dst.name], "shipped": time.strftime("%Y-%m-%d"),
        "status": a.status, "type_map": ["La", "H"],
        "source": {"train_dir": str(a.train_dir), "member": a.member, "model": mem["model"],
                   "seed": mem["seed"], "dataset_version": ens["dataset_version"],
                   "train_frames": manifest["train"]["frames"], "test_frames": manifest["test"]["frames"],
                   "train_ids": sorted(manifest["train"]["ids"]),  # validate refuses to hold these out
                   "stores": [_rel(x) for x in manifest.get("stores", [])], "config": (a.train_dir / "config.toml").read_text(),
                   "deepmd_input": json.loads((a.train_dir / f"model_{a.member}" / "input.json").read_text()),
                   "code_versions": metrics.get("codes"), "lcurve_final": mem["lcurve_final"],
                   # which machine made the member (older members recorded no machine)
                   "trained_on": _trained_on(metrics)},
        "validation": {
            "test": {"frames": t["frames"], "energy_meV_per_atom": t["rmse_e_meV_per_atom"],
                     "force_eV_per_A": t["rmse_f_eV_per_A"], "virial_meV_per_atom": t.get("rmse_v_meV_per_atom"),
                     "pressure_GPa": t.get("rmse_p_GPa"), "force_rms_dft_eV_per_A": t["force_rms_dft_eV_per_A"]},
            "eos_max_abs_dP_GPa": eos.get("max_abs_dP_same_geometry_GPa"),
            "eos_rms_dP_GPa": eos.get("rms_dP_same_geometry_GPa"),
            "phases_dH_meV_per_atom": None if not rep.get("phases") else [
                {"start": r["phase_start"], "pressure_GPa": r["pressure_GPa"], "natoms": r.get("natoms", 11),
                 "seed": r["seed"], "dft": round(r["dH_dft_meV_per_atom"], 2), "dp": round(r["dH_dp_meV_per_atom"], 2)}
                for r in rep["phases"]["rows"]],
            "report": rep.get("files"),
            "generated": rep["date"],
            "report_dir": _rel(str(a.report_dir))},
    }
    if a.limitation:
        card["known_limitations"] = a.limitation
    ens_card = None
    if others:
        card["ensemble"] = f"builtin:{a.name}-ensemble"
        info = {name: {"member": k, "model": members[k][0]["model"], "seed": members[k][0]["seed"],
                       "lcurve_final": members[k][0]["lcurve_final"], "trained_on": _trained_on(members[k][1])}
                for name, k in files.items()}
        ens_card = {
            "name": f"{a.name}-ensemble", "files": list(files), "shipped": card["shipped"],
            "status": f"the {len(files)} members trained on dataset {ens['dataset_version']} (seeds "
                      f"{', '.join(str(v['seed']) for v in info.values())}), builtin:{a.name} among them: for "
                      "the model deviation (potential.ensemble), not as a model",
            "type_map": card["type_map"], "sha256": sha,
            "source": {"train_dir": str(a.train_dir), "dataset_version": ens["dataset_version"],
                       "train_frames": manifest["train"]["frames"], "test_frames": manifest["test"]["frames"],
                       "shipped_member": a.member, "members": info}}
    # write: the model files side by side first (each through a temporary name), then the cards, the shipped
    # model's last; an ensemble of an earlier ship (its card, its members' files) goes, so that no card pairs the
    # new NAME.pth with members trained on other data
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = {name: models_dir / f"{name}.tmp" for name in files}
    for name, k in files.items():
        shutil.copyfile(a.train_dir / members[k][0]["model"], tmp[name])
    for name in files:
        tmp[name].replace(models_dir / name)
    for stale in models_dir.glob(f"{a.name}-m*.pth"):
        if re.fullmatch(rf"{re.escape(a.name)}-m\d+\.pth", stale.name) and stale.name not in files:
            stale.unlink()
    ens_path = models_dir / f"{a.name}-ensemble.json"
    if ens_card is not None:
        _write_json(ens_path, ens_card)
        print(f"shipped members {', '.join(map(str, others))} with it as builtin:{a.name}-ensemble")
    elif ens_path.exists():
        ens_path.unlink()
        print(f"removed the earlier builtin:{a.name}-ensemble (not shipped with this model)")
    _archive(a.report_dir, rep["model"]["sha256"], a.archive_dir or a.report_dir.parent / "validation_archive")
    a.report_dir.mkdir(parents=True, exist_ok=True)
    for f in ["report.md", "report.json", *rep.get("files", [])]:
        shutil.copyfile(a.validation / f, a.report_dir / f)
    _write_json(models_dir / f"{a.name}.json", card)
    print(f"shipped {src} as builtin:{a.name} ({dst}, {dst.stat().st_size / 1e6:.1f} MB)")
    return 0


def _archive(report_dir: Path, new_sha: str, archive_dir: Path) -> None:
    """Copy the validation report in ``report_dir`` to ``archive_dir``/<sha256[:12]>/ when it describes another
    model than ``new_sha`` (the one being shipped over it); kept as it is where that folder exists."""
    try:
        old = json.loads((report_dir / "report.json").read_text())
    except (OSError, ValueError):
        return
    sha = (old.get("model") or {}).get("sha256") if isinstance(old, dict) else None
    if not isinstance(sha, str) or sha == new_sha:
        return
    dest = archive_dir / sha[:12]
    if not dest.exists():
        tmp = archive_dir / f".{sha[:12]}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(report_dir, tmp)
        tmp.replace(dest)
        print(f"the validation report of the replaced model (sha256 {sha[:12]}) kept in {_rel(str(dest))}")


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    tmp.replace(path)


def _members(text: str) -> list[int]:
    try:
        ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of member numbers: {text!r}") from None
    if not ks or min(ks) < 0:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of member numbers: {text!r}")
    return ks


def _trained_on(metrics: dict) -> list[dict]:
    """Which machine made a member, per training session (older members recorded none)."""
    return [{k: s.get(k) for k in ("host", "device", "from_step", "to_step", "wall_s")}
            for s in metrics.get("sessions", [])]


if __name__ == "__main__":
    raise SystemExit(main())
