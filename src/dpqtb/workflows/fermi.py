"""Zero-point-energy leakage model: a stiff light mode x coupled to a soft mode y.

Each pair of atoms (A, B) carries, independently along each Cartesian direction d, the 2D system

    V(x, y) = ½ k1 x² + ½ k2 y² + c x y² + λ x² y² + q y⁴,     x = displacement of A, y of B,

so the two species hold the two modes and per-species adaptation (adQTB) can act on each. With
ω1 = 2 ω2 and c ≠ 0 this is a Fermi resonance: the stiff mode's zero-point energy flows classically
into the soft mode. The quartic q y⁴ (q > c²/(2 k1)) keeps the potential bounded below. The exact
quantum thermal averages come from diagonalising the 2D Hamiltonian in a product harmonic basis.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dpqtb.md.state import MDState
from dpqtb.potential import TorchFunctionPotential, spring_constant_from_frequency
from dpqtb.units import HBAR, KB, MVV2E


class FermiModel:
    def __init__(self, f1_thz: float, f2_thz: float, m1_amu: float, m2_amu: float, c_eV_A3: float = 0.0,
                 lam_eV_A4: float = 0.0, q_eV_A4: float = 0.0):
        self.f1, self.f2, self.m1, self.m2 = f1_thz, f2_thz, m1_amu, m2_amu
        self.k1 = spring_constant_from_frequency(f1_thz, m1_amu)
        self.k2 = spring_constant_from_frequency(f2_thz, m2_amu)
        self.c, self.lam, self.q = c_eV_A3, lam_eV_A4, q_eV_A4

    @classmethod
    def resonant(cls, f1_thz: float, mass_amu: float, kappa: float = 0.0, lam_eV_A4: float = 0.0) -> "FermiModel":
        """ω2 = ω1/2, equal masses, cubic coupling of dimensionless strength κ = c σx σy² / (ħω1/2) with the
        zero-point widths σ² = ħ/(2mω), and the quartic wall q = c²/k1 (twice the boundedness threshold)."""
        w1 = 2 * math.pi * f1_thz * 1e-3
        s1 = math.sqrt(HBAR / (2 * mass_amu * MVV2E * w1))
        s2 = math.sqrt(HBAR / (2 * mass_amu * MVV2E * w1 / 2))
        c = kappa * HBAR * w1 / 2 / (s1 * s2**2)
        k1 = spring_constant_from_frequency(f1_thz, mass_amu)
        return cls(f1_thz, f1_thz / 2, mass_amu, mass_amu, c_eV_A3=c, lam_eV_A4=lam_eV_A4, q_eV_A4=c * c / k1)

    def energy(self, x, y):
        return (0.5 * self.k1 * x * x + 0.5 * self.k2 * y * y + self.c * x * y * y + self.lam * x * x * y * y
                + self.q * y ** 4)

    # --------------------------------------------------------------- MD system
    def build(self, n_pairs: int, spacing_A: float = 3.0, device="cpu", dtype=torch.float64, n_spectators: int = 0):
        """State with atoms A (species 'H') at even, B (species 'He') at odd indices of the first 2 n_pairs,
        then ``n_spectators`` uncoupled harmonic atoms of species 'He' at the soft frequency (mass m2): a
        spectator that shares the leaking mode's element and frequency. Returns (state, potential, sites)."""
        n_pair_atoms = 2 * n_pairs
        n = n_pair_atoms + n_spectators
        side = math.ceil(n ** (1 / 3))
        grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n] * spacing_A
        t = lambda a: torch.tensor(a, dtype=dtype, device=device)  # noqa: E731
        sp = np.concatenate([np.arange(n_pair_atoms) % 2, np.ones(n_spectators, dtype=int)])
        species = torch.tensor(sp, dtype=torch.long, device=device)
        masses = t(np.where(sp == 0, self.m1, self.m2))
        state = MDState(positions=t(grid), momenta=t(np.zeros((n, 3))), masses=masses, cell=t(np.eye(3) * side * spacing_A),
                        species=species, type_map=("H", "He"))
        sites = state.positions.clone()

        def energy(pos, cell, species):
            d = pos - sites
            pairs = d[..., :n_pair_atoms, :]
            e = self.energy(pairs[..., 0::2, :], pairs[..., 1::2, :]).sum((-1, -2))
            if n_spectators:
                e = e + 0.5 * self.k2 * d[..., n_pair_atoms:, :].pow(2).sum((-1, -2))
            return e

        return state, TorchFunctionPotential(energy, batched=True), sites

    # --------------------------------------------------------------- exact quantum averages
    def exact(self, temperature_K: float, n1: int = 24, n2: int = 48) -> dict:
        """Thermal averages per 2D system (eV, Å²): kinetic energy of each mode and ⟨x²⟩, ⟨y²⟩."""
        def ladder(n):
            a = np.diag(np.sqrt(np.arange(1, n)), 1)
            return a, a.T

        pad = 6
        w1 = 2 * math.pi * self.f1 * 1e-3
        w2 = 2 * math.pi * self.f2 * 1e-3
        # length scales: σ² = ħ/(2 m ω) with m in eV·fs²/Å² (= amu·MVV2E)
        s1 = math.sqrt(HBAR / (2 * self.m1 * MVV2E * w1))
        s2 = math.sqrt(HBAR / (2 * self.m2 * MVV2E * w2))

        def ops(n, s, w, m):
            a, ad = ladder(n + pad)
            x = s * (a + ad)
            p2 = -(a - ad) @ (a - ad) * (m * MVV2E * HBAR * w / 2)  # p² (eV·amu·MVV2E ... in eV × m)
            return x, p2

        x1, p21 = ops(n1, s1, w1, self.m1)
        x2, p22 = ops(n2, s2, w2, self.m2)
        t1 = (p21 / (2 * self.m1 * MVV2E))  # kinetic energy operators (eV)
        t2 = (p22 / (2 * self.m2 * MVV2E))
        cut = lambda m, n: m[:n, :n]  # noqa: E731
        X, X2 = cut(x1, n1), cut(x1 @ x1, n1)
        Y, Y2, Y4 = cut(x2, n2), cut(x2 @ x2, n2), cut(np.linalg.matrix_power(x2, 4), n2)
        T1, T2 = cut(t1, n1), cut(t2, n2)
        I1, I2 = np.eye(n1), np.eye(n2)
        H = (np.kron(T1 + 0.5 * self.k1 * X2, I2) + np.kron(I1, T2 + 0.5 * self.k2 * Y2)
             + self.c * np.kron(X, Y2) + self.lam * np.kron(X2, Y2) + self.q * np.kron(I1, Y4))
        e, v = np.linalg.eigh(H)
        beta = 1.0 / (KB * temperature_K) if temperature_K > 0 else np.inf
        w = np.exp(-(e - e[0]) * beta) if np.isfinite(beta) else (np.arange(e.size) == 0).astype(float)
        w /= w.sum()

        def avg(op):
            return float(np.sum(w * np.einsum("ik,ij,jk->k", v, op, v)))

        return {"kinetic_x_eV": avg(np.kron(T1, I2)), "kinetic_y_eV": avg(np.kron(I1, T2)),
                "x2_A2": avg(np.kron(X2, I2)), "y2_A2": avg(np.kron(I1, Y2)), "ground_eV": float(e[0]),
                "p_ground": float(w[0])}
