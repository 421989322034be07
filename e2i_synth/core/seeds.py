"""Stable seeds: every random stream is named, and its seed is a digest of (scenario seed, name).

Python's hash() is salted per process, so it is never used here.
"""

import hashlib

import numpy as np


def derive_seed(seed: int, *names: object) -> int:
    """A 64-bit seed that depends only on the scenario seed and the stream's names."""
    digest = hashlib.sha256(repr((seed, *map(str, names))).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def rng_for(seed: int, *names: object) -> np.random.Generator:
    """An independent numpy generator for one named stream (a table, a partition, ...)."""
    return np.random.default_rng(derive_seed(seed, *names))
