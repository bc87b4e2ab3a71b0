"""Training data for the Deep Potential: a hash-keyed train/test split and deepmd/npy export.

A labelled frame is a *test* frame when ``int(frame_id, 16) % test_modulus == 0`` (default
modulus 10: ~10 % of the frames).  Frame ids are content hashes of the structure and the DFT
settings (:func:`dpqtb.dft.store.job_id`), so the decision depends on the frame alone: when the
data set grows, old frames keep their side of the split and a test frame is never trained on.

:func:`prepare_dataset` writes ``OUT/train`` and ``OUT/test`` (deepmd/npy via dpdata, one system
per composition, type map [La, H]) and ``OUT/manifest.json`` with the frame ids, counts and the
*dataset version* (first 16 hex digits of the SHA-256 of the sorted training ids).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np

from dpqtb import InputError

#: Default modulus of the split: a frame is held out when int(id, 16) % 10 == 0.
TEST_MODULUS_DEFAULT = 10
MANIFEST = "manifest.json"


def is_test_frame(frame_id: str, test_modulus: int = TEST_MODULUS_DEFAULT) -> bool:
    """True if the frame with this (hexadecimal) id belongs to the held-out test split."""
    if not isinstance(test_modulus, int) or test_modulus < 2:
        raise InputError(f"test_modulus must be an integer >= 2, got {test_modulus!r}")
    try:
        value = int(frame_id, 16)
    except (TypeError, ValueError):
        raise InputError(f"frame id {frame_id!r} is not a hexadecimal hash") from None
    return value % test_modulus == 0


def split_frames(frames: list[dict], test_modulus: int = TEST_MODULUS_DEFAULT
                 ) -> tuple[list[dict], list[dict]]:
    """(train, test) lists, each sorted by frame id; duplicate ids (same configuration and
    settings found in two stores) are kept once."""
    seen: dict[str, dict] = {}
    for fr in frames:
        seen.setdefault(fr["id"], fr)
    train, test = [], []
    for fid in sorted(seen):
        (test if is_test_frame(fid, test_modulus) else train).append(seen[fid])
    return train, test


def dataset_version(train_ids) -> str:
    """Version of a training set: SHA-256 (first 16 hex digits) of its sorted frame ids."""
    text = "\n".join(sorted(train_ids))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (models and data files in the provenance records)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _systems(root: Path) -> list[str]:
    """deepmd/npy system directories under ``root`` (relative, sorted)."""
    return sorted(str(p.parent.relative_to(root)) for p in root.rglob("type.raw"))


def settings_label(settings: dict) -> str:
    """The DFT settings of a label in a few words: ``PBE 500 eV k 0.25/Å σ 0.1 eV``."""
    return (f"{settings.get('xc', '?')} {settings.get('ecut_eV', '?')} eV k {settings.get('kspacing_invA', '?')}/Å "
            f"σ {settings.get('smearing_eV', '?')} eV")


def _describe(frames: list[dict]) -> dict:
    if not frames:
        return {"frames": 0}
    p = np.array([fr["pressure_GPa"] for fr in frames])
    return {
        "frames": len(frames),
        "by_natoms": {str(k): v for k, v in sorted(Counter(len(fr["symbols"]) for fr in frames).items())},
        "by_phase": dict(sorted(Counter(fr.get("meta", {}).get("phase", "?") for fr in frames).items())),
        "by_kind": dict(sorted(Counter(fr.get("meta", {}).get("kind", "?") for fr in frames).items())),
        # the DFT settings of the labels: a set that mixes them (v3: dense k on the phase-deciding frames) says so
        "by_dft_settings": dict(sorted(Counter(settings_label(fr.get("settings") or {}) for fr in frames).items())),
        "pressure_GPa_range": [float(p.min()), float(p.max())],
    }


def prepare_dataset(stores: list[str | os.PathLike], outdir: str | os.PathLike,
                    test_modulus: int = TEST_MODULUS_DEFAULT) -> dict:
    """Split the frames of the job ``stores`` and write train/test deepmd/npy and the manifest."""
    from dpqtb.data.export import export_deepmd_npy, load_frames

    if not stores:
        raise InputError("no job stores given ([data] stores is empty)")
    frames = load_frames([str(s) for s in stores])
    if not frames:
        raise InputError(f"no labelled frames in {', '.join(str(s) for s in stores)}")
    train, test = split_frames(frames, test_modulus)
    if not train:
        raise InputError(f"all {len(test)} labelled frames fall in the test split; label more data")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("test", test)):
        d = out / name
        if d.exists():
            import shutil

            shutil.rmtree(d)
        if part:
            export_deepmd_npy(part, d)
        else:
            d.mkdir()
    manifest = {
        "dataset_version": dataset_version(fr["id"] for fr in train),
        "stores": [str(s) for s in stores],
        "split_rule": f"test if int(frame_id, 16) % {test_modulus} == 0",
        "test_modulus": test_modulus,
        "type_map": ["La", "H"],
        "units": {"energy": "eV", "force": "eV/Å", "virial": "eV (= -V·stress)", "coord": "Å"},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "train": {**_describe(train), "systems": _systems(out / "train"),
                  "ids": [fr["id"] for fr in train]},
        "test": {**_describe(test), "systems": _systems(out / "test"),
                 "ids": [fr["id"] for fr in test]},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def current_version(stores: list[str | os.PathLike], test_modulus: int = TEST_MODULUS_DEFAULT
                    ) -> tuple[str, int]:
    """(dataset version, training-frame count) the stores give now, without exporting."""
    from dpqtb.data.export import load_frames

    train, _ = split_frames(load_frames([str(s) for s in stores]), test_modulus)
    return dataset_version(fr["id"] for fr in train), len(train)


def read_manifest(data_dir: str | os.PathLike) -> dict:
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        raise InputError(f"no dataset manifest at {path}")
    return json.loads(path.read_text())


def read_systems(root: str | os.PathLike, type_map=("La", "H")) -> list[dict]:
    """All labelled deepmd/npy systems under ``root`` as arrays (read through dpdata).

    Each item: ``name`` (relative dir), ``symbols`` (N,), ``coords_A`` (nf, N, 3), ``cells_A``
    (nf, 3, 3), ``energy_eV`` (nf,), ``forces_eV_per_A`` (nf, N, 3), ``virial_eV`` (nf, 3, 3) or
    None when the system has no virials.  ``type_map`` None: each system's own type_map.raw.
    """
    import dpdata

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"no data directory at {root}")
    out = []
    for name in _systems(root):
        if type_map is None and not (root / name / "type_map.raw").is_file():
            raise InputError(f"{root / name}: no type_map.raw, so its types cannot be matched to "
                             f"the model's elements by name; add one (e.g. 'La H') or export with "
                             f"'dpqtb dataset export'")
        try:
            s = dpdata.LabeledSystem(str(root / name), fmt="deepmd/npy",
                                     type_map=None if type_map is None else list(type_map))
        except Exception as exc:  # noqa: BLE001 - dpdata raises many kinds
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"{root / name}: not a labelled deepmd/npy system ({msg})") from None
        names = list(s["atom_names"])
        symbols = np.array([names[t] for t in s["atom_types"]])
        out.append({
            "name": name,
            "symbols": symbols,
            "coords_A": np.asarray(s["coords"], float),
            "cells_A": np.asarray(s["cells"], float),
            "energy_eV": np.asarray(s["energies"], float),
            "forces_eV_per_A": np.asarray(s["forces"], float),
            "virial_eV": np.asarray(s["virials"], float) if "virials" in s.data else None,
        })
    return out
