"""deepmd/npy (dpdata) and extxyz export round trips, and the summary table."""

import argparse

import numpy as np
import pytest
from ase.calculators.lj import LennardJones
from ase.io import read

from dpqtb import DpqtbError
from dpqtb.data.export import export_deepmd_npy, export_extxyz, load_frames, summary_table
from dpqtb.data import cli as data_cli
from dpqtb.dft.runner import run_store
from dpqtb.dft.settings import CHEAP
from dpqtb.dft.store import JobStore
from dpqtb.structures.lah10 import fm3m

dpdata = pytest.importorskip("dpdata")


def _lj(atoms, settings, txt=None):
    return LennardJones(sigma=1.5, epsilon=0.01, rc=3.0)


@pytest.fixture()
def store(tmp_path):
    st = JobStore(tmp_path / "store")
    rng = np.random.default_rng(5)
    for n, (cell, phase) in enumerate([("primitive", "Fm-3m"), ("primitive", "C2"),
                                       ("conventional", "Fm-3m")]):
        a = fm3m(4.9, cell)
        a.positions += rng.normal(size=a.positions.shape) * 0.05
        st.add(a, CHEAP, {"order": n, "phase": phase, "temperature_K": 100.0 * n})
    run_store(st, calc_factory=_lj, verbose=False)
    return st


def test_deepmd_npy_round_trip(store, tmp_path):
    frames = load_frames([store.root])
    out = tmp_path / "npy"
    assert export_deepmd_npy(frames, out) == 3
    import json

    prov = json.loads((out / "provenance.json").read_text())
    assert prov["type_map"] == ["La", "H"]
    assert {r["id"] for r in prov["frames"]} == {fr["id"] for fr in frames}
    assert all(r["settings"]["ecut_eV"] == CHEAP.ecut_eV for r in prov["frames"])
    ms = dpdata.MultiSystems(type_map=["La", "H"])
    ms.from_deepmd_npy(str(out), labeled=True)  # type: ignore[attr-defined]
    assert ms.get_nframes() == 3
    by_natoms = {}
    for fr in frames:
        by_natoms.setdefault(len(fr["symbols"]), []).append(fr)
    for system in ms.systems.values():
        assert system["atom_names"][:2] == ["La", "H"]
        nat = system.get_natoms()
        ref = by_natoms[nat]
        assert len(system) == len(ref)
        for k in range(len(system)):
            # find the matching frame by energy
            e = system["energies"][k]
            fr = min(ref, key=lambda f: abs(f["energy_eV"] - e))
            assert e == pytest.approx(fr["energy_eV"], abs=1e-8)
            # dpdata sorts atoms by type: compare per-type force sets
            types = np.array([0 if s == "La" else 1 for s in fr["symbols"]])
            f_ref = np.asarray(fr["forces_eV_per_A"])
            for t in (0, 1):
                np.testing.assert_allclose(
                    np.sort(system["forces"][k][system["atom_types"] == t], axis=0),
                    np.sort(f_ref[types == t], axis=0), atol=1e-6)
            vol = abs(np.linalg.det(np.asarray(fr["cell_A"])))
            np.testing.assert_allclose(system["virials"][k],
                                       -vol * np.asarray(fr["stress_eV_per_A3"]), atol=1e-6)


def test_extxyz_round_trip(store, tmp_path):
    frames = load_frames([store.root])
    path = tmp_path / "all.extxyz"
    assert export_extxyz(frames, path) == 3
    images = read(str(path), index=":")
    for img, fr in zip(images, frames):
        assert img.get_potential_energy() == pytest.approx(fr["energy_eV"])
        np.testing.assert_allclose(img.get_forces(), fr["forces_eV_per_A"], atol=1e-8)
        assert img.info["frame_id"] == fr["id"]
        assert img.info["dft_ecut_eV"] == CHEAP.ecut_eV and "ase=" in img.info["codes"]


