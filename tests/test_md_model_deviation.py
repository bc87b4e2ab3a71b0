"""The model deviation of a Deep Potential ensemble during MD (``potential.ensemble``; issue 27 item 3).

References are independent of the engine: DeePMD-kit's own ``DeepPot.eval`` on the configurations the run
wrote, and DP-GEN's formula written out in numpy here. Three small random-weight models (tests/_deepmd_models)
stand in for an ensemble: their forces disagree by tenths of eV/Å, so every term is exercised.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from _deepmd_models import frozen_random_model

RUN = """
[system]
structure = "builtin:lah10"
pressure_GPa = 200

[potential]
kind = "deepmd"
model = "{m0}"
{ensemble}

[md]
timestep_fs = 0.25
steps = 40
seed = 7

[thermostat]
kind = "{kind}"
temperature_K = 300
{extra}

[output]
thermo_every = 5
trajectory_every = 10
checkpoint_every = 10
progress = false
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("ens")
    return [frozen_random_model(d / f"m{i}.pth", seed=11 + i) for i in range(3)]


def _config(tmp: Path, models, ensemble=True, kind="langevin", extra="", deviation_every=None, trust=None):
    from dpqtb.md.config import validate
    import tomllib

    ens = ""
    if ensemble:
        ens = "ensemble = [" + ", ".join(f'"{m}"' for m in models[1:]) + "]"
        if deviation_every:
            ens += f"\ndeviation_every = {deviation_every}"
        if trust is not None:
            ens += f"\ntrust_hi_eV_per_A = {trust}"
    text = RUN.format(m0=models[0], ensemble=ens, kind=kind, extra=extra)
    return validate(tomllib.loads(text), base_dir=tmp)


def _run(cfg, out: Path, steps=None, resume=False):
    from dpqtb.md.build import build_simulation

    sim = build_simulation(cfg, out, progress=False)
    sim.run(steps if steps is not None else cfg.md.steps, resume=resume)
    return sim


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    text = path.read_text()
    names = text.splitlines()[0].split(",")
    data = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1, ndmin=2)
    return dict(zip(names, data.T))


def _dpgen(forces: np.ndarray, energies: np.ndarray) -> dict:
    """DP-GEN's model_devi written out: forces (M, N, 3), energies (M,)."""
    mean = forces.mean(axis=0)
    eps = np.sqrt(np.mean(np.sum((forces - mean) ** 2, axis=2), axis=0))
    return {"max_devi_f_eV_per_A": eps.max(), "min_devi_f_eV_per_A": eps.min(), "avg_devi_f_eV_per_A": eps.mean(),
            "devi_e_eV_per_atom": np.std(energies / forces.shape[1])}


def _deeppot_eval(models, positions, cell, symbols):
    from deepmd.infer import DeepPot

    atype = np.array([["La", "H"].index(s) for s in symbols])
    es, fs = [], []
    for m in models:
        e, f, _ = DeepPot(str(m)).eval(positions.reshape(1, -1), cell.reshape(1, 9), atype)
        es.append(float(np.ravel(e)[0]))
        fs.append(f.reshape(-1, 3))
    return np.array(es), np.stack(fs)


def test_deviation_matches_deeppot_eval_on_the_written_frames(tmp_path, models):
    """model_devi.csv and thermo.csv's max_force_dev_eV_A at every trajectory frame equal DP-GEN's formula on
    DeePMD-kit's DeepPot.eval of the three models at that frame's positions and cell."""
    from ase.io import read

    sim = _run(_config(tmp_path, models), tmp_path / "run")
    devi = _read_csv(tmp_path / "run" / "model_devi.csv")
    thermo = _read_csv(tmp_path / "run" / "thermo.csv")
    np.testing.assert_array_equal(devi["step"], np.arange(0, 41, 5))  # every thermo row (the default)
    np.testing.assert_array_equal(thermo["max_force_dev_eV_A"], devi["max_devi_f_eV_per_A"])
    frames = read(tmp_path / "run" / "trajectory.extxyz", index=":")
    assert len(frames) == 5
    for atoms in frames:
        step = int(atoms.info["step"])
        e, f = _deeppot_eval(models, atoms.positions, atoms.cell.array, atoms.get_chemical_symbols())
        ref = _dpgen(f, e)
        row = int(np.flatnonzero(devi["step"] == step)[0])
        assert ref["max_devi_f_eV_per_A"] > 0.05  # the members do disagree
        for key, value in ref.items():
            # positions in the trajectory are rounded to 1e-8 Å (force changes ~1e-7 eV/Å); the models are float64
            assert devi[key][row] == pytest.approx(value, rel=1e-6, abs=1e-6), (step, key)
    assert sim.observers[-1].summary()["samples"] == 9


