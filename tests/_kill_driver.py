"""Run ``dpqtb ARGS…`` and send this process signal SIG once step STEP has been written.

    python tests/_kill_driver.py SIG STEP md run.toml --output DIR

The signal goes out right after the outputs of step STEP are written and before the checkpoint of
that step (if one is due): SIGKILL there is a crash at the worst moment (outputs ahead of the last
checkpoint); SIGINT/SIGTERM exercise the checkpoint-on-signal path.
"""

import os
import signal
import sys

from dpqtb.cli import main
from dpqtb.md import run

SIG = getattr(signal, sys.argv[1])
STEP = int(sys.argv[2])
_observe = run.Simulation._observe


def _observe_then_signal(self):
    _observe(self)
    if self.state.step == STEP:
        os.kill(os.getpid(), SIG)


run.Simulation._observe = _observe_then_signal
# SIGINT as a terminal's foreground job has it: a suite run from a background script inherits it ignored,
# and dpqtb then (rightly) leaves it ignored
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.exit(main(sys.argv[3:]))
