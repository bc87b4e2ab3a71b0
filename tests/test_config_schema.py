"""The strict TOML schema shared by the `dpqtb md` and `dpqtb train` configs
(dpqtb.config_schema): the exact one-line errors of each, and the shared rules."""

import pytest

from dpqtb import DpqtbError
from dpqtb.config_schema import REQUIRED, check_type, load_toml, validate_schema
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
    ({"outptu": {}}, "unknown config section [outptu] (known: system, potential, md, thermostat, output)"),
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
    assert set(mconfig.validate(MD_BASE)) == set(mconfig.SCHEMA)
    assert tconfig.validate({})["training"]["numb_steps"] == 40000
