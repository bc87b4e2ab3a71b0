"""The strict TOML schema shared by the `dpqtb md` and `dpqtb train` configs
(dpqtb.config_schema): the exact one-line errors of each, and the shared rules."""

import dataclasses
import inspect

import pytest

from dpqtb import DpqtbError
from dpqtb.config_schema import REQUIRED, check_type, load_toml, thaw, validate_schema
from dpqtb.md import config as mconfig
from dpqtb.train import config as tconfig

MD_BASE = {"system": {"structure": "builtin:fcc", "element": "Cu", "lattice_A": 3.61},
           "potential": {"kind": "einstein", "frequency_THz": {"Cu": 5.0}},
           "md": {"timestep_fs": 1.0, "steps": 10}}


def _md(section, key, value):
    raw = {k: dict(v) for k, v in MD_BASE.items()}
    raw.setdefault(section, {})[key] = value
    return raw


def _error(func, arg) -> str:
    with pytest.raises(DpqtbError) as exc:
        func(arg)
    return str(exc.value)


@pytest.mark.parametrize("raw,message", [
    ([], "config must be a TOML table"),
    ({"outptu": {}}, "unknown config section [outptu] (known: system, potential, md, thermostat, barostat, output)"),
    ({**MD_BASE, "md": 3}, "config [md] must be a table"),
    (_md("md", "tmestep_fs", 2.0), "unknown config key 'md.tmestep_fs'"),
    ({k: v for k, v in MD_BASE.items() if k != "md"}, "missing required config key 'md.timestep_fs'"),
    (_md("md", "steps", "many"), "config key 'md.steps' has the wrong type (str) must be >= 0"),
    (_md("md", "steps", True), "config key 'md.steps' has the wrong type (bool) must be >= 0"),
    (_md("output", "progress", 1), "config key 'output.progress' has the wrong type (int)"),
    (_md("md", "timestep_fs", float("inf")), "config key 'md.timestep_fs' = inf: must be a finite number"),
    (_md("md", "timestep_fs", 0.0), "config key 'md.timestep_fs' = 0.0: must be > 0"),
    (_md("system", "supercell", [2, 0, 2]), "config key 'system.supercell' = [2, 0, 2]: must be three integers >= 1"),
    (_md("thermostat", "kind", "langevin"),
     "missing required config key 'thermostat.temperature_K' for thermostat 'langevin'"),
])
def test_md_config_errors_are_unchanged(raw, message):
    assert _error(mconfig.validate, raw) == message


@pytest.mark.parametrize("raw,message", [
    ([], "training config must be a TOML table"),
    ({"optimizer": {}}, "unknown training config section [optimizer] (known: data, descriptor, fitting, "
                        "learning_rate, loss, training, ensemble)"),
    ({"data": 3}, "training config [data] must be a table"),
    ({"data": {"store": []}}, "unknown training config key 'data.store' (known: stores, test_modulus)"),
    ({"training": {"numb_steps": "many"}},
     "training config key 'training.numb_steps' has the wrong type (str): must be an integer >= 1"),
    ({"training": {"numb_steps": 1.0}},
     "training config key 'training.numb_steps' has the wrong type (float): must be an integer >= 1"),
    ({"training": {"numb_steps": 0}}, "training config key 'training.numb_steps' = 0: must be an integer >= 1"),
    ({"descriptor": {"neuron": [8, 0]}},
     "training config key 'descriptor.neuron' = [8, 0]: must be a list of layer widths >= 1"),
    ({"descriptor": {"rcut_smth_A": 6.5}},
     "training config key 'descriptor.rcut_smth_A' = 6.5 must be < descriptor.rcut_A = 6.0"),
    ({"learning_rate": {"stop_lr": 1.0}},
     "training config key 'learning_rate.stop_lr' must be <= learning_rate.start_lr"),
])
def test_training_config_errors_are_unchanged(raw, message):
    assert _error(tconfig.validate, raw) == message


def test_missing_file_and_bad_toml(tmp_path):
    assert _error(mconfig.load, tmp_path / "none.toml") == f"config file not found: {tmp_path / 'none.toml'}"
    assert _error(tconfig.load, tmp_path / "none.toml") == f"training config file not found: {tmp_path / 'none.toml'}"
    bad = tmp_path / "bad.toml"
    bad.write_text("[md\nsteps = 1\n")
    assert _error(mconfig.load, bad).startswith(f"config file {bad} is not valid TOML: ")
    assert _error(tconfig.load, bad).startswith(f"training config file {bad} is not valid TOML: ")
    good = tmp_path / "good.toml"
    good.write_text("[md]\nsteps = 1\n")
    assert load_toml(good) == {"md": {"steps": 1}}


