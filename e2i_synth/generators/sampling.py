"""Small vectorised sampling helpers shared by the generators."""

import numpy as np


def weighted_choice(rng: np.random.Generator, weights: dict[str, float], size: int) -> np.ndarray:
    """`size` draws of the keys of `weights`, with probabilities proportional to the values."""
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return np.array(keys, dtype=object)[rng.choice(len(keys), size=size, p=p / p.sum())]


def padded_ids(prefix: str, count: int, width: int) -> list[str]:
    return [f"{prefix}{i:0{width}d}" for i in range(1, count + 1)]
