import os

import pytest
import torch

#: torch threads per test: the CI machine has 2 cores; beside a background job on one of them, set
#: DPQTB_TEST_THREADS=1 (two spinning OpenMP threads on one free core run tens of times slower).
TEST_THREADS = int(os.environ.get("DPQTB_TEST_THREADS", "2"))


@pytest.fixture(autouse=True)
def _deterministic_threads(monkeypatch):
    # keep torch from oversubscribing the cores
    torch.set_num_threads(TEST_THREADS)
    # in-process runs see an idle machine: the busy-cores warning (dpqtb.entry) reads /proc/loadavg, so on a
    # loaded machine it would precede the one-line errors that tests compare whole; the tests of the warning
    # itself set _others_running explicitly (tests/test_cli_md.py)
    import dpqtb.entry

    monkeypatch.setattr(dpqtb.entry, "_others_running", lambda: 0)
    yield
