"""The MD state: one dataclass of tensors that every integrator and potential understands.

Positions are kept *unwrapped* (atoms are never folded back into the cell), so displacements and
MSDs come straight from them; potentials apply periodic images themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from dpqtb import InputError
from dpqtb.units import EV_PER_A3_TO_GPA, KB, MVV2E


@dataclass
class MDState:
    """Positions (Å, unwrapped), momenta (amu·Å/fs), masses (amu), cell rows (Å), species indices.

    ``forces`` (eV/Å), ``energy`` (eV) and ``virial`` (eV, W_ab = -dE/dε_ab) belong to ``positions``
    and ``cell``; integrators keep them in sync.
    """

    positions: torch.Tensor
    momenta: torch.Tensor
    masses: torch.Tensor
    cell: torch.Tensor
    species: torch.Tensor
    type_map: tuple[str, ...]
    pbc: tuple[bool, bool, bool] = (True, True, True)
    step: int = 0
    time_fs: float = 0.0
    energy: torch.Tensor | None = None
    forces: torch.Tensor | None = None
    virial: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)
    #: the beads of a path-integral run (:class:`dpqtb.md.ring_polymer.RingPolymer`); positions, momenta,
    #: energy, forces and virial above are then its centroid view
    ring: object | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_atoms(cls, atoms, type_map=None, device="cpu", dtype=torch.float64) -> "MDState":
        """Build a state from an ASE ``Atoms`` (momenta taken from the atoms, amu·Å/fs)."""
        symbols = atoms.get_chemical_symbols()
        if len(symbols) == 0:
            raise InputError("structure has no atoms")
        if type_map is None:
            type_map = tuple(dict.fromkeys(symbols))
        type_map = tuple(type_map)
        missing = sorted(set(symbols) - set(type_map))
        if missing:
            raise InputError(f"species {missing} are not in type_map {list(type_map)}")
        index = {s: i for i, s in enumerate(type_map)}
        species = torch.tensor([index[s] for s in symbols], dtype=torch.long, device=device)
        pos = torch.tensor(np.asarray(atoms.get_positions()), dtype=dtype, device=device)
        masses = torch.tensor(np.asarray(atoms.get_masses()), dtype=dtype, device=device)
        cell = torch.tensor(np.asarray(atoms.cell[:]), dtype=dtype, device=device)
        # ASE velocities are in Å/(ASE time unit); convert to Å/fs.
        from ase import units as u

        vel = np.asarray(atoms.get_velocities()) * u.fs
        momenta = torch.tensor(vel, dtype=dtype, device=device) * masses[:, None]
        pbc = tuple(bool(b) for b in atoms.pbc)
        if any(pbc) and abs(float(np.linalg.det(atoms.cell[:]))) < 1e-12:
            raise InputError("periodic structure has a singular (zero-volume) cell")
        return cls(positions=pos, momenta=momenta, masses=masses, cell=cell, species=species,
                   type_map=type_map, pbc=pbc)

    def to_atoms(self, include_velocities: bool = True):
        """An ASE ``Atoms`` with the (unwrapped) positions, cell, velocities and masses."""
        from ase import Atoms
        from ase import units as u

        atoms = Atoms(
            symbols=[self.type_map[i] for i in self.species.tolist()],
            positions=self.positions.detach().cpu().numpy(),
            cell=self.cell.detach().cpu().numpy(),
            pbc=self.pbc,
            masses=self.masses.detach().cpu().numpy(),
        )
        if include_velocities:
            atoms.set_velocities(self.velocities.detach().cpu().numpy() / u.fs)
        return atoms

    # ------------------------------------------------------------------ derived quantities
    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[0])

    @property
    def device(self) -> torch.device:
        return self.positions.device

    @property
    def dtype(self) -> torch.dtype:
        return self.positions.dtype

    @property
    def velocities(self) -> torch.Tensor:
        """Å/fs."""
        return self.momenta / self.masses[:, None]

    @property
    def volume(self) -> float:
        """Å³ (0 for a non-periodic state)."""
        return float(torch.linalg.det(self.cell).abs())

    def kinetic_energy(self) -> torch.Tensor:
        """eV."""
        return 0.5 * MVV2E * (self.momenta.pow(2).sum(-1) / self.masses).sum()

    def kinetic_tensor(self) -> torch.Tensor:
        """Σ p_a p_b / m in eV (3×3)."""
        return MVV2E * torch.einsum("ia,ib,i->ab", self.momenta, self.momenta, 1.0 / self.masses)

    def temperature(self, n_dof: int | None = None) -> float:
        """Instantaneous kinetic temperature in K over ``n_dof`` degrees of freedom."""
        n_dof = 3 * self.n_atoms if n_dof is None else n_dof
        return float(2.0 * self.kinetic_energy() / (n_dof * KB))

    def pressure_GPa(self, kinetic_eV: float | None = None) -> float:
        """Instantaneous pressure (2K + tr W)/3V in GPa; K the atoms' kinetic energy unless an estimator's
        value is given (the QTB's corrected one)."""
        if self.virial is None or not all(self.pbc):
            return float("nan")
        ke = self.kinetic_energy() if kinetic_eV is None else kinetic_eV
        return float((2.0 * ke + torch.trace(self.virial)) / (3.0 * self.volume)) * EV_PER_A3_TO_GPA

    def stress_GPa(self) -> torch.Tensor:
        """Pressure tensor P_ab = (Σ p_a p_b/m + W_ab)/V in GPa (positive = compressive)."""
        return (self.kinetic_tensor() + self.virial) / self.volume * EV_PER_A3_TO_GPA

    def clone(self) -> "MDState":
        def c(t):
            return None if t is None else t.clone()

        return replace(self, positions=c(self.positions), momenta=c(self.momenta), masses=c(self.masses),
                       cell=c(self.cell), species=c(self.species), energy=c(self.energy), forces=c(self.forces),
                       virial=c(self.virial), extras=dict(self.extras),
                       ring=None if self.ring is None else self.ring.copy())

    # ------------------------------------------------------------------ velocities
    def zero_com_momentum(self) -> None:
        """Remove the centre-of-mass momentum (keeps per-atom masses)."""
        p_tot = self.momenta.sum(0)
        self.momenta -= self.masses[:, None] * (p_tot / self.masses.sum())

    def species_mask(self, name: str) -> torch.Tensor:
        return self.species == self.type_map.index(name)

    def tensors_state_dict(self) -> dict:
        d = {
            "positions": self.positions, "momenta": self.momenta, "masses": self.masses, "cell": self.cell,
            "species": self.species, "type_map": list(self.type_map), "pbc": list(self.pbc),
            "step": self.step, "time_fs": self.time_fs,
        }
        if self.ring is not None:
            d["ring"] = self.ring.state_dict()
        return d

    def load_tensors_state_dict(self, d: dict) -> None:
        if list(d["type_map"]) != list(self.type_map) or d["species"].shape != self.species.shape:
            raise InputError("checkpoint does not match this system (species or atom count differ)")
        for key in ("positions", "momenta", "masses", "cell", "species"):
            setattr(self, key, d[key].to(device=self.device, dtype=getattr(self, key).dtype))
        self.step = int(d["step"])
        self.time_fs = float(d["time_fs"])
        self.energy = self.forces = self.virial = None
        self.ring = None
        if d.get("ring") is not None:
            from dpqtb.md.ring_polymer import RingPolymer

            self.ring = RingPolymer.from_state_dict(d["ring"], self)


def maxwell_boltzmann_momenta(masses: torch.Tensor, temperature_K: float, generator: torch.Generator,
                              zero_com: bool = True) -> torch.Tensor:
    """Momenta (amu·Å/fs) drawn from the classical Maxwell–Boltzmann distribution at T."""
    n = masses.shape[0]
    std = torch.sqrt(masses * KB * temperature_K / MVV2E)
    p = torch.randn((n, 3), generator=generator, dtype=masses.dtype, device=masses.device) * std[:, None]
    if zero_com and n > 1:
        p -= masses[:, None] * (p.sum(0) / masses.sum())
    return p
