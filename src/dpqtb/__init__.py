"""dpqtb: first-principles molecular dynamics with nuclear quantum effects.

Pipeline: structures -> dft -> data -> train -> potential -> md -> analysis -> workflows.
Units inside: eV, Å, fs, K, GPa, amu (see :mod:`dpqtb.units`).
"""

__version__ = "0.1.0"


class DpqtbError(Exception):
    """An error caused by user input (bad config, missing file, ...).

    The CLI prints its message on one line and exits with status 2.
    """


class SimulationUnstable(DpqtbError):
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
