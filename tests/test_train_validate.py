"""End to end: `dpqtb train` on a small synthetic (Lennard-Jones) labelled set with a tiny network —
interrupted and resumed from its checkpoint —, freeze, compress, then `dpqtb validate`, whose
RMSEs must equal an independent numpy computation from DeepPot.eval.  ~1 minute on 2 cores."""

import json
from pathlib import Path

import numpy as np
import pytest

from dpqtb import DpqtbError
from dpqtb.cli import main
from dpqtb.dft.store import JobStore, atomic_write_json
from dpqtb.train import runner
from dpqtb.train.runner import read_lcurve, train
from dpqtb.train import validate as V
from dpqtb.train.validate import DeepPotentialEvaluator, validate

from _train_helpers import lj_store, tiny_config

pytest.importorskip("deepmd")
STEPS = 60


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train one tiny member, interrupting it after its first checkpoint, then resume."""
    root = tmp_path_factory.mktemp("train")
    store = lj_store(root / "store", n=16)
    cfg = tiny_config(root / "tiny.toml", store.root, steps=STEPS, disp=5, save=10, compress=True)
    out = root / "out"
    mdir = out / "model_0"
    mp = pytest.MonkeyPatch()
    mp.setattr(runner, "POLL_S", 0.05)

    def interrupt(step):
        if step >= 10 and (mdir / "model.ckpt.pt").exists():
            raise KeyboardInterrupt

    first_state = None
    try:
        with pytest.raises(KeyboardInterrupt):
            train(cfg, out, progress=False, log=lambda *a: None, on_step=interrupt)
        first_state = {"frozen": (mdir / "frozen_model.pth").exists(),
                       "checkpoint_step": int((mdir / "model.ckpt.pt").resolve().stem.split("-")[-1]),
                       "lcurve_last": int(read_lcurve(mdir / "lcurve.out")["step"][-1]),
                       "state": json.loads((mdir / "state.json").read_text())}
        train(cfg, out, progress=False, log=lambda *a: None)
    finally:
        mp.undo()
    return {"root": root, "store": store, "cfg": cfg, "out": out, "mdir": mdir, "first": first_state}


def test_restart_after_interrupt_resumes_from_checkpoint(trained):
    first, mdir = trained["first"], trained["mdir"]
    assert not first["frozen"]
    assert 10 <= first["lcurve_last"] < STEPS
    assert first["state"]["sessions"][0]["completed"] is False
    sessions = json.loads((mdir / "state.json").read_text())["sessions"]
    assert [s["restart"] for s in sessions] == [False, True]
    assert sessions[1]["from_step"] >= 10 and sessions[1]["to_step"] == STEPS
    import re

    # from the newest numbered checkpoint of the interrupted session (the checkpoint step the resume starts at)
    restart = re.search(r"--restart model\.ckpt-(\d+)\.pt", (mdir / "train.log").read_text())
    assert restart and int(restart.group(1)) == first["checkpoint_step"]
    # the resumed session continues from the checkpoint's step, not from step 1
    text = (mdir / "lcurve.out").read_text().splitlines()
    headers = [k for k, ln in enumerate(text) if ln.startswith("# step")]
    assert len(headers) == 2
    first_resumed = int(text[headers[1] + 1 + (1 if text[headers[1] + 1].startswith("#") else 0)].split()[0])
    assert first_resumed == first["checkpoint_step"] >= 10
    # finished member: rerunning does nothing
    msgs = []
    train(trained["cfg"], trained["out"], progress=False, log=msgs.append)
    assert any("done, skipped" in m for m in msgs)


def test_training_outputs_and_metrics(trained):
    out, mdir = trained["out"], trained["mdir"]
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    metrics = json.loads((mdir / "metrics.json").read_text())
    assert metrics["dataset_version"] == manifest["dataset_version"]
    assert metrics["input"] == json.loads((mdir / "input.json").read_text())
    assert metrics["input"]["model"]["descriptor"]["sel"] == metrics["sel_statistics"]["sel_used"]
    assert metrics["codes"]["deepmd"] and metrics["wall_s"]["train"] > 0
    assert metrics["lcurve_final"]["step"] == STEPS
    assert set(metrics["files"]) == {"frozen_model.pth", "compressed_model.pth"}
    import socket

    # which machine made the member: every session (the interrupted one and its resume) names host and device
    assert len(metrics["sessions"]) == 2 and all(s["host"] == socket.gethostname() for s in metrics["sessions"])
    assert all(s["device"].startswith(("cpu: ", "cuda: ")) for s in metrics["sessions"])
    ens = json.loads((out / "ensemble.json").read_text())
    assert ens["members"]["0"]["model"] == "model_0/compressed_model.pth"
    # the held-out frames are not in the training data DeePMD-kit reads
    train_sys = metrics["input"]["training"]["training_data"]["systems"]
    assert all("/train/" in s.replace("\\", "/") for s in train_sys)
    assert not set(manifest["train"]["ids"]) & set(manifest["test"]["ids"])


def _independent_rmse(model, test_dir):
    from deepmd.infer import DeepPot

    dp = DeepPot(str(model))
    tm = dp.get_type_map()
    de, df, dv = [], [], []
    for tr in sorted(Path(test_dir).rglob("type.raw")):
        sysdir = tr.parent
        names = (sysdir / "type_map.raw").read_text().split()
        atype = np.array([tm.index(names[int(t)]) for t in tr.read_text().split()])
        n = len(atype)
        for sd in sorted(sysdir.glob("set.*")):
            c, b = np.load(sd / "coord.npy"), np.load(sd / "box.npy")
            e, f, v = dp.eval(c, b, atype)
            de.append((e.ravel() - np.load(sd / "energy.npy").ravel()) / n)
            df.append(f.reshape(-1) - np.load(sd / "force.npy").reshape(-1))
            dv.append((v.reshape(-1, 9) - np.load(sd / "virial.npy").reshape(-1, 9)) / n)
    rms = lambda x: float(np.sqrt(np.mean(np.concatenate([a.ravel() for a in x]) ** 2)))  # noqa: E731
    return 1000 * rms(de), rms(df), 1000 * rms(dv), sum(len(a) for a in de)


def test_validate_report_matches_independent_numpy(trained, capsys):
    out = trained["out"]
    model = trained["mdir"] / "compressed_model.pth"
    rep_dir = trained["root"] / "report"
    assert main(["validate", "--model", str(model), "--data", str(out), "--out", str(rep_dir)]) == 0
    rep = json.loads((rep_dir / "report.json").read_text())
    e, f, v, nf = _independent_rmse(model, out / "data" / "test")
    t = rep["test"]
    assert t["frames"] == nf == json.loads((out / "data" / "manifest.json").read_text())["test"]["frames"]
    assert t["rmse_e_meV_per_atom"] == pytest.approx(e, rel=1e-10)
    assert t["rmse_f_eV_per_A"] == pytest.approx(f, rel=1e-10)
    assert t["rmse_v_meV_per_atom"] == pytest.approx(v, rel=1e-10)
    for name in ("report.md", "parity_energy.png", "parity_force.png", "parity_virial.png", "eos.png"):
        assert (rep_dir / name).is_file()
    md = (rep_dir / "report.md").read_text()
    assert "3.272 meV/atom" in md and "Table I" in md and f"{t['rmse_e_meV_per_atom']:.3f}" in md
    # EOS / Table I: the DFT side comes from the stored GPAW EOS, whatever the model does
    from dpqtb.structures.eos import load_eos

    row = rep["table1"]["pressures"]["300"]["dft"]
    assert row["a_A"] == pytest.approx(load_eos().lattice_constant(300.0), abs=1e-6)
    assert row["La-La_A"] == pytest.approx(row["a_A"] / np.sqrt(2), rel=1e-9)
    assert len(rep["eos"]["at_dft_points"]) >= 5


def test_frozen_and_compressed_models_agree(trained):
    mdir = trained["mdir"]
    from dpqtb.structures.lah10 import fm3m

    at = fm3m(4.9, "primitive")
    at.rattle(0.05, seed=1)
    res = [DeepPotentialEvaluator(mdir / m).evaluate(at.get_chemical_symbols(), at.positions[None], at.cell.array[None])
           for m in ("frozen_model.pth", "compressed_model.pth")]
    assert res[1][0] == pytest.approx(res[0][0], abs=1e-6)
    np.testing.assert_allclose(res[1][1], res[0][1], atol=1e-5)


def test_changed_config_or_data_is_refused(trained, tmp_path):
    cfg, out = trained["cfg"], trained["out"]
    changed = tmp_path / "changed.toml"
    changed.write_text(Path(cfg).read_text().replace(f"numb_steps = {STEPS}", f"numb_steps = {STEPS + 10}"))
    with pytest.raises(DpqtbError, match="different DeePMD-kit input"):
        train(changed, out, progress=False, log=lambda *a: None)
    lj_store(trained["store"].root, n=3, start=16)  # the store grows
    with pytest.raises(DpqtbError, match="--reuse-data"):
        train(cfg, out, progress=False, log=lambda *a: None)
    msgs = []
    train(cfg, out, progress=False, log=msgs.append, reuse_data=True)
    assert any("reusing" in m for m in msgs) and any("done, skipped" in m for m in msgs)


def test_validate_bad_input(trained, tmp_path, capsys):
    out = trained["out"]
    with pytest.raises(DpqtbError, match="model file not found"):
        validate(tmp_path / "none.pth", out, tmp_path / "r")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a model" * 100)
    with pytest.raises(DpqtbError, match="not a readable DeePMD-kit model"):
        validate(corrupt, out, tmp_path / "r")
    model = trained["mdir"] / "frozen_model.pth"
    with pytest.raises(DpqtbError, match="no data directory"):
        validate(model, tmp_path / "nodata", tmp_path / "r")
    (tmp_path / "emptydata").mkdir()
    with pytest.raises(DpqtbError, match="no deepmd/npy systems"):
        validate(model, tmp_path / "emptydata", tmp_path / "r")
    ev = DeepPotentialEvaluator(model)
    with pytest.raises(DpqtbError, match="lacks Cu"):
        ev.atom_types(["La", "Cu"])
    assert main(["validate", "--model", str(tmp_path / "none.pth"), "--data", str(out),
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dpqtb: error: model file not found")


def test_validate_accepts_shipped_model_name(trained, tmp_path, capsys):
    """`--model builtin:NAME` validates the shipped model (same numbers as its file path); an
    unknown name is a one-line error."""
    from dpqtb.potential.builtin import resolve

    out = trained["out"]
    assert main(["validate", "--model", "builtin:lah10", "--data", str(out), "--out", str(tmp_path / "a"),
                 "--frames-only", "--no-plots"]) == 0
    assert main(["validate", "--model", str(resolve("builtin:lah10")), "--data", str(out),
                 "--out", str(tmp_path / "b"), "--frames-only", "--no-plots"]) == 0
    a = json.loads((tmp_path / "a" / "report.json").read_text())
    b = json.loads((tmp_path / "b" / "report.json").read_text())
    assert a["model"]["sha256"] == b["model"]["sha256"]
    assert a["test"]["rmse_f_eV_per_A"] == b["test"]["rmse_f_eV_per_A"] > 0
    capsys.readouterr()
    assert main(["validate", "--model", "builtin:nosuch", "--data", str(out), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no shipped Deep Potential 'builtin:nosuch'" in err[0]


def test_validate_compare(trained, tmp_path, capsys):
    """`--compare`: the report's per-model RMSEs equal those of separate validate runs, their ratio is
    the comparison's point estimate, and a model compared with itself gives exactly 1 (interval [1, 1])."""
    out = trained["out"]
    model = str(trained["mdir"] / "frozen_model.pth")
    assert main(["validate", "--model", model, "--data", str(out), "--out", str(tmp_path / "c"),
                 "--compare", "builtin:lah10", model, "--frames-only", "--no-plots"]) == 0
    rep = json.loads((tmp_path / "c" / "report.json").read_text())
    assert main(["validate", "--model", "builtin:lah10", "--data", str(out), "--out", str(tmp_path / "s"),
                 "--frames-only", "--no-plots"]) == 0
    shipped = json.loads((tmp_path / "s" / "report.json").read_text())["test"]
    c = rep["comparison"]
    names = list(c["rmse_f_eV_per_A"])
    assert names[0] == model and len(names) == 3 and c["frames"] == rep["test"]["frames"]
    assert c["rmse_f_eV_per_A"][model] == pytest.approx(rep["test"]["rmse_f_eV_per_A"], rel=1e-10)
    assert c["rmse_f_eV_per_A"][names[1]] == pytest.approx(shipped["rmse_f_eV_per_A"], rel=1e-10)
    assert c["rmse_e_meV_per_atom"][names[1]] == pytest.approx(shipped["rmse_e_meV_per_atom"], rel=1e-10)
    vs = c["pairs"][f"{model} vs {names[1]}"]
    assert vs["rmse_f_ratio"] == pytest.approx(rep["test"]["rmse_f_eV_per_A"] / shipped["rmse_f_eV_per_A"], rel=1e-10)
    lo, hi = vs["rmse_f_ratio_ci95"]
    assert lo <= vs["rmse_f_ratio"] <= hi
    self_ = c["pairs"][f"{model} vs {names[2]}"]
    assert self_["rmse_f_ratio_ci95"] == pytest.approx([1.0, 1.0], rel=1e-12)
    assert "Paired comparison" in (tmp_path / "c" / "report.md").read_text()
    capsys.readouterr()
    assert main(["validate", "--model", model, "--data", str(out), "--out", str(tmp_path / "d"),
                 "--compare", str(tmp_path / "missing.pth"), "--frames-only", "--no-plots"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model file not found" in err[0]


def test_validate_on_job_stores(trained, tmp_path, capsys):
    """`--data STORE [STORE ...]`: the held-out split of the job stores, exported on the fly — the
    same frames and numbers as validating an exported dataset folder of the same stores; nothing is
    left behind but the report."""
    from dpqtb.train.dataset import is_test_frame, prepare_dataset

    store = trained["store"].root
    model = str(trained["mdir"] / "frozen_model.pth")
    assert main(["validate", "--model", model, "--data", str(store), "--out", str(tmp_path / "s"),
                 "--frames-only", "--no-plots", "--test-modulus", "3"]) == 0
    manifest = prepare_dataset([store], tmp_path / "ds", test_modulus=3)
    assert main(["validate", "--model", model, "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "d"),
                 "--frames-only", "--no-plots"]) == 0
    a = json.loads((tmp_path / "s" / "report.json").read_text())
    b = json.loads((tmp_path / "d" / "report.json").read_text())
    ids = sorted(p.stem for p in (Path(store) / "frames").glob("*.json") if is_test_frame(p.stem, 3))
    assert a["data"]["test_ids"] == b["data"]["test_ids"] == manifest["test"]["ids"] == ids and ids
    assert a["test"] == b["test"] and a["by_subset"] == b["by_subset"]
    for part in a["by_subset"].values():  # each partition covers every held-out frame once
        assert sum(r["frames"] for r in part.values()) == a["test"]["frames"]
    assert sorted(x.name for x in (tmp_path / "s").iterdir()) == ["report.json", "report.md"]
    capsys.readouterr()
    # a job store mixed with a plain folder, or stores without held-out frames: one-line errors
    assert main(["validate", "--model", model, "--data", str(store), str(tmp_path / "ds"),
                 "--out", str(tmp_path / "x"), "--frames-only"]) == 2
    assert "only accepted when all are job stores" in capsys.readouterr().err
    every = [p.stem for p in (Path(store) / "frames").glob("*.json")]
    none_held_out = next(m for m in range(101, 10**6) if not any(is_test_frame(i, m) for i in every))
    # the model's training ids are recorded: a split that would hold out a training frame is
    # refused; all frames of a store it never saw are fine (--all-frames)
    assert main(["validate", "--model", model, "--data", str(store), "--out", str(tmp_path / "y"),
                 "--frames-only", "--all-frames"]) == 2
    err = capsys.readouterr().err
    train_ids = V.model_train_ids(model)  # the store may have grown since (earlier tests add frames)
    assert train_ids and train_ids <= set(every) - set(ids)
    assert f"{len(train_ids)} of the {len(every)} frames held out with --all-frames were " \
           "trained on" in err and "--test-modulus 3" in err
    assert any(is_test_frame(i, 2) for i in train_ids)  # the next check bites
    assert main(["validate", "--model", model, "--data", str(store), "--out", str(tmp_path / "y"),
                 "--frames-only", "--test-modulus", "2"]) == 2
    assert "frames held out with test_modulus 2 were trained on" in capsys.readouterr().err
    unseen = JobStore(tmp_path / "unseen")
    for i in ids:  # a store holding only the frames the model never trained on
        unseen.write_frame(JobStore(store).frame(i))
        atomic_write_json(unseen.jobs_dir / f"{i}.json", JobStore(store).job_record(i))
    assert main(["validate", "--model", model, "--data", str(unseen.root), "--out", str(tmp_path / "u"),
                 "--frames-only", "--no-plots", "--all-frames"]) == 0
    u = json.loads((tmp_path / "u" / "report.json").read_text())
    assert u["data"]["test_ids"] == ids and u["test"] == a["test"]
    # --quantum-data: a store never trained on, every frame tested, errors per sample kind, in the same report
    assert main(["validate", "--model", model, "--data", str(store), "--out", str(tmp_path / "q"), "--frames-only",
                 "--no-plots", "--test-modulus", "3", "--quantum-data", str(unseen.root)]) == 0
    q = json.loads((tmp_path / "q" / "report.json").read_text())
    assert q["quantum"]["metrics"] == u["test"] and q["test"] == a["test"]
    kinds = {JobStore(store).frame(i).get("meta", {}).get("kind", "unknown") for i in ids}
    assert set(q["quantum"]["by_kind"]) == kinds
    assert sum(k["frames"] for k in q["quantum"]["by_kind"].values()) == len(ids)
    assert "## Quantum configurations" in (tmp_path / "q" / "report.md").read_text()
    # frames that carry the temperature of their sample or run (meta temperature_K; the held-out quantum frames get
    # it from dpqtb label --meta): errors per kind and temperature too, every frame once
    def label(i):
        m = unseen.frame(i).get("meta", {})
        t = m.get("temperature_K")
        return f"{m.get('kind', 'unknown')}, " + (f"{t:g} K" if isinstance(t, (int, float)) else "T not recorded")

    by_t = q["quantum"]["by_kind_temperature"]
    assert set(by_t) == {label(i) for i in ids} and sum(k["frames"] for k in by_t.values()) == len(ids)
    for lab, e in by_t.items():
        assert e["frames"] == sum(label(i) == lab for i in ids)
    assert main(["validate", "--model", model, "--data", str(store), "--out", str(tmp_path / "q2"), "--frames-only",
                 "--no-plots", "--test-modulus", "3", "--quantum-data", str(store)]) == 2
    assert "frames of the quantum store were trained on" in capsys.readouterr().err
    man = json.loads((Path(model).parent.parent / "data" / "manifest.json").read_text())
    assert train_ids == set(man["train"]["ids"])
    # a dataset folder split another way is checked against the training ids too
    prepare_dataset([store], tmp_path / "ds2", test_modulus=2)
    assert main(["validate", "--model", model, "--data", str(tmp_path / "ds2"), "--out", str(tmp_path / "w"),
                 "--frames-only", "--no-plots"]) == 2
    assert "frames held out with test_modulus 2 were trained on" in capsys.readouterr().err
    assert main(["validate", "--model", model, "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "w"),
                 "--frames-only", "--no-plots", "--all-frames"]) == 2
    assert "--all-frames applies to DFT job stores only" in capsys.readouterr().err
    with pytest.raises(DpqtbError, match="no held-out frames"):  # a model of unknown split
        validate(tmp_path / "unknown.pth", [store], tmp_path / "z", evaluator=DeepPotentialEvaluator(model),
                 structure=False, plots=False, test_modulus=none_held_out)


def test_resume_takes_the_highest_numbered_checkpoint_not_a_stale_link(tmp_path):
    """A member directory copied back from the GPU machine (links do not travel) over a local one keeps the local
    model.ckpt.pt link to an older checkpoint: the resume must take the newest model.ckpt-N.pt."""
    for n in (10, 30, 200):
        (tmp_path / f"model.ckpt-{n}.pt").write_bytes(b"x")
    (tmp_path / "model.ckpt.pt").symlink_to("model.ckpt-30.pt")
    assert runner._latest_checkpoint(tmp_path).name == "model.ckpt-200.pt"
    for n in (10, 30, 200):
        (tmp_path / f"model.ckpt-{n}.pt").unlink()
    (tmp_path / "model.ckpt.pt").unlink()
    assert runner._latest_checkpoint(tmp_path) is None
