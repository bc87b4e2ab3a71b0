"""How ``dpqtb validate`` evaluates a model: through dpqtb's own :class:`DeepPotential` (dpqtb's neighbour
list and the model's ``forward_lower``), the code path MD runs, so the report validates what MD uses.

Any object with ``type_map`` and ``evaluate(symbols, coords_A, cells_A) -> (energy_eV, forces_eV_per_A,
virial_eV)`` can stand in for :class:`DeepPotentialEvaluator` (``validate(..., evaluator=...)``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from dpqtb import InputError


class DeepPotentialEvaluator:
    """A frozen DeePMD-kit model evaluated frame by frame by :class:`dpqtb.potential.deepmd.DeepPotential`.

    Parameters
    ----------
    model_path : str or os.PathLike
        Frozen DeePMD-kit PyTorch model (*.pth).
    device : str or torch.device
        Torch device of the model ("cpu", "cuda").

    Raises
    ------
    InputError
        The file is missing or not a readable frozen model.
    """

    name = "dpqtb.potential.deepmd.DeepPotential"

    def __init__(self, model_path: str | os.PathLike, device: str | torch.device = "cpu"):
        from dpqtb.potential.deepmd import DeepPotential, _load_deepmd_ops

        path = Path(model_path)
        if not path.is_file():
            raise InputError(f"model file not found: {path}")
        _load_deepmd_ops()  # DeePMD-kit missing: its own message
        try:
            self.potential = DeepPotential(path, device=device)
        except InputError as exc:  # a corrupt file, a TensorFlow model, a model with parameters
            text = str(exc).strip().splitlines()
            first = text[0] if text else type(exc).__name__
            if first.startswith(f"{path}: "):
                first = first[len(f"{path}: "):]
            raise InputError(f"{path}: not a readable DeePMD-kit model ({first[:200]})") from None
        self.path = path
        self.type_map = list(self.potential.type_map)
        self.rcut_A = float(self.potential.rcut)
        self.potential.bind(tuple(self.type_map))  # species indices below are the model's own types

    def atom_types(self, symbols) -> np.ndarray:
        """Model type index of every symbol.

        Parameters
        ----------
        symbols : sequence of str

        Returns
        -------
        (N,) int array

        Raises
        ------
        InputError
            A species the model lacks.
        """
        symbols = [str(s) for s in symbols]
        missing = sorted(set(symbols) - set(self.type_map))
        if missing:
            raise InputError(f"the model's type map {self.type_map} lacks {', '.join(missing)}")
        return np.array([self.type_map.index(s) for s in symbols], dtype=int)

    def evaluate(self, symbols, coords_A, cells_A):
        """Energies, forces and virials of ``nf`` frames of one composition (float64).

        Parameters
        ----------
        symbols : sequence of str
            Species of the N atoms (the same in every frame).
        coords_A : (nf, N, 3) array
            Positions (Å).
        cells_A : (nf, 3, 3) array
            Cells, rows are lattice vectors (Å); periodic.

        Returns
        -------
        energy_eV : (nf,) array
        forces_eV_per_A : (nf, N, 3) array
        virial_eV : (nf, 3, 3) array
            W = -∂E/∂ε, DeePMD-kit's virial.
        """
        coords = np.asarray(coords_A, float)
        cells = np.asarray(cells_A, float)
        nf, n = coords.shape[0], coords.shape[1]
        pot = self.potential
        species = torch.as_tensor(self.atom_types(symbols), dtype=torch.int64, device=pot.device)
        e, f, v = np.empty(nf), np.empty((nf, n, 3)), np.empty((nf, 3, 3))
        for k in range(nf):
            with warnings.catch_warnings():
                # more neighbours than the model's sel: the nearest are kept, DeepPot.eval's rule (which
                # it applies silently); the errors reported are those of the model as it evaluates
                warnings.filterwarnings("ignore", message="Deep Potential: an atom has more neighbours")
                out = pot(torch.as_tensor(coords[k].reshape(n, 3), device=pot.device),
                          torch.as_tensor(cells[k].reshape(3, 3), device=pot.device), species)
            e[k] = float(out.energy)
            f[k] = out.forces.cpu().numpy()
            v[k] = out.virial.cpu().numpy()
        return e, f, v


def _evaluate_atoms(evaluator, images):
    """Evaluate a list of ASE Atoms with identical species order in one call."""
    symbols = images[0].get_chemical_symbols()
    coords = np.stack([a.positions for a in images])
    cells = np.stack([a.cell.array for a in images])
    return evaluator.evaluate(symbols, coords, cells)
