"""Concurrent-learning exploration: ensemble MD over a grid, model deviation, queueing candidates."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("deepmd.pt")

from _deepmd_models import frozen_random_model  # noqa: E402

from dpqtb import DpqtbError  # noqa: E402
from dpqtb.train.explore import explore, load_config, starting_structure  # noqa: E402


def _write_config(path, models, store, **over):
    sections = {
        "ensemble": {"models": [str(m) for m in models]},
        "grid": {"phases": ["Fm-3m", "C2"], "pressures_GPa": [250], "temperatures_K": [300],
                 "thermostats": ["langevin", "qtb"]},
        "md": {"timestep_fs": 0.25, "steps": 20, "sample_every": 5, "damp_fs": 50.0},
        "selection": {"trust_lo_eV_per_A": 0.0, "trust_hi_eV_per_A": 1.0e9, "max_select": 3,
                      "max_per_run": 2, "store": str(store)},
    }
    for key, val in over.items():
        sec, k = key.split("__")
        if val is None:
            sections[sec].pop(k, None)
        else:
            sections[sec][k] = val

    def fmt(v):
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return repr(v)

    text = "\n".join(f"[{s}]\n" + "\n".join(f"{k} = {fmt(v)}" for k, v in kv.items()) + "\n"
                     for s, kv in sections.items())
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("ens")
    return [frozen_random_model(d / f"m{k}.pth", seed=20 + k) for k in range(2)]


def test_explore_runs_selects_and_queues(tmp_path, models):
    from deepmd.infer import DeepPot

    from dpqtb.dft.store import JobStore

    cfg = _write_config(tmp_path / "explore.toml", models, tmp_path / "store")
    rep = explore(cfg, tmp_path / "out", progress=False, log=lambda *a: None)
    assert [r["status"] for r in rep["runs"]] == ["complete"] * 4
    # 20 steps sampled every 5: frames at steps 5, 10, 15, 20 (step 0, the start, is not evaluated)
    assert [r["frames"] for r in rep["runs"]] == [4] * 4
    assert rep["total"]["frames"] == 16 and rep["total"]["candidate"] == 16
    # at most max_per_run from one run, max_select in all
    assert rep["selected"] == 3
    per_run = {}
    for q in rep["queued"]:
        per_run[q["run"]] = per_run.get(q["run"], 0) + 1
    assert max(per_run.values()) <= 2

    # the queued structures and their deviation, independently by DeePMD-kit's own evaluator
    store = JobStore(tmp_path / "store")
    assert sorted(store.job_ids()) == sorted(q["job_id"] for q in rep["queued"])
    dps = [DeepPot(str(m)) for m in models]
    for q in rep["queued"]:
        job = store.job(q["job_id"])
        assert job.meta["kind"] == "model_deviation" and job.meta["explore_run"] == q["run"]
        assert job.meta["step"] in (5, 10, 15, 20)
        a = job.atoms
        types = np.array([dps[0].get_type_map().index(s) for s in a.get_chemical_symbols()])
        f = np.stack([dp.eval(a.positions[None], a.cell.array[None], types)[1][0] for dp in dps])
        eps = np.sqrt(((f - f.mean(0)) ** 2).sum(-1).mean(0)).max()
        assert eps == pytest.approx(q["max_devi_f_eV_per_A"], rel=1e-6)

    # a second call repeats nothing: finished runs and cached deviations are kept, the same jobs queued
    done = {r["name"]: (tmp_path / "out" / "runs" / r["name"] / "done.json").stat().st_mtime_ns for r in rep["runs"]}
    rep2 = explore(cfg, tmp_path / "out", progress=False, log=lambda *a: None)
    assert [q["job_id"] for q in rep2["queued"]] == [q["job_id"] for q in rep["queued"]]
    assert {r["name"]: (tmp_path / "out" / "runs" / r["name"] / "done.json").stat().st_mtime_ns
            for r in rep["runs"]} == done
    assert len(store.job_ids()) == 3
    assert "| run | status |" in (tmp_path / "out" / "explore.md").read_text()


def test_trust_window_decides_selection(tmp_path, models):
    # an empty window (everything below lo) queues nothing; the counts add up
    cfg = _write_config(tmp_path / "e.toml", models, tmp_path / "store", selection__trust_lo_eV_per_A=1.0e8,
                        grid__phases=["Fm-3m"], grid__thermostats=["langevin"])
    rep = explore(cfg, tmp_path / "out", progress=False, log=lambda *a: None)
    t = rep["total"]
    assert (t["accurate"], t["candidate"], t["failed"]) == (4, 0, 0)
    assert rep["selected"] == 0


def test_starting_structures():
    import spglib

    from dpqtb.structures.eos import lattice_constant

    cfg = {"supercell": [1, 1, 1], "distortion_A": 0.05}
    a = starting_structure({"phase": "Fm-3m", "pressure_GPa": 200.0, "seed": 1}, cfg)
    assert len(a) == 44
    assert a.cell.lengths() == pytest.approx([lattice_constant(200.0)] * 3, rel=1e-12)
    c2 = starting_structure({"phase": "C2", "pressure_GPa": 200.0, "seed": 1}, cfg)
    cell = (c2.cell.array, c2.get_scaled_positions(), c2.numbers)
    assert spglib.get_spacegroup(cell, symprec=1e-3) == "C2 (5)"


@pytest.mark.parametrize("over, msg", [
    ({"selection__store": None}, "missing required config key 'selection.store'"),
    ({"grid__phases": ["Im-3m"]}, "'grid.phases'"),
    ({"md__steps": 0}, "'md.steps'"),
    ({"selection__trust_lo_eV_per_A": 0.5, "selection__trust_hi_eV_per_A": 0.2}, "must be below"),
    ({"grid__bogus": 1}, "unknown config key 'grid.bogus'"),
])
def test_config_errors(tmp_path, models, over, msg):
    cfg = _write_config(tmp_path / "e.toml", models, tmp_path / "store", **over)
    with pytest.raises(DpqtbError, match=msg):
        load_config(cfg)


def test_ensemble_errors(tmp_path, models):
    cfg = _write_config(tmp_path / "e.toml", models[:1], tmp_path / "store")
    with pytest.raises(DpqtbError, match="at least 2 models"):
        explore(cfg, tmp_path / "out", progress=False, log=lambda *a: None)
    cfg = _write_config(tmp_path / "e.toml", [tmp_path / "nothing"], tmp_path / "store")
    with pytest.raises(DpqtbError, match="ensemble model not found"):
        explore(cfg, tmp_path / "out", progress=False, log=lambda *a: None)
    cfg = _write_config(tmp_path / "e.toml", models, tmp_path / "store", ensemble__explore_member=5)
    with pytest.raises(DpqtbError, match="explore_member"):
        explore(cfg, tmp_path / "out", progress=False, log=lambda *a: None)


def test_grid_tables_union(tmp_path, models):
    from dpqtb.train.explore import grid

    text = f"""
