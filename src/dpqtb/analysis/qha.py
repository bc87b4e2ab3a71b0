"""Quasi-harmonic lattice expansion: the harmonic reference for the quantum baths' zero-point pressure.

Phonons of a crystal with any ASE calculator (dpqtb's :class:`~dpqtb.potential.calculator.PotentialCalculator`
for a dpqtb potential) come from phonopy's finite displacements (± pairs, so the cubic anharmonicity
cancels from the force constants), on a Monkhorst–Pack mesh without Γ. Per primitive cell and mesh
average, the quantum and classical harmonic free energies are

    F_q(V, T)  = Σ_kν [ħω/2 + k_BT ln(1 − e^{−ħω/k_BT})]       (T = 0: the zero-point energy Σ ħω/2)
    F_cl(V, T) = Σ_kν k_BT ln(ħω/k_BT)

and the vibrational pressure is P_vib = −∂F/∂V. Given the static pressure P_st(V) of the potential at
a few volumes (each structure relaxed at its volume), the quasi-harmonic volume at a target pressure P
solves P_st(V) + P_vib(V, T) = P. The quantum − classical difference at the same T and P is what the
quantum baths' NPT runs measure (QTB, adQTB, PIMD against classical Langevin): to lowest order in the
anharmonicity a leak-free QTB gives the quasi-harmonic value, and PIMD gives the exact one.

Imaginary modes (|ν| counted on the mesh) are left out of both free energies and reported as a
fraction: a structure with any is not a harmonic minimum. :func:`quasi_harmonic` refuses a volume grid where
more than ``max_imaginary_fraction`` (default 1 %) of the modes are imaginary at some volume; below that the
jump in F_vib(V) from the modes left out is at most ħ|ω|/2 per mode for that small fraction of the modes
(200 GPa, `builtin:lah10`: 0 → 0.17 % of the modes over the grid). A grid with more needs another reference
(the structure distorts: 150 GPa, up to 4.3 %).

Units: THz (ν = ω/2π), eV, Å³, GPa, K.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dpqtb import InputError
from dpqtb.units import EV_PER_A3_TO_GPA, HPLANCK, KB, THZ

#: modes with |ν| below this (THz) count as zero (acoustic modes near Γ; the mesh avoids Γ itself)
ZERO_FREQUENCY_THZ = 1e-3


@dataclass(frozen=True)
class Phonons:
    """Phonon frequencies of a crystal on a mesh, per primitive cell.

    Attributes
    ----------
    frequencies_THz : np.ndarray
        (n_q, n_bands) frequencies ν (THz); imaginary modes are negative (phonopy's convention).
    weights : np.ndarray
        (n_q,) integer weights of the irreducible mesh points.
    qpoints : np.ndarray
        (n_q, 3) the mesh points in reduced coordinates of the primitive cell's reciprocal lattice.
    volume_A3 : float
        Volume of the primitive cell (Å³).
    n_atoms : int
        Atoms in the primitive cell.
    """

    frequencies_THz: np.ndarray
    weights: np.ndarray
    qpoints: np.ndarray
    volume_A3: float
    n_atoms: int

    @property
    def imaginary_fraction(self) -> float:
        """Weighted fraction of the modes with ν < −ZERO_FREQUENCY_THZ."""
        bad = (self.frequencies_THz < -ZERO_FREQUENCY_THZ).sum(axis=1)
        return float((bad * self.weights).sum() / (self.weights.sum() * self.frequencies_THz.shape[1]))

    def _real_modes(self) -> tuple[np.ndarray, np.ndarray]:
        """ħω (eV) of the real modes and their weights (normalised to one primitive cell)."""
        nu = self.frequencies_THz
        w = np.broadcast_to(self.weights[:, None], nu.shape) / self.weights.sum()
        keep = nu > ZERO_FREQUENCY_THZ
        return HPLANCK * THZ * nu[keep], w[keep]

    def free_energy_eV(self, temperature_K: float, quantum: bool = True) -> float:
        """Harmonic vibrational free energy per primitive cell (eV), quantum or classical.

        Parameters
        ----------
        temperature_K : float
            T (K), ≥ 0; the classical free energy needs T > 0.
        quantum : bool
            F_q (zero-point energy included) or F_cl.
        """
        e, w = self._real_modes()
        if temperature_K < 0 or not np.isfinite(temperature_K):
            raise InputError(f"temperature_K must be a finite number >= 0, got {temperature_K}")
        if not quantum:
            if temperature_K == 0:
                raise InputError("the classical harmonic free energy needs temperature_K > 0")
            kt = KB * temperature_K
            return float((w * kt * np.log(e / kt)).sum())
        f = 0.5 * e
        if temperature_K > 0:
            kt = KB * temperature_K
            f = f + kt * np.log1p(-np.exp(-e / kt))
        return float((w * f).sum())


def phonons(atoms, calculator, supercell=(2, 2, 2), mesh: int = 16, displacement_A: float = 0.01,
            primitive_matrix="auto") -> Phonons:
    """Phonons of ``atoms`` with ``calculator`` by phonopy's finite displacements (± pairs).

    Parameters
    ----------
    atoms : ase.Atoms
        The unit cell, relaxed (forces zero) at its volume.
    calculator : ase.calculators.calculator.Calculator
        Evaluates the supercells' forces (eV/Å).
    supercell : sequence of 3 int
        Supercell of ``atoms`` in which the displacements are made (force constants beyond half of it
        are cut).
    mesh : int
        Even number of points per reciprocal axis of the primitive cell (Monkhorst–Pack, without Γ).
    displacement_A : float
        Displacement amplitude (Å).
    primitive_matrix : str or array
        phonopy's ``primitive_matrix`` ("auto": found by symmetry; "F" for an fcc conventional cell).

    Returns
    -------
    Phonons

    Raises
    ------
    InputError
        An odd or non-positive mesh, a non-positive displacement or supercell.
    """
    from ase import Atoms
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    if int(mesh) != mesh or mesh < 2 or mesh % 2:
        raise InputError(f"mesh must be an even integer >= 2 (a mesh without Γ), got {mesh}")
    if not displacement_A > 0:
        raise InputError(f"displacement_A must be > 0, got {displacement_A}")
    sc = np.diag([int(s) for s in supercell]) if np.ndim(supercell) == 1 else np.asarray(supercell, dtype=int)
    if np.linalg.det(sc) < 1:
        raise InputError(f"supercell must be positive, got {supercell}")
    unit = PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=np.array(atoms.cell),
                        scaled_positions=atoms.get_scaled_positions(), masses=atoms.get_masses())
    ph = Phonopy(unit, supercell_matrix=sc, primitive_matrix=primitive_matrix)
    ph.generate_displacements(distance=float(displacement_A), is_plusminus=True)
    forces = []
    for s in ph.supercells_with_displacements:
        image = Atoms(s.symbols, cell=s.cell, scaled_positions=s.scaled_positions, pbc=True)
        image.calc = calculator
        f = np.asarray(image.get_forces(), dtype=float)
        forces.append(f - f.mean(axis=0))  # the drift of a finite displacement (translation invariance)
    ph.forces = np.array(forces)
    ph.produce_force_constants()
    ph.run_mesh([int(mesh)] * 3, is_gamma_center=False, with_eigenvectors=False)
    m = ph.get_mesh_dict()
    prim = ph.primitive
    return Phonons(np.asarray(m["frequencies"], dtype=float), np.asarray(m["weights"], dtype=float),
                   np.asarray(m["qpoints"], dtype=float), float(abs(np.linalg.det(prim.cell))), len(prim.symbols))


def _poly(x, y, degree):
    """Least-squares polynomial in x (centred and scaled for conditioning)."""
    x0, s = float(np.mean(x)), float(np.ptp(x)) or 1.0
    c = np.polyfit((np.asarray(x) - x0) / s, y, degree)
    return np.poly1d(c), x0, s


#: the largest fraction of imaginary modes at any volume that :func:`quasi_harmonic` accepts by default
MAX_IMAGINARY_FRACTION = 0.01


def quasi_harmonic(volumes_A3, static_pressures_GPa, phonon_list, pressure_GPa: float, temperatures_K,
                   degree: int = 3, max_imaginary_fraction: float = MAX_IMAGINARY_FRACTION) -> dict:
    """Quasi-harmonic volumes at ``pressure_GPa``, quantum and classical, at each temperature.

    Parameters
    ----------
    volumes_A3 : sequence of float
        Primitive-cell volumes (Å³) of the structures, each relaxed at its volume (≥ degree + 2 of them),
        spanning the static and the quantum volume (a zero-point expansion of ~3 % in V needs ±4 %).
    static_pressures_GPa : sequence of float
        The potential's static pressure (GPa) at each volume.
    phonon_list : sequence of Phonons
        Their phonons.
    pressure_GPa : float
        Target pressure P (GPa).
    temperatures_K : sequence of float
        Temperatures (K, > 0; the quantum T → 0 limit is reported as ``zero_point``).
    degree : int
        Degree of the polynomials fitted to F_vib(V) and P_st(V).
    max_imaginary_fraction : float
        Refuse a grid where more than this fraction of the modes is imaginary at some volume. Imaginary modes
        have no harmonic free energy and are left out of F_vib; where their number changes with V, F_vib(V)
        jumps and its derivative (the vibrational pressure) is an artefact of the count. The structure is
        then not a harmonic minimum (it distorts) and the QHA is not the right reference; a larger value
        computes it anyway (``imaginary_fraction_max`` in the result says how far off).

    Returns
    -------
    dict
        ``static``: V and a³-scaled lattice factor where P_st = P; ``zero_point``: P_zp = −∂F_zp/∂V at
        the static volume (GPa) and the T = 0 quantum volume; ``temperatures``: per T the quantum and
        classical volumes, their difference, and the quantum − classical vibrational pressure at the static
        volume; ``imaginary_fraction_max`` over the inputs. Volumes are per primitive cell (Å³); the
        relative expansion of a length is (V_q/V_cl)^(1/3) − 1.

    Raises
    ------
    InputError
        Too few volumes, or a target pressure whose root lies outside the volume range.
    """
    from scipy.optimize import brentq

    v = np.asarray(volumes_A3, dtype=float)
    p_st = np.asarray(static_pressures_GPa, dtype=float)
    if len(v) < degree + 2 or len(p_st) != len(v) or len(phonon_list) != len(v):
        raise InputError(f"quasi_harmonic needs >= {degree + 2} volumes with a static pressure and phonons each")
    if not 0.0 <= max_imaginary_fraction <= 1.0:  # also refuses NaN
        raise InputError(f"max_imaginary_fraction must be within [0, 1], got {max_imaginary_fraction}")
    frac = np.array([ph.imaginary_fraction for ph in phonon_list])
    if frac.max() > max_imaginary_fraction:
        k = int(frac.argmax())
        raise InputError(f"{100 * frac[k]:.2f} % of the modes are imaginary at V = {v[k]:.3f} Å3 (more than "
                         f"max_imaginary_fraction = {max_imaginary_fraction}): not a harmonic minimum, the QHA "
                         "is not defined there")
    pst, p0, ps = _poly(v, p_st, degree)

    def static_p(x):
        return float(pst((x - p0) / ps))

    def vib_pressure(free_energies):
        f, f0, fs = _poly(v, free_energies, degree)
        df = f.deriv()
        return lambda x: -float(df((x - f0) / fs)) / fs * EV_PER_A3_TO_GPA

    def root(extra):
        g = lambda x: static_p(x) + extra(x) - pressure_GPa  # noqa: E731
        lo, hi = float(v.min()), float(v.max())
        if g(lo) * g(hi) > 0:
            raise InputError(f"P = {pressure_GPa} GPa is not reached within the volumes {lo:.3f}-{hi:.3f} Å3 "
                             "(widen the volume grid)")
        return float(brentq(g, lo, hi, xtol=1e-12))

    v_static = root(lambda x: 0.0)
    p_zp = vib_pressure([ph.free_energy_eV(0.0) for ph in phonon_list])
    out = {"pressure_GPa": float(pressure_GPa), "static": {"V_A3": v_static},
           "zero_point": {"P_zp_at_static_V_GPa": p_zp(v_static), "V_A3": root(p_zp)},
           "imaginary_fraction_max": max(ph.imaginary_fraction for ph in phonon_list), "temperatures": []}
    out["zero_point"]["expansion_percent"] = 100 * ((out["zero_point"]["V_A3"] / v_static) ** (1 / 3) - 1)
    for t in temperatures_K:
        if not t > 0:
            raise InputError(f"temperatures_K must be > 0 (T = 0 is the zero-point entry), got {t}")
        pq = vib_pressure([ph.free_energy_eV(t) for ph in phonon_list])
        pc = vib_pressure([ph.free_energy_eV(t, quantum=False) for ph in phonon_list])
        vq, vc = root(pq), root(pc)
        out["temperatures"].append({
            "temperature_K": float(t), "V_quantum_A3": vq, "V_classical_A3": vc,
            "P_quantum_minus_classical_at_static_V_GPa": pq(v_static) - pc(v_static),
            "expansion_percent": 100 * ((vq / vc) ** (1 / 3) - 1)})
    return out
