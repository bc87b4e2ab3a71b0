import os

import pytest
import torch

#: torch threads per test: the CI machine has 2 cores; beside a background job on one of them, set
#: DPQTB_TEST_THREADS=1 (two spinning OpenMP threads on one free core run tens of times slower).
TEST_THREADS = int(os.environ.get("DPQTB_TEST_THREADS", "2"))


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # keep torch from oversubscribing the cores
    torch.set_num_threads(TEST_THREADS)
    yield