[ensemble]
models = {json.dumps([str(m) for m in models])}
[[grid]]
pressures_GPa = [200, 300]
temperatures_K = [100]
thermostats = ["qtb"]
[[grid]]
phases = ["C2", "P-1"]
pressures_GPa = [100]
temperatures_K = [300]
distortion_A = 0.02
[selection]
trust_lo_eV_per_A = 0.1
trust_hi_eV_per_A = 0.4
store = "s"
"""
    (tmp_path / "g.toml").write_text(text)
    cfg = load_config(tmp_path / "g.toml")
    runs = grid(cfg)
    assert [r["name"] for r in runs] == ["Fm3m_200GPa_100K_qtb", "Fm3m_300GPa_100K_qtb",
                                         "C2_100GPa_300K_langevin", "C2_100GPa_300K_qtb",
                                         "P1_100GPa_300K_langevin", "P1_100GPa_300K_qtb"]
    assert cfg["grid"][1]["distortion_A"] == 0.02 and cfg["grid"][0]["distortion_A"] == 0.05
    assert len({r["seed"] for r in runs}) == len(runs)
    (tmp_path / "g.toml").write_text(text.replace("pressures_GPa = [100]", "pressures_GPa = [100, 100]"))
    with pytest.raises(DpqtbError, match="repeats a point"):
        grid(load_config(tmp_path / "g.toml"))
    (tmp_path / "g.toml").write_text(text.replace("distortion_A = 0.02", "distortion_A = -1.0"))
    with pytest.raises(DpqtbError, match="'grid.distortion_A'"):
        load_config(tmp_path / "g.toml")
