"""``dpqtb structure``: build LaH10 cells (Fm-3m at a pressure or lattice constant, symmetry-lowered
C2, P-1, R-3m; supercells) and write them in any ASE format.  Units: Å, GPa."""

from __future__ import annotations

from dpqtb import InputError


def cmd_structure(args) -> int:
    """``dpqtb structure``: build one LaH10 cell and write it to ``args.out``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``structure`` arguments (``phase``, ``pressure_GPa`` or ``a_A``, ``cell``,
        ``supercell``, ``amplitude_A``, ``seed``, ``out``).

    Returns
    -------
    int
        0 (errors are raised as :class:`dpqtb.InputError`).
    """
    from ase.io import write

    from dpqtb.structures.eos import load_eos
    from dpqtb.structures.lah10 import X32F_DEFAULT, fm3m, lowered, supercell

    if (args.pressure_GPa is None) == (args.a_A is None):
        raise InputError("give exactly one of --pressure-GPa and --a-A")
    if args.a_A is not None:
        a, x = args.a_A, X32F_DEFAULT
    else:
        eos = load_eos()
        a = eos.lattice_constant(args.pressure_GPa)
        x = eos.x32f(a)
    atoms = fm3m(a, args.cell, x=x)
    if args.phase != "Fm-3m":
        atoms = lowered(atoms, args.phase, amplitude=args.amplitude_A, rng=args.seed)
    atoms = supercell(atoms, args.supercell)
    try:
        write(args.out, atoms)
    except Exception as exc:  # noqa: BLE001 - ASE raises many kinds for unknown formats
        raise InputError(f"cannot write {args.out}: {exc}") from None
    print(f"{args.phase} LaH10, a = {a:.4f} Å, x(32f) = {x:.5f}, {len(atoms)} atoms -> {args.out}")
    return 0


def register(subparsers) -> None:
    """Add the ``structure`` command to ``subparsers`` (an :mod:`argparse` sub-parser action).

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        Where the command is added (``dpqtb``'s sub-commands).
    """
    s = subparsers.add_parser(
        "structure", help="build LaH10 cells (Fm-3m, C2, P-1, R-3m; supercells)",
        description="Build Fm-3m LaH10 at a pressure (stored DFT EOS) or lattice constant, "
        "optionally symmetry-lowered to C2, P-1 or R-3m, and repeated into a supercell "
        "(10 = 44,000 atoms for the conventional cell). Any ASE output format.")
    s.add_argument("--phase", default="Fm-3m", choices=["Fm-3m", "C2", "P-1", "R-3m"])
    s.add_argument("--pressure-GPa", type=float, default=None)
    s.add_argument("--a-A", type=float, default=None, help="cubic lattice constant (Å)")
    s.add_argument("--cell", default="conventional", choices=["primitive", "conventional"])
    s.add_argument("--supercell", type=int, default=1, help="n×n×n repetition")
    s.add_argument("--amplitude-A", type=float, default=0.08,
                   help="RMS H displacement of the symmetry lowering (Å)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="output file (format from the extension)")
    s.set_defaults(func=cmd_structure)
