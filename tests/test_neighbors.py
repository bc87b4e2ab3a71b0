"""VerletList against a brute-force O(N²) enumeration of all periodic images."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from dpqtb.potential.neighbors import VerletList


def _brute_force(pos, cell, pbc, rc, full):
    """Every (i, j, S) with |x_j - x_i + S·cell| < rc (S = 0 on open axes; no self pair at S = 0),
    canonical half list if not full; lexicographically sorted.  All images within a window of
    shifts around the wrapped positions x_w = x - n·cell; then S = S_w + n_i - n_j."""
    inv = np.linalg.inv(cell)
    n_img = np.where(np.array(pbc), np.floor(pos @ inv), 0.0)
    pos_w = pos - n_img @ cell
    m = [int(np.ceil(rc * np.linalg.norm(inv[:, a]))) + 1 if pbc[a] else 0 for a in range(3)]
    rows = []
    for s in itertools.product(*(range(-ma, ma + 1) for ma in m)):
        d = pos_w[None, :, :] - pos_w[:, None, :] + np.array(s, dtype=float) @ cell  # d[i, j]
        ii, jj = np.nonzero((d**2).sum(-1) < rc * rc)
        edge = any(ma > 0 and abs(sa) == ma for sa, ma in zip(s, m))
        assert not (edge and len(ii)), "brute-force image window too small"
        for i, j in zip(ii, jj):
            sw = np.array(s) + n_img[i].astype(int) - n_img[j].astype(int)
            if i == j and not sw.any():
                continue
            if not full:
                first = next((x for x in sw if x != 0), 0)
                if i > j or (i == j and first < 0):
                    continue
            rows.append((i, j, *sw))
    rows.sort()
    return np.array(rows, dtype=np.int64).reshape(-1, 5)


def _listed(vl):
    return np.column_stack([vl.i.numpy(), vl.j.numpy(), vl.shifts.numpy()]).astype(np.int64)


def _triclinic(rng, n, scale, unwrap=0.0):
    cell = scale * np.array([[1.0, 0.0, 0.0], [0.31, 0.93, 0.0], [0.22, -0.27, 0.88]])
    pos = rng.random((n, 3)) @ cell
    if unwrap:  # atoms a few cells away from the cell: shifts are relative to these positions
        pos += np.round(rng.normal(0.0, unwrap, (n, 3))) @ cell
    return pos, cell


@pytest.mark.parametrize("full", [True, False])
@pytest.mark.parametrize("slabs,backend", [(None, "vesin"), (1, "vesin"), (2, "vesin"), (3, "vesin"),
                                           (None, "vesin-torch")])
def test_small_triclinic_cell_many_images(full, slabs, backend):
    # cutoff + skin = 5.2 Å against plane spacings of ~3.5-4.5 Å: every atom sees itself and the
    # others through many images (including self-images)
    rng = np.random.default_rng(7)
    pos, cell = _triclinic(rng, 9, 4.6, unwrap=1.5)
    vl = VerletList(4.5, 0.7, full=full, slabs=slabs, backend=backend)
    vl.update(torch.tensor(pos), torch.tensor(cell), (True, True, True))
    assert vl.backend_used == backend
    ref = _brute_force(pos, cell, (True, True, True), 5.2, full)
    assert len(ref) > 30 * len(pos)
    got = _listed(vl)
    np.testing.assert_array_equal(got, ref)  # same pairs, same (canonical) order
    assert vl.i.dtype == vl.j.dtype == torch.int32 and vl.shifts.dtype == torch.int8
    r = vl.vectors(torch.tensor(pos), torch.tensor(cell)).norm(dim=1)
    assert float(r.max()) < 5.2 and float(r.min()) > 0.0


@pytest.mark.parametrize("full", [True, False])
@pytest.mark.parametrize("slabs", [1, 4])
def test_slabs_with_halo_match_brute_force(full, slabs):
    # a cell wide against the cutoff, so that each slab's halo holds only part of the atoms
    rng = np.random.default_rng(11)
    pos, cell = _triclinic(rng, 240, 15.0, unwrap=0.7)
    vl = VerletList(3.0, 0.4, full=full, slabs=slabs)
    vl.update(torch.tensor(pos), torch.tensor(cell), (True, True, True))
    assert vl.n_slabs_used == slabs
    np.testing.assert_array_equal(_listed(vl), _brute_force(pos, cell, (True, True, True), 3.4, full))


@pytest.mark.parametrize("full", [True, False])
@pytest.mark.parametrize("backend", ["vesin", "vesin-torch"])
def test_mixed_and_open_boundaries(full, backend):
    rng = np.random.default_rng(5)
    pos, cell = _triclinic(rng, 30, 6.0)
    for pbc in [(True, False, True), (False, False, False)]:
        vl = VerletList(3.5, 0.5, full=full, backend=backend)
        vl.update(torch.tensor(pos), torch.tensor(cell), pbc)
        np.testing.assert_array_equal(_listed(vl), _brute_force(pos, cell, pbc, 4.0, full))


def test_half_list_is_canonical_half_of_full_list():
    rng = np.random.default_rng(3)
    pos, cell = _triclinic(rng, 12, 5.0)
    lists = {}
    for full in (True, False):
        vl = VerletList(4.0, 0.5, full=full)
        vl.update(torch.tensor(pos), torch.tensor(cell), (True, True, True))
        lists[full] = _listed(vl)
    assert len(lists[True]) == 2 * len(lists[False])
    # every half-list pair appears in the full list in both directions
    full_set = {tuple(r) for r in lists[True]}
    for i, j, *s in lists[False]:
        assert (i, j, *s) in full_set and (j, i, *(-x for x in s)) in full_set


def test_ghost_keys_dense_and_merged_agree():
    from dpqtb.potential.deepmd import _GhostList

    rng = np.random.default_rng(2)
    pos, cell = _triclinic(rng, 20, 5.0, unwrap=1.0)
    vl = VerletList(4.0, 0.5, full=True)
    vl.update(torch.tensor(pos), torch.tensor(cell), (True, True, True))
    m = int(vl.shifts.abs().max())
    keys = [_GhostList._ghost_keys(vl.j, vl.shifts, len(pos), m, 2 * m + 1, dense=d) for d in (True, False)]
    assert len(keys[0]) > 0 and torch.equal(keys[0], keys[1])
    img = (vl.shifts != 0).any(dim=1)
    s, b = vl.shifts[img].to(torch.int64) + m, 2 * m + 1
    ref = torch.unique(vl.j[img].to(torch.int64) * b**3 + (s[:, 0] * b + s[:, 1]) * b + s[:, 2])
    assert torch.equal(keys[0], ref)


@pytest.mark.parametrize("full", [True, False])
def test_device_backend_equals_host_build(full):
    """vesin-torch (the build used for CUDA tensors) gives the host build's list exactly — pairs,
    order and dtypes — here on CPU tensors, on a wide cell with unwrapped atoms; and both agree
    with the brute-force enumeration. On CPU tensors both call vesin's CPU search, so this checks
    dpqtb's orientation/sort/decode on the device path; vesin's CUDA search itself is compared with
    the host build on LaH10 cells by scripts/gpu_session_checks.py (env step) on a GPU machine."""
    rng = np.random.default_rng(13)
    pos, cell = _triclinic(rng, 200, 14.0, unwrap=0.8)
    out = {}
    for b in ("vesin", "vesin-torch"):
        vl = VerletList(3.2, 0.3, full=full, backend=b)
        vl.update(torch.tensor(pos), torch.tensor(cell), (True, True, True))
        out[b] = (vl.i, vl.j, vl.shifts)
    for a, c in zip(out["vesin"], out["vesin-torch"]):
        assert a.dtype == c.dtype and torch.equal(a, c)
    got = np.column_stack([t.numpy() for t in (out["vesin-torch"][0], out["vesin-torch"][1], out["vesin-torch"][2])])
    np.testing.assert_array_equal(got.astype(np.int64), _brute_force(pos, cell, (True, True, True), 3.5, full))


def test_backend_choice_and_bad_backend():
    from dpqtb import DpqtbError

    vl = VerletList(3.0, 0.5)
    pos, cell = _triclinic(np.random.default_rng(1), 10, 5.0)
    vl.update(torch.tensor(pos), torch.tensor(cell), (True, True, True))
    assert vl.backend_used == "vesin"  # auto on CPU tensors: the memory-lean host build
    with pytest.raises(DpqtbError, match="backend must be one of"):
        VerletList(3.0, 0.5, backend="cuda")
    for b in ("vesin", "vesin-torch"):  # no atoms: an empty list of the usual dtypes, on both builds
        vl = VerletList(3.0, 0.5, backend=b)
        vl.update(torch.zeros((0, 3), dtype=torch.float64), torch.tensor(cell), (True, True, True))
        assert len(vl.i) == len(vl.j) == len(vl.shifts) == 0
        assert (vl.i.dtype, vl.j.dtype, vl.shifts.dtype) == (torch.int32, torch.int32, torch.int8)


def test_pair_key_helpers_are_one_encoding_for_numpy_and_torch():
    """image_key / decode_image_key round-trip, order like (atom, S0, S1, S2), and give the same
    integers on numpy arrays and torch tensors; canonical_half agrees on both and is idempotent."""
    from dpqtb.potential.neighbors import canonical_half, decode_image_key, image_key, shift_dtype

    rng = np.random.default_rng(3)
    m = [2, 1, 3]
    bases = [2 * x + 1 for x in m]
    atom = rng.integers(0, 50, 400)
    s = np.stack([rng.integers(-x, x + 1, 400) for x in m], axis=1)
    key = image_key(atom, s, m, bases)
    a2, s2 = decode_image_key(key, m, bases)
    np.testing.assert_array_equal(a2, atom)
    np.testing.assert_array_equal(s2, s)
    order = np.lexsort((s[:, 2], s[:, 1], s[:, 0], atom))
    np.testing.assert_array_equal(np.argsort(key, kind="stable"), order)
    kt = image_key(torch.from_numpy(atom), torch.from_numpy(s), m, bases)
    np.testing.assert_array_equal(kt.numpy(), key)
    at, st = decode_image_key(kt, m, bases)
    np.testing.assert_array_equal(at.numpy(), atom)
    np.testing.assert_array_equal(st.numpy(), s)
    i, j = rng.integers(0, 5, 400), rng.integers(0, 5, 400)
    hn = canonical_half(i, j, s)
    ht = canonical_half(torch.from_numpy(i), torch.from_numpy(j), torch.from_numpy(s))
    for x, y in zip(hn, ht):
        np.testing.assert_array_equal(x, y.numpy())
    for x, y in zip(canonical_half(*hn), hn):
        np.testing.assert_array_equal(x, y)
    assert shift_dtype(127) == np.int8 and shift_dtype(128) == np.int16
    assert shift_dtype(40000, torch_dtype=True) == torch.int32


def test_invalidate_and_take_pairs():
    """invalidate() forces a rebuild without motion; take_pairs() hands the arrays over and releases
    them, while the list still decides rebuilds from the positions."""
    from dpqtb.structures.lah10 import fm3m

    atoms = fm3m(4.9)
    pos, cell = torch.tensor(atoms.positions), torch.tensor(atoms.cell.array)
    vl = VerletList(3.0, 0.5, full=True)
    vl.update(pos, cell, (True, True, True))
    i, j, s = vl.take_pairs()
    assert vl.i is None and len(i) == len(j) == len(s) > 0
    vl.update(pos, cell, (True, True, True))
    assert vl.n_builds == 1 and vl.i is None  # nothing moved: no rebuild
    vl.invalidate()
    vl.update(pos, cell, (True, True, True))
    assert vl.n_builds == 2
    for x, y in zip((i, j, s), (vl.i, vl.j, vl.shifts)):
        assert torch.equal(x, y)


@pytest.mark.parametrize("full", [True, False])
def test_list_stays_complete_while_the_cell_changes(full):
    """A barostat changes the cell every step: the list is kept while the strain-aware bound says no pair
    closer than the cutoff can be missing, and every pair of the brute-force enumeration at the current
    positions and cell is then in it (shifts relative to the same unwrapped positions); it is rebuilt far
    less often than every step, and at once after a strain larger than the skin allows."""
    rng = np.random.default_rng(7)
    pos, cell = _triclinic(rng, 24, 7.0, unwrap=0.6)
    rc, skin = 2.6, 0.5
    vl = VerletList(rc, skin, full=full)
    pbc = (True, True, True)
    frac = pos @ np.linalg.inv(cell)
    n_steps = 120
    for step in range(n_steps):
        # isotropic breathing (±1.5 %) plus a small shear, and a random walk of the fractional positions
        strain = 0.015 * np.sin(step / 9.0) * np.eye(3) + 0.004 * np.sin(step / 5.0) * np.array(
            [[0.0, 1.0, 0.0], [1.0, 0.0, 0.3], [0.0, 0.3, 0.0]])
        h = cell @ (np.eye(3) + strain)
        frac = frac + rng.normal(0.0, 0.002, frac.shape)
        x = frac @ h
        vl.update(torch.tensor(x), torch.tensor(h), pbc)
        listed = {tuple(r) for r in _listed(vl)}
        exact = {tuple(r) for r in _brute_force(x, h, pbc, rc, full)}
        assert exact <= listed, f"step {step}: {len(exact - listed)} pairs within the cutoff are missing"
    assert 1 < vl.n_builds < n_steps // 3, vl.n_builds
    # a compression the skin covers keeps the list (pairs left out at >= rc + skin = 3.1 Å come to >= 2.95 Å
    # at 5 %, minus the motion since the build), one beyond it rebuilds (3.1 Å -> 2.48 Å < rc at 20 %)
    n = vl.n_builds
    vl.update(torch.tensor(frac @ (0.95 * h)), torch.tensor(0.95 * h), pbc)
    assert vl.n_builds == n
    vl.update(torch.tensor(frac @ (0.8 * h)), torch.tensor(0.8 * h), pbc)
    assert vl.n_builds == n + 1
    assert {tuple(r) for r in _brute_force(frac @ (0.8 * h), 0.8 * h, pbc, rc, full)} <= {tuple(r) for r in _listed(vl)}
    # a singular cell (a zero vector) is not inverted: any change rebuilds
    vl2 = VerletList(rc, skin, full=full)
    flat = np.array([[7.0, 0.0, 0.0], [0.0, 7.0, 0.0], [0.0, 0.0, 0.0]])
    xs = torch.tensor(rng.random((5, 3)) * [7.0, 7.0, 0.0])
    vl2.update(xs, torch.tensor(flat), (True, True, False))
    vl2.update(xs, torch.tensor(flat * 1.001), (True, True, False))
    assert vl2.n_builds == 2
