"""Checkpoint files that hold only tensors and plain data, loaded with ``torch.load(weights_only=True)``.

A checkpoint (``checkpoint.pt``) is a torch zip file of nested dicts and lists of tensors, str, int,
float, bool and None.  The integrators' ``state_dict()`` may also hold numpy arrays (the QTB spectra,
the adQTB γ_r(ω)) and tuples; :func:`encode` turns those into tagged plain objects
(``{"__ndarray__": tensor}``, ``{"__tuple__": [...]}``) and :func:`decode` turns them back, exactly
(same dtype, same bytes), so the integrators keep their own ``state_dict`` code.

:func:`load` never runs code from the file: torch's restricted unpickler refuses anything that is not
a tensor or plain data (a crafted ``__reduce__`` payload raises before it runs), and the error is a
one-line :class:`dpqtb.DpqtbError`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from dpqtb import InputError
from dpqtb.rundir import atomic_open

_ND = "__ndarray__"
_TUPLE = "__tuple__"


def encode(obj):
    """``obj`` with numpy arrays/scalars and tuples replaced by plain tagged objects (recursively)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError("checkpoint: numpy object arrays are not allowed")
        return {_ND: torch.from_numpy(np.ascontiguousarray(obj).copy())}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return {_TUPLE: [encode(x) for x in obj]}
    if isinstance(obj, list):
        return [encode(x) for x in obj]
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, str) or k in (_ND, _TUPLE):
                raise TypeError(f"checkpoint: dict key {k!r} is not allowed")
        return {k: encode(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"checkpoint: cannot store a {type(obj).__name__}")


def decode(obj):
    """Inverse of :func:`encode`."""
    if isinstance(obj, dict):
        if set(obj) == {_ND}:
            return obj[_ND].numpy().copy()
        if set(obj) == {_TUPLE}:
            return tuple(decode(x) for x in obj[_TUPLE])
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(x) for x in obj]
    return obj


def save(obj, path: str | os.PathLike) -> None:
    """Write ``encode(obj)`` to ``path`` atomically (:func:`dpqtb.rundir.atomic_open`: a temporary
    file, fsync, rename)."""
    data = encode(obj)
    with atomic_open(path, "wb") as fh:
        torch.save(data, fh)


def load(path: str | os.PathLike):
    """The decoded checkpoint at ``path`` (tensors on the CPU), or a one-line DpqtbError.

    Only tensors and plain data are accepted (``weights_only=True``): nothing in the file runs."""
    import warnings

    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols before refusing them
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt zip, refused pickle opcode/global, ...
        text = str(exc).strip()
        if "Weights only load failed" in text or "Unsupported global" in text or "unpickl" in text.lower():
            raise InputError(f"checkpoint {path} holds objects other than tensors and plain data; "
                             "refused to load it (a dpqtb checkpoint never does)") from None
        first = text.splitlines()[0] if text else type(exc).__name__
        raise InputError(f"checkpoint {path} cannot be read: {first}") from None
    if not isinstance(data, dict):
        raise InputError(f"checkpoint {path} is not a dpqtb checkpoint")
    try:
        return decode(data)
    except (AttributeError, TypeError, ValueError) as exc:  # e.g. {"__ndarray__": 5}: a tagged value that is not
        raise InputError(f"checkpoint {path} is damaged ({type(exc).__name__}: {exc})") from None
