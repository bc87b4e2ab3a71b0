"""A signal handler for the length of one block (a labelling run, a ``dp`` child)."""

from __future__ import annotations

import signal
from contextlib import contextmanager


@contextmanager
def handling(sig: int, handler):
    """Install ``handler`` for ``sig`` inside the block and put the previous one back after it.

    Off the main thread Python cannot install handlers: the block then runs with the current one.
    A previous handler not set from Python (``signal.signal`` returns None) is restored as SIG_DFL."""
    try:
        previous = signal.signal(sig, handler)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(sig, signal.SIG_DFL if previous is None else previous)
