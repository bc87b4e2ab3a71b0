import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # The CI machine has 2 cores; keep torch from oversubscribing them.
    torch.set_num_threads(2)
    yield
