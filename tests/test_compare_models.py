"""Paired model comparison of `dpqtb validate --compare` (dpqtb.train.validate.compare_models) on
synthetic models whose errors are known exactly: no DeePMD-kit needed."""

import numpy as np
import pytest

from dpqtb import DpqtbError
from dpqtb.train import validate as V
from dpqtb.train.validate import compare_models, per_frame_errors


def _systems(rng, sizes=(11, 44), frames=(5, 7)):
    out = []
    for n, nf in zip(sizes, frames):
        out.append({"symbols": np.array(["La"] * (n // 11) + ["H"] * (n - n // 11)),
                    "coords_A": rng.uniform(0, 5, (nf, n, 3)), "cells_A": np.tile(5 * np.eye(3), (nf, 1, 1)),
                    "energy_eV": rng.normal(-100, 5, nf), "forces_eV_per_A": rng.normal(0, 2, (nf, n, 3)),
                    "virial_eV": None})
    return out


class Shifted:
    """DFT labels plus a fixed error pattern scaled by ``k`` (forces) and ``ke`` (energies)."""

    type_map = ["La", "H"]

    def __init__(self, systems, df, de, k=1.0, ke=1.0):
        self._by_id = {id(s["coords_A"]): (s, d, e) for s, d, e in zip(systems, df, de)}
        self.k, self.ke = k, ke

    def evaluate(self, symbols, coords, cells):
        s, d, e = self._by_id[id(coords)]
        return s["energy_eV"] + self.ke * e, s["forces_eV_per_A"] + self.k * d, np.zeros((len(e), 3, 3))


def test_exact_ratios_and_degenerate_intervals():
    rng = np.random.default_rng(1)
    sy = _systems(rng)
    df = [rng.normal(0, 0.3, s["forces_eV_per_A"].shape) for s in sy]
    de = [rng.normal(0, 0.05, len(s["energy_eV"])) for s in sy]
    a, b = Shifted(sy, df, de), Shifted(sy, df, de, k=2.0, ke=3.0)
    ea, eb = per_frame_errors(a, sy), per_frame_errors(b, sy)
    # per-frame sums reproduce test_errors' pooled RMSEs
    m = V.test_errors(a, sy)["metrics"]
    assert np.sqrt(ea["sq_f"].sum() / ea["n_f"].sum()) == pytest.approx(m["rmse_f_eV_per_A"], rel=1e-12)
    assert 1000 * np.sqrt(np.mean(ea["de"] ** 2)) == pytest.approx(m["rmse_e_meV_per_atom"], rel=1e-12)
    c = compare_models({"a": ea, "b": eb, "a2": per_frame_errors(a, sy)}, n_boot=500)
    ab, aa = c["pairs"]["a vs b"], c["pairs"]["a vs a2"]
    assert c["frames"] == 12
    # b's errors are exactly 2x (forces) and 3x (energies) a's on every frame: every resample has the same ratio
    assert ab["rmse_f_ratio"] == pytest.approx(0.5, rel=1e-12)
    assert ab["rmse_f_ratio_ci95"] == pytest.approx([0.5, 0.5], rel=1e-12)
    assert ab["rmse_e_ratio"] == pytest.approx(1 / 3, rel=1e-12)
    assert ab["rmse_e_ratio_ci95"] == pytest.approx([1 / 3, 1 / 3], rel=1e-12)
    assert ab["frames_first_lower_f"] == 12 and ab["verdict_f"] == "lower"
    assert aa["rmse_f_ratio_ci95"] == pytest.approx([1, 1], rel=1e-12)
    assert aa["frames_first_lower_f"] == 0 and aa["verdict_f"] == "not distinguishable"
    assert c["rmse_f_eV_per_A"]["b"] == pytest.approx(2 * c["rmse_f_eV_per_A"]["a"], rel=1e-12)
    rev = compare_models({"b": eb, "a": ea}, n_boot=200)["pairs"]["b vs a"]
    assert rev["rmse_f_ratio"] == pytest.approx(2.0) and rev["verdict_f"] == "higher"


def test_pairing_removes_frame_difficulty():
    """Frames differ 10x in difficulty; model b is 1.25x worse than a on each with independent noise.
    The paired interval must exclude 1, while resampling each model's frames independently (the
    unpaired bootstrap, computed here for contrast) cannot tell them apart."""
    rng = np.random.default_rng(7)
    nf, ncomp = 40, 132
    scale = np.geomspace(0.05, 0.5, nf)
    sq = lambda k: (k * scale[:, None] * rng.normal(size=(nf, ncomp))) ** 2  # noqa: E731
    ea = {"sq_f": sq(1.0).sum(1), "n_f": np.full(nf, ncomp), "de": 1e-3 * rng.normal(size=nf)}
    eb = {"sq_f": sq(1.25).sum(1), "n_f": np.full(nf, ncomp), "de": 1e-3 * rng.normal(size=nf)}
    r = compare_models({"a": ea, "b": eb}, n_boot=4000, seed=3)["pairs"]["a vs b"]
    assert r["rmse_f_ratio"] == pytest.approx(0.8, abs=0.05)
    assert r["rmse_f_ratio_ci95"][1] < 1 and r["verdict_f"] == "lower"
    i, j = rng.integers(0, nf, (2, 4000, nf))
    unpaired = np.sqrt(ea["sq_f"][i].sum(1) / eb["sq_f"][j].sum(1))
    assert np.quantile(unpaired, 0.975) > 1 > np.quantile(unpaired, 0.025)


def test_bad_input():
    e = {"sq_f": np.ones(3), "n_f": np.full(3, 6), "de": np.zeros(3)}
    with pytest.raises(DpqtbError, match="at least two"):
        compare_models({"a": e})
    with pytest.raises(DpqtbError, match="same frames"):
        compare_models({"a": e, "b": {"sq_f": np.ones(2), "n_f": np.full(2, 6), "de": np.zeros(2)}})


def test_model_test_modulus_from_card_or_manifest(tmp_path):
    """The split a model was trained with is read from a shipped model's card or from the manifest of
    the `dpqtb train` folder it lies in; validating on job stores with another modulus is refused."""
    import json

    from dpqtb.potential.builtin import resolve

    assert V.model_test_modulus(resolve("builtin:lah10")) == 10
    mdir = tmp_path / "train" / "model_0"
    mdir.mkdir(parents=True)
    (tmp_path / "train" / "data").mkdir()
    (tmp_path / "train" / "data" / "manifest.json").write_text(json.dumps({"test_modulus": 3}))
    (mdir / "frozen_model.pth").write_bytes(b"x")
    assert V.model_test_modulus(mdir / "frozen_model.pth") == 3
    assert V.model_test_modulus(tmp_path / "elsewhere.pth") is None
    store = tmp_path / "store"
    (store / "jobs").mkdir(parents=True)

    class Stub:
        type_map = ["La", "H"]

    with pytest.raises(DpqtbError, match="trained with test_modulus 3, not 10"):
        V.validate(mdir / "frozen_model.pth", [store], tmp_path / "out", evaluator=Stub())


def test_model_train_ids_from_card_checked_against_dataset_version(tmp_path):
    """The shipped card lists the frames its model was trained on; they must hash to its dataset
    version (a hand-edited list is refused), and a card without them leaves the ids unknown."""
    import json

    from dpqtb.potential.builtin import resolve
    from dpqtb.train.dataset import dataset_version

    path = resolve("builtin:lah10")
    card = json.loads(path.with_suffix(".json").read_text())
    ids = V.model_train_ids(path)
    assert len(ids) == card["source"]["train_frames"]
    assert dataset_version(ids) == card["source"]["dataset_version"]
    fake = tmp_path / "m.pth"
    fake.write_bytes(b"x")
    card["source"]["train_ids"] = sorted(ids)[1:]
    fake.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(DpqtbError, match="do not hash to its dataset version"):
        V.model_train_ids(fake)
    del card["source"]["train_ids"]
    fake.with_suffix(".json").write_text(json.dumps(card))
    assert V.model_train_ids(fake) is None and V.model_test_modulus(fake) == 10


def _errors(rng, nf, scale=1.0):
    return {"sq_f": rng.gamma(2.0, scale, nf), "n_f": np.full(nf, 33), "de": rng.normal(0, 0.01, nf)}


def test_group_bootstrap_reduces_to_frames_and_counts_groups_not_frames():
    rng = np.random.default_rng(3)
    ea, eb = _errors(rng, 15), _errors(rng, 15, 1.3)
    plain = compare_models({"a": ea, "b": eb}, n_boot=400)
    # one group per frame, labels sorted like the frames: the very same resamples
    single = compare_models({"a": ea, "b": eb}, groups=[f"{i:02d}" for i in range(15)], n_boot=400)
    assert single["pairs"] == plain["pairs"] and single["groups"] == 15
    # every frame repeated 4 times in one group (4 candidates of one run with identical errors):
    # each resample's RMSE equals that of the same draw over the distinct frames, so the interval
    # equals the one-frame-per-run interval exactly, while resampling the 60 frames one by one
    # would shrink it by about 1/sqrt(4)
    rep = {k: np.repeat(v, 4) for k, v in ea.items()}, {k: np.repeat(v, 4) for k, v in eb.items()}
    labels = np.repeat([f"run{i:02d}" for i in range(15)], 4)
    grouped = compare_models({"a": rep[0], "b": rep[1]}, groups=labels, n_boot=400)
    assert grouped["frames"] == 60 and grouped["groups"] == 15 and grouped["resampled"] == "groups"
    for key in ("rmse_f_ratio", "rmse_f_ratio_ci95", "rmse_e_ratio", "rmse_e_ratio_ci95"):
        assert grouped["pairs"]["a vs b"][key] == pytest.approx(plain["pairs"]["a vs b"][key], rel=1e-12)
    naive = compare_models({"a": rep[0], "b": rep[1]}, n_boot=400)["pairs"]["a vs b"]["rmse_f_ratio_ci95"]
    g = grouped["pairs"]["a vs b"]["rmse_f_ratio_ci95"]
    assert naive[1] - naive[0] < 0.75 * (g[1] - g[0])
    # a single group: every resample is the whole set
    one = compare_models({"a": ea, "b": eb}, groups=["x"] * 15, n_boot=50)["pairs"]["a vs b"]
    assert one["rmse_f_ratio_ci95"] == pytest.approx([one["rmse_f_ratio"]] * 2, rel=1e-12)
    with pytest.raises(DpqtbError, match="14 group labels for 15 frames"):
        compare_models({"a": ea, "b": eb}, groups=["x"] * 14)


def test_frame_groups_follow_the_export(tmp_path):
    """frame_groups maps every frame of a dpqtb deepmd/npy export back to its job metadata: frames
    of one exploration run share a label, the rest are their own."""
    from dpqtb.data.export import export_deepmd_npy
    from dpqtb.structures.lah10 import fm3m
    from dpqtb.train.dataset import read_systems

    rng = np.random.default_rng(0)
    frames, runs = [], [None, "A", "B", "A", None, "B", "A"]
    for n, run in enumerate(runs):
        a = fm3m(4.9, "primitive" if n % 2 else "conventional")
        a.positions += rng.normal(size=a.positions.shape) * 0.05
        meta = {"explore_run": run, "explore_dir": "work/x"} if run else {}
        frames.append({"id": f"{n:016x}", "symbols": a.get_chemical_symbols(),
                       "cell_A": a.cell.array.tolist(), "positions_A": a.positions.tolist(),
                       "pbc": [True] * 3, "settings": {}, "meta": meta, "energy_eV": float(n),
                       "forces_eV_per_A": np.zeros((len(a), 3)).tolist(),
                       "stress_eV_per_A3": np.zeros((3, 3)).tolist(), "pressure_GPa": 0.0})
    export_deepmd_npy(frames, tmp_path / "npy")
    systems = read_systems(tmp_path / "npy", type_map=None)
    groups = V.frame_groups(tmp_path / "npy", systems)
    energies = np.concatenate([s["energy_eV"] for s in systems])  # energy n marks frame n
    want = [f"work/x/{runs[int(e)]}" if runs[int(e)] else f"{int(e):016x}" for e in energies]
    assert groups == want and len(set(groups)) == 4
    (tmp_path / "npy" / "provenance.json").unlink()
    assert V.frame_groups(tmp_path / "npy", systems) is None


def test_subset_errors_exact():
    """Per-subset energy RMSE, signed mean (DP − DFT) and force RMSE from the per-frame arrays of
    test_errors, against hand-computed values; frames without meta fall in 'unknown'."""
    arrays = {"e_dft": np.array([1.0, 1.0, 2.0, 3.0]), "e_dp": np.array([1.002, 0.998, 2.004, 3.0]),
              "frame_natoms": np.array([11, 11, 44, 44]), "frame_sq_f": np.array([3.0, 1.0, 8.0, 0.0]),
              "frame_n_f": np.array([33, 33, 132, 132])}
    metas = [{"kind": "thermal", "phase": "C2"}, {"kind": "thermal"}, {"kind": "thermal", "phase": "C2"}, {}]
    parts = V.subset_labels(arrays, metas)
    assert parts == {"cell size, kind": ["11 atoms, thermal", "11 atoms, thermal", "44 atoms, thermal",
                                         "44 atoms, unknown"],
                     "phase": ["C2", "unknown", "C2", "unknown"]}
    by = V.subset_errors(arrays, parts["cell size, kind"])
    r = by["11 atoms, thermal"]
    assert r["frames"] == 2 and r["mean_e_meV_per_atom"] == pytest.approx(0.0, abs=1e-9)
    assert r["rmse_e_meV_per_atom"] == pytest.approx(2.0) and r["rmse_f_eV_per_A"] == pytest.approx(np.sqrt(4 / 66))
    ph = V.subset_errors(arrays, parts["phase"])
    assert ph["C2"]["mean_e_meV_per_atom"] == pytest.approx(3.0) and ph["C2"]["rmse_e_meV_per_atom"] == pytest.approx(np.sqrt(10))
    assert ph["C2"]["rmse_f_eV_per_A"] == pytest.approx(np.sqrt(11 / 165))
    assert ph["unknown"]["mean_e_meV_per_atom"] == pytest.approx(-1.0)
    assert V.subset_labels(arrays, None)["phase"] == ["unknown"] * 4
