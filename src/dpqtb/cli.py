"""The ``dpqtb`` command line: a thin layer over the Python API.

Each pipeline stage registers its own sub-commands (a ``register(subparsers)`` function in the
modules listed in ``_COMMAND_MODULES``). Errors are printed on one line, without a traceback, and
map to the exit codes of :mod:`dpqtb.entry` (0 done, 2 bad input or a failed calculation, 3 an
unstable simulation, 130/143 SIGINT/SIGTERM after a checkpoint), shared with the
``python -m dpqtb.dft.*`` entry points (:func:`dpqtb.entry.run_main`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from dpqtb import InputError, __version__
from dpqtb.entry import run_main

# in the order of ``dpqtb --help``
_COMMAND_MODULES = (
    "dpqtb.md.cli",  # md
    "dpqtb.workflows.cli",  # demo
    "dpqtb.workflows.sweep_cli",  # sweep
    "dpqtb.workflows.paper.cli",  # paper
    "dpqtb.structures.cli",  # structure
    "dpqtb.dft.cli",  # label
    "dpqtb.data.cli",  # dataset
    "dpqtb.analysis.cli",  # analyze
    "dpqtb.train.cli",  # train, validate, deviation, explore
    "dpqtb.potential.cli",  # models
    "dpqtb.lammps.cli",  # lammps
)


class _Parser(argparse.ArgumentParser):
    """Argument errors on one line (``dpqtb: error: …``), exit 2, like every other input error."""

    def error(self, message: str):  # noqa: D401 - argparse API
        where = "" if self.prog == "dpqtb" else f"{self.prog}: "
        self.exit(2, f"dpqtb: error: {where}{message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dpqtb",
        description="Molecular dynamics with nuclear quantum effects (QTB, adaptive QTB) "
        "for hydrogen-rich superconductors. Units: eV, Å, fs, K, GPa, amu.",
    )
    parser.add_argument("--version", action="version", version=f"dpqtb {__version__}")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch CPU threads (default: torch's choice; 1 is faster for small systems on a busy machine)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``dpqtb COMMAND ...``: parse ``argv`` and run the command; returns its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return run_main(_run, args)


def _run(args) -> int:
    if args.threads is not None:
        if args.threads < 1:
            raise InputError("--threads must be >= 1")
        import torch

        torch.set_num_threads(args.threads)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
