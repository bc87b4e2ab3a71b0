"""A small synthetic labelled data set for the training tests: LaH10-like cells labelled by a
cheap Lennard-Jones potential through the real job store (not the DFT store)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.calculators.lj import LennardJones

from dpqtb.dft.runner import run_store
from dpqtb.dft.settings import CHEAP
from dpqtb.dft.store import JobStore
from dpqtb.structures.lah10 import fm3m


def lj_calculator(atoms, settings, txt=None):
    return LennardJones(sigma=1.0, epsilon=0.05, rc=3.0, smooth=True)


def lj_store(root: Path, n: int = 16, seed: int = 7, start: int = 0) -> JobStore:
    """A job store with ``n`` labelled 11-atom frames (rattled Fm-3m at 4.7–5.3 Å); frames
    ``start..start+n-1`` of one fixed sequence, so calling again with a larger ``start`` adds
    new frames."""
    store = JobStore(root)
    rng = np.random.default_rng(seed)
    for k in range(start + n):
        a = 4.7 + 0.6 * rng.random()
        disp = rng.normal(size=(11, 3)) * 0.06
        if k < start:
            continue
        atoms = fm3m(a, "primitive")
        atoms.positions += disp
        store.add(atoms, CHEAP, {"order": k, "phase": "Fm-3m", "kind": "thermal", "temperature_K": 300.0})
    run_store(store, calc_factory=lj_calculator, verbose=False)
    return store


TINY_CONFIG = """
[data]
stores = ["{store}"]
test_modulus = 3

[descriptor]
rcut_A = 3.5
rcut_smth_A = 0.5
neuron = [4, 8]
axis_neuron = 2

[fitting]
neuron = [8, 8]

[learning_rate]
start_lr = 1e-3
stop_lr = 1e-4
decay_steps = 10

[training]
numb_steps = {steps}
disp_freq = {disp}
save_freq = {save}
compress = {compress}

[ensemble]
members = {members}
"""


def tiny_config(path: Path, store: Path, steps: int = 20, disp: int = 5, save: int = 10,
                compress: bool = True, members: int = 1) -> Path:
    path.write_text(TINY_CONFIG.format(store=store, steps=steps, disp=disp, save=save,
                                       compress=str(compress).lower(), members=members))
    return path
