"""``dpqtb models``: the model cards of dpqtb's shipped Deep Potentials
(:mod:`dpqtb.potential.builtin`)."""

from __future__ import annotations


def cmd_models(args) -> int:
    """``dpqtb models``: print the model card of every shipped Deep Potential.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``models`` arguments (``json``: the full cards as one JSON object, keyed by name).

    Returns
    -------
    int
        0.
    """
    import json

    from dpqtb.potential.builtin import MODELS_DIR, available, card, summary

    names = available()
    if args.json:  # one JSON document: the cards by name ({} when none is shipped)
        print(json.dumps({name: card(name) for name in names}, indent=1))
        return 0
    if not names:
        print(f"no shipped Deep Potentials in {MODELS_DIR}")
        return 0
    for name in names:
        c = card(name)
        if "files" in c:  # an ensemble: the members trained beside a shipped model (potential.ensemble)
            print(f"Deep Potential ensemble builtin:{name} ({c.get('status', '')}): {len(c['files'])} members, "
                  f"shipped {c.get('shipped', '?')}; name it in potential.ensemble")
            for f in c["files"]:
                print(f"  member {MODELS_DIR / f}")
            continue
        src = c["source"]
        print(summary(name))
        print(f"  file {MODELS_DIR / c['file']} (sha256 {c['sha256'][:16]}…), shipped {c['shipped']}")
        print(f"  trained on dataset {src['dataset_version']}: {src['train_frames']} frames "
              f"({src['test_frames']} held out), member {src['member']} of {src['train_dir']}")
        ph = c.get("validation", {}).get("phases_dH_meV_per_atom")
        if ph:
            print("  distorted phases vs Fm-3m at the DFT minima, ΔH DFT / DP (meV/atom): " + ", ".join(
                f"{r['start']} {r['pressure_GPa']:g} GPa{_cell(r)} {r['dft']:+.1f} / {r['dp']:+.1f}" for r in ph))
        for note in c.get("known_limitations", []):
            print(f"  known limitation: {note}")
    return 0


def _cell(row: dict) -> str:
    """" (44 atoms)" for a phase row of a conventional-cell relaxation; "" for 11 atoms and older cards."""
    return f" ({row['natoms']} atoms)" if row.get("natoms", 11) != 11 else ""


def register(subparsers) -> None:
    """Add the ``models`` command to ``subparsers`` (an :mod:`argparse` sub-parser action).

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        Where the command is added (``dpqtb``'s sub-commands).
    """
    m = subparsers.add_parser(
        "models", help="list dpqtb's shipped Deep Potentials (model cards: data, errors, status)",
        description="Print the model card of every shipped Deep Potential (potential.model = 'builtin:NAME').")
    m.add_argument("--json", action="store_true", help="print the full cards as one JSON object, keyed by name")
    m.set_defaults(func=cmd_models)
