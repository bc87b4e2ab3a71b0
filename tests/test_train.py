"""Training set-up: the held-out split, neighbour statistics behind sel, the DeePMD-kit input and
the config/CLI errors (no training here; see test_train_validate.py for the end-to-end run)."""

import hashlib
import itertools
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from dpqtb import DpqtbError
from dpqtb.cli import main
from dpqtb.structures.lah10 import fm3m
from dpqtb.train import config as tconfig
from dpqtb.train.dataset import (dataset_version, is_test_frame, prepare_dataset, read_manifest,
                                 split_frames)
from dpqtb.train.sel import neighbour_counts, sel_from_max, sel_statistics

from _train_helpers import lj_store, tiny_config


def _ids(n, salt="x"):
    return [hashlib.sha1(f"{salt}{k}".encode()).hexdigest()[:16] for k in range(n)]


# ---------------------------------------------------------------------------------------------
# split


def test_split_is_deterministic_and_stable_when_frames_are_added():
    frames = [{"id": i} for i in _ids(3000)]
    train1, test1 = split_frames(frames[:1000])
    train2, test2 = split_frames(list(reversed(frames)))  # more frames, other order
    # every frame keeps its side of the split
    side2 = {fr["id"]: "test" for fr in test2} | {fr["id"]: "train" for fr in train2}
    assert all(side2[fr["id"]] == "test" for fr in test1)
    assert all(side2[fr["id"]] == "train" for fr in train1)
    assert split_frames(frames[:1000]) == (train1, test1)
    # the rule itself, and its ~10 % rate (binomial, 4 sigma)
    assert all((int(fr["id"], 16) % 10 == 0) for fr in test2)
    n, k = len(frames), len(test2)
    assert abs(k - 0.1 * n) < 4 * math.sqrt(n * 0.1 * 0.9)
    # duplicate ids (the same configuration in two stores) are kept once
    tr, te = split_frames(frames[:50] + frames[:50])
    assert len(tr) + len(te) == 50


def test_dataset_version_is_the_hash_of_the_sorted_training_ids():
    ids = _ids(20)
    assert dataset_version(ids) == dataset_version(list(reversed(ids)))
    assert dataset_version(ids) == hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]
    assert dataset_version(ids) != dataset_version(ids[:-1])


def test_bad_ids_and_modulus():
    with pytest.raises(DpqtbError, match="hexadecimal"):
        is_test_frame("not-hex")
    with pytest.raises(DpqtbError, match="test_modulus"):
        is_test_frame("ab", 1)


def test_prepare_dataset_grows_without_moving_frames(tmp_path):
    store = lj_store(tmp_path / "store", n=12)
    m1 = prepare_dataset([store.root], tmp_path / "d1", test_modulus=3)
    lj_store(tmp_path / "store", n=6, start=12)  # six more labelled frames
    m2 = prepare_dataset([store.root], tmp_path / "d2", test_modulus=3)
    assert set(m1["train"]["ids"]) <= set(m2["train"]["ids"])
    assert set(m1["test"]["ids"]) <= set(m2["test"]["ids"])
    assert m2["train"]["frames"] + m2["test"]["frames"] == 18
    assert m1["dataset_version"] != m2["dataset_version"]
    assert read_manifest(tmp_path / "d2")["dataset_version"] == m2["dataset_version"]
    assert m2["dataset_version"] == dataset_version(m2["train"]["ids"])
    for part in ("train", "test"):
        nat = sum(np.load(p).shape[0] for p in (tmp_path / "d2" / part).rglob("energy.npy"))
        assert nat == m2[part]["frames"]
    # the labels' DFT settings, counted (the helper labels with CHEAP: 200 eV, k spacing 10/Å, σ 0.1 eV)
    assert m2["train"]["by_dft_settings"] == {"PBE 200.0 eV k 10.0/Å σ 0.1 eV": m2["train"]["frames"]}


def test_prepare_dataset_errors(tmp_path):
    with pytest.raises(DpqtbError, match="no job store"):
        prepare_dataset([tmp_path / "missing"], tmp_path / "d")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DpqtbError, match="no labelled frames"):
        prepare_dataset([tmp_path / "empty"], tmp_path / "d")


# ---------------------------------------------------------------------------------------------
# neighbour statistics


