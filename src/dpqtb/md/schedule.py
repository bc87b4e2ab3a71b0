"""The target temperature of a thermostat over a run: constant, or a linear ramp."""

from __future__ import annotations

from dpqtb import InputError


class TemperatureSchedule:
    """Target temperature (K), constant or a linear ramp; call it with a step number.

    Parameters
    ----------
    start_K : float
        Temperature at ``first_step`` (K), >= 0.
    stop_K : float, optional
        Temperature reached ``n_steps`` later and kept (K), >= 0; default ``start_K`` (constant).
    n_steps : int
        Length of the ramp in steps (at least 1).
    first_step : int
        Step at which the ramp starts.
    """

    def __init__(self, start_K: float, stop_K: float | None = None, n_steps: int = 1, first_step: int = 0):
        self.start, self.stop = float(start_K), float(start_K if stop_K is None else stop_K)
        for t in (self.start, self.stop):
            if not t >= 0:
                raise InputError(f"thermostat.temperature_K must be >= 0, got {t}")
        self.n_steps = max(int(n_steps), 1)
        self.first_step = first_step

    @property
    def is_ramp(self) -> bool:
        return self.start != self.stop

    def __call__(self, step: int) -> float:
        if not self.is_ramp:
            return self.start
        frac = min(max((step - self.first_step) / self.n_steps, 0.0), 1.0)
        return self.start + (self.stop - self.start) * frac
