"""Calibrated scores from a noisy view of the true probability.

A deployed model sees the true probability q of its outcome only through a signal
z = logit(q) + e, e ~ N(0, sd^2) (a lasting per-patient model error plus scoring noise). Its
score is E[q | z], the posterior mean under the distribution of q among the rows it was fit on
(the prior: a histogram of logit q over those rows, features only, never outcomes). The outcome
is a Bernoulli(q) draw independent of e, so P(outcome | score) = score among rows drawn like
the prior's: calibrated by construction there, and ranking no better than q itself anywhere.
"""

from dataclasses import dataclass

import numpy as np

PRIOR_BINS = 400
GRID_POINTS = 2048
GRID_MARGIN_SD = 6.0  # the signal grid reaches this many noise SDs past the prior's range
LOGIT_CLIP = 1e-3


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, LOGIT_CLIP, 1 - LOGIT_CLIP)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Posterior:
    """E[q | z] on a grid of signals z, interpolated between its points."""

    grid: np.ndarray
    mean_q: np.ndarray

    @classmethod
    def fit(cls, q: np.ndarray, sd: float, weights: np.ndarray | None = None) -> "Posterior":
        """The posterior of rows whose true probabilities are q (weights: rows per q; the
        prior is their histogram of logit q)."""
        q = np.clip(np.asarray(q, dtype=float), 0.0, 1.0)
        w = np.ones_like(q) if weights is None else np.asarray(weights, dtype=float)
        if not (w > 0).any():  # nobody to score: any prior will do
            q, w = np.array([0.5]), np.array([1.0])
        q, w = q[w > 0], w[w > 0]
        lq = logit(q)
        lo, hi = float(lq.min()), float(lq.max())
        edges = np.linspace(lo, hi + 1e-9, PRIOR_BINS + 1)
        b = np.clip(np.searchsorted(edges, lq, side="right") - 1, 0, PRIOR_BINS - 1)
        count = np.bincount(b, w, PRIOR_BINS)
        used = count > 0
        centre = np.bincount(b, w * lq, PRIOR_BINS)[used] / count[used]
        bin_q = np.bincount(b, w * q, PRIOR_BINS)[used] / count[used]
        grid = np.linspace(lo - GRID_MARGIN_SD * sd, hi + GRID_MARGIN_SD * sd, GRID_POINTS)
        # Each grid point's kernel scaled by its largest term: the ratio is unchanged.
        exponent = -0.5 * ((grid[:, None] - centre[None, :]) / sd) ** 2
        kernel = np.exp(exponent - exponent.max(axis=1, keepdims=True)) * count[used]
        return cls(grid=grid, mean_q=(kernel @ bin_q) / kernel.sum(axis=1))

    def mean(self, z: np.ndarray) -> np.ndarray:
        """E[q | z]; z is clipped to the grid."""
        return np.interp(np.clip(z, self.grid[0], self.grid[-1]), self.grid, self.mean_q)
