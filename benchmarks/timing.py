"""Shared timing helper of the benchmark scripts."""

import time

import torch


def time_steps(integ, state, n: int, repeats: int = 3) -> float:
    """Median over ``repeats`` blocks of ``n`` MD steps of the wall time per step (s), after setup and warm-up."""
    integ.setup(state)
    for _ in range(3):
        integ.step(state)
    times = []
    for _ in range(repeats):
        if state.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            integ.step(state)
        if state.device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) / n)
    return sorted(times)[len(times) // 2]
