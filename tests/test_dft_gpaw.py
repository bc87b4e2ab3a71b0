"""Label a tiny configuration with real GPAW (cheap settings) through ``dpqtb label``."""

import argparse
import json

import numpy as np
import pytest
from ase import Atoms
from ase.io import write

pytest.importorskip("gpaw")

from dpqtb.dft import cli as dft_cli  # noqa: E402
from dpqtb.dft.settings import CHEAP  # noqa: E402
from dpqtb.dft.store import JobStore  # noqa: E402


def test_gpaw_labels_h2_in_a_box(tmp_path):
    # a stretched H2 molecule in a periodic box: forces must be equal, opposite, along the bond
    # and attractive (bond longer than the PBE equilibrium 0.75 Å)
    h2 = Atoms("H2", positions=[[2.0, 2.0, 1.55], [2.0, 2.0, 2.45]], cell=[4.0, 4.0, 4.0],
               pbc=True)
    f = tmp_path / "h2.extxyz"
    write(str(f), h2, format="extxyz")
    store_dir = tmp_path / "store"
    p = argparse.ArgumentParser()
    dft_cli.register(p.add_subparsers())
    args = p.parse_args(["label", str(f), "--store", str(store_dir), "--cheap", "--np", "1",
                         "--nice", "0"])
    assert args.func(args) == 0
    store = JobStore(store_dir)
    assert store.progress() == (1, 1, 0)
    fr = store.frames()[0]
    assert fr["settings"] == CHEAP.as_dict()
    assert fr["kpts"] == [1, 1, 1]
    assert fr["provenance"]["codes"]["gpaw"]
    assert isinstance(fr["provenance"]["scf_iterations"], int) and fr["provenance"]["scf_iterations"] > 1
    assert np.isfinite(fr["energy_eV"])
    forces = np.array(fr["forces_eV_per_A"])
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=0.05)
    np.testing.assert_allclose(forces[:, :2], 0.0, atol=0.02)  # along z (the bond) only
    assert forces[0, 2] > 0.5 and forces[1, 2] < -0.5  # attractive
    stress = np.array(fr["stress_eV_per_A3"])
    np.testing.assert_allclose(stress, stress.T, atol=1e-8)
    # a second run is a no-op: the frame is not recomputed
    before = (store.frames_dir / f"{fr['id']}.json").read_text()
    assert args.func(args) == 0
    assert (store.frames_dir / f"{fr['id']}.json").read_text() == before
    assert json.loads(before)["id"] == fr["id"]


@pytest.mark.skipif(__import__("shutil").which("mpiexec") is None, reason="no mpiexec")
def test_gpaw_labels_under_mpi_with_two_ranks(tmp_path):
    """The runner under ``mpiexec -n 2``: rank 0 plans and writes, both ranks compute."""
    from dpqtb.dft.store import job_id

    images = [Atoms("H2", positions=[[2.0, 2.0, 2.0 - d / 2], [2.0, 2.0, 2.0 + d / 2]],
                    cell=[4.0, 4.0, 4.0], pbc=True) for d in (0.7, 0.9)]
    f = tmp_path / "h2.extxyz"
    write(str(f), images, format="extxyz")
    p = argparse.ArgumentParser()
    dft_cli.register(p.add_subparsers())
    args = p.parse_args(["label", str(f), "--store", str(tmp_path / "s"), "--cheap", "--np", "2",
                         "--nice", "0"])
    assert args.func(args) == 0
    store = JobStore(tmp_path / "s")
    assert store.progress() == (2, 2, 0)
    frames = {fr["id"]: fr for fr in store.frames()}
    short = frames[job_id(images[0], CHEAP)]
    long_ = frames[job_id(images[1], CHEAP)]
    assert short["provenance"]["mpi_ranks"] == 2
    # compressed bond (0.7 Å < 0.75 Å) pushes apart, stretched (0.9 Å) pulls together
    assert short["forces_eV_per_A"][0][2] < 0 < short["forces_eV_per_A"][1][2]
    assert long_["forces_eV_per_A"][0][2] > 0 > long_["forces_eV_per_A"][1][2]
    assert not (tmp_path / "s" / "runner.lock").exists()
