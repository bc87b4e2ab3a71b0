"""Constant pressure by stochastic cell rescaling (Bernetti & Bussi, J. Chem. Phys. 153, 114107 (2020)).

The cell is a first-order (overdamped) stochastic variable: no barostat mass, no cell momentum, so no
slow volume oscillation to equilibrate and nothing that can resonate with a bath. For the isotropic
cell the logarithm of the volume, ε = ln V, follows the Itô equation

    dε = -(β_T / τ_p) (P₀ - P_int) dt + sqrt(2 k_B T β_T / (V τ_p)) dW,

with P_int = (2K + tr W) / 3V the instantaneous pressure (K the kinetic energy of the same momenta that are
rescaled, W the virial), β_T an estimate of the isothermal compressibility and τ_p the relaxation time
(only their ratio β_T/τ_p enters the dynamics: a wrong β_T changes the relaxation time, not the ensemble).
Each move scales positions and cell by λ = exp(Δε/3) and momenta by 1/λ.

Why this drift and no extra k_BT/V term: with scaled coordinates s = r/L and momenta π = pL the phase-space
measure dr dp = ds dπ, so the isobaric density in (ε, s, π) is ∝ V exp(-β(U + K + P₀V)), i.e. the free
energy of ε at fixed (s, π) is F = P₀V + U + K - k_BT ε, with ∂F/∂ε = V (P₀ - P_int) - k_BT. An
overdamped Itô process dε = (-D β ∂F/∂ε + ∂D/∂ε) dt + sqrt(2D) dW samples exp(-βF); with
D = k_BT β_T / (V τ_p) the two k_BT/V terms (Jacobian and the Itô term of the volume-dependent noise)
cancel. The ideal gas, whose isobaric ⟨V⟩ = (N+1) k_BT/P₀ and Var V = (N+1)(k_BT/P₀)² are exact, checks
this (tests/test_md_barostat.py).

Anisotropic cells (``cell`` = "anisotropic", "flexible", "x", "y", "z"; after Del Tatto, Raiteri,
Bernetti & Bussi, Appl. Sci. 12, 1139 (2022)). The cell rows are kept lower-triangular (a along x, b in the
xy plane, as LAMMPS), and a move is h → h exp(dε), r → r exp(dε), p → p exp(dε)^-T with dε lower-triangular
on the free components:

    dε_kj = [-(β_T / n τ_p) (P₀ δ_kj - P_int,kj) + (k_BT β_T / (n τ_p V)) c_kj] dt + sqrt(2 k_BT β_T / (n τ_p V)) dW_kj,

with P_int = (Σ p⊗p/m + W)/V the pressure tensor and n the number of free diagonal components (so that
ln V relaxes as in the isotropic case). "anisotropic" frees the three diagonal components (orthorhombic
shape changes), "x"/"y"/"z" one of them (uniaxial), "flexible" all six. The cell measure: flat in the free
diagonal components (c = 0) for the first two; for "flexible" the measure of Martyna, Tobias & Klein /
Tuckerman, [det h]^(1-d) dh over the nine components of h, which after removing rotations (h = L Q, Jacobian
L_xx² L_yy) is V⁻² a_x² b_y over the six components of L. The Itô drift of the volume-dependent noise, the
gradient of that measure and the second-order term of exp(dε) then add c = diag(2, 0, -2)
(derived symbolically; checked against the exact density by tests/test_md_barostat.py).

Target stress (``stress_GPa``, cell "flexible" or "anisotropic"): a full symmetric target σ (positive =
compressive, like P₀ and the pressure tensor P_int; P₀ = tr σ/3 its hydrostatic part, S = σ - P₀ I) replaces
P₀V by the Parrinello–Rahman / Ray–Rahman elastic enthalpy of a reference cell h₀ (the cell at the start of the
run, kept in the checkpoint):

    Φ(h) = P₀ V + V₀ tr(S E),     E = ½ (h₀⁻¹ h hᵀ h₀⁻ᵀ - I)   (Green–Lagrange strain of h from h₀, rows = cell vectors).

For h → h exp(dε), dΦ = V tr[(P₀ I + Σ) dε] with Σ = (V₀/V) hᵀ h₀⁻ᵀ S h₀⁻¹ h (symmetric; Σ = S at h = h₀), so the
drift of ε_kj is -(β_T/nτ_p)(P₀δ_kj + Σ_kj - P_int,kj): the Cauchy stress of the sampled cells is P₀ I + Σ. Φ is
rotation-invariant, so the measure (and c) is unchanged; K + U + Φ + heat is conserved (docs/barostat.md).

Energy bookkeeping: every move exchanges energy with the barostat's bath. ``barostat_energy`` accumulates
-(ΔK + ΔU + P₀ ΔV) of the moves (ΔU by the trapezoid -½ Σ (W_before + W_after)_kj dε_kj, with the virial
of the force call that follows the move), so K + U + P₀V + thermostat_energy +
barostat_energy is conserved up to the integration error.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dpqtb import InputError
from dpqtb.md.state import MDState
from dpqtb.units import EV_PER_A3_TO_GPA, KB

#: Default relaxation time τ_p of the volume (fs).
DEFAULT_BAROSTAT_DAMP_FS = 1000.0

#: Cell modes: the free components (k, j) of the lower-triangular log-strain, and the measure term c_kj.
CELL_MODES = {
    "isotropic": ((0, 0), (1, 1), (2, 2)),
    "anisotropic": ((0, 0), (1, 1), (2, 2)),
    "x": ((0, 0),),
    "y": ((1, 1),),
    "z": ((2, 2),),
    "flexible": ((0, 0), (1, 1), (2, 2), (1, 0), (2, 0), (2, 1)),
}
_FLEXIBLE_MEASURE = (2.0, 0.0, -2.0)
#: Cell modes that take a full target stress (``stress_GPa``); "anisotropic" only without shear components.
STRESS_CELL_MODES = ("flexible", "anisotropic")
#: Voigt order of ``stress_GPa`` given as six numbers (ASE's order; LAMMPS names the same components).
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def stress_tensor(value, name: str = "stress_GPa") -> torch.Tensor:
    """The symmetric 3×3 float64 tensor of six Voigt components (xx, yy, zz, yz, xz, xy) or of a 3×3 table.

    Raises
    ------
    InputError
        Not six numbers or a 3×3 of numbers, a non-finite component, or a 3×3 that is not symmetric.
    """
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be six numbers (Voigt xx, yy, zz, yz, xz, xy) or a symmetric 3×3 table "
                         f"of numbers, got {value!r}") from None
    if isinstance(value, (str, bytes)) or arr.shape not in ((6,), (3, 3)):
        raise InputError(f"{name} must be six numbers (Voigt xx, yy, zz, yz, xz, xy) or a symmetric 3×3 table, "
                         f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} must be finite, got {value!r}")
    if arr.shape == (6,):
        t = np.zeros((3, 3))
        for x, (k, j) in zip(arr, VOIGT):
            t[k, j] = t[j, k] = x
        arr = t
    elif not np.allclose(arr, arr.T, rtol=1e-12, atol=1e-12):
        raise InputError(f"{name} must be symmetric (a stress tensor without torque), got {value!r}")
    return torch.tensor(0.5 * (arr + arr.T), dtype=torch.float64)


def is_lower_triangular(cell: torch.Tensor, tol: float = 1e-10) -> bool:
    """True if the cell rows are in LAMMPS's orientation (a along x, b in the xy plane)."""
    upper = torch.triu(cell, diagonal=1)
    return bool(upper.abs().max() <= tol * cell.abs().max())


