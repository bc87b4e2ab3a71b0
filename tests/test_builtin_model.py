"""The shipped Deep Potential (builtin:lah10): its card matches the file, it is the CLI default, it runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("deepmd.pt")

from dpqtb import DpqtbError  # noqa: E402
from dpqtb.potential import builtin  # noqa: E402


def test_card_matches_file():
    from dpqtb.train.dataset import file_sha256

    assert "lah10" in builtin.available()
    c = builtin.card("lah10")
    path = builtin.resolve("builtin:lah10")
    assert path.is_file() and path.name == c["file"]
    assert file_sha256(path) == c["sha256"]
    t = c["validation"]["test"]
    assert t["frames"] >= 1 and t["force_eV_per_A"] > 0 and t["energy_meV_per_atom"] > 0
    assert c["type_map"] == ["La", "H"]
    assert "held-out RMSE" in builtin.summary("lah10")


def test_resolve_errors_and_paths(tmp_path):
    with pytest.raises(DpqtbError, match="no shipped Deep Potential 'builtin:nope'"):
        builtin.resolve("builtin:nope")
    assert builtin.resolve("m.pth", tmp_path) == tmp_path / "m.pth"
    assert builtin.resolve(tmp_path / "x.pth") == tmp_path / "x.pth"


def test_default_model_equals_deeppot_and_runs_md(tmp_path):
    """kind = "deepmd" without a model takes builtin:lah10; energies equal DeePMD-kit's own evaluator."""
    from deepmd.infer import DeepPot

    from dpqtb.md.build import build_simulation
    from dpqtb.md.config import validate

    cfg = validate({"system": {"structure": "builtin:lah10", "pressure_GPa": 250.0},
                    "potential": {"kind": "deepmd"},
                    "md": {"timestep_fs": 0.5, "steps": 10, "seed": 3},
                    "thermostat": {"kind": "qtb", "temperature_K": 50.0, "damp_fs": 100.0},
                    "output": {"progress": False, "trajectory_every": 5}})
    assert cfg.potential.model == "builtin:lah10"
    sim = build_simulation(cfg, output_dir=tmp_path / "run", progress=False)
    sim.run(10)
    atoms = sim.state.to_atoms()
    dp = DeepPot(str(builtin.resolve("builtin:lah10")))
    types = np.array([dp.get_type_map().index(s) for s in atoms.get_chemical_symbols()])
    e, f, v = dp.eval(atoms.positions[None], atoms.cell.array[None], types)[:3]
    out = sim.integrator.potential(sim.state.positions, sim.state.cell, sim.state.species)
    # the shipped model computes in float32 (eps 1.2e-7): dpqtb's ghost-atom force fold and DeePMD-kit's
    # sum the ~450 neighbour contributions in another order, so forces agree to ~1e-6 eV/Å, not 1e-10
    # (the float64 test models in test_potential_deepmd.py check 1e-10)
    assert float(out.energy) == pytest.approx(float(e.ravel()[0]), rel=1e-7)
    np.testing.assert_allclose(out.forces.numpy(), f[0], rtol=1e-5, atol=2e-5)
    assert (tmp_path / "run" / "thermo.csv").is_file()


def test_models_cli(capsys):
    from dpqtb.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "builtin:lah10" in out and "held-out RMSE" in out
    assert "known limitation: PBE has distorted minima below Fm-3m" in out  # the card's caveats are printed
    assert "distorted phases vs Fm-3m at the DFT minima" in out  # the card's phase check (ship_model.py)
    assert main(["models", "--json"]) == 0
    cards = json.loads(capsys.readouterr().out)  # one document, whatever the number of cards
    assert cards["lah10"]["name"] == "lah10" and set(cards) == set(builtin.available())


def test_shipped_ensemble_card_resolves_to_its_members(tmp_path, monkeypatch, capsys):
    """A card with ``files`` (builtin:NAME-ensemble) is an ensemble: resolve_all gives its members in order,
    ensemble_members drops the driving model, resolve() refuses it as potential.model, `dpqtb models` lists it."""
    import shutil

    from dpqtb.cli import main

    for name in ("lah10.json", "lah10.pth"):
        shutil.copyfile(builtin.MODELS_DIR / name, tmp_path / name)
    for k in (1, 2):
        (tmp_path / f"lah10-m{k}.pth").write_bytes(b"member %d" % k)
    (tmp_path / "lah10-ensemble.json").write_text(json.dumps(
        {"name": "lah10-ensemble", "status": "test", "shipped": "2026-12-06",
         "files": ["lah10.pth", "lah10-m1.pth", "lah10-m2.pth"]}))
    monkeypatch.setattr(builtin, "MODELS_DIR", tmp_path)
    assert builtin.resolve_all("builtin:lah10-ensemble") == [tmp_path / f for f in
                                                              ("lah10.pth", "lah10-m1.pth", "lah10-m2.pth")]
    assert builtin.ensemble_members("builtin:lah10", ["builtin:lah10-ensemble"]) == [
        (tmp_path / "lah10-m1.pth").resolve(), (tmp_path / "lah10-m2.pth").resolve()]
    with pytest.raises(DpqtbError, match="is an ensemble of 3 models: name it in potential.ensemble"):
        builtin.resolve("builtin:lah10-ensemble")
    (tmp_path / "lah10-m2.pth").unlink()
    with pytest.raises(DpqtbError, match="shipped model file missing"):
        builtin.resolve_all("builtin:lah10-ensemble")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "Deep Potential ensemble builtin:lah10-ensemble (test): 3 members" in out and "builtin:lah10 (" in out
    assert main(["models", "--json"]) == 0
    assert sorted(json.loads(capsys.readouterr().out)) == ["lah10", "lah10-ensemble"]
