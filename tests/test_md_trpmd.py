"""TRPMD (the verdict's path-integral dynamics) against exact answers, with La and H masses and the options
users run (``thermostat.kind = "trpmd"`` from a config: λ = 1/2, no centroid thermostat).

References derived here, not from dpqtb:
* For a harmonic potential the centroid x̄ = (1/P) Σ_j q_j decouples from the internal modes: its force is
  (1/P) Σ_j (−k q_j) = −k x̄, so with no centroid friction it follows the classical oscillator of mass m and
  spring k, integrated by velocity Verlet (the ring polymer's B–A–O–A–B splitting reduces to it for the centroid,
  whose free-ring step is a drift and whose O step must be the identity). The test steps that map by hand.
* The PILE-L friction of internal mode k is γ_k = 2λω_k with ω_k = 2 (P k_B T/ħ) sin(kπ/P) and λ = 1/2 for TRPMD
  (Rossi, Ceriotti & Manolopoulos, JCP 140, 234116 (2014)).
* The internal modes' share of the potential-energy estimator: in normal modes of the ring polymer at β/P,
  ⟨½mω²Q_k²⟩ = (P k_B T/2) ω²/(ω² + ω_k²), so V̄ − ½mω²x̄² averages to (k_B T/2) Σ_{k≥1} ω²/(ω² + ω_k²)
  per degree of freedom. The centroid's own share is left out: without a centroid thermostat it keeps the
  energy it started with (that is the point of TRPMD), which a finite sample fixes once and for all.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.constants as C
import torch

from dpqtb.md.build import build_integrator
from dpqtb.md.config import validate
from dpqtb.md.state import MDState
from dpqtb.potential import EinsteinCrystal

AMU_A2_PER_FS2_EV = C.atomic_mass * 1e-20 / 1e-30 / C.e  # 1 amu Å²/fs² in eV (103.6 eV)
HBAR_EV_FS = C.hbar / C.e * 1e15
KB_EV = C.k / C.e
MASS = {"La": 138.90547, "H": 1.00794}
NU_THZ = {"La": 5.0, "H": 30.0}  # ħω/k_BT = 2.4 (La) and 14.4 (H) at 100 K
T_K, BEADS, DT = 100.0, 8, 0.25
POT = {"potential": {"kind": "einstein", "frequency_THz": {"Cu": 5.0}}}  # the config needs one; the tests pass their own


def _system(n_per_species=64):
    symbols = ["La"] * n_per_species + ["H"] * n_per_species
    n = len(symbols)
    side = math.ceil(n ** (1 / 3))
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n] * 3.0
    m = np.array([MASS[s] for s in symbols])
    omega = np.array([2 * np.pi * NU_THZ[s] * 1e-3 for s in symbols])  # rad/fs
    k = m * omega**2 * AMU_A2_PER_FS2_EV  # eV/Å²
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    state = MDState(positions=t(grid), momenta=t(np.zeros((n, 3))), masses=t(m), cell=t(np.eye(3) * side * 3.0),
                    species=torch.tensor([0 if s == "La" else 1 for s in symbols]), type_map=("La", "H"))
    pot = EinsteinCrystal(state.positions.clone(), state.cell.clone(), k_per_atom=t(k))
    return state, pot, m, omega, k, np.array(symbols)


def _trpmd(pot, seed=5):
    cfg = validate({"system": {"structure": "builtin:fcc", "element": "Cu", "lattice_A": 3.61}, **POT,
                              "md": {"timestep_fs": DT, "steps": 0, "seed": seed},
                              "thermostat": {"kind": "trpmd", "temperature_K": T_K, "beads": BEADS}})
    return build_integrator(cfg, pot)


def test_trpmd_from_a_config_has_half_critical_internal_friction_and_a_free_centroid():
    state, pot, *_ = _system(8)
    integ = _trpmd(pot)
    integ.setup(state)
    bath = integ.bath
    wk = 2 * (BEADS * KB_EV * T_K / HBAR_EV_FS) * np.sin(np.arange(BEADS) * np.pi / BEADS)  # rad/fs, in order
    got = np.sort(bath.c1.numpy())
    want = np.sort(np.exp(-2 * 0.5 * wk * DT))  # λ = 1/2; k = 0: exp(0) = 1, no centroid friction
    # rtol: ASE's constants (CODATA 2014, used inside dpqtb) and scipy's (2018) differ by 3.4e-7 in k_B
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert float(bath.c2.max()) > 0 and sorted(bath.c2.numpy())[0] == 0.0


def test_trpmd_centroid_follows_the_classical_velocity_verlet_oscillator_exactly():
    state, pot, m, omega, k, _ = _system(8)
    integ = _trpmd(pot)
    g = torch.Generator().manual_seed(3)
    state.positions = state.positions + 0.05 * torch.randn(state.positions.shape, generator=g, dtype=torch.float64)
    state.momenta = torch.randn(state.momenta.shape, generator=g, dtype=torch.float64) * torch.sqrt(
        state.masses * KB_EV * T_K / AMU_A2_PER_FS2_EV)[:, None]
    integ.setup(state)
    ring = state.ring
    sites = pot.sites(state.cell).numpy()
    x = ring.q.mean(0).numpy() - sites
    p = ring.p.mean(0).numpy()
    mm, kk = m[:, None], k[:, None] / AMU_A2_PER_FS2_EV  # k in amu/fs²
    for _ in range(400):
        integ.step(state)
        p = p - 0.5 * DT * kk * x
        x = x + DT * p / mm
        p = p - 0.5 * DT * kk * x
    # tolerance: the amu·Å²/fs² → eV factor of ASE's CODATA 2014 and scipy's 2018 differ by 1e-8, a phase error
    # of ~ωt·5e-9 = 1e-7 rad after 100 fs on H, i.e. ~5e-9 Å on the ~0.05 Å amplitude; a centroid friction of
    # even 1/(1 ns) would leave 1e-4 relative
    np.testing.assert_allclose(state.ring.q.mean(0).numpy() - sites, x, rtol=0, atol=1e-7)
    np.testing.assert_allclose(state.ring.p.mean(0).numpy(), p, rtol=0, atol=2e-6 * float(np.abs(p).max()))
    # the internal modes did move: the beads are not on the centroid
    assert float((state.ring.q - state.ring.q.mean(0)).abs().max()) > 1e-3


def test_trpmd_internal_modes_reach_the_exact_ring_polymer_energy_per_species():
    state, pot, m, omega, k, symbols = _system(64)
    integ = _trpmd(pot, seed=11)
    integ.setup(state)
    ring = state.ring
    sites = pot.sites(state.cell)
    kt = torch.tensor(k)[None, :, None]
    samples = {s: [] for s in MASS}
    for i in range(6000):
        integ.step(state)
        if i >= 1000 and i % 5 == 0:
            u = ring.q - sites
            v_bar = 0.5 * (kt * u**2).mean(0)  # (N, 3): (1/P) Σ_j ½ k q_j²
            v_cen = 0.5 * kt[0] * (u.mean(0)) ** 2
            internal = (v_bar - v_cen).numpy()
            for s in MASS:
                samples[s].append(internal[symbols == s].mean())
    wk = 2 * (BEADS * KB_EV * T_K / HBAR_EV_FS) * np.sin(np.arange(1, BEADS) * np.pi / BEADS)
    for s in MASS:
        w = 2 * np.pi * NU_THZ[s] * 1e-3
        exact = 0.5 * KB_EV * T_K * float(np.sum(w**2 / (w**2 + wk**2)))
        x = np.array(samples[s])
        blocks = x[: len(x) // 10 * 10].reshape(10, -1).mean(1)
        err = blocks.std(ddof=1) / math.sqrt(10)
        # 4σ of 10 block means (t with 9 dof: two-sided p = 0.3 %) plus 0.5 % for the time step (ω dt = 0.05 for H,
        # internal modes up to ω_k dt = 0.13; the splitting's error is O(dt²))
        assert abs(x.mean() - exact) < 4 * err + 0.005 * exact, (s, x.mean() / exact - 1, err / exact)
    # with a centroid thermostat (PIMD) the centroid would not follow the free map: guard the test's premise
    assert integ.bath.centroid_damp is None


def test_pimd_centroid_thermostat_breaks_the_free_map():
    """The exactness test above can fail: PIMD (centroid Langevin) leaves the velocity-Verlet map."""
    state, pot, m, omega, k, _ = _system(8)
    cfg = validate({"system": {"structure": "builtin:fcc", "element": "Cu", "lattice_A": 3.61}, **POT,
                              "md": {"timestep_fs": DT, "steps": 0, "seed": 1},
                              "thermostat": {"kind": "pimd", "temperature_K": T_K, "beads": BEADS, "damp_fs": 20.0}})
    integ = build_integrator(cfg, pot)
    integ.setup(state)
    x = state.ring.q.mean(0).numpy() - pot.sites(state.cell).numpy()
    p = state.ring.p.mean(0).numpy()
    mm, kk = m[:, None], k[:, None] / AMU_A2_PER_FS2_EV
    for _ in range(50):
        integ.step(state)
        p = p - 0.5 * DT * kk * x
        x = x + DT * p / mm
        p = p - 0.5 * DT * kk * x
    assert np.abs(state.ring.p.mean(0).numpy() - p).max() > 1e-3 * np.abs(p).max()


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])


def _centroid_temperature(state, m):
    p = state.ring.p.mean(0).numpy()
    return float((p**2 / m[:, None]).sum() * AMU_A2_PER_FS2_EV / (3 * len(m) * KB_EV))


@pytest.mark.parametrize("thermalize", [False, True])
def test_trpmd_centroid_thermostat_steps_thermalise_the_centroids_then_free_them(thermalize):
    """Started as `dpqtb md` starts (atoms at their minimum, momenta drawn at T), a harmonic centroid without a
    thermostat keeps the energy it started with: on average half in potential energy, so its kinetic temperature
    is T/2 for ever (exactly decoupled here; for La in LaH10 for picoseconds). With
    ``centroid_thermostat_steps = N`` the centroids are thermostatted for N steps (20 friction times here) and
    their energy at the switch is canonical: the kinetic temperature averages T. 128 oscillators, 384 quadratic
    pairs: the centroid energy at the switch is known to √(1/384) = 5 %, the tolerance is 4σ. After step N the
    centroid follows the free velocity-Verlet map exactly."""
    from dpqtb.md.state import maxwell_boltzmann_momenta

    state, pot, m, omega, k, _ = _system(64)
    n_therm, damp = 800, 10.0
    th = {"kind": "trpmd", "temperature_K": T_K, "beads": BEADS, "damp_fs": damp}
    if thermalize:
        th["centroid_thermostat_steps"] = n_therm
    integ = build_integrator(validate({"system": {"structure": "builtin:fcc", "element": "Cu", "lattice_A": 3.61}, **POT,
                                       "md": {"timestep_fs": DT, "steps": 0, "seed": 3}, "thermostat": th}), pot)
    state.momenta = maxwell_boltzmann_momenta(state.masses, T_K, torch.Generator().manual_seed(9), zero_com=False)
    t_start = float((state.momenta.numpy() ** 2 / m[:, None]).sum() * AMU_A2_PER_FS2_EV / (3 * len(m) * KB_EV))
    integ.setup(state)
    for _ in range(n_therm):
        integ.step(state)
    assert state.step == n_therm
    sites = pot.sites(state.cell).numpy()
    x = state.ring.q.mean(0).numpy() - sites
    p = state.ring.p.mean(0).numpy()
    mm, kk = m[:, None], k[:, None] / AMU_A2_PER_FS2_EV
    temps = []
    for _ in range(1200):  # 300 fs: ~1.5 La periods, 9 H periods
        integ.step(state)
        p = p - 0.5 * DT * kk * x
        x = x + DT * p / mm
        p = p - 0.5 * DT * kk * x
        temps.append(_centroid_temperature(state, m))
    np.testing.assert_allclose(state.ring.q.mean(0).numpy() - sites, x, rtol=0, atol=1e-7)  # free after step N
    # the energy at the switch, from the state itself (exact for the decoupled harmonic centroids)
    e_c = 0.5 * float((p**2 / mm).sum() * AMU_A2_PER_FS2_EV + (kk * x**2).sum() * AMU_A2_PER_FS2_EV)
    t_equip = e_c / (3 * len(m) * KB_EV)  # the time-averaged kinetic temperature of that energy
    if thermalize:
        assert t_equip == pytest.approx(T_K, rel=4 * math.sqrt(1 / 384))
    else:
        # never thermalised: the start's energy, conserved (velocity Verlet's shadow energy differs by ~(ωdt)²/4)
        assert t_equip == pytest.approx(t_start / 2, rel=2e-3)
    assert np.mean(temps) == pytest.approx(t_equip, rel=0.15)  # 300 fs of La's slow oscillation: a rough average


def test_centroid_thermostat_steps_is_trpmd_only_and_leaves_other_configs_hashes_alone():
    from dpqtb import InputError
    from dpqtb.md.build import physics_config

    base = {"system": {"structure": "builtin:fcc", "element": "Cu", "lattice_A": 3.61}, **POT,
            "md": {"timestep_fs": DT, "steps": 0, "seed": 3}}
    with pytest.raises(InputError, match="centroid_thermostat_steps"):
        validate({**base, "thermostat": {"kind": "pimd", "temperature_K": T_K, "beads": 4,
                                         "centroid_thermostat_steps": 10}})
    with pytest.raises(InputError, match="centroid_thermostat_steps"):
        validate({**base, "thermostat": {"kind": "trpmd", "temperature_K": T_K, "beads": 4,
                                         "centroid_thermostat_steps": -1}})
    plain = physics_config(validate({**base, "thermostat": {"kind": "trpmd", "temperature_K": T_K, "beads": 4}}))
    assert "centroid_thermostat_steps" not in plain["thermostat"]
    given = physics_config(validate({**base, "thermostat": {"kind": "trpmd", "temperature_K": T_K, "beads": 4,
                                                            "centroid_thermostat_steps": 10}}))
    assert given["thermostat"]["centroid_thermostat_steps"] == 10
    zero = physics_config(validate({**base, "thermostat": {"kind": "trpmd", "temperature_K": T_K, "beads": 4,
                                                           "centroid_thermostat_steps": 0}}))
    assert zero == plain  # 0 is the run without it: the same hash


def test_a_centroid_thermostat_covering_the_whole_run_warns_once(tmp_path, capsys):
    """``centroid_thermostat_steps`` ≥ the run's last step: the centroids never run free, so the run is PIMD
    with a Langevin centroid, not TRPMD. `dpqtb md` says so on stderr (once), and not for a run that goes past
    it, also when resumed past it."""
    from test_md_pimd import MORSE_PIMD  # the Morse copper PIMD run of the CLI tests: as TRPMD, 10 steps

    from dpqtb.cli import main

    cfg = tmp_path / "run.toml"
    cfg.write_text(MORSE_PIMD.format(beads=2).replace('kind = "pimd"', 'kind = "trpmd"')
                   .replace("steps = 20", "steps = 10")
                   .replace("damp_fs = 100", "damp_fs = 100\ncentroid_thermostat_steps = 20"))
    out = tmp_path / "out"
    assert main(["md", str(cfg), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("dpqtb: warning: thermostat.centroid_thermostat_steps = 20 covers the whole run") == 1, err
    assert "steps 0 to 10" in err
    assert main(["md", str(cfg), "--output", str(out), "--resume", "--steps", "15"]) == 0  # still inside it
    assert "covers the whole run (steps 10 to 15)" in capsys.readouterr().err
    assert main(["md", str(cfg), "--output", str(out), "--resume", "--steps", "30"]) == 0  # to step 30 > 20
    assert "centroid_thermostat_steps" not in capsys.readouterr().err
