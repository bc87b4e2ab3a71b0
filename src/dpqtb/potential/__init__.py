"""Potentials of the engine: one interface (energy eV, forces eV/Å, virial eV).

The names below are imported on first use (PEP 562), so that ``dpqtb.potential.cli`` (``dpqtb
models``) registers its command without importing torch.
"""

import importlib

_EXPORTS = {
    "Potential": "dpqtb.potential.base",
    "PotentialOutput": "dpqtb.potential.base",
    "autograd_energy_forces_virial": "dpqtb.potential.base",
    "EinsteinCrystal": "dpqtb.potential.harmonic",
    "HarmonicNetwork": "dpqtb.potential.harmonic",
    "spring_constant_from_frequency": "dpqtb.potential.harmonic",
    "Morse": "dpqtb.potential.morse",
    "TorchFunctionPotential": "dpqtb.potential.torchfn",
    "PotentialCalculator": "dpqtb.potential.calculator",
    "calculator_from_spec": "dpqtb.potential.calculator",
}

__all__ = ["Potential", "PotentialOutput", "autograd_energy_forces_virial", "EinsteinCrystal", "HarmonicNetwork",
           "spring_constant_from_frequency", "Morse", "TorchFunctionPotential", "PotentialCalculator",
           "calculator_from_spec"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
