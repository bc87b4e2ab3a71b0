"""Deep Potentials shipped with dpqtb: ``potential.model = "builtin:lah10"`` (the default of ``kind = "deepmd"``).

Each shipped model is a frozen (compressed) DeePMD-kit PyTorch file in ``dpqtb/data/models/`` with a
model card ``NAME.json`` beside it: how it was trained (dataset version, config, DeePMD-kit version),
its validation numbers (held-out RMSE, EOS) and its status. ``dpqtb models`` prints the cards.
An ensemble (``builtin:lah10-ensemble``: the members trained beside the shipped one) has a card whose
``files`` lists its members; it is named in ``potential.ensemble`` (:func:`resolve_all`), not as a model.
"""

from __future__ import annotations

import json
from pathlib import Path

from dpqtb import InputError

MODELS_DIR = Path(__file__).resolve().parent.parent / "data" / "models"
PREFIX = "builtin:"


def available() -> list[str]:
    """Names of the shipped models (``builtin:NAME``)."""
    return sorted(p.stem for p in MODELS_DIR.glob("*.json")) if MODELS_DIR.is_dir() else []


def card(name: str) -> dict:
    """The model card of shipped model ``name``."""
    path = MODELS_DIR / f"{name}.json"
    if not path.is_file():
        known = ", ".join(available()) or "none"
        raise InputError(f"no shipped Deep Potential 'builtin:{name}' (shipped: {known})")
    return json.loads(path.read_text())


def resolve(spec: str | Path, base_dir: str | Path = ".") -> Path:
    """Model file of ``spec``.

    Parameters
    ----------
    spec : str or Path
        ``builtin:NAME`` (a shipped model) or a path.
    base_dir : str or Path
        Folder a relative path is taken from.

    Returns
    -------
    Path
        The model file (for a path: not checked to exist).

    Raises
    ------
    InputError
        An unknown shipped name, or its file missing from the install.
    """
    s = str(spec)
    if s.startswith(PREFIX):
        name = s[len(PREFIX):]
        c = card(name)
        if "file" not in c:
            raise InputError(f"builtin:{name} is an ensemble of {len(c.get('files', []))} models: name it in "
                             "potential.ensemble, not as potential.model")
        path = MODELS_DIR / c["file"]
        if not path.is_file():
            raise InputError(f"shipped model file missing: {path} (reinstall dpqtb)")
        return path
    path = Path(s)
    return path if path.is_absolute() else Path(base_dir) / path


def resolve_all(spec: str | Path, base_dir: str | Path = ".") -> list[Path]:
    """Model files of ``spec``: the members of a shipped ensemble (a card with ``files``), else
    ``[resolve(spec)]``.

    Raises
    ------
    InputError
        As :func:`resolve`; a member file missing from the install.
    """
    s = str(spec)
    if s.startswith(PREFIX):
        c = card(s[len(PREFIX):])
        if "files" in c:
            paths = [MODELS_DIR / f for f in c["files"]]
            for path in paths:
                if not path.is_file():
                    raise InputError(f"shipped model file missing: {path} (reinstall dpqtb)")
            return paths
    return [resolve(spec, base_dir)]


def ensemble_members(model: str | Path, ensemble, base_dir: str | Path = ".") -> list[Path]:
    """The model files of ``potential.ensemble`` beside ``potential.model``: every entry's files
    (:func:`resolve_all`), each once, the driving model left out (it is a member already).

    Raises
    ------
    InputError
        As :func:`resolve`; no member left besides the driving model.
    """
    driver = resolve(model, base_dir).resolve()
    paths = [Path(p).resolve() for spec in ensemble for p in resolve_all(spec, base_dir)]
    paths = [p for p in dict.fromkeys(paths) if p != driver]
    if not paths:
        raise InputError("potential.ensemble names no model other than potential.model: the deviation needs "
                         "at least two members")
    return paths


def summary(name: str) -> str:
    """One line about a shipped model for logs: name, status, held-out errors."""
    c = card(name)
    m = c.get("validation", {}).get("test", {})
    err = ""
    if m:
        err = (f", held-out RMSE {m['energy_meV_per_atom']:.1f} meV/atom, {m['force_eV_per_A']:.3f} eV/Å "
               f"({m['frames']} frames)")
    return f"Deep Potential builtin:{name} ({c.get('status', '')}{err})"