def test_shared_rules():
    # bool is not an int, numbers are finite, float accepts an int
    assert not check_type(True, int) and check_type(True, bool) and check_type(3, (int, str))
    assert check_type(3, float) and not check_type(float("nan"), float) and not check_type("3", float)
    schema = {"a": {"n": (int, REQUIRED, None, ""), "l": (list, [1, 2], None, "")}}
    c1, c2 = validate_schema({"a": {"n": 1}}, schema), validate_schema({"a": {"n": 2}}, schema)
    assert c1 == {"a": {"n": 1, "l": [1, 2]}}
    c1["a"]["l"].append(3)  # defaults are fresh copies
    assert c2["a"]["l"] == [1, 2] and schema["a"]["l"][1] == [1, 2]
    # the md and train configs fill in every default
    assert set(mconfig.validate(MD_BASE).to_dict()) == set(mconfig.SCHEMA) - {"barostat"}  # fixed cell
    npt = {**MD_BASE, "thermostat": {"kind": "langevin", "temperature_K": 300.0}, "barostat": {"pressure_GPa": 1.0}}
    assert set(mconfig.validate(npt).to_dict()) == set(mconfig.SCHEMA)
    assert mconfig.MDConfig.from_dict(mconfig.validate(npt).to_dict()) == mconfig.validate(npt)
    assert tconfig.validate({})["training"]["numb_steps"] == 40000


