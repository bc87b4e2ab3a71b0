"""dpqtb.rundir: the typed thermo row, the thermo/run.json readers and the atomic writers."""

import copy
import json
import os
import pickle

import numpy as np
import pytest

from dpqtb import InputError
from dpqtb.rundir import (THERMO, THERMO_COLUMNS, ThermoRow, atomic_open, atomic_write_bytes, atomic_write_json,
                          atomic_write_text, last_thermo, qtb_fd_name, read_run_json, read_thermo, read_thermo_rows,
                          thermo_header, thermo_line)

EXTRA = ("temperature_La_K", "temperature_H_K")


def _row(step=3, extra=True):
    vals = (step, 1.5, 300.25, 300.0, 0.1, -2.0, -1.9, -1.8, 12.5, 100.0)
    cols = THERMO_COLUMNS + (EXTRA if extra else ())
    return ThermoRow(vals + ((290.0, 310.0) if extra else ()), cols)


def test_thermo_row_is_a_tuple_with_named_columns():
    r = _row()
    assert r[0] == 3 and r.step == 3 and isinstance(r.step, int)
    assert r.temperature_K == r[2] == 300.25 and r.potential_eV == r[5] == -2.0
    assert r.volume_A3 == 100.0 and r.temperature_H_K == 310.0
    assert r.as_dict()["temperature_La_K"] == 290.0
    with pytest.raises(AttributeError):
        r.temperature_He_K
    assert np.array([r, _row(4)]).shape == (2, 12)
    assert tuple(r) == r and len(r) == 12
    for clone in (pickle.loads(pickle.dumps(r)), copy.deepcopy(r)):
        assert clone == r and clone.columns == r.columns and clone.temperature_H_K == 310.0
    with pytest.raises(ValueError):
        ThermoRow((1, 2.0), THERMO_COLUMNS)
    assert "temperature_K=300.25" in repr(r)


def test_thermo_file_round_trip(tmp_path):
    rows = [_row(0), _row(5), _row(10)]
    (tmp_path / THERMO).write_text(thermo_header(rows[0].columns) + "".join(thermo_line(r) for r in rows))
    back = read_thermo_rows(tmp_path)
    assert back == rows and back[-1].columns == rows[-1].columns
    assert last_thermo(tmp_path) == rows[-1] and last_thermo(tmp_path).temperature_H_K == 310.0
    cols = read_thermo(tmp_path)
    assert list(cols) == list(rows[0].columns) and list(cols["step"]) == [0, 5, 10]
    (tmp_path / THERMO).write_text(thermo_header(THERMO_COLUMNS))
    assert last_thermo(tmp_path) is None
    with pytest.raises(InputError, match="no data rows"):
        read_thermo(tmp_path)


def test_run_json(tmp_path):
    assert read_run_json(tmp_path) == {}
    (tmp_path / "run.json").write_text('{"n_atoms": 4}')
    assert read_run_json(tmp_path) == {"n_atoms": 4}
    (tmp_path / "run.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        read_run_json(tmp_path)


def test_atomic_writers(tmp_path):
    p = tmp_path / "sub" / "a.json"
    atomic_write_json(p, {"x": [1, 2]}, indent=1)
    assert p.read_text() == json.dumps({"x": [1, 2]}, indent=1) + "\n"
    atomic_write_json(p, {"x": 1}, separators=(",", ":"), newline=False)
    assert p.read_text() == '{"x":1}'
    atomic_write_text(tmp_path / "t.txt", "hello\n")
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "t.txt").read_text() == "hello\n" and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "t.txt").stat().st_mode & 0o777 == 0o666 & ~umask  # the usual permissions
    with pytest.raises(RuntimeError):  # a failed write keeps the old file and leaves no temporary file
        with atomic_open(tmp_path / "t.txt") as fh:
            fh.write("partial")
            raise RuntimeError("boom")
    assert (tmp_path / "t.txt").read_text() == "hello\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["b.bin", "sub", "t.txt"]
    assert [x.name for x in (tmp_path / "sub").iterdir()] == ["a.json"]
    with pytest.raises(ValueError):
        with atomic_open(tmp_path / "x", "a"):
            pass
    assert qtb_fd_name("H") == "qtb_fd_H.csv"


def test_target_temperature_from_the_thermo_column():
    from dpqtb.analysis.pipeline import target_temperature

    assert target_temperature(np.full(5, 300.0)) == 300.0
    assert target_temperature(np.linspace(100.0, 300.0, 5)) == [100.0, 300.0]
    assert target_temperature(np.full(3, np.nan)) is None
