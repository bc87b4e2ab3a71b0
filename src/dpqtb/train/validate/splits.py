"""Which frames ``dpqtb validate`` may count as held out: the data folders and job stores it reads,
the split a model was trained with (its training ids and test modulus, where dpqtb recorded them),
and the job-store metadata of every frame (for subsets and the grouped bootstrap)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from dpqtb import InputError


def job_stores(data) -> list[Path] | None:
    """``data`` (a path or a list of paths) as a list of DFT job stores (folders with ``jobs/``), or
    None when it is not only job stores."""
    items = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    paths = [Path(x) for x in items]
    if paths and all((p / "jobs").is_dir() for p in paths):
        return paths
    return None


def model_test_modulus(model: str | os.PathLike) -> int | None:
    """The split modulus a model was trained with, where dpqtb recorded it: the model card of a shipped
    model (its training config), or the ``data/manifest.json`` of the ``dpqtb train`` folder the file
    lies in (``DIR/model_K/*.pth``); None when unknown."""
    import tomllib

    path = Path(model).resolve()
    card = path.with_suffix(".json")
    if card.is_file():
        try:
            cfg = json.loads(card.read_text())["source"]["config"]
            return int(tomllib.loads(cfg).get("data", {}).get("test_modulus", 10))
        except (KeyError, ValueError, TypeError, json.JSONDecodeError, tomllib.TOMLDecodeError):
            return None
    manifest = path.parent.parent / "data" / "manifest.json"
    if manifest.is_file():
        try:
            return int(json.loads(manifest.read_text())["test_modulus"])
        except (KeyError, ValueError, TypeError, json.JSONDecodeError):
            return None
    return None


def model_train_ids(model: str | os.PathLike) -> set[str] | None:
    """The frame ids a model was trained on, where dpqtb recorded them: ``source.train_ids`` of a
    shipped model's card, or the ``data/manifest.json`` of the ``dpqtb train`` folder the file lies
    in; None when unknown.  The ids must hash to the recorded dataset version."""
    from dpqtb.train.dataset import dataset_version

    path = Path(model).resolve()
    card = path.with_suffix(".json")
    try:
        if card.is_file():
            src = json.loads(card.read_text())["source"]
            ids, version, where = src["train_ids"], src.get("dataset_version"), card
        elif (path.parent.parent / "data" / "manifest.json").is_file():
            where = path.parent.parent / "data" / "manifest.json"
            man = json.loads(where.read_text())
            ids, version = man["train"]["ids"], man.get("dataset_version")
        else:
            return None
    except (KeyError, TypeError, json.JSONDecodeError):
        return None
    if version is not None and dataset_version(ids) != version:
        raise InputError(f"{where}: its training frame ids do not hash to its dataset version {version}")
    return set(ids)


def find_test_data(data: str | os.PathLike) -> tuple[Path, dict | None]:
    """The folder of deepmd/npy test systems and the manifest (if any) for ``--data``.

    Accepts a ``dpqtb train`` output folder (uses ``data/test``), a dataset folder with
    ``manifest.json`` (uses ``test``), or any folder of deepmd/npy systems.
    """
    d = Path(data)
    if not d.is_dir():
        raise InputError(f"no data directory at {d}")
    for base in (d / "data", d):
        if (base / "manifest.json").is_file():
            manifest = json.loads((base / "manifest.json").read_text())
            if manifest.get("test", {}).get("frames", 0) == 0:
                raise InputError(f"the held-out test split of {base} is empty (label more frames)")
            return base / "test", manifest
    if not any(d.rglob("type.raw")):
        raise InputError(f"no deepmd/npy systems (type.raw) under {d}")
    return d, None



def frame_meta(data_dir: str | os.PathLike, systems: list[dict]) -> list[dict] | None:
    """The job-store ``meta`` of every frame of ``systems`` (in their order), with its ``id``, read
    from the ``provenance.json`` of a dpqtb export; None when the data do not say which frame is
    which."""
    path = Path(data_dir) / "provenance.json"
    if not path.is_file():
        return None
    prov = json.loads(path.read_text())
    ids = prov.get("system_frame_ids")
    if not ids:
        return None
    meta = {r["id"]: r.get("meta", {}) for r in prov.get("frames", [])}
    out = []
    for s in systems:
        fids = ids.get(s["name"])
        if fids is None or len(fids) != len(s["energy_eV"]):
            return None
        out += [{**meta.get(fid, {}), "id": fid} for fid in fids]
    return out


def frame_groups(data_dir: str | os.PathLike, systems: list[dict]) -> list[str] | None:
    """A group label per frame of ``systems`` (in their order) for the bootstrap of
    :func:`compare_models`: candidates picked from the same exploration run (``meta.explore_run``)
    share a group, every other frame is its own.  None when the data do not say which frame is
    which (then frames are resampled)."""
    return groups_of(frame_meta(data_dir, systems))


def groups_of(metas: list[dict] | None) -> list[str] | None:
    """:func:`frame_groups` from the metas of :func:`frame_meta`."""
    if metas is None:
        return None
    return [f"{m.get('explore_dir', '')}/{m['explore_run']}" if m.get("explore_run") else m["id"]
            for m in metas]



def _all_frames_as_test(stores, outdir) -> dict:
    """Every labelled frame of ``stores`` exported to OUTDIR/test; the manifest fields validate reads."""
    from dpqtb.data.export import export_deepmd_npy, load_frames

    frames = sorted({fr["id"]: fr for fr in load_frames([str(s) for s in stores])}.values(),
                    key=lambda fr: fr["id"])
    if frames:
        export_deepmd_npy(frames, Path(outdir) / "test")
    return {"dataset_version": None, "split_rule": "all frames", "test_modulus": None,
            "test": {"frames": len(frames), "ids": [fr["id"] for fr in frames]}}