def _brute_force_counts(atoms, rcut):
    """Neighbour counts by explicit enumeration of lattice translations (no neighbour list)."""
    cell = atoms.cell.array
    pos = atoms.positions
    nrep = [int(math.ceil(rcut / (abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3]))))) + 1
            for k in range(3)]
    shifts = np.array(list(itertools.product(*[range(-n, n + 1) for n in nrep]))) @ cell
    types = np.array([0 if s == "La" else 1 for s in atoms.get_chemical_symbols()])
    counts = np.zeros((len(atoms), 2), dtype=int)
    for i in range(len(atoms)):
        d = np.linalg.norm(pos[None, :, :] + shifts[:, None, :] - pos[i], axis=2)  # (S, N)
        inside = (d < rcut) & (d > 1e-8)
        for t in (0, 1):
            counts[i, t] = int(inside[:, types == t].sum())
    return counts


@pytest.mark.parametrize("a_A,rcut_A", [(4.75, 6.0), (5.1, 6.0), (4.75, 4.0)])
def test_neighbour_counts_exact_on_fm3m(a_A, rcut_A):
    prim, conv = fm3m(a_A, "primitive"), fm3m(a_A, "conventional")
    c_prim = neighbour_counts(prim.get_chemical_symbols(), prim.positions, prim.cell.array, rcut_A)
    np.testing.assert_array_equal(c_prim, _brute_force_counts(prim, rcut_A))
    # the counts are a property of the crystal, not of the cell used to describe it
    c_conv = neighbour_counts(conv.get_chemical_symbols(), conv.positions, conv.cell.array, rcut_A)
    assert c_conv.max(axis=0).tolist() == c_prim.max(axis=0).tolist()
    # La around La: the fcc coordination shells 12, 6, 24, 12, 24 at a·sqrt(n/2), n = 1..5
    shells = [12, 6, 24, 12, 24]
    expected = sum(m for n, m in enumerate(shells, 1) if a_A * math.sqrt(n / 2) < rcut_A)
    assert c_prim[0, 0] == expected


def test_sel_rule():
    assert sel_from_max([42, 356], 0.10) == [48, 392]
    assert sel_from_max([40, 40], 0.10) == [44, 44]  # 44.000…01 in floating point stays 44
    assert sel_from_max([41, 1], 0.0) == [44, 4]
    with pytest.raises(DpqtbError):
        sel_from_max([10], -0.1)


def test_sel_statistics_reference_cell_at_300_GPa():
    stats = sel_statistics([], 6.0, 0.10, reference_a_A=4.75)
    ref = fm3m(4.75, "primitive")
    bf = _brute_force_counts(ref, 6.0).max(axis=0)
    assert stats["max_neighbours"] == {"La": int(bf[0]), "H": int(bf[1])}
    assert stats["sel"] == sel_from_max(bf, 0.10)
    # the density estimate the issue quotes (~32 La, ~300 H within 6 Å) is the mean
    mean = stats["groups"]["fm3m_a4.75A"]["mean_neighbours"]
    n_la = 4 / 4.75**3 * 4 / 3 * math.pi * 6.0**3
    assert mean["La"] == pytest.approx(n_la, rel=0.1) and mean["H"] == pytest.approx(10 * n_la, rel=0.1)
    with pytest.raises(DpqtbError, match="no structures"):
        sel_statistics([], 6.0, 0.1, reference_a_A=None)


# ---------------------------------------------------------------------------------------------
# DeePMD-kit input and config


def test_generated_input_passes_deepmd_argcheck_and_members_differ_by_seed_only():
    cfg = tconfig.validate({})
    inputs = [tconfig.deepmd_input(cfg, [48, 392], k, ["../data/train/La1H10"]) for k in range(4)]
    for jd in inputs:
        norm = tconfig.check_with_deepmd(jd)
        assert norm["model"]["descriptor"]["sel"] == [48, 392]
        assert norm["model"]["descriptor"]["rcut"] == 6.0
        assert norm["model"]["type_map"] == ["La", "H"]

    def strip(jd):
        jd = json.loads(json.dumps(jd))
        for sect in (jd["model"]["descriptor"], jd["model"]["fitting_net"], jd["training"]):
            sect.pop("seed")
        return jd

    assert all(strip(jd) == strip(inputs[0]) for jd in inputs)
    assert len({jd["training"]["seed"] for jd in inputs}) == 4


def test_deepmd_argcheck_rejects_a_bad_input():
    cfg = tconfig.validate({})
    jd = tconfig.deepmd_input(cfg, [48, 392], 0, ["x"])
    jd["model"]["descriptor"]["no_such_key"] = 1
    with pytest.raises(DpqtbError, match="DeePMD-kit rejects"):
        tconfig.check_with_deepmd(jd)


