"""Keyed random draws: each draw a pure function of (scenario seed, stream, its own keys).

A numpy Generator is a sequence: when a block of patients is drawn at once, a patient's draws
sit after those of the patients before it, so anything that changes how many draws one patient
takes (a drift planted after day t changes its number of fills) shifts every later patient's
draws, including rows dated before t. Keyed draws have no position: a patient's refill on its
fifth fill hashes (stream, patient, 5), whatever happens to anyone else.

Written by hand because numpy has no vectorised keyed generator: its counter-based Philox takes
one key per Generator, so one draw per patient would need a Generator per patient (seconds per
million). SplitMix64's finaliser (Steele, Lea and Flood 2014; numpy's SeedSequence relies on the
same construction) mixes a 64-bit key into 64 well-spread bits in a few vectorised operations.
"""

import numpy as np
import polars as pl
from scipy.special import ndtri
from scipy.stats import poisson

from e2i_synth.core.seeds import derive_seed

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = (np.uint64(s) for s in (30, 27, 31, 11))


def _mix(x: np.ndarray) -> np.ndarray:
    x = x + _GOLDEN
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


def entity_numbers(ids: pl.Series) -> np.ndarray:
    """The number in each id ("PAT0000042" -> 42): the key of an entity's draws."""
    return ids.str.extract(r"(\d+)$").cast(pl.UInt64).to_numpy()


class KeyedStream:
    """Draws keyed by integer arrays (broadcast together): equal keys, equal draws."""

    def __init__(self, seed: int, *names: object) -> None:
        self._seed, self._names = seed, names
        self._key = np.uint64(derive_seed(seed, *names))

    def named(self, name: str) -> "KeyedStream":
        """The stream of one quantity under this one (e.g. a table's "refill" draws)."""
        return KeyedStream(self._seed, *self._names, name)

    def uniform(self, *keys: np.ndarray | int) -> np.ndarray:
        """Uniform on the open interval (0, 1)."""
        with np.errstate(over="ignore"):  # uint64 arithmetic wraps, as the hash intends
            h = np.atleast_1d(_mix(np.asarray(self._key, dtype=np.uint64)))
            for key in keys:
                h = _mix(h ^ _mix(np.asarray(key).astype(np.uint64)))
        return ((h >> _S11).astype(np.float64) + 0.5) * 2.0**-53

    def integers(self, low: int, high: np.ndarray | int, *keys: np.ndarray | int) -> np.ndarray:
        """Uniform integers in [low, high)."""
        u = self.uniform(*keys)
        return low + np.floor(u * (np.asarray(high) - low)).astype(np.int64)

    def geometric(self, p: np.ndarray, *keys: np.ndarray | int) -> np.ndarray:
        """Trials up to the first success (>= 1), success chance p, by inversion."""
        u = self.uniform(*keys)
        return np.floor(np.log(u) / np.log1p(-np.asarray(p))).astype(np.int64) + 1

    def poisson(self, lam: np.ndarray, *keys: np.ndarray | int) -> np.ndarray:
        return poisson.ppf(self.uniform(*keys), lam).astype(np.int64)

    def choice(self, weights: dict[str, float], *keys: np.ndarray | int) -> np.ndarray:
        """Keys of `weights`, with probabilities proportional to the values, by inversion."""
        cdf = np.cumsum(list(weights.values()))
        pick = np.searchsorted(cdf / cdf[-1], self.uniform(*keys), side="right")
        return np.array(list(weights), dtype=object)[np.minimum(pick, len(weights) - 1)]

    def normal(self, *keys: np.ndarray | int) -> np.ndarray:
        """Standard normal, by inversion."""
        return ndtri(self.uniform(*keys))
