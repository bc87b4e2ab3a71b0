"""``dpqtb dataset``: export the labelled frames of DFT job stores (deepmd/npy, extxyz) or
print their summary table (:mod:`dpqtb.data.export`)."""

from __future__ import annotations

from pathlib import Path

from dpqtb import InputError


def cmd_dataset(args) -> int:
    """``dpqtb dataset export|summary``: write the frames of ``args.store`` or their summary.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``dataset`` arguments (``action``, ``store``, ``deepmd_npy``, ``extxyz``, ``out``).

    Returns
    -------
    int
        0 (errors are raised as :class:`dpqtb.InputError`).
    """
    from dpqtb.data.export import (export_deepmd_npy, export_extxyz, load_frames,
                                   summary_table)

    for opt, path, is_dir in (("--out", args.out, False), ("--extxyz", args.extxyz, False),
                              ("--deepmd-npy", args.deepmd_npy, True)):
        if path is None:
            continue
        p = Path(path)
        if is_dir and p.exists() and not p.is_dir():
            raise InputError(f"{opt} {path} is a file, not a directory")
        if not is_dir and p.is_dir():
            raise InputError(f"{opt} {path} is a directory, not a file")
        if not p.parent.is_dir():
            raise InputError(f"{opt} {path}: directory {p.parent} does not exist")
    frames = load_frames(args.store)
    if args.action == "summary":
        text = summary_table(frames)
        if args.out:
            out = Path(args.out)
            start, end = "<!-- summary:start -->", "<!-- summary:end -->"
            old = out.read_text() if out.exists() else ""
            if start in old and end in old:  # replace the generated block, keep the prose
                text = (old[:old.index(start) + len(start)] + "\n" + text
                        + old[old.index(end):])
            out.write_text(text)
            print(f"summary of {len(frames)} frames written to {args.out}")
        else:
            print(text, end="")
        return 0
    if not (args.deepmd_npy or args.extxyz):
        raise InputError("dataset export needs --deepmd-npy DIR and/or --extxyz FILE")
    if args.deepmd_npy:
        n = export_deepmd_npy(frames, args.deepmd_npy)
        print(f"{n} frames written to {args.deepmd_npy} (deepmd/npy, type map [La, H])")
    if args.extxyz:
        n = export_extxyz(frames, args.extxyz)
        print(f"{n} frames written to {args.extxyz}")
    return 0


def register(subparsers) -> None:
    """Add the ``dataset`` command to ``subparsers`` (an :mod:`argparse` sub-parser action).

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        Where the command is added (``dpqtb``'s sub-commands).
    """
    d = subparsers.add_parser("dataset", help="export or summarise labelled frames",
                              description="Export labelled frames to deepmd/npy (dpdata) and "
                              "extxyz, or print the summary table.")
    d.add_argument("action", choices=["export", "summary"])
    d.add_argument("--store", nargs="+", required=True, help="job store directories")
    d.add_argument("--deepmd-npy", default=None, help="output directory (deepmd/npy)")
    d.add_argument("--extxyz", default=None, help="output extxyz file")
    d.add_argument("--out", default=None, help="write the summary (markdown) here")
    d.set_defaults(func=cmd_dataset)
