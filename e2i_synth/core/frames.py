"""FrameStream: a table produced as a sequence of polars frames, loaded in one transaction.

Assets of tables too large to hold in memory at large scales return one; the IO manager
validates and COPYs each frame in turn. (Not a bare generator: Dagster would take a generator
returned by an asset for a stream of its own events.)
"""

from collections.abc import Iterable, Iterator

import polars as pl


class FrameStream:
    def __init__(self, frames: Iterable[pl.DataFrame]):
        self._frames = frames

    def __iter__(self) -> Iterator[pl.DataFrame]:
        return iter(self._frames)


def frames_of(obj: pl.DataFrame | FrameStream) -> Iterable[pl.DataFrame]:
    return [obj] if isinstance(obj, pl.DataFrame) else obj


def batched(frames: Iterable[pl.DataFrame], max_rows: int) -> Iterator[pl.DataFrame]:
    """Consecutive frames joined into one while they hold fewer than `max_rows` rows together
    and share a schema; a larger frame passes alone. Same rows, same order: for work with a
    fixed cost per frame (validation), without holding more than about `max_rows` extra rows."""
    batch: list[pl.DataFrame] = []
    rows = 0
    for frame in frames:
        fits = rows + frame.height <= max_rows and (not batch or frame.schema == batch[0].schema)
        if batch and not fits:
            yield _joined(batch)
            batch, rows = [], 0
        batch.append(frame)
        rows += frame.height
    if batch:
        yield _joined(batch)


def _joined(frames: list[pl.DataFrame]) -> pl.DataFrame:
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical", rechunk=False)
