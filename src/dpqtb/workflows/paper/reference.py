"""The paper's own numbers (``dpqtb/data/paper_reference.json``), each with where it comes from."""

from __future__ import annotations

import json
from importlib import resources

REFERENCE_FILE = "paper_reference.json"


def load_reference() -> dict:
    """The shipped paper reference: ``numbers`` (name -> value, unit, source[, note, approximate]) and
    ``figure_only`` (quantities the paper gives only as a figure, with no number in its text)."""
    return json.loads(resources.files("dpqtb.data").joinpath(REFERENCE_FILE).read_text(encoding="utf-8"))


def paper_value(name: str):
    """The value of one number of the paper (KeyError when the paper has none of that name)."""
    return load_reference()["numbers"][name]["value"]