def is_stress_table(v) -> bool:
    """The config schema's check of ``stress_GPa``: six numbers or a symmetric 3×3 table of numbers."""
    def num(x):
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    if len(v) == 6 and all(num(x) for x in v):
        return True
    return (len(v) == 3 and all(isinstance(r, list) and len(r) == 3 and all(num(x) for x in r) for r in v)
            and all(v[k][j] == v[j][k] for k in range(3) for j in range(k)))


def resolve_stress(value, pressure_GPa: float | None) -> tuple[tuple[float, ...], float]:
    """(six Voigt components, P₀) of a ``stress_GPa`` value and ``pressure_GPa`` (None: set to trace/3).

    Raises
    ------
    InputError
        A bad tensor (:func:`stress_tensor`), a negative trace, or a ``pressure_GPa`` that is not trace/3.
    """
    t = stress_tensor(value, "config key 'barostat.stress_GPa'")
    voigt = tuple(float(t[k, j]) for k, j in VOIGT)
    p_hyd = sum(voigt[:3]) / 3.0
    if pressure_GPa is None:
        if not p_hyd >= 0:
            raise InputError(f"config key 'barostat.stress_GPa' = {list(voigt)!r}: its hydrostatic part "
                             f"(trace/3 = {p_hyd:g} GPa) must be >= 0, as pressure_GPa")
        return voigt, p_hyd
    if abs(pressure_GPa - p_hyd) > 1e-9 * max(1.0, abs(p_hyd)):
        raise InputError(f"config key 'barostat.pressure_GPa' = {pressure_GPa!r} must be the hydrostatic part of "
                         f"barostat.stress_GPa (trace/3 = {p_hyd:g}), or be left out")
    return voigt, float(pressure_GPa)