def test_ensemble_does_not_change_the_trajectory(tmp_path, models):
    """The observer only watches: trajectory and every other thermo column are byte-identical without it."""
    _run(_config(tmp_path, models, ensemble=False), tmp_path / "plain")
    _run(_config(tmp_path, models, deviation_every=10), tmp_path / "watched")
    a, b = tmp_path / "plain", tmp_path / "watched"
    assert (a / "trajectory.extxyz").read_bytes() == (b / "trajectory.extxyz").read_bytes()
    plain, watched = _read_csv(a / "thermo.csv"), _read_csv(b / "thermo.csv")
    assert list(watched) == list(plain) + ["max_force_dev_eV_A"]
    for key in plain:
        np.testing.assert_array_equal(plain[key], watched[key])
    dev = watched["max_force_dev_eV_A"]  # deviation_every = 10: every other thermo row
    assert np.isnan(dev[1::2]).all() and np.isfinite(dev[0::2]).all()
    assert not (a / "model_devi.csv").exists()


def test_ensemble_run_resumes_bit_for_bit(tmp_path, models):
    """Interrupted at step 20 and resumed in a fresh simulation: thermo.csv and model_devi.csv are the
    uninterrupted run's, byte for byte (the members' neighbour lists are rebuilt on resume)."""
    cfg = _config(tmp_path, models, trust=0.3)
    _run(cfg, tmp_path / "straight")
    _run(cfg, tmp_path / "split", steps=20)
    sim = _run(cfg, tmp_path / "split", steps=40, resume=True)
    for name in ("thermo.csv", "model_devi.csv", "trajectory.extxyz"):
        assert (tmp_path / "straight" / name).read_bytes() == (tmp_path / "split" / name).read_bytes(), name
    assert sim.observers[-1].summary()["samples"] == 9  # the counts survive the checkpoint


def test_warns_once_per_excursion_above_trust_hi(tmp_path, models, capsys):
    """trust_hi below every sample: one excursion, one warning naming the key; above every sample: none."""
    dev = _read_csv_after(tmp_path / "a", _config(tmp_path, models, trust=0.01))
    err = capsys.readouterr().err
    assert err.count("dpqtb: warning: step 0: max force deviation") == 1
    assert "potential.trust_hi_eV_per_A" in err and err.count("trust region") == 1
    big = float(dev.max()) * 10
    _read_csv_after(tmp_path / "b", _config(tmp_path, models, trust=big))
    assert "trust region" not in capsys.readouterr().err


def _read_csv_after(out, cfg):
    sim = _run(cfg, out)
    s = sim.observers[-1].summary()
    dev = _read_csv(out / "model_devi.csv")["max_devi_f_eV_per_A"]
    assert s["samples_outside"] == int((dev >= s["trust_hi_eV_per_A"]).sum())
    assert s["max_devi_f_eV_per_A"] == pytest.approx(dev.max(), rel=1e-12)
    return dev


def test_ring_polymer_deviation_is_the_worst_bead(tmp_path, models):
    """TRPMD with 3 beads: the last model_devi.csv row is the max (min, mean) over the beads of DP-GEN's
    deviation of DeepPot.eval at each bead's positions."""
    sim = _run(_config(tmp_path, models, kind="trpmd", extra="beads = 3"), tmp_path / "rp", steps=15)
    q = sim.state.ring.q.detach().numpy()
    cell = sim.state.cell.detach().numpy()
    symbols = [sim.state.type_map[i] for i in sim.state.species.tolist()]
    per_bead = [_dpgen(*reversed(_deeppot_eval(models, q[j], cell, symbols))) for j in range(3)]
    last = {k: v[-1] for k, v in _read_csv(tmp_path / "rp" / "model_devi.csv").items()}
    assert last["step"] == 15
    expect = {"max_devi_f_eV_per_A": max(d["max_devi_f_eV_per_A"] for d in per_bead),
              "min_devi_f_eV_per_A": min(d["min_devi_f_eV_per_A"] for d in per_bead),
              "avg_devi_f_eV_per_A": np.mean([d["avg_devi_f_eV_per_A"] for d in per_bead]),
              "devi_e_eV_per_atom": max(d["devi_e_eV_per_atom"] for d in per_bead)}
    spread = np.ptp([d["max_devi_f_eV_per_A"] for d in per_bead])
    assert spread > 1e-4  # the beads differ, so "the worst bead" is a real choice
    for key, value in expect.items():
        assert last[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_model_deviation_batch_is_per_configuration():
    """A (M, B, N, 3) batch gives each configuration's deviation: two members ±d apart on one atom."""
    from dpqtb.potential.ensemble import model_deviation

    f = torch.zeros(2, 2, 4, 3, dtype=torch.float64)
    f[0, 1, 3, 0], f[1, 1, 3, 0] = 0.2, -0.2  # configuration 1 only
    e = torch.tensor([[1.0, -4.0], [1.0, 4.0]], dtype=torch.float64)
    d = model_deviation(e, f)
    assert d["max_devi_f_eV_per_A"].tolist() == pytest.approx([0.0, 0.2])
    assert d["avg_devi_f_eV_per_A"].tolist() == pytest.approx([0.0, 0.05])
    assert d["devi_e_eV_per_atom"].tolist() == pytest.approx([0.0, 1.0])  # energies ±4 eV over 4 atoms
