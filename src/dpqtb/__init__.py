"""dpqtb: first-principles molecular dynamics with nuclear quantum effects.

Pipeline: structures -> dft -> data -> train -> potential -> md -> analysis -> workflows.
Units inside: eV, Å, fs, K, GPa, amu (see :mod:`dpqtb.units`).
"""

__version__ = "0.1.0"


class DpqtbError(Exception):
    """Base of every error dpqtb raises on purpose; the CLI prints its message on one line.

    Raise one of the three kinds below, never this class itself:

    ========================  ====  ===========================================================
    class                     exit  meaning
    ========================  ====  ===========================================================
    :class:`InputError`       2     bad input: config, arguments, files, structures, models
    :class:`CalculationError` 2     an external or numerical calculation failed (DFT, ``dp``)
    :class:`SimulationUnstable` 3   MD went unstable; its last good checkpoint is kept
    ========================  ====  ===========================================================
    """


class InputError(DpqtbError):
    """An error caused by user input (bad config, missing or malformed file, bad argument).

    Raised before anything is written where that can be checked first. CLI exit status 2."""


class CalculationError(DpqtbError):
    """A calculation the input asked for failed: a DFT code, ``dp train``, a model evaluation,
    an iterative solver that did not converge. CLI exit status 2 (the message says what failed)."""


class SimulationUnstable(CalculationError):
    """The MD became unstable (non-finite numbers, runaway temperature, energy drift).

    The run stops before anything of the bad step is written; its last good checkpoint is kept.
    The CLI prints the message on one line and exits with status 3 (:data:`EXIT_UNSTABLE`)."""


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by SIGINT (Ctrl-C) or SIGTERM after writing a checkpoint at the current step.

    ``exit_code`` is 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum: int, step: int, directory=None):
        self.signum, self.step, self.directory = int(signum), int(step), directory
        self.exit_code = 128 + self.signum
        import signal

        name = signal.Signals(self.signum).name
        where = (f"; checkpoint at this step written in {directory} (dpqtb md --resume continues it exactly)"
                 if directory else "")
        super().__init__(f"interrupted by {name} at step {step}{where}")


#: Exit status of ``dpqtb`` when a simulation went unstable (2: bad input; 130/143: SIGINT/SIGTERM).
EXIT_UNSTABLE = 3
