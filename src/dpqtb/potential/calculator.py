"""Any dpqtb :class:`~dpqtb.potential.base.Potential` as an ASE calculator.

:class:`PotentialCalculator` is the one way dpqtb evaluates a potential on ASE ``Atoms``: the
relaxations of ``dpqtb.dft.relax``, the cage relaxation of the pair-exchange samples and the
evaluator of ``dpqtb validate`` all go through it (or through the same ``Potential`` call), so a
Deep Potential is evaluated by the code path MD runs (:class:`~dpqtb.potential.deepmd.DeepPotential`:
dpqtb's neighbour list and ``forward_lower``), never by DeePMD-kit's own ``DeepPot`` / ``DP``.

Units: energy eV, forces eV/Å, stress eV/Å³ in ASE's convention (Voigt order xx, yy, zz, yz, xz,
xy; stress = (1/V) ∂E/∂ε = −W/V with W the potential's virial, so a compressed cell has a negative
stress and a positive pressure −tr(σ)/3).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from dpqtb import CalculationError, InputError
from dpqtb.potential.base import Potential


class PotentialCalculator(Calculator):
    """ASE calculator of a dpqtb potential (energy, free energy, forces, stress).

    Results are cached per atoms state as in every ASE calculator: a second request for the same
    positions, cell, numbers and periodicity returns the stored results without a new evaluation.
    Stress is computed for cells periodic along all three axes only.

    Parameters
    ----------
    potential : Potential
        The dpqtb potential (``DeepPotential``, ``Morse``, ``EinsteinCrystal``, ...).
    type_map : sequence of str or None
        Species names in the order the potential's species indices refer to; None: the
        potential's own ``type_map`` when it has one, else the species of the atoms in order of
        first appearance.
    device : str, torch.device or None
        Device of the tensors handed to the potential (None: the potential's ``device`` attribute,
        else "cpu").
    dtype : torch.dtype
        Floating dtype of positions and cell (float64: the engine's dtype).
    **kwargs
        Passed to :class:`ase.calculators.calculator.Calculator` (e.g. ``label``).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, potential: Potential, type_map=None, device=None, dtype: torch.dtype = torch.float64,
                 **kwargs):
        if not callable(potential):
            raise InputError(f"PotentialCalculator needs a dpqtb Potential, got {type(potential).__name__}")
        super().__init__(**kwargs)
        self.potential = potential
        self.type_map = None if type_map is None else tuple(str(s) for s in type_map)
        self.device = torch.device(device if device is not None else getattr(potential, "device", "cpu"))
        self.dtype = dtype
        self._bound: tuple[str, ...] | None = None
        #: number of potential evaluations (each computes every property at once)
        self.n_evaluations = 0

    def _species(self, symbols: list[str]) -> torch.Tensor:
        type_map = self.type_map or getattr(self.potential, "type_map", None)
        if type_map is None:
            type_map = tuple(dict.fromkeys(symbols))
            if self._bound is not None and set(type_map) <= set(self._bound):
                type_map = self._bound  # keep the binding while no new species appears
        type_map = tuple(type_map)
        missing = sorted(set(symbols) - set(type_map))
        if missing:
            raise InputError(f"PotentialCalculator: species {missing} not in the type map {list(type_map)}")
        if type_map != self._bound:
            self.potential.bind(type_map)
            self._bound = type_map
        index = {s: k for k, s in enumerate(type_map)}
        return torch.tensor([index[s] for s in symbols], dtype=torch.int64, device=self.device)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Evaluate the potential on ``atoms`` and store every implemented property in ``results``.

        Parameters
        ----------
        atoms : ase.Atoms or None
            The structure (None: the last one).
        properties : sequence of str
            Requested properties (all are computed in one evaluation).
        system_changes : list of str
            What changed since the last call (ASE's bookkeeping).
        """
        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        species = self._species(a.get_chemical_symbols())
        pos = torch.tensor(np.asarray(a.positions), dtype=self.dtype, device=self.device)
        cell = torch.tensor(np.asarray(a.cell.array), dtype=self.dtype, device=self.device)
        pbc = tuple(bool(p) for p in a.pbc)
        out = self.potential(pos, cell, species, pbc)
        self.n_evaluations += 1
        energy = float(out.energy.detach().reshape(()).cpu())
        forces = out.forces.detach().cpu().numpy().astype(np.float64).reshape(len(a), 3)
        if not np.isfinite(energy) or not np.all(np.isfinite(forces)):
            raise CalculationError("PotentialCalculator: the potential returned a non-finite energy or force")
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}
        if all(pbc):
            volume = abs(float(np.linalg.det(a.cell.array)))
            if volume > 0:
                from ase.stress import full_3x3_to_voigt_6_stress

                virial = out.virial.detach().cpu().numpy().astype(np.float64).reshape(3, 3)
                self.results["stress"] = full_3x3_to_voigt_6_stress(-virial / volume)


def calculator_from_spec(spec: str | os.PathLike, base_dir: str | os.PathLike = ".", device="cpu",
                         **kwargs) -> tuple[PotentialCalculator, dict]:
    """ASE calculator of the Deep Potential ``spec`` and its provenance.

    Parameters
    ----------
    spec : str or os.PathLike
        ``builtin:NAME`` (a shipped model) or the path of a frozen DeePMD-kit PyTorch model (*.pth).
    base_dir : str or os.PathLike
        Folder a relative path is taken from.
    device : str or torch.device
        Torch device of the model.
    **kwargs
        Passed to :class:`~dpqtb.potential.deepmd.DeepPotential` (``skin_A``, ``chunk_atoms``, ...).

    Returns
    -------
    calc : PotentialCalculator
        The calculator (a :class:`~dpqtb.potential.deepmd.DeepPotential` inside).
    provenance : dict
        ``relax_model`` (``spec`` as given) and ``relax_model_sha256`` (first 16 hex digits of the
        model file's SHA-256).

    Raises
    ------
    InputError
        No such model file, or not a readable frozen model.
    """
    from dpqtb.potential.builtin import resolve
    from dpqtb.potential.deepmd import DeepPotential

    path = Path(resolve(spec, base_dir))
    if not path.is_file():
        raise InputError(f"--relax-model {spec}: no such model file")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    pot = DeepPotential(path, device=device, **kwargs)
    return PotentialCalculator(pot), {"relax_model": str(spec), "relax_model_sha256": digest}
