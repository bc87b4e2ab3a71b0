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


@contextmanager
def interrupt_handling(handler):
    """SIGINT handled by ``handler`` inside the block, unless the process runs with SIGINT ignored, as a
    job started in the background by a shell without job control inherits it (``cmd &`` in a script). The
    Unix convention is to leave a signal that was ignored on entry ignored: a Ctrl-C meant for the script
    then does not stop its background runs (SIGTERM still does, with a checkpoint)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return
    with handling(signal.SIGINT, handler):
        yield
