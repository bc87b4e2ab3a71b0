"""Units used everywhere inside dpqtb: eV, Å, fs, K, GPa, amu.

Momenta are stored in amu·Å/fs, forces in eV/Å, virials in eV, stresses/pressures in GPa.
Conversion constants are derived from ASE's CODATA values so nothing is typed in by hand.
"""

from ase import units as _ase_units

#: amu·Å²/fs² expressed in eV (kinetic energy of p²/2m with p in amu·Å/fs).
MVV2E: float = _ase_units._amu * 1e10 / _ase_units._e
#: Reduced Planck constant in eV·fs.
HBAR: float = _ase_units._hbar / _ase_units._e * 1e15
#: Planck constant in eV·fs.
HPLANCK: float = 2.0 * 3.141592653589793 * HBAR
#: Boltzmann constant in eV/K.
KB: float = _ase_units.kB
#: eV/Å³ in GPa.
EV_PER_A3_TO_GPA: float = 1.0 / _ase_units.GPa
#: 1 THz in 1/fs.
THZ: float = 1e-3
#: 1 ps in fs.
PS: float = 1000.0
#: cm⁻¹ (wavenumber) per THz.
CM1_PER_THZ: float = 1e12 / _ase_units._c / 100.0
