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

Energy bookkeeping: every move exchanges energy with the barostat's bath. ``barostat_energy`` accumulates
-(ΔK + ΔU + P₀ ΔV) of the moves (ΔU to first order, -tr W Δε / 3), so K + U + P₀V + thermostat_energy +
barostat_energy is conserved up to the integration error.
"""

from __future__ import annotations

import math

import torch

from dpqtb import InputError
from dpqtb.md.state import MDState
from dpqtb.units import EV_PER_A3_TO_GPA, KB

#: Default relaxation time τ_p of the volume (fs).
DEFAULT_BAROSTAT_DAMP_FS = 1000.0


class StochasticCellRescaling:
    """Isotropic stochastic cell rescaling: a barostat component for a splitting integrator.

    Parameters
    ----------
    pressure_GPa : float
        Target (external) pressure P₀ in GPa.
    damp_fs : float
        Relaxation time τ_p of the volume in fs (at least a few time steps).
    compressibility_per_GPa : float
        Estimate β_T of the isothermal compressibility in 1/GPa; with ``damp_fs`` it sets how fast the
        volume moves (β_T/τ_p), not the distribution it samples.
    seed : int
        Seed of the barostat's own random stream.

    Notes
    -----
    Call :meth:`move` once per step where positions and momenta are at the same time (after the drift,
    before the force evaluation of a BAOAB step), with the kinetic energy of the momenta it rescales.
    """

    name = "scr"

    def __init__(self, pressure_GPa: float, damp_fs: float = DEFAULT_BAROSTAT_DAMP_FS,
                 compressibility_per_GPa: float = 1e-3, seed: int = 0):
        if not math.isfinite(pressure_GPa):
            raise InputError(f"barostat.pressure_GPa must be finite, got {pressure_GPa}")
        if not damp_fs > 0:
            raise InputError(f"barostat.damp_fs must be > 0, got {damp_fs}")
        if not compressibility_per_GPa > 0:
            raise InputError(f"barostat.compressibility_per_GPa must be > 0, got {compressibility_per_GPa}")
        self.pressure_GPa = float(pressure_GPa)
        self.damp_fs = float(damp_fs)
        self.compressibility_per_GPa = float(compressibility_per_GPa)
        self.seed = int(seed)
        self.barostat_energy = 0.0  # eV exchanged with the barostat's bath (conserved-quantity bookkeeping)
        self.generator: torch.Generator | None = None

    # ------------------------------------------------------------------ set-up and restart
    def setup(self, state: MDState) -> None:
        """Seed the random stream and check the cell can change (3D periodic)."""
        if not all(state.pbc):
            raise InputError("a barostat needs a cell periodic along all three axes (system pbc)")
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(self.seed)

    def state_dict(self) -> dict:
        return {"barostat_energy": self.barostat_energy, "generator": self.generator.get_state()}

    def load_state_dict(self, d: dict) -> None:
        self.barostat_energy = float(d["barostat_energy"])
        self.generator.set_state(d["generator"])

    # ------------------------------------------------------------------ the move
    def log_volume_increment(self, volume_A3: float, pressure_int_GPa: float, temperature_K: float,
                             dt_fs: float) -> float:
        """Δε = ln(V'/V) over ``dt_fs`` (Euler–Maruyama on the Itô equation of the module docstring)."""
        rate = self.compressibility_per_GPa / self.damp_fs  # 1/(GPa fs)
        drift = -rate * (self.pressure_GPa - pressure_int_GPa) * dt_fs
        kt_gpa_a3 = KB * temperature_K * EV_PER_A3_TO_GPA  # k_BT in GPa·Å³
        sigma = math.sqrt(2.0 * kt_gpa_a3 * rate * dt_fs / volume_A3)
        xi = float(torch.randn((), generator=self.generator, dtype=torch.float64))
        return drift + sigma * xi

    def move(self, state: MDState, dt_fs: float, temperature_K: float, kinetic_eV: float | None = None) -> float:
        """Rescale cell, positions and momenta of ``state`` by one stochastic step; return Δε = ln(V'/V).

        ``kinetic_eV`` is the kinetic energy in P_int (default: the state's; a quantum bath passes its
        corrected estimator). ``state.virial`` must belong to the current positions' last force call.
        """
        volume = state.volume
        ke = float(state.kinetic_energy())
        k_est = ke if kinetic_eV is None else float(kinetic_eV)
        trace_w = float(torch.trace(state.virial))
        p_int = (2.0 * k_est + trace_w) / (3.0 * volume) * EV_PER_A3_TO_GPA
        d_eps = self.log_volume_increment(volume, p_int, temperature_K, dt_fs)
        lam = math.exp(d_eps / 3.0)
        state.positions.mul_(lam)
        state.cell.mul_(lam)
        state.momenta.mul_(1.0 / lam)
        # heat: -(ΔK + ΔU + P₀ΔV), ΔU ≈ -tr W Δε/3 (first order)
        d_k = ke * (lam ** -2 - 1.0)
        d_u = -trace_w * d_eps / 3.0
        d_pv = self.pressure_GPa / EV_PER_A3_TO_GPA * volume * (math.exp(d_eps) - 1.0)
        self.barostat_energy -= d_k + d_u + d_pv
        return d_eps

    def enthalpy_term(self, state: MDState) -> float:
        """P₀V in eV (enters the conserved quantity)."""
        return self.pressure_GPa / EV_PER_A3_TO_GPA * state.volume


__all__ = ["StochasticCellRescaling", "DEFAULT_BAROSTAT_DAMP_FS"]
