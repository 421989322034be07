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
