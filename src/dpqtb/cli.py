"""The ``dpqtb`` command line: a thin layer over the Python API.

Each pipeline stage registers its own sub-commands (a ``register(subparsers)`` function in the
modules listed in ``_COMMAND_MODULES``). User errors (:class:`dpqtb.DpqtbError`) are printed on one
line and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from dpqtb import DpqtbError, __version__

_COMMAND_MODULES = (
    "dpqtb.md.cli",
    "dpqtb.workflows.cli",
    "dpqtb.dft.cli",
    "dpqtb.analysis.cli",
    "dpqtb.train.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        if args.threads is not None:
            if args.threads < 1:
                raise DpqtbError("--threads must be >= 1")
            import torch

            torch.set_num_threads(args.threads)
        return int(args.func(args) or 0)
    except DpqtbError as exc:
        print(f"dpqtb: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dpqtb: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
