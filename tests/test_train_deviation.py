"""Model deviation (DP-GEN definition) of an ensemble and the selection of candidates to label."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("deepmd.pt")

from _deepmd_models import frozen_random_model  # noqa: E402

from dpqtb import DpqtbError  # noqa: E402
from dpqtb.train.deviation import deviation, run_deviation, select  # noqa: E402


def test_deviation_definition_on_known_forces():
    # two models whose forces differ by ±d on one component of atom 1 only: ε_1 = d, ε_0 = 0
    f = np.zeros((2, 2, 3))
    f[0, 1, 2], f[1, 1, 2] = 0.3, -0.3
    d = deviation(np.array([-10.0, -10.2]), f)
    assert d["max_devi_f_eV_per_A"] == pytest.approx(0.3)
    assert d["min_devi_f_eV_per_A"] == 0.0
    assert d["avg_devi_f_eV_per_A"] == pytest.approx(0.15)
    assert d["devi_e_eV_per_atom"] == pytest.approx(0.05)
    with pytest.raises(DpqtbError, match="at least 2"):
        deviation(np.zeros(1), np.zeros((1, 2, 3)))


def test_select_trust_window():
    devi = [{"max_devi_f_eV_per_A": v} for v in (0.01, 0.06, 0.1, 0.2, 0.3, 0.049999, 0.25)]
    idx, st = select(devi, 0.05, 0.25)
    assert idx == [1, 2, 3]
    assert (st["accurate"], st["candidate"], st["failed"]) == (2, 3, 2)
    idx2, st2 = select(devi, 0.05, 0.25, max_select=2, seed=1)
    assert len(idx2) == 2 and set(idx2) <= {1, 2, 3} and st2["selected"] == 2
    with pytest.raises(DpqtbError, match="trust window"):
        select(devi, 0.3, 0.1)


def test_run_deviation_matches_deeppot_and_queues_candidates(tmp_path):
    from ase.io import write
    from deepmd.infer import DeepPot

    from dpqtb.dft.store import JobStore
    from dpqtb.structures.lah10 import fm3m

    models = [frozen_random_model(tmp_path / f"m{k}.pth", seed=k + 10) for k in range(3)]
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(3):
        a = fm3m(5.0, cell="primitive")
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        frames.append(a)
    write(tmp_path / "traj.extxyz", frames)
    st = run_deviation(models, tmp_path / "traj.extxyz", tmp_path / "devi", trust_lo=0.0, trust_hi=1e9,
                       store=tmp_path / "store")
    rows = np.genfromtxt(tmp_path / "devi" / "model_devi.csv", delimiter=",", names=True)
    # independent: DeePMD-kit's own evaluator and numpy, on the frames as stored in the file
    from ase.io import read

    for k, a in enumerate(read(tmp_path / "traj.extxyz", index=":")):
        fs = []
        for m in models:
            dp = DeepPot(str(m))
            atype = np.array([dp.get_type_map().index(s) for s in a.get_chemical_symbols()])
            fs.append(dp.eval(a.positions.reshape(1, -1), a.cell.array.reshape(1, 9), atype)[1].reshape(-1, 3))
        fs = np.stack(fs)
        eps = np.sqrt(((fs - fs.mean(0)) ** 2).sum(-1).mean(0))
        assert rows["max_devi_f_eV_per_A"][k] == pytest.approx(eps.max(), rel=1e-9)
        assert eps.max() > 1e-3  # the random models really disagree
    assert st["selected"] == 3 and len(JobStore(tmp_path / "store").job_ids()) == 3
    # re-running queues nothing new (job ids are content hashes)
    run_deviation(models, tmp_path / "traj.extxyz", tmp_path / "devi", 0.0, 1e9, store=tmp_path / "store")
    assert len(JobStore(tmp_path / "store").job_ids()) == 3
    assert json.loads((tmp_path / "devi" / "deviation.json").read_text())["frames"] == 3
    with pytest.raises(DpqtbError, match="trajectory not found"):
        run_deviation(models, tmp_path / "none.extxyz", tmp_path / "d2", 0.05, 0.25)
    with pytest.raises(DpqtbError, match="at least 2"):
        run_deviation(models[:1], tmp_path / "traj.extxyz", tmp_path / "d2", 0.05, 0.25)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("devi_models")
    return [frozen_random_model(d / f"m{k}.pth", seed=k + 20) for k in range(2)]


def _lah10_frames(n, seed=0):
    from dpqtb.structures.lah10 import fm3m

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        a = fm3m(5.0, cell="primitive")
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        frames.append(a)
    return frames


def _good_extxyz(frames) -> str:
    import io

    from ase.io import write

    buf = io.StringIO()
    write(buf, frames, format="extxyz")
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated", "unknown_format"])
def test_run_deviation_unreadable_trajectory(two_models, tmp_path, kind):
    """A trajectory that cannot be read is reported as such, in one line naming the file (not as a
    model failure), whether it fails at once or after some frames were evaluated."""
    name = "traj.unknownext" if kind == "unknown_format" else "traj.extxyz"
    text = {"empty": "", "garbage": "not a trajectory\nfoo bar\n", "unknown_format": "whatever\n",
            # two good frames, then a frame cut short (header announces 11 atoms, 1 follows)
            "truncated": _good_extxyz(_lah10_frames(2)) + "11\nLattice=\"5 0 0 0 5 0 0 0 5\" "
                         "Properties=species:S:1:pos:R:3 pbc=\"T T T\"\nLa 0.0 0.0 0.0\n"}[kind]
    traj = tmp_path / name
    traj.write_text(text)
    with pytest.raises(DpqtbError, match="cannot read trajectory") as err:
        run_deviation(two_models, traj, tmp_path / "devi", 0.05, 0.25)
    msg = str(err.value)
    assert str(traj) in msg and "\n" not in msg
    assert "model evaluation" not in msg
    if kind == "truncated":
        assert "after frame 1" in msg
    assert not (tmp_path / "devi" / "deviation.json").exists()


def test_run_deviation_model_failure_names_frame_and_model(two_models, tmp_path):
    """A frame the models cannot evaluate (a species outside their type map) is reported with its
    index in the file and the model, not as an unreadable trajectory."""
    from ase.io import write

    frames = _lah10_frames(3, seed=1)
    frames[2][3].symbol = "Li"
    write(tmp_path / "traj.extxyz", frames)
    with pytest.raises(DpqtbError) as err:
        run_deviation(two_models, tmp_path / "traj.extxyz", tmp_path / "devi", 0.05, 0.25)
    msg = str(err.value)
    assert msg.startswith("model evaluation failed on frame 2 ")
    assert str(two_models[0]) in msg and str(tmp_path / "traj.extxyz") in msg
    assert "no species ['Li']" in msg and "\n" not in msg and "cannot read" not in msg


def test_run_deviation_model_runtime_error_names_frame_and_model(two_models, tmp_path, monkeypatch):
    """An exception inside one member's evaluation (here injected into the second model on its second
    frame; with every=2 that is frame 2 of the file) names that frame and that model file."""
    from ase.io import write

    from dpqtb.potential.deepmd import DeepPotential

    write(tmp_path / "traj.extxyz", _lah10_frames(5, seed=2))
    original = DeepPotential.__call__
    calls = {"n": 0}

    def failing(self, *args, **kwargs):
        if self.path == two_models[1]:
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("forward_lower exploded\nC++ traceback line")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DeepPotential, "__call__", failing)
    with pytest.raises(DpqtbError) as err:
        run_deviation(two_models, tmp_path / "traj.extxyz", tmp_path / "devi", 0.05, 0.25, every=2)
    msg = str(err.value)
    assert msg.startswith("model evaluation failed on frame 2 ")
    assert f"with model {two_models[1]}:" in msg
    assert "RuntimeError: forward_lower exploded" in msg and "C++ traceback" not in msg
    assert "cannot read" not in msg


def test_check_against_labels_measures_the_true_error(tmp_path, two_models):
    """ε predicted at exploration vs the true error against DFT: with 'DFT' forces = the ensemble mean
    + a known kick on one atom, the max error is that kick exactly."""
    from dpqtb.dft.settings import PRODUCTION
    from dpqtb.dft.store import JobStore
    from dpqtb.potential.deepmd import DeepPotential
    from dpqtb.train.deviation import check_against_labels, ensemble_predictions

    js = JobStore(tmp_path / "store")
    models = [DeepPotential(p) for p in two_models]
    kicks = [0.2, 0.6, 0.4, 1.0]
    for k, (a, kick) in enumerate(zip(_lah10_frames(4, seed=3), kicks)):
        jid = js.add(a, PRODUCTION, meta={"kind": "model_deviation", "max_devi_f_eV_per_A": 0.1 * (k + 1)})
        es, fs = ensemble_predictions(models, a)
        f = fs.mean(axis=0)
        f[k + 1] += np.array([0.0, kick * 0.6, kick * 0.8])
        frame = js.job(jid).to_dict()
        frame.update({"energy_eV": -1.0, "forces_eV_per_A": f.tolist(), "stress_eV_per_A3": np.zeros((3, 3)).tolist(),
                      "pressure_GPa": 0.0})
        js.write_frame(frame)
    st = check_against_labels(two_models, tmp_path / "store", tmp_path / "chk", plot=True)
    rows = np.genfromtxt(tmp_path / "chk" / "deviation_check.csv", delimiter=",", names=True, dtype=None,
                         encoding="utf-8")
    by_pred = sorted(zip(rows["predicted_max_devi_f_eV_per_A"], rows["max_err_f_eV_per_A"]))
    np.testing.assert_allclose([e for _, e in by_pred], kicks, rtol=1e-6)
    # ranks of predicted ε (0.1..0.4) vs errors (0.2, 0.6, 0.4, 1.0): Spearman = 0.8
    assert st["spearman_predicted_devi_vs_max_err"] == pytest.approx(0.8)
    assert st["frames"] == 4 and (tmp_path / "chk" / "deviation_check.png").is_file()
    assert np.all(rows["max_devi_f_eV_per_A"] > 0)  # recomputed ε of the two random models
    with pytest.raises(DpqtbError, match="no labelled frames"):
        check_against_labels(two_models, tmp_path / "empty", tmp_path / "chk2")


def test_deviation_cli_needs_exactly_one_source(tmp_path, two_models, capsys):
    from dpqtb.cli import main

    base = ["deviation", "--models", *map(str, two_models), "--out", str(tmp_path / "o")]
    assert main(base) == 2
    assert "exactly one of --trajectory" in capsys.readouterr().err
    assert main(base + ["--trajectory", "t.extxyz", "--labelled-store", "s"]) == 2
    assert main(["deviation", "--models", str(two_models[0]), "--trajectory", "t.extxyz",
                 "--out", str(tmp_path / "o")]) == 2
    assert "at least 2 models" in capsys.readouterr().err
    assert main(base + ["--labelled-store", str(tmp_path / "none")]) == 2
    assert "no labelled frames" in capsys.readouterr().err
    # shipped models by name, as in the md config
    assert main(["deviation", "--models", "builtin:nosuchmodel", "--labelled-store", str(tmp_path / "none"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "no shipped Deep Potential 'builtin:nosuchmodel'" in capsys.readouterr().err
