"""Error bars of correlated time series (dpqtb.analysis.stats) against the AR(1) process, whose integrated
autocorrelation time is exact: x_t = φ x_{t−1} + ε_t has ρ(t) = φ^t and τ_int = (1 + φ)/(1 − φ), so the
standard error of the mean of N samples is σ_x √(τ_int/N) for N ≫ τ_int."""

import math

import numpy as np
import pytest
from scipy.signal import lfilter

from dpqtb.analysis.stats import autocorrelation, drift, integrated_time, mean_error


def _ar1(phi: float, n: int, m: int, seed: int) -> np.ndarray:
    """m independent stationary AR(1) series of n samples (unit innovations)."""
    e = np.random.default_rng(seed).normal(size=(m, n))
    e[:, 0] /= math.sqrt(1.0 - phi**2)  # x_0 drawn from the stationary law
    return lfilter([1.0], [1.0, -phi], e, axis=1)


def test_integrated_time_of_ar1_is_exact():
    """φ = 0.8: τ_int = 9. Sokal's estimate has a relative standard deviation √(2(2M+1)/N) ≈ 0.03 at
    N = 2·10⁵ (M ≈ 5τ); 10 % is 3σ. The truncation at M leaves φ^45 ~ 4e-5 out."""
    x = _ar1(0.8, 200_000, 1, seed=1)[0]
    assert integrated_time(x) == pytest.approx(9.0, rel=0.10)
    rho = autocorrelation(x)
    assert rho[0] == 1.0 and rho[1] == pytest.approx(0.8, abs=0.01) and rho[2] == pytest.approx(0.64, abs=0.01)
    assert integrated_time(_ar1(0.0, 20_000, 1, seed=2)[0]) == pytest.approx(1.0, abs=0.1)
    assert integrated_time(np.full(50, 3.0)) == 1.0 and mean_error(np.full(50, 3.0))[:2] == (3.0, 0.0)


@pytest.mark.parametrize("phi,n,blocks", [(0.9, 20_000, 10), (0.995, 80_000, 400)])
def test_error_bars_cover_the_true_mean(phi, n, blocks):
    """200 independent series of true mean 0: z = mean/σ must have a standard deviation of 1 (its sampling
    error over 200 series is 1/√400 = 0.05; ±0.15 is 3σ). The second case has blocks of 200 samples, shorter
    than τ_int = 399: the block error alone is then too small (z spread ≈ 1.6), the reported one is not."""
    x = _ar1(phi, n, 200, seed=3)
    z = np.array([mean_error(s, blocks)[0] / mean_error(s, blocks)[1] for s in x])
    assert np.std(z) == pytest.approx(1.0, abs=0.15)
    if blocks * 2 * (1 + phi) / (1 - phi) > n:  # blocks shorter than 2 τ_int
        zb = [s.mean() / (np.array([b.mean() for b in np.array_split(s, blocks)]).std(ddof=1) / math.sqrt(blocks))
              for s in x]
        assert np.std(zb) > 1.4


@pytest.mark.parametrize("ratio,spread", [(10, (1.2, 1.65)), (50, (0.95, 1.25))])
def test_short_series_error_bars_are_as_documented(ratio, spread):
    """Series of N = 10 and 50 τ_int (the pressures of the verdict's and the pt stage's runs hold ~5–60):
    the error bars of the mean and of the drift (two halves) are too small by the factor that
    mean_error's docstring and docs/sweep.md state (spread of z ≈ 1.4 and 1.1). The ranges are ±3σ of a
    spread measured over 400 series (1/√800 ≈ 0.035 relative) plus the estimator's own scatter."""
    phi = 0.9  # τ_int = 19
    x = _ar1(phi, int(ratio * (1 + phi) / (1 - phi)), 400, seed=4)
    z = [mean_error(s)[0] / mean_error(s)[1] for s in x]
    zd = [d / e for d, e in (drift(s) for s in x)]
    assert spread[0] < np.std(z) < spread[1] and spread[0] - 0.1 < np.std(zd) < spread[1]


def test_pressure_drift_over_production():
    """P_drift: the mean of the second half less that of the first; a linear ramp of slope s over 2m rows
    drifts by s·m exactly; white noise around a constant gives ~0 within its error (σ√(2/m))."""
    d, err = drift(200.0 + 0.01 * np.arange(1000), 10)
    assert d == pytest.approx(0.01 * 500) and err > 0
    x = 200.0 + np.random.default_rng(3).normal(0.0, 1.0, 4000)
    d, err = drift(x, 10)
    assert err == pytest.approx(math.sqrt(2 * 1.0 / 2000), rel=0.5) and abs(d) < 4 * err
    assert all(math.isnan(v) for v in drift(np.ones(3), 10))
    assert all(math.isnan(v) for v in mean_error([]))
    assert all(math.isnan(v) for v in mean_error([1.0, float("nan")]))
