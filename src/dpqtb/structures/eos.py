"""Equation of state of Fm-3m LaH10: lattice constant and 32f parameter from a pressure.

The stored table ``dpqtb/data/lah10_eos.json`` is produced by :mod:`dpqtb.dft.eos` (GPAW PBE at
the production settings, 11-atom cell, H 32f parameter relaxed at each lattice constant).  A
third-order Birch–Murnaghan P(V) fit to those DFT pressures is inverted for a(P); x(a) is a
quadratic fit.  Units: Å, GPa, eV.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from scipy.optimize import brentq, curve_fit

from dpqtb import InputError

#: Atoms per primitive (11-atom) cell; volumes in the EOS are per primitive cell.
PRIMITIVE_ATOMS = 11


def birch_murnaghan_pressure(v, v0, b0, b0p):
    """Third-order Birch–Murnaghan pressure (units of ``b0``) at volume ``v``."""
    eta = (v0 / np.asarray(v, float)) ** (2.0 / 3.0)
    return 1.5 * b0 * (eta**3.5 - eta**2.5) * (1.0 + 0.75 * (b0p - 4.0) * (eta - 1.0))


@dataclass(frozen=True)
class EOS:
    """BM3 fit: V0 (Å³ per 11-atom cell), B0 (GPa), B0'; and x(a) polynomial coefficients."""

    v0_A3: float
    b0_GPa: float
    b0_prime: float
    x_poly: tuple[float, ...]
    a_range_A: tuple[float, float]
    source: str = ""

    @classmethod
    def fit(cls, a_A, p_GPa, x=None, source: str = "") -> "EOS":
        a = np.asarray(a_A, float)
        p = np.asarray(p_GPa, float)
        if len(a) < 4:
            raise InputError("an EOS fit needs at least 4 lattice constants")
        v = a**3 / 4.0
        guess = (v.max() * 1.1, 150.0, 4.0)
        popt, _ = curve_fit(birch_murnaghan_pressure, v, p, p0=guess, maxfev=20000)
        xp = tuple(np.polyfit(a, x, 2).tolist()) if x is not None else ()
        return cls(float(popt[0]), float(popt[1]), float(popt[2]), xp,
                   (float(a.min()), float(a.max())), source)

    def pressure(self, a_A: float) -> float:
        """Pressure (GPa) of the cubic cell with lattice constant ``a_A``."""
        return float(birch_murnaghan_pressure(a_A**3 / 4.0, self.v0_A3, self.b0_GPa,
                                              self.b0_prime))

    def lattice_constant(self, p_GPa: float) -> float:
        """Cubic lattice constant (Å) at pressure ``p_GPa``."""
        if not np.isfinite(p_GPa):
            raise InputError(f"pressure {p_GPa} GPa is not a number")
        lo, hi = 0.8 * self.a_range_A[0], 1.2 * self.a_range_A[1]
        if not self.pressure(hi) < p_GPa < self.pressure(lo):
            raise InputError(f"pressure {p_GPa} GPa is outside the EOS range "
                             f"({self.pressure(hi):.0f}–{self.pressure(lo):.0f} GPa)")
        return float(brentq(lambda a: self.pressure(a) - p_GPa, lo, hi, xtol=1e-8))

    def x32f(self, a_A: float) -> float:
        """Relaxed H 32f parameter (La on 4a) at lattice constant ``a_A``."""
        if not self.x_poly:
            from dpqtb.structures.lah10 import X32F_DEFAULT

            return X32F_DEFAULT
        return float(np.polyval(self.x_poly, a_A))

    def to_dict(self) -> dict:
        return {"v0_A3_per_11_atoms": self.v0_A3, "b0_GPa": self.b0_GPa,
                "b0_prime": self.b0_prime, "x32f_poly_in_a_A": list(self.x_poly),
                "a_range_A": list(self.a_range_A), "source": self.source}

    @classmethod
    def from_dict(cls, d: dict) -> "EOS":
        return cls(d["v0_A3_per_11_atoms"], d["b0_GPa"], d["b0_prime"],
                   tuple(d.get("x32f_poly_in_a_A", ())), tuple(d["a_range_A"]),
                   d.get("source", ""))


def eos_path() -> Path:
    return Path(str(resources.files("dpqtb") / "data" / "lah10_eos.json"))


@lru_cache(maxsize=1)
def load_eos() -> EOS:
    """The stored DFT EOS of Fm-3m LaH10."""
    path = eos_path()
    if not path.exists():
        raise InputError(f"no stored LaH10 EOS at {path}: run `python -m dpqtb.dft.eos`")
    data = json.loads(path.read_text())
    return EOS.from_dict(data["fit"])


def lattice_constant(p_GPa: float) -> float:
    """Fm-3m LaH10 lattice constant (Å) at pressure ``p_GPa`` from the stored DFT EOS."""
    return load_eos().lattice_constant(p_GPa)


def fm3m_at_pressure(p_GPa: float, cell: str = "primitive"):
    """Fm-3m LaH10 at pressure ``p_GPa`` (lattice constant and x from the stored EOS)."""
    from dpqtb.structures.lah10 import fm3m

    eos = load_eos()
    a = eos.lattice_constant(p_GPa)
    return fm3m(a, cell, x=eos.x32f(a))
