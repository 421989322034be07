"""The wait from diagnosis to the first prescription: one statement for the journeys that draw
it and the propensity model that reads it (a patient still untreated after d days)."""

import numpy as np
from scipy.stats import gamma

# Days from diagnosis to the first prescription: gamma(shape, scale), rounded to whole days.
WAIT_GAMMA_SHAPE = 2.0
WAIT_GAMMA_SCALE_DAYS = 14.0


def draw_waits(rng: np.random.Generator, n: int) -> np.ndarray:
    """n waits in days (before any cap at the journey's end)."""
    return np.round(rng.gamma(WAIT_GAMMA_SHAPE, WAIT_GAMMA_SCALE_DAYS, n))


def still_waiting(days: np.ndarray) -> np.ndarray:
    """P(wait > d) for d >= 1 days after diagnosis; 1 at d <= 0 (the day of diagnosis itself,
    before anything is known). A rounded wait exceeds d when the gamma exceeds d + 0.5."""
    d = np.asarray(days, dtype=float)
    return np.where(d > 0, gamma.sf(d + 0.5, WAIT_GAMMA_SHAPE, scale=WAIT_GAMMA_SCALE_DAYS), 1.0)
