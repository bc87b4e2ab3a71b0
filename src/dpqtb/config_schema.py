"""Strict TOML config schemas, shared by ``dpqtb md``, ``dpqtb train`` and ``dpqtb explore``.

A schema maps section -> key -> ``(types, default, check, message)``:

- ``types``: a type or a tuple of types; ``float`` or :data:`NUMBER` accept any finite int or float;
  a non-finite number (TOML ``inf``, ``nan``) is refused anywhere, inside lists and tables too.
  ``bool`` is accepted only where it is named (``True`` is not an ``int`` here).
- ``default``: filled in when the key is absent (a fresh copy each time); :data:`REQUIRED` makes the
  key mandatory.
- ``check``: ``None`` or a predicate on the (type-checked) value.
- ``message``: what the value must be; it ends the error of a wrong type or a failed check.

:func:`validate_schema` turns a raw TOML table into the complete config or raises a one-line
:class:`dpqtb.DpqtbError` naming the section or key at fault (unknown section or key, missing
required key, wrong type, value out of range).  Cross-checks between keys stay with each config.
:func:`check_value` checks one value (the typed configs check their fields with it), :func:`freeze` /
:func:`thaw` convert a value between its TOML form and the read-only form a frozen dataclass holds.
"""

from __future__ import annotations

import copy
import math
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from dpqtb import InputError

#: Default of a key that must be given.
REQUIRED = object()
#: Any finite number (int or float, not bool).
NUMBER = (int, float)


def positive(v) -> bool:
    return v > 0


def nonneg(v) -> bool:
    return v >= 0


def int_list(v) -> bool:
    """A non-empty list of integers >= 1 (not bools)."""
    return isinstance(v, list) and len(v) >= 1 and all(
        isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v)


def str_list(v) -> bool:
    """A non-empty list of non-empty strings."""
    return isinstance(v, list) and len(v) >= 1 and all(isinstance(x, str) and x for x in v)


def device_name(v) -> bool:
    """'cpu', 'cuda' or 'cuda:N'."""
    return isinstance(v, str) and re.fullmatch(r"cpu|cuda(:[0-9]+)?", v) is not None


def non_finite(value):
    """The first non-finite float inside ``value`` (numbers, lists, tables), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for x in value:
            bad = non_finite(x)
            if bad is not None:
                return bad
    return None


def check_type(value, types) -> bool:
    """True if ``value`` has one of ``types`` (bool only where named; numbers finite)."""
    tt = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in tt:
        return False
    if types is float or types == NUMBER:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, tt)


def validate_schema(raw: Any, schema: dict[str, dict[str, tuple]], *, what: str = "config",
                    list_known_keys: bool = False, type_sep: str = " ") -> dict[str, dict[str, Any]]:
    """The complete config (defaults filled in) or a one-line DpqtbError naming the bad key.

    ``what`` names the kind of file in the errors ("config", "training config");
    ``list_known_keys``: an unknown key's error lists the section's keys; ``type_sep`` stands
    between the wrong type and the key's message.
    """
    if not isinstance(raw, dict):
        raise InputError(f"{what} must be a TOML table")
    for section in raw:
        if section not in schema:
            raise InputError(f"unknown {what} section [{section}] (known: {', '.join(schema)})")
    cfg: dict[str, dict[str, Any]] = {}
    for section, keys in schema.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise InputError(f"{what} [{section}] must be a table")
        for key in given:
            if key not in keys:
                known = f" (known: {', '.join(keys)})" if list_known_keys else ""
                raise InputError(f"unknown {what} key '{section}.{key}'{known}")
        out = {}
        for key, spec in keys.items():
            if key not in given:
                if spec[1] is REQUIRED:
                    raise InputError(f"missing required {what} key '{section}.{key}'")
                out[key] = copy.deepcopy(spec[1])
                continue
            check_value(given[key], spec, f"{what} key '{section}.{key}'", type_sep=type_sep)
            out[key] = given[key]
        cfg[section] = out
    return cfg


def check_value(value: Any, spec: tuple, name: str, *, type_sep: str = " ") -> None:
    """Check one value against its schema entry ``spec = (types, default, check, message)``.

    Parameters
    ----------
    value
        The value as read from TOML (lists and tables as ``list`` and ``dict``).
    spec
        The key's entry of a schema table.
    name
        How the error names the key, e.g. ``"config key 'md.steps'"``.
    type_sep
        What stands between a wrong type and the key's message.

    Raises
    ------
    InputError
        A wrong type, a non-finite number (anywhere inside the value) or a failed check.
    """
    types, _, check, msg = spec
    if not check_type(value, types):
        if non_finite(value) is not None:
            raise InputError(f"{name} = {value!r}: must be a finite number")
        raise InputError(f"{name} has the wrong type ({type(value).__name__})" + (f"{type_sep}{msg}" if msg else ""))
    bad = non_finite(value)
    if bad is not None:  # inside a list or a table (masses, ramps): every number must be finite
        raise InputError(f"{name} = {value!r} holds a non-finite number ({bad!r})")
    if check is not None and not check(value):
        raise InputError(f"{name} = {value!r}: {msg}")


def default_of(schema: dict[str, dict[str, tuple]], section: str, key: str) -> Any:
    """The default of ``section.key`` in ``schema`` (a fresh copy; :data:`REQUIRED` for a required key).

    Parameters
    ----------
    schema
        A schema table (section -> key -> ``(types, default, check, message)``).
    section, key
        The key.

    Returns
    -------
    Any
        The default value.
    """
    return copy.deepcopy(schema[section][key][1])


def freeze(value: Any) -> Any:
    """A read-only copy of a config value: lists become tuples, tables read-only mappings (recursively).

    Parameters
    ----------
    value
        A value as read from TOML.

    Returns
    -------
    Any
        The same value with no mutable container left; :func:`thaw` gives the TOML form back.
    """
    if isinstance(value, (list, tuple)):
        return tuple(freeze(x) for x in value)
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    return value


def thaw(value: Any) -> Any:
    """The TOML form (lists, dicts) of a value made by :func:`freeze`.

    Parameters
    ----------
    value
        A frozen config value.

    Returns
    -------
    Any
        The value with tuples as lists and mappings as dicts (new containers).
    """
    if isinstance(value, (list, tuple)):
        return [thaw(x) for x in value]
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    return value


def load_toml(path: str | Path, *, what: str = "config") -> dict[str, Any]:
    """The raw table of a TOML file, or a one-line DpqtbError (missing file, bad TOML)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file not found: {path}")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{what} file {path} is not valid TOML: {exc}") from None
