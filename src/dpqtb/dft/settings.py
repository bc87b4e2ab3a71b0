"""GPAW plane-wave PBE settings and the k-point mesh from a density.

The production values (``PRODUCTION``) come from the convergence study in
``docs/dft_convergence.md`` (forces within 0.03 eV/Å and pressure within 2 GPa of the converged
reference).  ``CHEAP`` is for tests only.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from dpqtb import InputError


@dataclass(frozen=True)
class DFTSettings:
    """Plane-wave DFT parameters (eV, Å).

    ``kspacing`` is the largest allowed spacing between k-points in Å⁻¹ *including* the 2π factor
    (as VASP's KSPACING): n_i = max(1, ceil(|b_i| / kspacing)) with |b_i| = 2π/d_i.
    """

    ecut_eV: float = 500.0
    kspacing_invA: float = 0.25
    smearing_eV: float = 0.1
    xc: str = "PBE"
    gamma_centred: bool = True
    scf_energy_eV_per_electron: float = 1e-6
    scf_density: float = 1e-5
    scf_forces_eV_per_A: float = 1e-3
    maxiter: int = 300

    def __post_init__(self) -> None:
        if not self.ecut_eV > 50:
            raise InputError(f"plane-wave cutoff {self.ecut_eV} eV is too small")
        if not self.kspacing_invA > 0:
            raise InputError(f"k-point spacing {self.kspacing_invA} Å⁻¹ must be positive")
        if not self.smearing_eV >= 0:
            raise InputError(f"smearing {self.smearing_eV} eV must be non-negative")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DFTSettings":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise InputError(f"unknown DFT setting(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    def replace(self, **kw) -> "DFTSettings":
        return dataclasses.replace(self, **kw)


#: Settings used to label the training set (see docs/dft_convergence.md).
PRODUCTION = DFTSettings()
#: Very cheap settings for the CI test (not converged, never used for data).
CHEAP = DFTSettings(ecut_eV=200.0, kspacing_invA=10.0, smearing_eV=0.1,
                    scf_energy_eV_per_electron=1e-4, scf_density=1e-3, scf_forces_eV_per_A=1e-2)


def kpoint_mesh(atoms: Atoms, kspacing_invA: float) -> tuple[int, int, int]:
    """Monkhorst–Pack mesh size giving a k-point spacing of at most ``kspacing_invA`` (Å⁻¹, with 2π).

    Non-periodic directions get one k-point.
    """
    if not kspacing_invA > 0:
        raise InputError(f"k-point spacing {kspacing_invA} Å⁻¹ must be positive")
    rec = 2.0 * math.pi * atoms.cell.reciprocal()  # rows b_i, |b_i| = 2π / d_i
    sizes = []
    for i in range(3):
        if not atoms.pbc[i]:
            sizes.append(1)
            continue
        n = int(math.ceil(np.linalg.norm(rec[i]) / kspacing_invA - 1e-9))
        sizes.append(max(1, n))
    return tuple(sizes)  # type: ignore[return-value]


def make_calculator(atoms: Atoms, settings: DFTSettings, txt: str | None = None, **extra):
    """A GPAW plane-wave calculator for ``atoms`` with ``settings`` (GPAW imported lazily)."""
    try:
        from gpaw import GPAW, PW, FermiDirac
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise InputError("GPAW is not installed: run scripts/install_gpaw.sh") from exc
    kpts = {"size": kpoint_mesh(atoms, settings.kspacing_invA), "gamma": settings.gamma_centred}
    return GPAW(
        mode=PW(settings.ecut_eV),
        xc=settings.xc,
        kpts=kpts,
        occupations=FermiDirac(settings.smearing_eV),
        convergence={
            "energy": settings.scf_energy_eV_per_electron,
            "density": settings.scf_density,
            "forces": settings.scf_forces_eV_per_A,
        },
        maxiter=settings.maxiter,
        txt=txt,
        **extra,
    )


def code_versions() -> dict:
    """Versions of the codes that produce a label (provenance)."""
    import platform

    import ase

    import dpqtb

    out = {"dpqtb": dpqtb.__version__, "ase": ase.__version__, "numpy": np.__version__,
           "python": platform.python_version()}
    try:
        import gpaw

        out["gpaw"] = gpaw.__version__
        try:
            import gpaw_data  # type: ignore

            out["gpaw_data"] = getattr(gpaw_data, "__version__", "unknown")
        except ImportError:
            pass
    except ImportError:
        pass
    return out
