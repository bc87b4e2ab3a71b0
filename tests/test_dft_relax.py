"""Symmetry-constrained relaxation keeps the space group (stand-in calculator, no DFT)."""

import numpy as np
import pytest
from ase.calculators.lj import LennardJones

from dpqtb.dft.relax import relax
from dpqtb.structures.lah10 import SPACE_GROUP_NUMBER, fm3m, lowered

spglib = pytest.importorskip("spglib")


@pytest.mark.parametrize("phase", ["C2", "P-1"])
def test_relax_keeps_space_group(phase):
    atoms = lowered(fm3m(4.9), phase, amplitude=0.1, rng=3)
    calc = LennardJones(sigma=1.2, epsilon=0.01, rc=3.0)
    out = relax(atoms, pressure_GPa=10.0, steps=5, txt=None, calc=calc)
    out.set_constraint()
    assert not np.allclose(out.positions, atoms.positions)
    ds = spglib.get_symmetry_dataset((out.cell.array, out.get_scaled_positions(), out.numbers),
                                     symprec=1e-3)
    assert ds.number == SPACE_GROUP_NUMBER[phase]