def test_generated_input_validates_on_the_held_out_split_only():
    cfg = tconfig.validate({})
    test_sys = ["../data/test/La1H10", "../data/test/La4H40"]
    jd = tconfig.deepmd_input(cfg, [48, 392], 0, ["../data/train/La1H10"], test_sys, 3)
    norm = tconfig.check_with_deepmd(jd)
    assert norm["training"]["validation_data"]["systems"] == test_sys
    assert norm["training"]["validation_data"]["numb_btch"] == 3
    assert norm["training"]["validation_data"]["batch_size"] == "auto"
    assert norm["training"]["training_data"]["systems"] == ["../data/train/La1H10"]
    assert not norm.get("validating", {}).get("full_validation")  # no checkpoint chosen on the test split
    # no test split (tiny data sets): no validation_data
    for empty in (None, []):
        assert "validation_data" not in tconfig.deepmd_input(cfg, [48, 392], 0, ["x"], empty)["training"]


def test_train_gives_deepmd_the_test_split_as_validation_data(tmp_path, monkeypatch):
    from dpqtb.train import runner

    store = lj_store(tmp_path / "store", n=16)
    cfg = tiny_config(tmp_path / "tiny.toml", store.root)
    seen = {}
    monkeypatch.setattr(runner, "dp_executable", lambda: "dp")
    monkeypatch.setattr(runner, "train_member", lambda mdir, jdata, *a, **k: seen.update({mdir.name: jdata}))
    out = tmp_path / "out"
    runner.train(cfg, out, progress=False, log=lambda *a: None)
    manifest = read_manifest(out / "data")
    assert manifest["test"]["frames"] >= 1
    training = seen["model_0"]["training"]
    valid = training["validation_data"]
    assert valid["numb_btch"] == min(manifest["test"]["frames"], runner.VALID_BATCHES_MAX)
    # seen from the member's directory, the validation systems are the exported test split
    mdir = out / "model_0"
    resolved = sorted((mdir / s).resolve() for s in valid["systems"])
    assert resolved == sorted(p.parent.resolve() for p in (out / "data" / "test").rglob("type.raw"))
    n_val = sum(len(np.load(p)) for s in resolved for p in s.rglob("energy.npy"))
    assert n_val == manifest["test"]["frames"]
    assert all((mdir / s).resolve().parent == (out / "data" / "train").resolve()
               for s in training["training_data"]["systems"])
    # an empty test split: validation_data is left out
    empty = tmp_path / "empty.toml"
    empty.write_text(cfg.read_text().replace("test_modulus = 3", "test_modulus = 9223372036854775807"))
    seen.clear()
    runner.train(empty, tmp_path / "out2", progress=False, log=lambda *a: None)
    assert read_manifest(tmp_path / "out2" / "data")["test"]["frames"] == 0
    assert "validation_data" not in seen["model_0"]["training"]


def test_lcurve_validation_columns_reach_the_metrics(tmp_path):
    """lcurve.out as DeePMD-kit 3.2 writes it with validation data (its own print_header)."""
    from deepmd.pt.train.training import Trainer

    from dpqtb.train import runner

    trn = {"rmse": 3.0, "rmse_e": 0.02, "rmse_f": 0.3, "rmse_v": 0.01}
    val = {"rmse": 4.0, "rmse_e": 0.05, "rmse_f": 0.4, "rmse_v": 0.03}
    fake = SimpleNamespace(multi_task=False)
    mdir = tmp_path / "model_0"
    mdir.mkdir()
    with open(mdir / "lcurve.out", "w") as fout:
        Trainer.print_header(fake, fout, trn, val)
        for step in (0, 10):
            Trainer.print_on_training(fake, fout, step, 1e-3, trn, val)
    lc = runner.read_lcurve(mdir / "lcurve.out")
    assert {"rmse_e_val", "rmse_e_trn", "rmse_f_val", "rmse_f_trn", "rmse_v_val", "rmse_v_trn"} <= set(lc)
    assert lc["step"] == [0, 10] and lc["rmse_f_val"] == [0.4, 0.4] and lc["rmse_f_trn"] == [0.3, 0.3]
    manifest = {"dataset_version": "v", "train": {"frames": 9}, "test": {"frames": 2}, "stores": []}
    m = runner._metrics(mdir, {}, tconfig.validate({}), {}, manifest, 0, {"sessions": []}, 1.0, None)
    assert m["lcurve_final"] == {"step": 10, "lr": 1e-3, "rmse_e_trn_eV_per_atom": 0.02,
                                 "rmse_f_trn_eV_per_A": 0.3, "rmse_v_trn_eV_per_atom": 0.01,
                                 "rmse_e_val_eV_per_atom": 0.05, "rmse_f_val_eV_per_A": 0.4,
                                 "rmse_v_val_eV_per_atom": 0.03}


