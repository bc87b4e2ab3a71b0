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
