"""A user-supplied torch energy function as a potential (forces and virial by autograd)."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from dpqtb import DpqtbError
from dpqtb.potential.base import Potential, autograd_energy_forces_virial


class TorchFunctionPotential(Potential):
    """Wrap ``fn(positions, cell, species) -> energy`` (eV).

    ``positions`` may carry a leading batch dimension; set ``batched=True`` if ``fn`` handles it
    (returning one energy per replica), otherwise replicas are evaluated one by one.
    """

    def __init__(self, fn, batched: bool = False):
        if not callable(fn):
            raise DpqtbError("potential function is not callable")
        self.fn = fn
        self.batched = batched

    def _compute(self, positions, cell, species, pbc):
        return autograd_energy_forces_virial(lambda x, h: self.fn(x, h, species), positions, cell)


def load_function(spec: str, base_dir: Path | None = None):
    """Load ``"package.module:function"`` or ``"path/to/file.py:function"``."""
    if ":" not in spec:
        raise DpqtbError(f"potential.function must look like 'module:function' or 'file.py:function', got {spec!r}")
    target, name = spec.rsplit(":", 1)
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise DpqtbError(f"potential.function file not found: {path}")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise DpqtbError(f"cannot import potential.function module {target!r}: {exc}") from None
    fn = getattr(module, name, None)
    if fn is None:
        raise DpqtbError(f"module {target!r} has no function {name!r}")
    return fn