def test_summary_table_counts(store):
    text = summary_table(load_frames([store.root]))
    assert "Total: 3 configurations (2 × 11 atoms, 1 × 44 atoms)" in text
    rows = [r for r in text.splitlines() if r.startswith("| ") and r[2].isdigit()]
    assert sum(int(r.split("|")[4]) for r in rows) == 3
    assert "Repeats: none" in text
    # the core-range count: set each frame's pressure so that exactly the 44-atom one is outside
    frames = load_frames([store.root])
    for fr in frames:
        fr["pressure_GPa"] = 400.0 if len(fr["symbols"]) == 44 else 100.0
    assert "within 100–350 GPa: 2 configurations (2 × 11 atoms)." in summary_table(frames)
    assert "within 150–350 GPa: 0 configurations." in summary_table(frames, core_GPa=(150.0, 350.0))


def test_repeated_frames_are_flagged(store, tmp_path):
    """A supercell of a labelled frame, and one structure labelled in two stores, count twice."""
    from dpqtb.data.export import repeated_frames

    frames = load_frames([store.root])
    assert repeated_frames(frames) == []
    assert repeated_frames([frames[1], frames[1]]) == [[frames[1]["id"]] * 2]  # one id, two stores
    first = JobStore(store.root).job(frames[0]["id"]).atoms
    other = JobStore(tmp_path / "other")
    sc_id = other.add(first.repeat((2, 1, 1)), CHEAP)
    same_id = other.add(first, CHEAP)
    run_store(other, calc_factory=_lj, verbose=False)
    both = load_frames([store.root, other.root])
    # (the stored copy can hash to a new id: its positions differ by ~1e-11 Å, which can cross the
    # 1e-6 Å rounding of the id; here it does)
    assert repeated_frames(both) == [sorted([frames[0]["id"], same_id, sc_id])]
    assert "1 configuration(s) probably counted more than once (2 extra frame(s))" in summary_table(both)


def test_dataset_cli(store, tmp_path, capsys):
    p = argparse.ArgumentParser()
    data_cli.register(p.add_subparsers())
    args = p.parse_args(["dataset", "export", "--store", str(store.root),
                         "--deepmd-npy", str(tmp_path / "o"), "--extxyz", str(tmp_path / "o.xyz")])
    assert args.func(args) == 0
    assert "3 frames written" in capsys.readouterr().out
    args = p.parse_args(["dataset", "summary", "--store", str(store.root),
                         "--out", str(tmp_path / "s.md")])
    assert args.func(args) == 0
    assert "Total: 3" in (tmp_path / "s.md").read_text()
    args = p.parse_args(["dataset", "export", "--store", str(tmp_path / "missing"),
                         "--extxyz", "x"])
    with pytest.raises(DpqtbError, match="no job store"):
        args.func(args)


def test_summary_replaces_marked_block(store, tmp_path):
    p = argparse.ArgumentParser()
    data_cli.register(p.add_subparsers())
    doc = tmp_path / "dataset.md"
    doc.write_text("# Data\nprose\n<!-- summary:start -->\nold\n<!-- summary:end -->\ntail\n")
    args = p.parse_args(["dataset", "summary", "--store", str(store.root), "--out", str(doc)])
    assert args.func(args) == 0
    text = doc.read_text()
    assert text.startswith("# Data\nprose\n") and text.endswith("<!-- summary:end -->\ntail\n")
    assert "old" not in text and "Total: 3" in text


def test_summary_names_md_snapshots_by_their_starting_phase():
    from dpqtb.data.export import phase_label

    assert phase_label({"phase": "C2"}) == "C2"
    assert phase_label({"kind": "model_deviation", "phase_start": "P-1"}) == "P-1 MD"
    assert phase_label({}) == "?"


def test_read_systems_needs_type_names_when_matching_by_name(store, tmp_path):
    """Without type_map.raw dpdata would call the types Type_0, Type_1: reading by name is refused
    with a message naming the file; with an explicit type map (training) the data are read."""
    from dpqtb.train.dataset import read_systems

    out = tmp_path / "npy"
    export_deepmd_npy(load_frames([store.root]), out)
    systems = read_systems(out, type_map=None)
    assert {str(s) for x in systems for s in x["symbols"]} == {"La", "H"}
    for p in out.rglob("type_map.raw"):
        p.unlink()
    with pytest.raises(DpqtbError, match="no type_map.raw.*cannot be matched"):
        read_systems(out, type_map=None)
    assert len(read_systems(out, type_map=("La", "H"))) == len(systems)
