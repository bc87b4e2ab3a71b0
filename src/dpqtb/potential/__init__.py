"""Potentials of the engine: one interface (energy eV, forces eV/Å, virial eV)."""

from dpqtb.potential.base import Potential, PotentialOutput, autograd_energy_forces_virial
from dpqtb.potential.harmonic import EinsteinCrystal, HarmonicNetwork, spring_constant_from_frequency
from dpqtb.potential.morse import Morse
from dpqtb.potential.torchfn import TorchFunctionPotential
from dpqtb.potential.calculator import PotentialCalculator, calculator_from_spec

__all__ = ["Potential", "PotentialOutput", "autograd_energy_forces_virial", "EinsteinCrystal", "HarmonicNetwork",
           "spring_constant_from_frequency", "Morse", "TorchFunctionPotential", "PotentialCalculator",
           "calculator_from_spec"]