def check_stress_run(voigt, cell: str, thermostat_kind: str) -> None:
    """The config's rules between ``stress_GPa`` (Voigt or None), ``cell`` and the thermostat (InputError)."""
    if voigt is None:
        return
    if cell not in STRESS_CELL_MODES:
        raise InputError(f"config key 'barostat.stress_GPa' needs barostat.cell = 'flexible' (or 'anisotropic' "
                         f"without shear components), not '{cell}'; a uniaxial or isotropic cell takes pressure_GPa")
    if cell == "anisotropic" and any(voigt[3:]):
        raise InputError("config key 'barostat.stress_GPa' with cell = 'anisotropic' must have zero shear "
                         "components (yz, xz, xy): the cell keeps its angles; use cell = 'flexible'")


class StochasticCellRescaling:
    """Stochastic cell rescaling: a barostat component for a splitting integrator.

    Parameters
    ----------
    pressure_GPa : float
        Target (external, hydrostatic) pressure P₀ in GPa.
    damp_fs : float
        Relaxation time τ_p of the volume in fs (at least a few time steps).
    compressibility_per_GPa : float
        Estimate β_T of the isothermal compressibility in 1/GPa; with ``damp_fs`` it sets how fast the
        cell moves (β_T/τ_p), not the distribution it samples.
    seed : int
        Seed of the barostat's own random stream.
    cell : str
        Which cell components move: "isotropic" (shape fixed), "anisotropic" (the three diagonal
        components of the lower-triangular cell), "x" / "y" / "z" (one axis), "flexible" (all six).
    stress_GPa : sequence, optional
        Full target stress σ in GPa, positive = compressive (the sign of ``pressure_GPa`` and of the pressure
        tensor P_int): six Voigt components (xx, yy, zz, yz, xz, xy) or a symmetric 3×3. Only with
        ``cell`` = "flexible", or "anisotropic" with zero shear components; ``pressure_GPa`` must be its
        hydrostatic part tr σ/3. The deviatoric part acts through the elastic enthalpy of the reference cell
        (the cell at :meth:`setup`), see the module docstring.

    Notes
    -----
    Call :meth:`move` once per step where positions and momenta are at the same time (after the drift,
    before the force evaluation of a BAOAB step), with the kinetic tensor of the momenta it rescales.
    """

    name = "scr"

    def __init__(self, pressure_GPa: float, damp_fs: float = DEFAULT_BAROSTAT_DAMP_FS,
                 compressibility_per_GPa: float = 1e-3, seed: int = 0, cell: str = "isotropic",
                 stress_GPa=None):
        if not math.isfinite(pressure_GPa):
            raise InputError(f"barostat.pressure_GPa must be finite, got {pressure_GPa}")
        if not damp_fs > 0:
            raise InputError(f"barostat.damp_fs must be > 0, got {damp_fs}")
        if not compressibility_per_GPa > 0:
            raise InputError(f"barostat.compressibility_per_GPa must be > 0, got {compressibility_per_GPa}")
        if cell not in CELL_MODES:
            raise InputError(f"barostat.cell must be one of {', '.join(CELL_MODES)}, got {cell!r}")
        self.pressure_GPa = float(pressure_GPa)
        self.stress_GPa = None if stress_GPa is None else stress_tensor(stress_GPa, "barostat.stress_GPa")
        self._deviator = None  # S = σ - P₀ I in eV/Å³ (None: hydrostatic target, the original code path)
        if self.stress_GPa is not None:
            if cell not in STRESS_CELL_MODES:
                raise InputError(f"barostat.stress_GPa needs barostat.cell = 'flexible' (or 'anisotropic' without "
                                 f"shear components), not {cell!r}")
            if cell == "anisotropic" and bool((self.stress_GPa - torch.diag(torch.diagonal(self.stress_GPa))).any()):
                raise InputError("barostat.stress_GPa with cell = 'anisotropic' must have zero shear components "
                                 "(yz, xz, xy): the cell keeps its angles; use cell = 'flexible'")
            p_hyd = float(torch.trace(self.stress_GPa)) / 3.0
            if abs(p_hyd - self.pressure_GPa) > 1e-9 * max(1.0, abs(p_hyd)):
                raise InputError(f"barostat.pressure_GPa = {pressure_GPa} must be the hydrostatic part of "
                                 f"barostat.stress_GPa (trace/3 = {p_hyd:g}), or be left out")
            dev = self.stress_GPa - p_hyd * torch.eye(3, dtype=torch.float64)
            self._deviator = dev / EV_PER_A3_TO_GPA
        self.reference_cell: torch.Tensor | None = None  # h₀ of the elastic enthalpy (stress_GPa only)
        self._cell: torch.Tensor | None = None  # the barostat's record of the current cell (stress_GPa only)
        self.damp_fs = float(damp_fs)
        self.compressibility_per_GPa = float(compressibility_per_GPa)
        self.seed = int(seed)
        self.cell = cell
        self.barostat_energy = 0.0  # eV exchanged with the barostat's bath (conserved-quantity bookkeeping)
        self.generator: torch.Generator | None = None
        self._pending = None  # (dε, W before) of the last move, until the forces after it are known

    # ------------------------------------------------------------------ set-up and restart
    def setup(self, state: MDState) -> None:
        """Seed the random stream; check the cell can change (3D periodic; lower-triangular unless isotropic)."""
        if not all(state.pbc):
            raise InputError("a barostat needs a cell periodic along all three axes (system pbc)")
        if self.cell != "isotropic" and not is_lower_triangular(state.cell):
            raise InputError(f"barostat.cell = {self.cell!r} needs the cell in lower-triangular form (a along x, "
                             "b in the xy plane, as LAMMPS); rotate the structure (ASE: cell.standard_form())")
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(self.seed)
        if self._deviator is not None:  # a resumed run takes h₀ from its checkpoint (load_state_dict)
            self._cell = state.cell.detach().to("cpu", torch.float64).clone()
            self.reference_cell = self._cell.clone()

    def state_dict(self) -> dict:
        d = {"barostat_energy": self.barostat_energy, "generator": self.generator.get_state()}
        if self._deviator is not None:
            d["reference_cell"] = self.reference_cell.clone()
        return d

    def load_state_dict(self, d: dict) -> None:
        if (self._deviator is not None) != ("reference_cell" in d):
            raise InputError("checkpoint and config disagree about barostat.stress_GPa (a non-hydrostatic target "
                             "needs the reference cell of the run that wrote the checkpoint)")
        self.barostat_energy = float(d["barostat_energy"])
        self.generator.set_state(d["generator"])
        if self._deviator is not None:
            self.reference_cell = torch.as_tensor(d["reference_cell"], dtype=torch.float64).clone()

    # ------------------------------------------------------------------ the move
    def _rate(self) -> float:
        """β_T/(n τ_p) per free component in 1/(GPa fs) (n free diagonal components; isotropic: ln V)."""
        n = 1 if self.cell == "isotropic" else sum(1 for k, j in CELL_MODES[self.cell] if k == j)
        return self.compressibility_per_GPa / (n * self.damp_fs)

    def target_tensor_GPa(self, cell: torch.Tensor) -> torch.Tensor:
        """P₀ I + Σ(h) (GPa, 3×3): the pressure tensor the drift drives P_int to at the cell h (rows);
        Σ = (V₀/V) hᵀ h₀⁻ᵀ S h₀⁻¹ h, equal to the deviatoric target S at the reference cell h₀."""
        eye = torch.eye(3, dtype=torch.float64)
        if self._deviator is None:
            return self.pressure_GPa * eye
        h = cell.detach().to("cpu", torch.float64)
        h0 = self.reference_cell
        m = torch.linalg.solve(h0, h)  # h₀⁻¹ h
        sigma = (torch.det(h0) / torch.det(h)) * (m.T @ self._deviator @ m) * EV_PER_A3_TO_GPA
        return self.pressure_GPa * eye + 0.5 * (sigma + sigma.T)

    def elastic_enthalpy(self, cell: torch.Tensor) -> float:
        """Φ(h) - P₀V = V₀ tr(S E) in eV, E = ½(h₀⁻¹ h hᵀ h₀⁻ᵀ - I) (0 for a hydrostatic target)."""
        if self._deviator is None:
            return 0.0
        h = cell.detach().to("cpu", torch.float64)
        h0 = self.reference_cell
        m = torch.linalg.solve(h0, h)
        strain = 0.5 * (m @ m.T - torch.eye(3, dtype=torch.float64))
        return float(torch.det(h0).abs() * (self._deviator * strain).sum())

    def log_strain(self, volume_A3: float, pressure_tensor_GPa: torch.Tensor, temperature_K: float,
                   dt_fs: float, cell: torch.Tensor | None = None) -> torch.Tensor:
        """The lower-triangular log-strain dε (3×3) of one move over ``dt_fs`` (Euler–Maruyama, Itô).

        ``cell`` (the current cell) is only used with ``stress_GPa`` (default: the barostat's own record of
        the cell, advanced by every dε it returns)."""
        rate = self._rate()
        kt_gpa_a3 = KB * temperature_K * EV_PER_A3_TO_GPA  # k_BT in GPa·Å³
        diff = kt_gpa_a3 * rate / volume_A3  # diffusion coefficient of each free component (1/fs)
        eps = torch.zeros(3, 3, dtype=torch.float64)
        if self.cell == "isotropic":
            p_int = float(torch.trace(pressure_tensor_GPa)) / 3.0
            xi = float(torch.randn((), generator=self.generator, dtype=torch.float64))
            d_ln_v = -rate * (self.pressure_GPa - p_int) * dt_fs + math.sqrt(2.0 * diff * dt_fs) * xi
            return eps + torch.eye(3, dtype=torch.float64) * (d_ln_v / 3.0)
        comps = CELL_MODES[self.cell]
        xi = torch.randn(len(comps), generator=self.generator, dtype=torch.float64)
        targets = None
        if self._deviator is not None:
            h = self._cell if cell is None else cell.detach().to("cpu", torch.float64)
            targets = self.target_tensor_GPa(h)
        for n, (k, j) in enumerate(comps):
            if targets is not None:
                target = float(targets[k, j])
            else:
                target = self.pressure_GPa if k == j else 0.0
            measure = _FLEXIBLE_MEASURE[k] if (self.cell == "flexible" and k == j) else 0.0
            eps[k, j] = (-rate * (target - float(pressure_tensor_GPa[k, j])) + diff * measure) * dt_fs \
                + math.sqrt(2.0 * diff * dt_fs) * float(xi[n])
        if self._deviator is not None and cell is None:  # no state to read the new cell from (ring polymers)
            self._cell = h @ torch.linalg.matrix_exp(eps)
        return eps

    def move(self, state: MDState, dt_fs: float, temperature_K: float,
             kinetic_tensor_eV: torch.Tensor | None = None) -> torch.Tensor:
        """Rescale cell, positions and momenta of ``state`` by one stochastic step; return dε (3×3).

        ``kinetic_tensor_eV`` is Σ p⊗p/m in P_int (default: the state's; a quantum bath passes its
        corrected estimator). ``state.virial`` must belong to the current positions' last force call.
        """
        volume = state.volume
        ke = float(state.kinetic_energy())
        kt = state.kinetic_tensor() if kinetic_tensor_eV is None else kinetic_tensor_eV
        virial = state.virial.detach().to("cpu", torch.float64)
        p_int = (kt.detach().to("cpu", torch.float64) + virial) / volume * EV_PER_A3_TO_GPA
        phi_before = self.deviatoric_enthalpy(state.cell)
        eps = self.log_strain(volume, p_int, temperature_K, dt_fs, cell=state.cell)
        if self.cell == "isotropic":  # a scalar scaling: no matrix products over the atoms
            lam = math.exp(float(eps[0, 0]))
            state.positions.mul_(lam)
            state.cell.mul_(lam)
            state.momenta.mul_(1.0 / lam)
        else:
            a = torch.linalg.matrix_exp(eps).to(device=state.device, dtype=state.dtype)
            state.positions.copy_(state.positions @ a)
            state.cell.copy_(state.cell @ a)
            state.momenta.copy_(state.momenta @ torch.linalg.inv(a).T)
        # heat: -(ΔK + ΔU + P₀ΔV); ΔU to first order here, completed to the trapezoid by after_forces
        d_k = float(state.kinetic_energy()) - ke
        d_u = -float((virial * eps).sum())
        self.barostat_energy -= d_k + d_u + self.enthalpy_change(volume, eps, phi_before, state.cell)
        self._pending = (eps, virial)
        return eps

    def move_ring_polymer(self, state: MDState, dt_fs: float, temperature_K: float) -> torch.Tensor:
        """Stochastic cell rescaling of a ring polymer's centroids (positions and momenta) and the cell, as
        i-PI's BZP moves only the centroid: the Jacobian is that of N particles, and the pressure is the
        centroid-virial one with the centroid momenta's kinetic tensor, P = [Σ p̄⊗p̄/m + (1/P) Σ_j W_eff,j]/V.
        The heat is counted in the ring polymer's units (H_P and P·P₀V, P copies of ΔΦ); the springs do not
        change. Returns dε; :meth:`after_forces` completes the trapezoid with the next effective virial."""
        ring, beads = state.ring, state.ring.beads
        kc = ring.centroid_kinetic_tensor()
        w_eff = ring.effective_virial().detach().to("cpu", torch.float64)
        volume = state.volume
        p_int = (kc.detach().to("cpu", torch.float64) + w_eff / beads) / volume * EV_PER_A3_TO_GPA
        phi_before = self.deviatoric_enthalpy(state.cell)
        eps = self.log_strain(volume, p_int, temperature_K, dt_fs, cell=state.cell)
        a = torch.linalg.matrix_exp(eps).to(device=ring.q.device, dtype=ring.q.dtype)
        ke_before = float(ring.bead_kinetic_energy())
        ring.strain_centroids(a)
        state.cell.copy_(state.cell @ a)
        d_k = float(ring.bead_kinetic_energy()) - ke_before
        d_u = -float((w_eff * eps).sum())
        d_h = beads * self.enthalpy_change(volume, eps, phi_before, state.cell)  # P copies of P₀ΔV (+ ΔΦ)
        self.barostat_energy -= d_k + d_u + d_h
        self._pending = (eps, w_eff)
        return eps

    def deviatoric_enthalpy(self, cell: torch.Tensor) -> float:
        """The elastic enthalpy of the non-hydrostatic part of ``stress_GPa`` at ``cell`` (eV); 0 without it."""
        return self.elastic_enthalpy(cell) if self._deviator is not None else 0.0

    def enthalpy_change(self, volume_before_A3: float, eps: torch.Tensor, phi_before: float,
                        cell: torch.Tensor) -> float:
        """Δ of the barostat's enthalpy term over a move by ``eps`` that left the cell at ``cell``: P₀ΔV, plus
        the exact work against the deviatoric stress ΔΦ (``phi_before`` from :meth:`deviatoric_enthalpy`
        before the move), in eV; records the new cell."""
        d = self.pressure_GPa / EV_PER_A3_TO_GPA * volume_before_A3 * (math.exp(float(torch.trace(eps))) - 1.0)
        if self._deviator is not None:
            d += self.elastic_enthalpy(cell) - phi_before
            self._cell = cell.detach().to("cpu", torch.float64).clone()
        return d

    def after_forces(self, virial: torch.Tensor) -> None:
        """Complete the last move's ΔU with the virial at the rescaled positions (eV; a ring polymer's
        effective centroid virial): -½ Σ (W_before + W_after) dε.

        The first-order estimate misses ½ U'' dε², whose mean (the Itô term of the cell's noise) is
        k_BT (β_T B) dt/τ_p per step: a steady drift of the conserved quantity, not an integration error."""
        if self._pending is None:
            return
        eps, w_before = self._pending
        w_after = virial.detach().to("cpu", torch.float64)
        self.barostat_energy += 0.5 * float(((w_after - w_before) * eps).sum())
        self._pending = None

    def enthalpy_term(self, state: MDState) -> float:
        """Φ(h) in eV: P₀V, plus V₀ tr(S E) with ``stress_GPa`` (enters the conserved quantity)."""
        pv = self.pressure_GPa / EV_PER_A3_TO_GPA * state.volume
        if self._deviator is None:
            return pv
        return pv + self.elastic_enthalpy(state.cell)


