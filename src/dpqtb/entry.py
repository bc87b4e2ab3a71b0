"""Exit status of dpqtb's command entry points: every error on one line, one mapping to exit codes.

``dpqtb`` (:mod:`dpqtb.cli`) and the module entry points (``python -m dpqtb.dft.runner`` and the
other ``python -m dpqtb.dft.*`` tools) run their work through :func:`run_main`, or are decorated
with :func:`entry_point`, so that they all answer alike:

====  ==========================================================================================
exit  meaning
====  ==========================================================================================
0     done
2     bad input (:class:`dpqtb.InputError`: config, arguments, files; a file system error) or a
      failed calculation (:class:`dpqtb.CalculationError`: DFT code, ``dp train``)
3     the simulation went unstable (:class:`dpqtb.SimulationUnstable`; last good checkpoint kept)
130   SIGINT (Ctrl-C); ``dpqtb md`` first writes a checkpoint at the current step
143   SIGTERM; ``dpqtb md`` first writes a checkpoint at the current step
====  ==========================================================================================

Also the one warning every MD entry point gives before it runs (:func:`warn_if_threads_exceed_free_cores`).
This module imports nothing of dpqtb but its error classes, so that every subpackage can use it
without an import cycle.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable

from dpqtb import EXIT_UNSTABLE, DpqtbError, RunInterrupted, SimulationUnstable


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (its line breaks become spaces).

    Parameters
    ----------
    exc : BaseException
        Any exception.

    Returns
    -------
    str
        ``str(exc)`` with every newline replaced by a space.
    """
    return " ".join(str(exc).split("\n"))


def run_main(func: Callable[..., Any], *args: Any) -> int:
    """Call ``func(*args)`` and turn its result or its error into an exit status.

    Errors are printed on one line to stderr (``dpqtb: error: …``), without a traceback.

    Parameters
    ----------
    func : callable
        The work of a command; returns an exit status (``None`` counts as 0).
    *args
        Passed to ``func``.

    Returns
    -------
    int
        ``func``'s status, or 3 for :class:`dpqtb.SimulationUnstable`, 2 for any other
        :class:`dpqtb.DpqtbError` and for an :class:`OSError`, ``128 + signal`` for
        :class:`dpqtb.RunInterrupted` and 130 for any other :class:`KeyboardInterrupt`.
    """
    try:
        return int(func(*args) or 0)
    except SimulationUnstable as exc:
        print(f"dpqtb: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_UNSTABLE
    except DpqtbError as exc:
        print(f"dpqtb: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except RunInterrupted as exc:
        print(f"dpqtb: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("dpqtb: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # file system trouble the command did not foresee: still one line
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"dpqtb: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2


def entry_point(main: Callable[..., Any]) -> Callable[..., int]:
    """Decorate a module's ``main(argv=None)`` so that it returns an exit status, never raises.

    Argument errors of :mod:`argparse` still exit (status 2) from inside ``main``, as before.

    Parameters
    ----------
    main : callable
        ``main(argv=None)``: parses ``argv`` and does the work.

    Returns
    -------
    callable
        ``main`` wrapped in :func:`run_main`, same signature and docstring.
    """
    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        return run_main(main, argv)

    return wrapper


def busy_threads_warning(threads: int, ncpu: int, others_running: int) -> str | None:
    """The warning for torch's default ``threads`` on ``ncpu`` cores while ``others_running`` other
    processes are runnable (the 4th field of /proc/loadavg, less this one), or None when they fit."""
    free = max(1, ncpu - others_running)
    if others_running < 1 or threads <= free:
        return None
    return (f"{others_running} other process{'es' if others_running > 1 else ''} running on this {ncpu}-core "
            f"machine and torch uses {threads} threads, which then wait on each other (a run can be many times "
            f"slower): pass --threads {free}")


def threads_warning(threads_option: int | None) -> str | None:
    """The warning for an MD run that uses torch's default threads (no ``--threads``, no OMP_NUM_THREADS)
    while other processes hold cores, else None: its threads then wait on each other at every operation
    (a 44-atom run measured 30x slower beside one other job). Print it only once every input check has
    passed (``Simulation.run(warnings=...)`` does), so that a bad input still gets its one-line error alone."""
    if threads_option is not None or "OMP_NUM_THREADS" in os.environ:
        return None
    import torch

    others = _others_running()
    return None if others is None else busy_threads_warning(torch.get_num_threads(), os.cpu_count() or 1, others)


def warn_if_threads_exceed_free_cores(threads_option: int | None) -> None:
    """Print :func:`threads_warning` (one line) if there is one; call it once the input is checked."""
    msg = threads_warning(threads_option)
    if msg:
        print(f"dpqtb: warning: {msg}", file=sys.stderr)


def _others_running() -> int | None:
    try:
        with open("/proc/loadavg") as fh:
            return max(0, int(fh.read().split()[3].split("/")[0]) - 1)
    except (OSError, IndexError, ValueError):
        return None
