"""dpqtb: first-principles molecular dynamics with nuclear quantum effects.

Pipeline: structures -> dft -> data -> train -> potential -> md -> analysis -> workflows.
Units inside: eV, Å, fs, K, GPa, amu (see :mod:`dpqtb.units`).
"""

__version__ = "0.1.0"


class DpqtbError(Exception):
    """An error caused by user input (bad config, missing file, ...).

    The CLI prints its message on one line and exits with status 2.
    """
