"""The structure rules of the source tree (issue 22), checked on the source text with :mod:`ast`.

* no Python file in ``src/`` over 600 lines;
* no import cycle between the parts of ``dpqtb``: its subpackages (``dpqtb.md``, ``dpqtb.dft``, …),
  its top-level modules (``dpqtb.cli``, ``dpqtb.units``, …) and the package root ``dpqtb`` itself
  are the nodes; every ``import dpqtb.…`` / ``from dpqtb… import …`` in a part's files is an edge,
  at module level or inside a function, and so is a tuple or list of module names written for
  :func:`importlib.import_module` (``dpqtb.cli._COMMAND_MODULES``);
* DeePMD-kit's evaluators (``deepmd.infer``, ``deepmd.calculator``, ``deepmd.pt``) imported in one
  module only, ``dpqtb/potential/deepmd.py``;
* the run-directory file names (``thermo.csv``, ``trajectory.extxyz``, ``checkpoint.pt``,
  ``run.json``, and the LAMMPS run directory's ``in.lammps``, ``data.lammps``, ``dump.lammpstrj``,
  ``log.lammps``, ``dpqtb_lammps.json``) written in string constants of one module only, ``dpqtb/rundir.py`` (docstrings and
  argparse ``help=`` texts do not count; error messages do: they name the file through a constant).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "dpqtb"
MAX_LINES = 600
EVALUATORS = ("deepmd.infer", "deepmd.calculator", "deepmd.pt")
EVALUATOR_HOME = "dpqtb/potential/deepmd.py"
RUNDIR_NAMES = ("thermo.csv", "trajectory.extxyz", "checkpoint.pt", "run.json",
                "in.lammps", "data.lammps", "dump.lammpstrj", "log.lammps", "dpqtb_lammps.json")
RUNDIR_HOME = "dpqtb/rundir.py"


def _sources() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _rel(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def _part_of_file(path: Path) -> str:
    """The node a file belongs to: ``dpqtb.<subpackage>``, ``dpqtb.<module>`` or ``dpqtb``."""
    parts = path.relative_to(PKG).parts
    if len(parts) > 1:
        return f"dpqtb.{parts[0]}"
    return "dpqtb" if parts[0] == "__init__.py" else f"dpqtb.{parts[0][:-3]}"


def _part_of_module(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "dpqtb":
        return None
    return "dpqtb" if len(parts) == 1 else f"dpqtb.{parts[1]}"


def _is_part(name: str) -> bool:
    return (PKG / name).is_dir() or (PKG / f"{name}.py").is_file()


def _imported_modules(path: Path, tree: ast.Module) -> list[tuple[str, int]]:
    """Every module name ``path`` imports (absolute), with its line: all levels of the file."""
    package = ".".join(("dpqtb",) + path.relative_to(PKG).parts[:-1])
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from dpqtb import md`` imports the part dpqtb.md; ``from dpqtb import InputError``
            # the package root; ``from deepmd import pt`` the module deepmd.pt
            out += [(f"{module}.{a.name}" if module != "dpqtb" or _is_part(a.name) else module,
                     node.lineno) for a in node.names]
        elif isinstance(node, (ast.Tuple, ast.List)) and node.elts and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str)
                and re.fullmatch(r"dpqtb(\.\w+)+", e.value) for e in node.elts):
            out += [(e.value, e.lineno) for e in node.elts]  # module names for importlib
    return out


def import_graph() -> dict[str, dict[str, list[str]]]:
    """``{part: {imported part: ["file:line", …]}}`` over all of ``src/dpqtb``."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in _sources():
        src = _part_of_file(path)
        graph.setdefault(src, {})
        for module, line in _imported_modules(path, _tree(path)):
            dst = _part_of_module(module)
            if dst is not None and dst != src:
                where = graph[src].setdefault(dst, [])
                if f"{_rel(path)}:{line}" not in where:
                    where.append(f"{_rel(path)}:{line}")
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _string_constants(tree: ast.Module):
    """String constants of ``tree`` that are neither docstrings (a bare string statement) nor
    inside an argparse ``help=`` argument."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)):
            skip.add(id(node.value))
        elif isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg == "help":
                    skip.update(id(n) for n in ast.walk(kw.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node


# -- the rules ------------------------------------------------------------------------------------

def test_no_source_file_over_600_lines():
    long = {_rel(p): n for p in _sources()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_no_import_cycle_between_parts():
    graph = import_graph()
    found = cycles(graph)
    where = [f"{a} -> {b}: {', '.join(graph[a][b])}"
             for comp in found for a in comp for b in comp if b in graph.get(a, {})]
    assert not found, f"import cycles {found}:\n" + "\n".join(where)


def test_deepmd_evaluators_imported_in_one_module():
    users = {}
    for path in _sources():
        for module, line in _imported_modules(path, _tree(path)):
            if any(module == e or module.startswith(e + ".") for e in EVALUATORS):
                users.setdefault(_rel(path), []).append(f"{module} (line {line})")
    assert set(users) <= {EVALUATOR_HOME}, (
        f"DeePMD-kit evaluators imported outside {EVALUATOR_HOME}: "
        + str({k: v for k, v in users.items() if k != EVALUATOR_HOME}))


def test_run_directory_names_spelled_in_one_module():
    pattern = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, RUNDIR_NAMES)) + r")(?!\w)")
    hits = [f"{_rel(p)}:{c.lineno}: {c.value!r}" for p in _sources() if _rel(p) != RUNDIR_HOME
            for c in _string_constants(_tree(p)) if pattern.search(c.value)]
    assert (PKG / "rundir.py").is_file(), f"no {RUNDIR_HOME}"
    assert not hits, "run-directory file names spelled outside " + RUNDIR_HOME + ":\n" + "\n".join(hits)


# -- the checks check what they claim ----------------------------------------------------------------

def test_cycle_finder():
    g = {"a": {"b": []}, "b": {"c": []}, "c": {"a": []}, "d": {"a": []}, "e": {"e": []}}
    assert cycles(g) == [["a", "b", "c"]]
    assert cycles({"a": {"b": []}, "b": {}}) == []


def test_import_scan_sees_function_level_relative_and_listed_imports(tmp_path):
    code = ("from dpqtb import InputError, md\n"
            "def f():\n    from ..dft.store import JobStore\n    import deepmd.infer\n"
            "    from deepmd import calculator\n"
            "MODS = ('dpqtb.train.cli', 'dpqtb.units')\n"
            "'''the file thermo.csv'''\n"
            "def g(p):\n    p.add_argument('--x', help='writes run.json')\n    return 'x/checkpoint.pt'\n")
    path = PKG / "analysis" / "_probe.py"  # never written: the scan only needs the path
    mods = [m for m, _ in _imported_modules(path, ast.parse(code))]
    assert mods == ["dpqtb", "dpqtb.md", "dpqtb.dft.store.JobStore", "deepmd.infer", "deepmd.calculator",
                    "dpqtb.train.cli", "dpqtb.units"]
    assert [c.value for c in _string_constants(ast.parse(code))
            if any(n in c.value for n in RUNDIR_NAMES)] == ["x/checkpoint.pt"]


def test_graph_has_the_pipeline_parts():
    graph = import_graph()
    assert {"dpqtb.md", "dpqtb.dft", "dpqtb.cli", "dpqtb"} <= set(graph)
    assert "dpqtb.potential" in graph["dpqtb.md"]
