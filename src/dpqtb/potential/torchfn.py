"""A user-supplied torch energy function as a potential (forces and virial by autograd)."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from dpqtb import DpqtbError, InputError
from dpqtb.potential.base import Potential, autograd_energy_forces_virial


class TorchFunctionPotential(Potential):
    """Wrap ``fn(positions, cell, species) -> energy`` (eV); forces and virial by autograd.

    Parameters
    ----------
    fn : callable
        ``fn(positions (…, N, 3) Å, cell (…, 3, 3) Å, species (N,)) -> energy`` (eV, a torch tensor).
    batched : bool
        ``fn`` handles a leading batch dimension (returning one energy per replica); otherwise
        replicas are evaluated one by one.
    name : str or None
        Name for error messages (default: the function's qualified name).

    Raises
    ------
    InputError
        ``fn`` is not callable; at evaluation, ``fn`` failed or returned something else than a tensor.
    """

    translation_invariant = None  # unknown for a user function: tested once (Potential.is_translation_invariant)

    def __init__(self, fn, batched: bool = False, name: str | None = None):
        if not callable(fn):
            raise InputError("potential function is not callable")
        self.fn = fn
        self.batched = batched
        self.name = name or getattr(fn, "__qualname__", repr(fn))

    def _compute(self, positions, cell, species, pbc):
        try:
            out = autograd_energy_forces_virial(lambda x, h: self._energy(x, h, species), positions, cell)
        except DpqtbError:
            raise
        except Exception as exc:  # noqa: BLE001 - a user function: its failure is an input error
            text = str(exc).strip().splitlines()
            raise InputError(f"potential.function {self.name} failed: {type(exc).__name__}"
                             + (f": {text[0]}" if text else "")) from None
        return out

    def _energy(self, x, h, species):
        import torch

        e = self.fn(x, h, species)
        if not isinstance(e, torch.Tensor):
            raise InputError(f"potential.function {self.name} must return a torch tensor (energy in eV), "
                             f"got {type(e).__name__}")
        return e


def load_function(spec: str, base_dir: Path | None = None):
    """Load ``"package.module:function"`` or ``"path/to/file.py:function"``.

    Parameters
    ----------
    spec : str
        Module or file, a colon, the function's name.
    base_dir : Path or None
        Folder a relative file path is taken from.

    Returns
    -------
    callable
        The function, checked to accept (positions, cell, species).

    Raises
    ------
    InputError
        Bad spec, missing file or module, failing import, no such function.
    """
    if ":" not in spec:
        raise InputError(f"potential.function must look like 'module:function' or 'file.py:function', got {spec!r}")
    target, name = spec.rsplit(":", 1)
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise InputError(f"potential.function file not found: {path}")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the user's file
            text = str(exc).strip().splitlines()
            raise InputError(f"potential.function file {path} failed to load: {type(exc).__name__}"
                             + (f": {text[0]}" if text else "")) from None
    else:
        try:
            module = importlib.import_module(target)
        except Exception as exc:  # noqa: BLE001 - ImportError, or the module's own failure
            raise InputError(f"cannot import potential.function module {target!r}: {exc}") from None
    fn = getattr(module, name, None)
    if fn is None:
        raise InputError(f"module {target!r} has no function {name!r}")
    if not callable(fn):
        raise InputError(f"potential.function {spec!r} is not a function")
    import inspect

    try:
        inspect.signature(fn).bind(None, None, None)
    except (TypeError, ValueError):
        raise InputError(f"potential.function {spec!r} must be a Python function taking (positions, cell, species) "
                         "and returning the energy (eV)") from None
    return fn
