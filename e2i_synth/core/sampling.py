"""Small vectorised sampling helpers shared by the generators."""

from collections.abc import Sequence

import numpy as np
import polars as pl


def weighted_choice(rng: np.random.Generator, weights: dict[str, float], size: int) -> np.ndarray:
    """`size` draws of the keys of `weights`, with probabilities proportional to the values."""
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return np.array(keys, dtype=object)[rng.choice(len(keys), size=size, p=p / p.sum())]


def padded_ids(prefix: str, count: int, width: int) -> pl.Series:
    """prefix + 1..count zero-padded to width, e.g. PAT0000001 (vectorised: millions at scale)."""
    numbers = pl.int_range(1, count + 1, eager=True).cast(pl.String).str.zfill(width)
    return prefix + numbers


def in_key_order(frame: pl.DataFrame, columns: Sequence[str], key: str) -> pl.DataFrame:
    """`columns` of frame, sorted by key; not re-sorted when already in order (an input read
    from PostgreSQL is), since sorting millions of string keys costs more memory than the
    frame itself. Fails naming the column when one is missing."""
    frame = frame.select(columns)
    return frame if frame[key].is_sorted() else frame.sort(key)
