"""batched(): frames joined up to a row bound, same rows in the same order."""

import polars as pl

from e2i_synth.core.frames import batched


def _frames(*heights: int) -> list[pl.DataFrame]:
    start = 0
    frames = []
    for height in heights:
        frames.append(pl.DataFrame({"n": range(start, start + height)}))
        start += height
    return frames


def test_small_frames_are_joined_up_to_the_bound_in_order():
    frames = _frames(3, 4, 2, 5)
    out = list(batched(frames, 9))
    assert [f.height for f in out] == [9, 5]
    assert pl.concat(out).equals(pl.concat(frames))


def test_a_frame_larger_than_the_bound_passes_alone():
    frames = _frames(2, 20, 3)
    assert [f.height for f in batched(frames, 10)] == [2, 20, 3]


def test_frames_of_different_schemas_are_not_joined():
    ints = pl.DataFrame({"n": [1, 2]})
    floats = pl.DataFrame({"n": [1.5]})
    out = list(batched([ints, floats, floats], 100))
    assert [f.schema["n"] for f in out] == [pl.Int64, pl.Float64]
    assert [f.height for f in out] == [2, 2]


def test_nothing_in_nothing_out():
    assert list(batched([], 10)) == []
