"""DeepPotential (dpqtb's neighbour list + forward_lower) against DeePMD-kit's own DeepPot.eval.

``DPQTB_TEST_DEVICE=cuda`` (default cpu) puts the DeepPotential, its inputs and the MD state on that
device; the comparisons are then CUDA against DeepPot.eval (which itself runs on CUDA whenever torch
sees a GPU), all in float64, plus ``test_device_matches_cpu`` (CUDA against CPU, same model).
scripts/gpu_session.sh runs this file that way on a lent GPU machine."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("deepmd.pt")

from _deepmd_models import frozen_random_model  # noqa: E402

from dpqtb import DpqtbError  # noqa: E402
from dpqtb.potential.deepmd import DeepPotential  # noqa: E402
from dpqtb.structures.lah10 import fm3m  # noqa: E402

TYPE_MAP = ("H", "La")  # deliberately not the model's order [La, H]
DEVICE = os.environ.get("DPQTB_TEST_DEVICE", "cpu")
if DEVICE.startswith("cuda") and not torch.cuda.is_available():
    raise RuntimeError(f"DPQTB_TEST_DEVICE={DEVICE} but this torch sees no CUDA device")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return frozen_random_model(tmp_path_factory.mktemp("dp") / "model.pth")


@pytest.fixture(scope="module")
def small_sel_model(tmp_path_factory):
    # sel far below the neighbour count at 4.5 Å: forces the nearest-per-species truncation
    return frozen_random_model(tmp_path_factory.mktemp("dp") / "small_sel.pth", sel=(4, 20), seed=3)


def _distorted(cell="conventional", a=4.9, seed=0, rattle=0.08, shear=0.03, repeat=(1, 1, 1)):
    rng = np.random.default_rng(seed)
    atoms = fm3m(a, cell=cell).repeat(repeat)
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + rng.normal(0, shear, (3, 3))), scale_atoms=True)
    atoms.positions += rng.normal(0, rattle, atoms.positions.shape)
    return atoms


def _species(atoms):
    return torch.tensor([TYPE_MAP.index(s) for s in atoms.get_chemical_symbols()], device=DEVICE)


def _dpqtb(pot, atoms, positions=None):
    pos = torch.tensor(atoms.positions if positions is None else positions, device=DEVICE)
    return pot(pos, torch.tensor(atoms.cell.array, device=DEVICE), _species(atoms))


def _reference(path, atoms):
    from deepmd.infer import DeepPot

    dp = DeepPot(str(path))
    atype = np.array([dp.get_type_map().index(s) for s in atoms.get_chemical_symbols()])
    e, f, v = dp.eval(atoms.positions.reshape(1, -1), atoms.cell.array.reshape(1, 9), atype)
    return float(np.ravel(e)[0]), f.reshape(-1, 3), v.reshape(3, 3)


def _assert_same(out, ref, rtol=1e-10):
    e, f, v = ref
    assert abs(float(out.energy) - e) <= rtol * abs(e)
    assert out.forces.dtype == torch.float64 and out.forces.device.type == torch.device(DEVICE).type
    assert np.abs(out.forces.cpu().numpy() - f).max() <= rtol * np.abs(f).max()
    assert np.abs(out.virial.cpu().numpy() - v).max() <= rtol * np.abs(v).max()


@pytest.mark.parametrize("cell,repeat,chunk", [
    ("primitive", (1, 1, 1), None),       # 11 atoms, cell far smaller than r_cut: many self-images
    ("conventional", (1, 1, 1), None),    # 44 atoms, triclinic after the shear
    ("conventional", (2, 1, 1), 13),      # 88 atoms in chunks of 13 (chunks cut through cages)
])
def test_matches_deeppot_eval(model, cell, repeat, chunk):
    atoms = _distorted(cell=cell, repeat=repeat)
    pot = DeepPotential(model, device=DEVICE, chunk_atoms=chunk)
    pot.bind(TYPE_MAP)
    _assert_same(_dpqtb(pot, atoms), _reference(model, atoms))


@pytest.mark.skipif(DEVICE == "cpu", reason="DPQTB_TEST_DEVICE is cpu")
def test_device_matches_cpu(model):
    """The same model and cell on DPQTB_TEST_DEVICE and on the CPU, chunked and not."""
    atoms = _distorted(repeat=(2, 1, 1), seed=8)
    for chunk in (None, 13):
        dev = DeepPotential(model, device=DEVICE, chunk_atoms=chunk)
        dev.bind(TYPE_MAP)
        out = _dpqtb(dev, atoms)
        cpu = DeepPotential(model, device="cpu", chunk_atoms=chunk)
        cpu.bind(TYPE_MAP)
        ref = cpu(torch.tensor(atoms.positions), torch.tensor(atoms.cell.array), _species(atoms).cpu())
        assert abs(float(out.energy) - float(ref.energy)) <= 1e-12 * abs(float(ref.energy))
        assert torch.allclose(out.forces.cpu(), ref.forces, rtol=0, atol=1e-11 * float(ref.forces.abs().max()))
        assert torch.allclose(out.virial.cpu(), ref.virial, rtol=0, atol=1e-11 * float(ref.virial.abs().max()))


def test_chunking_does_not_change_results(model):
    atoms = _distorted(repeat=(1, 1, 2), seed=4)
    outs = []
    for chunk in (None, 1, 17, 44):
        pot = DeepPotential(model, device=DEVICE, chunk_atoms=chunk)
        pot.bind(TYPE_MAP)
        outs.append(_dpqtb(pot, atoms))
    for o in outs[1:]:
        assert abs(float(o.energy - outs[0].energy)) <= 1e-12 * abs(float(outs[0].energy))
        assert torch.allclose(o.forces, outs[0].forces, rtol=0, atol=1e-12 * float(outs[0].forces.abs().max()))
        assert torch.allclose(o.virial, outs[0].virial, rtol=0, atol=1e-12 * float(outs[0].virial.abs().max()))


def test_forces_and_virial_are_energy_derivatives(model):
    """F = -∂E/∂x and W = -∂E/∂ε (the engine's convention) by central differences."""
    atoms = _distorted(cell="primitive", seed=2)
    pot = DeepPotential(model, device=DEVICE)
    pot.bind(TYPE_MAP)
    out = _dpqtb(pot, atoms)
    species = _species(atoms)
    x0, h0 = atoms.positions, atoms.cell.array
    eps = 1e-5

    def energy(x, h):
        return float(pot(torch.tensor(x, device=DEVICE), torch.tensor(h, device=DEVICE), species).energy)

    for k, d in [(0, 0), (3, 1), (10, 2)]:
        dx = np.zeros_like(x0)
        dx[k, d] = eps
        fd = -(energy(x0 + dx, h0) - energy(x0 - dx, h0)) / (2 * eps)
        assert abs(fd - float(out.forces[k, d])) < 1e-6 * max(1.0, abs(fd))
    for a, b in [(0, 0), (0, 1), (2, 1)]:
        s = np.zeros((3, 3))
        s[a, b] = eps
        fd = -(energy(x0 @ (np.eye(3) + s), h0 @ (np.eye(3) + s))
               - energy(x0 @ (np.eye(3) - s), h0 @ (np.eye(3) - s))) / (2 * eps)
        assert abs(fd - float(out.virial[a, b])) < 1e-6 * max(1.0, abs(fd))


def test_verlet_list_reuse_and_unwrapped_positions(model):
    """Small moves reuse the list (no rebuild) and give what a fresh evaluation gives; an atom
    carried far outside the cell (unwrapped) changes nothing."""
    atoms = _distorted(seed=5)
    pot = DeepPotential(model, device=DEVICE, skin_A=1.0)
    pot.bind(TYPE_MAP)
    _dpqtb(pot, atoms)
    rng = np.random.default_rng(1)
    moved = atoms.positions + rng.uniform(-0.25, 0.25, atoms.positions.shape)
    out = _dpqtb(pot, atoms, moved)
    assert pot._lists[0].vl.n_builds == 1
    fresh = DeepPotential(model, device=DEVICE)
    fresh.bind(TYPE_MAP)
    ref = _dpqtb(fresh, atoms, moved)
    assert abs(float(out.energy - ref.energy)) < 1e-12 * abs(float(ref.energy))
    assert torch.allclose(out.forces, ref.forces, rtol=0, atol=1e-12)
    unwrapped = moved + np.array([2, -1, 3]) @ atoms.cell.array * (np.arange(len(atoms)) % 2 == 0)[:, None]
    far = _dpqtb(fresh, atoms, unwrapped)
    assert abs(float(far.energy - ref.energy)) < 1e-10 * abs(float(ref.energy))
    assert torch.allclose(far.forces, ref.forces, rtol=0, atol=1e-10)


@pytest.mark.parametrize("cache_pairs", [True, False])
@pytest.mark.parametrize("which", ["model", "small_sel_model"])
def test_list_kept_through_moves_and_a_strained_cell_matches_deeppot_eval(request, which, cache_pairs,
                                                                          monkeypatch):
    """A barostat step: atoms moved and the cell strained (1 % compression and a shear) within what the skin
    covers, so the list is kept (no rebuild) and, with the per-pair integers kept from the build or
    recomputed (lists above cache_pairs_max), the result is DeepPot.eval's at the new cell; also when
    sel overflows (the nearest-per-species truncation path)."""
    from dpqtb.potential.deepmd import _GhostList

    if not cache_pairs:
        monkeypatch.setattr(_GhostList, "cache_pairs_max", 0)
    path = request.getfixturevalue(which)
    atoms = _distorted(seed=9)
    pot = DeepPotential(path, device=DEVICE, skin_A=1.0, chunk_atoms=17)
    pot.bind(TYPE_MAP)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the small-sel model warns about the truncation
        _dpqtb(pot, atoms)
        rng = np.random.default_rng(2)
        strained = atoms.copy()
        strain = -0.01 * np.eye(3) + 0.005 * np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
        strained.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
        strained.positions += rng.uniform(-0.15, 0.15, atoms.positions.shape)
        out = _dpqtb(pot, strained)
    gl = pot._lists[0]
    assert gl.vl.n_builds == 1
    assert all(("pairs" in c) == cache_pairs for c in gl.chunks)
    assert (pot.n_sel_overflow > 0) == (which == "small_sel_model")
    _assert_same(out, _reference(path, strained))


def test_sel_overflow_truncates_like_deeppot(small_sel_model):
    atoms = _distorted(cell="conventional", seed=6)
    pot = DeepPotential(small_sel_model, device=DEVICE, chunk_atoms=10)
    pot.bind(TYPE_MAP)
    with pytest.warns(UserWarning, match="sel"):
        out = _dpqtb(pot, atoms)
    assert pot.n_sel_overflow > 0
    _assert_same(out, _reference(small_sel_model, atoms))


def test_replicas_are_evaluated_independently(model):
    """(B, N, 3) input (path-integral beads): each replica equals its own single evaluation."""
    atoms = _distorted(cell="primitive", seed=7)
    rng = np.random.default_rng(2)
    beads = np.stack([atoms.positions + rng.normal(0, 0.05, atoms.positions.shape) for _ in range(3)])
    pot = DeepPotential(model, device=DEVICE)
    pot.bind(TYPE_MAP)
    out = pot(torch.tensor(beads, device=DEVICE), torch.tensor(atoms.cell.array, device=DEVICE), _species(atoms))
    for k in range(3):
        single = DeepPotential(model, device=DEVICE)
        single.bind(TYPE_MAP)
        ref = _dpqtb(single, atoms, beads[k])
        assert abs(float(out.energy[k] - ref.energy)) < 1e-12 * abs(float(ref.energy))
        assert torch.allclose(out.forces[k], ref.forces, rtol=0, atol=1e-12)


def test_bad_inputs_give_clear_errors(model, tmp_path):
    with pytest.raises(DpqtbError, match="not found"):
        DeepPotential(tmp_path / "missing.pth")
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(b"this is not a torchscript archive")
    with pytest.raises(DpqtbError, match="not a readable frozen DeePMD-kit"):
        DeepPotential(bad)
    other = tmp_path / "model.pb"
    other.write_bytes(b"x")
    with pytest.raises(DpqtbError, match="expected a frozen DeePMD-kit PyTorch model"):
        DeepPotential(other)
    pot = DeepPotential(model, device=DEVICE)
    with pytest.raises(DpqtbError, match="no species \\['Li'\\]"):
        pot.bind(("La", "H", "Li"))
    with pytest.raises(DpqtbError, match="chunk_atoms"):
        DeepPotential(model, chunk_atoms=0)


def _nve_run(model, tmp_path, dt_fs, time_fs):
    from dpqtb.md.build import build_simulation
    from dpqtb.md.config import validate

    steps = int(round(time_fs / dt_fs))
    cfg = validate({
        "system": {"structure": "builtin:lah10", "lattice_A": 4.9, "initial_temperature_K": 300.0,
                   "device": DEVICE},
        "potential": {"kind": "deepmd", "model": str(model), "skin_A": 0.3, "chunk_atoms": 20},
        "md": {"timestep_fs": dt_fs, "steps": steps, "seed": 3},
        "thermostat": {"kind": "nve"},
        "output": {"directory": str(tmp_path / f"run_{dt_fs}"), "thermo_every": 1, "trajectory_every": 0,
                   "progress": False},
    })
    sim = build_simulation(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no sel overflow in this cell
        sim.run(steps)
    import csv

    rows = list(csv.DictReader(open(tmp_path / f"run_{dt_fs}" / "thermo.csv")))
    etot = np.array([float(r["total_eV"]) for r in rows])
    epot = np.array([float(r["potential_eV"]) for r in rows])
    return etot, epot, sim.potential if hasattr(sim, "potential") else None


def test_nve_md_with_deep_potential_conserves_energy(model, tmp_path):
    """The engine drives the DP through neighbour-list rebuilds (skin 0.3 Å): velocity Verlet's
    energy error is second order in dt (ratio ≈ 4 when dt halves) and far below the potential-energy
    swing. (The random test model is not a bound crystal, so atoms accelerate: a demanding case.)"""
    e1, p1, _ = _nve_run(model, tmp_path, 0.1, 12.0)
    e2, p2, _ = _nve_run(model, tmp_path, 0.05, 12.0)
    err1, err2 = np.abs(e1 - e1[0]).max(), np.abs(e2 - e2[0]).max()
    swing = p1.max() - p1.min()
    assert swing > 0.02  # the atoms really moved on the DP surface
    assert err1 < 2e-3 * swing
    assert 2.5 < err1 / err2 < 6.0
