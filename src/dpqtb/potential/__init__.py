"""Potentials of the engine: one interface (energy eV, forces eV/Å, virial eV)."""

from dpqtb.potential.base import Potential, PotentialOutput, autograd_energy_forces_virial
from dpqtb.potential.harmonic import EinsteinCrystal, HarmonicNetwork, spring_constant_from_frequency
from dpqtb.potential.morse import Morse
from dpqtb.potential.torchfn import TorchFunctionPotential

__all__ = ["Potential", "PotentialOutput", "autograd_energy_forces_virial", "EinsteinCrystal",
           "spring_constant_from_frequency", "Morse", "TorchFunctionPotential"]