def test_member_started_without_validation_data_keeps_its_input(tmp_path):
    """Output directories from before validation_data: finished members are skipped, not refused."""
    from dpqtb.train import runner

    cfg = tconfig.validate({})
    old = tconfig.deepmd_input(cfg, [48, 392], 0, ["../data/train/La1H10"])
    new = tconfig.deepmd_input(cfg, [48, 392], 0, ["../data/train/La1H10"], ["../data/test/La1H10"], 2)
    mdir = tmp_path / "model_0"
    mdir.mkdir()
    (mdir / "input.json").write_text(json.dumps(old))
    (mdir / "metrics.json").write_text(json.dumps({"status": "done", "input": old}))
    for name in ("frozen_model.pth", "compressed_model.pth"):
        (mdir / name).write_bytes(b"x")
    msgs = []
    m = runner.train_member(mdir, new, cfg, {}, {}, member=0, progress=False, log=msgs.append)
    assert m["input"] == old and json.loads((mdir / "input.json").read_text()) == old
    assert "without validation_data" in msgs[0] and "done, skipped" in msgs[-1]
    changed = json.loads(json.dumps(new))
    changed["training"]["numb_steps"] += 1
    with pytest.raises(DpqtbError, match="different DeePMD-kit input"):
        runner.train_member(mdir, changed, cfg, {}, {}, member=0, progress=False, log=msgs.append)


@pytest.mark.parametrize("raw,match", [
    ({"descriptor": {"rcut": 6.0}}, "unknown training config key 'descriptor.rcut'"),
    ({"optimizer": {}}, "unknown training config section"),
    ({"training": {"numb_steps": "many"}}, "'training.numb_steps' has the wrong type"),
    ({"training": {"numb_steps": 0}}, "'training.numb_steps' = 0"),
    ({"descriptor": {"rcut_smth_A": 6.5}}, "rcut_smth_A"),
    ({"descriptor": {"sel": [10]}}, "descriptor.sel"),
    ({"learning_rate": {"stop_lr": 1.0}}, "stop_lr"),
])
def test_config_errors(raw, match):
    with pytest.raises(DpqtbError, match=match):
        tconfig.validate(raw)


def test_cli_errors_are_one_line(tmp_path, capsys):
    cases = []
    assert main(["train", str(tmp_path / "none.toml"), "--out", str(tmp_path / "o")]) == 2
    cases.append("not found")
    bad = tmp_path / "bad.toml"
    bad.write_text("[training]\nnumb_step = 10\n")
    assert main(["train", str(bad), "--out", str(tmp_path / "o")]) == 2
    cases.append("training.numb_step")
    (tmp_path / "empty_store").mkdir()
    empty = tmp_path / "empty.toml"
    empty.write_text(f'[data]\nstores = ["{tmp_path / "empty_store"}"]\n')
    assert main(["train", str(empty), "--out", str(tmp_path / "o")]) == 2
    cases.append("no labelled frames")
    missing = tmp_path / "missing.toml"
    missing.write_text('[data]\nstores = ["no/such/store"]\n')
    assert main(["train", str(missing), "--out", str(tmp_path / "o")]) == 2
    cases.append("no job store")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == len(cases)
    for line, what in zip(err, cases):
        assert line.startswith("dpqtb: error: ") and what in line


def test_example_config_is_valid():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "train_lah10.toml"
    cfg = tconfig.load(path)
    assert cfg == {**tconfig.validate({}), "data": cfg["data"]}  # the example states the defaults
    assert cfg["data"]["stores"][0].endswith("data/labels/round0")


def test_table1_distances_reproduce_the_papers_dft_column():
    """At the paper's a and x (x from its H–H² bond) the labels ¹/² map onto the right pairs."""
    from dpqtb.structures.lah10 import X32F_DEFAULT
    from dpqtb.train.validate import PAPER, fm3m_distances

    d = fm3m_distances(4.749, X32F_DEFAULT)
    for key, ref in PAPER["table1_dft"].items():
        assert d[key] == pytest.approx(ref, abs=2e-4), key
    # closed forms: La–La = a/√2, La–H² = a√3/4, H–H² = √3(x − 1/4)a
    a, x = 4.9, 0.381
    d = fm3m_distances(a, x)
    assert d["La-La_A"] == pytest.approx(a / math.sqrt(2), rel=1e-12)
    assert d["La-H2_A"] == pytest.approx(a * math.sqrt(3) / 4, rel=1e-12)
    assert d["H-H2_A"] == pytest.approx(math.sqrt(3) * (x - 0.25) * a, rel=1e-12)
