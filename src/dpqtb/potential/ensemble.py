"""Model deviation of a Deep Potential ensemble (DP-GEN's definition), for a frame or during MD.

An ensemble of M models (the same data, different seeds) predicts energies E^k and forces F_i^k of one
configuration. The force deviation of atom i is

    ε_i = sqrt( ⟨ |F_i^k − ⟨F_i⟩_k|² ⟩_k )        (eV/Å; ⟨·⟩_k the plain mean over the M members)

and a configuration's ``max_devi_f`` is max_i ε_i (also min_i and the mean over atoms); the energy deviation
is the population standard deviation of E^k/N over the members (eV/atom). Where the members agree the
model interpolates its data; where they disagree (DP-GEN: max_devi_f ≥ trust_hi) it extrapolates and its
forces cannot be trusted. :func:`model_deviation` owns the formula; :mod:`dpqtb.train.deviation` (frames
of a trajectory) and :class:`dpqtb.md.observers.ModelDeviationObserver` (on the fly) both use it.
"""

from __future__ import annotations

import torch

from dpqtb import InputError

#: the columns of a model deviation record (``model_devi.csv``), units in the names
DEVIATION_COLUMNS = ("max_devi_f_eV_per_A", "min_devi_f_eV_per_A", "avg_devi_f_eV_per_A", "devi_e_eV_per_atom")


def model_deviation(energies: torch.Tensor, forces: torch.Tensor) -> dict[str, torch.Tensor]:
    """DP-GEN model deviation of one configuration or a batch of them (beads).

    Parameters
    ----------
    energies : torch.Tensor
        (M,) or (M, B) energies of the M members (eV).
    forces : torch.Tensor
        (M, N, 3) or (M, B, N, 3) forces (eV/Å).

    Returns
    -------
    dict of str to torch.Tensor
        :data:`DEVIATION_COLUMNS` -> () or (B,) tensors.

    Raises
    ------
    InputError
        Fewer than 2 members, or energies and forces of different batch shapes.
    """
    if forces.shape[0] < 2:
        raise InputError("model deviation needs an ensemble of at least 2 models")
    if energies.shape != forces.shape[:-2]:
        raise InputError(f"model deviation: energies {tuple(energies.shape)} do not match forces {tuple(forces.shape)}")
    n = forces.shape[-2]
    eps = (forces - forces.mean(0)).pow(2).sum(-1).mean(0).sqrt()  # (..., N)
    return {"max_devi_f_eV_per_A": eps.amax(-1), "min_devi_f_eV_per_A": eps.amin(-1),
            "avg_devi_f_eV_per_A": eps.mean(-1), "devi_e_eV_per_atom": (energies / n).std(0, unbiased=False)}
