"""dpqtb.lammps: the same run in LAMMPS (``dpqtb lammps``: deck writer; dump and log readers for ``dpqtb analyze``).

:mod:`dpqtb.lammps.deck` writes the deck, :mod:`dpqtb.lammps.dump` reads LAMMPS's output (no torch),
:mod:`dpqtb.lammps.runner` finds and runs a LAMMPS with fix qtb and pair_style deepmd. See docs/lammps.md.
"""
