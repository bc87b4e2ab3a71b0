"""dpqtb's extxyz reader (the analysis's fast path) against ASE's, on sheared cells: the flexible barostat's
lower-triangular cells and a general triclinic one. Before session 26 the fast path returned every sheared cell
transposed (ASE's comment parser gives ``Lattice`` with the vectors as columns); cubic cells hid it."""

from __future__ import annotations

import numpy as np
import pytest
from ase.io import read, write

from dpqtb.analysis.cage import quadrilateral_angles, strained_face_angles
from dpqtb.analysis.trajectory import Trajectory, write_extxyz_frames
from dpqtb.structures.lah10 import fm3m

A = 5.1
SHEARS = [
    np.eye(3) + np.array([[0.0, 0.0, 0.0], [0.04, 0.0, 0.0], [-0.03, 0.02, 0.0]]),  # lower-triangular: the barostat's
    np.eye(3) + np.array([[0.02, 0.05, -0.01], [0.0, -0.01, 0.03], [0.0, 0.0, 0.01]]),  # general triclinic
]


@pytest.mark.parametrize("F", SHEARS)
@pytest.mark.parametrize("writer", ["ase", "engine"])
def test_fast_reader_gives_the_cell_ase_gives_on_sheared_cells(tmp_path, F, writer):
    at = fm3m(A, "conventional")
    at.set_cell(at.cell.array @ F.T, scale_atoms=True)
    path = tmp_path / "t.extxyz"
    if writer == "ase":
        write(path, [at, at], format="extxyz")
    else:
        write_extxyz_frames(path, [at.positions, at.positions], at.get_chemical_symbols(), at.cell.array, 10.0)
    ref = read(path, index=":")
    frames = list(Trajectory(path, timestep_fs=10.0))
    assert len(frames) == 2
    for f, r in zip(frames, ref):
        np.testing.assert_allclose(f.cell, r.cell.array, rtol=0, atol=1e-12)  # rows are the lattice vectors
        np.testing.assert_allclose(f.cell, at.cell.array, rtol=0, atol=1e-6)
        np.testing.assert_allclose(f.positions, r.positions, rtol=0, atol=1e-12)
    # the cage angles of the frame as read equal the closed form of the homogeneous strain F
    ang = np.sort(quadrilateral_angles(frames[0].positions, frames[0].cell, frames[0].symbols), axis=-1)
    want = {tuple(np.round(sorted([e[0], e[0], e[1], e[1]]), 5)) for e in strained_face_angles(F)}
    for faces in ang:
        assert {tuple(np.round(r, 5)) for r in faces} == want
