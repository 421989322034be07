"""Bounds with a stated false-failure rate, for blocking checks on random samples.

A blocking check may only fail when the generator is wrong. Where a rule is about a random
sample, its bound is set so that a correct generator crosses it with probability at most
FALSE_FAILURE_RATE per check and run, computed from the sample's own size.
"""

import math

import numpy as np
from scipy.stats import norm

# At most one false failure in 10,000 runs, per blocking check.
FALSE_FAILURE_RATE = 1e-4
# The reference methods' own level: a 95% interval, a 5% two-sided test.
REFERENCE_ALPHA = 0.05
# A plant is "detectable" when the reference method finds it with at least this probability.
DETECTABLE_POWER = 0.8


def two_sided_z(rate: float) -> float:
    """z such that P(|Z| > z) = rate for a standard normal Z."""
    return float(norm.isf(rate / 2))


def bonferroni_z(tests: int, rate: float = FALSE_FAILURE_RATE) -> float:
    """z such that, over `tests` standard normals, P(any |Z| > z) <= rate."""
    return two_sided_z(rate / max(tests, 1))


def bernstein_bound(
    weights: np.ndarray, variances: np.ndarray, rate: float = FALSE_FAILURE_RATE
) -> float:
    """t with P(|sum_i w_i e_i| >= t) <= rate, for independent centred e_i with |e_i| <= 1 and
    var(e_i) = variances[i] (Bernstein's inequality; exact, not asymptotic).

    Written out because scipy has no concentration inequalities: solving
    rate = 2 exp(-t^2 / (2 (V + M t / 3))) for t, with V = sum w^2 var and M = max |w|.
    """
    v = float(np.sum(weights**2 * variances))
    m = float(np.max(np.abs(weights))) if len(weights) else 0.0
    log_term = math.log(2 / rate)
    return log_term * m / 3 + math.sqrt((log_term * m / 3) ** 2 + 2 * log_term * v)


def power_two_sided(shift, alpha: float = REFERENCE_ALPHA):
    """Power of a two-sided z-test at level alpha when the statistic's mean is `shift`
    standard errors away from the null (a float, or an array of them)."""
    z, shift = two_sided_z(alpha), np.abs(shift)
    return norm.sf(z - shift) + norm.cdf(-z - shift)