# ----------------------------------------------------------------------------- the typed md config
def test_md_config_is_typed_frozen_and_round_trips(tmp_path):
    cfg = mconfig.validate(MD_BASE)
    assert isinstance(cfg.thermostat, mconfig.ThermostatConfig) and cfg.md.steps == 10 and cfg.md.seed == 12345
    assert cfg.system.supercell == (1, 1, 1) and cfg.to_dict()["system"]["supercell"] == [1, 1, 1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.md.steps = 3
    with pytest.raises(TypeError):
        cfg.potential.frequency_THz["Cu"] = 1.0  # tables are read-only too
    # to_dict is the complete TOML-shaped table, and gives the config back
    d = cfg.to_dict()
    full = validate_schema(MD_BASE, mconfig.SCHEMA)
    assert full.pop("barostat")["pressure_GPa"] is None  # a fixed cell: [barostat] is not in the table
    assert d == full | {"thermostat": d["thermostat"]}
    assert d["thermostat"]["damp_fs"] == mconfig.DEFAULT_DAMP_fs  # the derived default, resolved
    assert mconfig.MDConfig.from_dict(d) == cfg
    # the config file's folder is a field, not a hidden key
    path = tmp_path / "c.toml"
    path.write_text('[system]\nstructure = "builtin:fcc"\nlattice_A = 3.6\n[potential]\nkind = "einstein"\n'
                    'frequency_THz = {H = 5.0}\n[md]\ntimestep_fs = 1.0\nsteps = 1\n')
    loaded = mconfig.load(path)
    assert loaded.base_dir == tmp_path.resolve() and not any(k.startswith("_") for k in loaded.to_dict())
    assert loaded.resolve("x.extxyz") == tmp_path.resolve() / "x.extxyz"


def test_section_fields_are_the_schema_keys():
    for name, section in mconfig.SCHEMA.items():
        cls = type(getattr(mconfig.validate(MD_BASE), name))
        assert [f.name for f in dataclasses.fields(cls)] == list(section)
        for f in dataclasses.fields(cls):
            default = section[f.name][1]
            if default is REQUIRED:
                assert f.default is dataclasses.MISSING
            else:
                assert thaw(f.default) == default, (name, f.name)


def test_overrides_by_replace_are_checked_again():
    cfg = mconfig.validate(MD_BASE)
    assert mconfig.with_steps(cfg, 50).md.steps == 50 and cfg.md.steps == 10
    with pytest.raises(DpqtbError, match=r"config key 'md.steps' = -1: must be >= 0"):
        mconfig.with_steps(cfg, -1)
    with pytest.raises(DpqtbError, match="missing required config key 'thermostat.temperature_K' for thermostat"):
        dataclasses.replace(cfg, thermostat=dataclasses.replace(cfg.thermostat, kind="langevin"))
    with pytest.raises(DpqtbError, match="config key 'thermostat.n_f' = 1: must be an integer >= 2"):
        mconfig.ThermostatConfig(n_f=1)


@pytest.mark.parametrize("section,key,value,message", [
    # moved from md/build.py and the PIMD constructor: a config that validates builds
    ("thermostat", "kind", {"kind": "qtb", "temperature_K": 10, "damp_fs": 0.5},
     "config key 'thermostat.damp_fs' = 0.5 must be >= md.timestep_fs = 1.0 for QTB"),
    ("system", "dtype", "float32", "system.dtype = 'float32' is only allowed on a GPU (device = 'cuda')"),
    ("system", "structure", "builtin:hcp", "unknown builtin structure 'hcp' (known: fcc, bcc, sc, lah10)"),
    ("system", "lattice_A", None, "missing required config key 'system.lattice_A' for structure 'builtin:fcc'"),
    ("system", "structure", {"structure": "builtin:lah10"},
     "structure 'builtin:lah10' needs exactly one of 'system.lattice_A' or 'system.pressure_GPa'"),
    ("thermostat", "kind", {"kind": "pimd", "temperature_K": [10, 20], "beads": 4},
     "thermostat.temperature_K ramps are not supported for PIMD (ω_P depends on T)"),
    ("thermostat", "kind", {"kind": "trpmd", "temperature_K": 0, "beads": 4},
     "thermostat.temperature_K must be > 0 for PIMD"),
])
def test_rules_between_keys_are_in_the_config(section, key, value, message):
    raw = {k: dict(v) for k, v in MD_BASE.items()}
    if isinstance(value, dict):
        raw[section] = value
    elif value is None:
        raw[section].pop(key)
    else:
        raw[section][key] = value
    with pytest.raises(DpqtbError) as exc:
        mconfig.validate(raw)
    assert str(exc.value).startswith(message), str(exc.value)


def test_every_default_is_written_once():
    from dpqtb.md.baths import QTBBath
    from dpqtb.md.pimd import DEFAULT_PILE_LAMBDA, PIMD
    from dpqtb.md.qtb import QTB_DEFAULTS, QTBParameters
    from dpqtb.potential.neighbors import DEFAULT_SKIN_A

    th = mconfig.SCHEMA["thermostat"]
    qtb = inspect.signature(QTBBath).parameters  # the QTB integrator passes its bath options through
    for key, value in QTB_DEFAULTS.items():
        assert th[key][1] == value and qtb[key].default == value, key
    params = QTBParameters(10.0, 100.0)
    assert (params.f_max_THz, params.n_f) == (th["f_max_THz"][1], th["n_f"][1])
    assert mconfig.SCHEMA["potential"]["skin_A"][1] == DEFAULT_SKIN_A
    assert inspect.signature(PIMD).parameters["pile_lambda"].default == DEFAULT_PILE_LAMBDA
    raw = {**MD_BASE, "thermostat": {"kind": "trpmd", "temperature_K": 10, "beads": 2}}
    assert mconfig.validate(raw).thermostat.effective_pile_lambda == mconfig.DEFAULT_TRPMD_LAMBDA
    raw["thermostat"]["kind"] = "adqtb"
    raw["thermostat"].pop("beads")
    assert mconfig.validate(raw).thermostat.damp_fs == mconfig.DEFAULT_DAMP_fs_BY_KIND["adqtb"]


def test_momenta_seed_is_named():
    cfg = mconfig.validate(MD_BASE)
    assert cfg.md.momenta_seed == 12345 + 7919 == mconfig.derived_seed(12345, "momenta")
    assert cfg.md.thermostat_seed == 12345 and mconfig.MOMENTA_SEED_OFFSET == 7919


@pytest.mark.parametrize("raw,sha256", [
    (MD_BASE, "9cdaab2927a0e9a41d14c1e55fb423fa24c871249b4b79506a80b276521db205"),
    ({"system": {"structure": "builtin:fcc", "element": "Cu", "lattice_A": 3.61, "supercell": [2, 2, 2]},
      "potential": {"kind": "morse", "D_eV": 0.3429, "a_per_A": 1.3588, "r0_A": 2.866, "cutoff_A": 5.0},
      "md": {"timestep_fs": 1, "steps": 20, "seed": 3},
      "thermostat": {"kind": "adqtb", "temperature_K": [100, 200], "f_max_THz": 50, "n_f": 8},
      "output": {"directory": "out", "progress": False}},
     "51fc1e01cceee4a4c608c744e7c267d4f2e5d6fa26190cba919f9ef5ce8cd26f"),
])
def test_physics_hash_of_an_unchanged_config_is_pinned(raw, sha256):
    """The physics-config hash stored in checkpoints (values computed before the typed config): a
    checkpoint written by an earlier version must still resume."""
    from dpqtb.md.build import physics_config
    from dpqtb.md.run import physics_hash

    assert physics_hash(physics_config(mconfig.validate(raw))) == sha256
