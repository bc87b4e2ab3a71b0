"""scripts/ship_model.py: a member shipped as builtin:NAME, and with --ensemble the members trained beside it as
builtin:NAME-ensemble, which the MD's model deviation then resolves to every member (issue 27 item 2)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from dpqtb import DpqtbError
from dpqtb.potential import builtin
from dpqtb.train.dataset import dataset_version, file_sha256

ROOT = Path(__file__).resolve().parent.parent


def _ship_main():
    spec = importlib.util.spec_from_file_location("ship_model", ROOT / "scripts" / "ship_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def _train_dir(root: Path, n: int = 4) -> Path:
    """A training directory as `dpqtb train` leaves it (the model files are stand-in bytes)."""
    d = root / "train"
    ids = ["a1", "b2", "c3"]
    members = {}
    for k in range(n):
        (d / f"model_{k}").mkdir(parents=True)
        (d / f"model_{k}" / "compressed_model.pth").write_bytes(b"member %d" % k)
        (d / f"model_{k}" / "metrics.json").write_text(json.dumps(
            {"codes": {"deepmd": "3.2.0"}, "sessions": [{"host": f"h{k}", "device": "cpu: 1 thread", "from_step": 0,
                                                        "to_step": 100, "wall_s": 1.0}]}))
        (d / f"model_{k}" / "input.json").write_text("{}")
        members[str(k)] = {"model": f"model_{k}/compressed_model.pth", "seed": 71 + k,
                           "lcurve_final": {"step": 100.0}}
    (d / "ensemble.json").write_text(json.dumps({"dataset_version": dataset_version(ids), "members": members}))
    (d / "config.toml").write_text("[training]\nseed = 71\n")
    (d / "data").mkdir()
    (d / "data" / "manifest.json").write_text(json.dumps(
        {"train": {"ids": ids, "frames": 3}, "test": {"ids": ["d4"], "frames": 1}, "stores": []}))
    v = root / "validation"
    v.mkdir()
    (v / "report.md").write_text("report")
    (v / "report.json").write_text(json.dumps(
        {"model": {"sha256": file_sha256(d / "model_0" / "compressed_model.pth")}, "date": "2026-12-07",
         "files": [], "test": {"frames": 1, "rmse_e_meV_per_atom": 1.0, "rmse_f_eV_per_A": 0.1,
                               "force_rms_dft_eV_per_A": 1.0}}))
    return d


def _args(root: Path, d: Path, *extra: str) -> list[str]:
    return ["--train-dir", str(d), "--member", "0", "--validation", str(root / "validation"), "--name", "toy",
            "--status", "test", "--report-dir", str(root / "report"), "--models-dir", str(root / "models"), *extra]


def test_ship_with_ensemble_gives_a_card_that_resolves_to_every_member(tmp_path, monkeypatch):
    d = _train_dir(tmp_path)
    assert _ship_main()(_args(tmp_path, d, "--ensemble", "1,2,3")) == 0
    models = tmp_path / "models"
    monkeypatch.setattr(builtin, "MODELS_DIR", models)
    card, ens = builtin.card("toy"), builtin.card("toy-ensemble")
    assert card["ensemble"] == "builtin:toy-ensemble" and card["source"]["seed"] == 71
    assert ens["files"] == ["toy.pth", "toy-m1.pth", "toy-m2.pth", "toy-m3.pth"]
    for k, name in enumerate(ens["files"]):  # each file is its member's, byte for byte, with its seed and machine
        assert (models / name).read_bytes() == b"member %d" % k
        assert ens["sha256"][name] == file_sha256(models / name)
        m = ens["source"]["members"][name]
        assert (m["member"], m["seed"], m["trained_on"][0]["host"]) == (k, 71 + k, f"h{k}")
    assert ens["source"]["dataset_version"] == card["source"]["dataset_version"]
    # the MD's deviation: the shipped model drives, the ensemble adds the three others
    assert builtin.ensemble_members("builtin:toy", ["builtin:toy-ensemble"]) == [
        (models / f"toy-m{k}.pth").resolve() for k in (1, 2, 3)]
    with pytest.raises(DpqtbError, match="is an ensemble of 4 models"):
        builtin.resolve("builtin:toy-ensemble")


def test_ship_without_ensemble_writes_no_ensemble_card(tmp_path):
    d = _train_dir(tmp_path)
    assert _ship_main()(_args(tmp_path, d)) == 0
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["toy.json", "toy.pth"]
    assert "ensemble" not in json.loads((tmp_path / "models" / "toy.json").read_text())


@pytest.mark.parametrize("members, why", [("0", "no member other than --member"), ("1,1", "each member once"),
                                          ("7", "each member once"), ("1,x", "comma-separated list")])
def test_ship_refuses_a_bad_ensemble_before_writing(tmp_path, members, why, capsys):
    d = _train_dir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        _ship_main()(_args(tmp_path, d, "--ensemble", members))
    assert exc.value.code not in (0, None)
    assert why in str(exc.value.code) + capsys.readouterr().err
    assert not (tmp_path / "models").exists()


def test_reshipping_replaces_the_earlier_ensemble(tmp_path, monkeypatch):
    """A second ship takes the first one's ensemble away (without --ensemble) or trims it to the new members: no
    card may pair the new NAME.pth with members of another training."""
    d = _train_dir(tmp_path)
    main = _ship_main()
    assert main(_args(tmp_path, d, "--ensemble", "1,2,3")) == 0
    assert main(_args(tmp_path, d, "--ensemble", "2")) == 0
    models = tmp_path / "models"
    assert sorted(p.name for p in models.iterdir()) == ["toy-ensemble.json", "toy-m2.pth", "toy.json", "toy.pth"]
    monkeypatch.setattr(builtin, "MODELS_DIR", models)
    assert builtin.card("toy-ensemble")["files"] == ["toy.pth", "toy-m2.pth"]
    assert main(_args(tmp_path, d)) == 0
    assert sorted(p.name for p in models.iterdir()) == ["toy.json", "toy.pth"]
    assert "ensemble" not in builtin.card("toy")


def test_a_member_missing_its_record_stops_the_ship_before_anything_is_written(tmp_path):
    d = _train_dir(tmp_path)
    main = _ship_main()
    assert main(_args(tmp_path, d)) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "models").iterdir()}
    (d / "model_0" / "compressed_model.pth").write_bytes(b"retrained member 0")  # a new model 0 ...
    rep = json.loads((tmp_path / "validation" / "report.json").read_text())
    rep["model"]["sha256"] = file_sha256(d / "model_0" / "compressed_model.pth")
    (tmp_path / "validation" / "report.json").write_text(json.dumps(rep))
    (d / "model_3" / "metrics.json").unlink()  # ... but member 3's record is gone
    with pytest.raises(SystemExit, match="model_3/metrics.json: missing .member 3.; nothing shipped"):
        main(_args(tmp_path, d, "--ensemble", "1,2,3"))
    assert {p.name: p.read_bytes() for p in (tmp_path / "models").iterdir()} == before


def test_shipping_a_new_model_keeps_the_replaced_models_validation(tmp_path):
    """The validation report of the model a ship replaces is copied to validation_archive/<its sha256[:12]>/ beside
    the report folder (what `dpqtb paper --from` falls back to for sweeps of that model); re-shipping the same model
    archives nothing."""
    d = _train_dir(tmp_path)
    main = _ship_main()
    assert main(_args(tmp_path, d)) == 0
    first = file_sha256(d / "model_0" / "compressed_model.pth")
    assert main(_args(tmp_path, d)) == 0  # the same model again: nothing to keep
    assert not (tmp_path / "validation_archive").exists()
    (d / "model_0" / "compressed_model.pth").write_bytes(b"a retrained member 0")
    rep = json.loads((tmp_path / "validation" / "report.json").read_text())
    rep["model"]["sha256"] = file_sha256(d / "model_0" / "compressed_model.pth")
    (tmp_path / "validation" / "report.json").write_text(json.dumps(rep))
    assert main(_args(tmp_path, d)) == 0
    kept = tmp_path / "validation_archive" / first[:12]
    assert json.loads((kept / "report.json").read_text())["model"]["sha256"] == first
    assert json.loads((tmp_path / "report" / "report.json").read_text())["model"]["sha256"] == rep["model"]["sha256"]