#: thermo.csv columns of a run at constant pressure: cell lengths (Å), angles (degrees), pressure tensor (GPa).
CELL_COLUMNS = ("a_A", "b_A", "c_A", "alpha_deg", "beta_deg", "gamma_deg",
                "P_xx_GPa", "P_yy_GPa", "P_zz_GPa", "P_yz_GPa", "P_xz_GPa", "P_xy_GPa")


def cell_thermo(state: MDState, pressure_tensor: torch.Tensor) -> dict:
    """The :data:`CELL_COLUMNS` of a state."""
    h = state.cell.detach().cpu().double().numpy()
    lengths = np.linalg.norm(h, axis=1)

    def angle(i, j):
        return float(np.degrees(np.arccos(np.clip(h[i] @ h[j] / (lengths[i] * lengths[j]), -1.0, 1.0))))

    p = pressure_tensor.detach().cpu().double().numpy()
    return {"a_A": lengths[0], "b_A": lengths[1], "c_A": lengths[2], "alpha_deg": angle(1, 2),
            "beta_deg": angle(0, 2), "gamma_deg": angle(0, 1), "P_xx_GPa": p[0, 0], "P_yy_GPa": p[1, 1],
            "P_zz_GPa": p[2, 2], "P_yz_GPa": 0.5 * (p[1, 2] + p[2, 1]), "P_xz_GPa": 0.5 * (p[0, 2] + p[2, 0]),
            "P_xy_GPa": 0.5 * (p[0, 1] + p[1, 0])}


__all__ = ["StochasticCellRescaling", "DEFAULT_BAROSTAT_DAMP_FS", "CELL_MODES", "STRESS_CELL_MODES", "VOIGT",
           "stress_tensor", "is_stress_table", "resolve_stress", "check_stress_run", "is_lower_triangular",
           "CELL_COLUMNS", "cell_thermo"]
