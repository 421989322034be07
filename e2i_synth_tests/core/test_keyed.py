"""Keyed draws (e2i_synth.core.keyed): a pure function of (seed, stream, keys), with the
distributions they are named for."""

import numpy as np
import polars as pl
import pytest
from scipy import stats

from e2i_synth.core.keyed import KeyedStream, entity_numbers

N = 200_000


def test_equal_keys_equal_draws_whatever_else_is_drawn():
    keys = np.arange(N)
    once = KeyedStream(7, "s").uniform(keys, 3)
    # A draw does not depend on which other keys are drawn beside it, nor in what order.
    assert np.array_equal(KeyedStream(7, "s").uniform(keys[::-1], 3)[::-1], once)
    assert KeyedStream(7, "s").uniform(keys[5:6], 3)[0] == once[5]
    for other in (KeyedStream(8, "s").uniform(keys, 3), KeyedStream(7, "t").uniform(keys, 3)):
        assert abs(np.corrcoef(once, other)[0, 1]) < 0.01
    assert abs(np.corrcoef(once, KeyedStream(7, "s").uniform(keys, 4))[0, 1]) < 0.01


def test_the_draws_have_their_distributions():
    s, keys = KeyedStream(1, "d"), np.arange(N)
    u = s.uniform(keys)
    assert ((u > 0) & (u < 1)).all()
    assert stats.kstest(u, "uniform").pvalue > 1e-4
    assert stats.kstest(s.normal(keys), "norm").pvalue > 1e-4
    g = s.geometric(0.2, keys)
    assert g.min() == 1 and g.mean() == pytest.approx(5, rel=0.02)
    assert s.poisson(3.0, keys).mean() == pytest.approx(3, rel=0.02)
    i = s.integers(-2, 8, keys)
    assert set(np.unique(i)) == set(range(-2, 8))


def test_an_entity_is_keyed_by_the_number_in_its_id():
    ids = pl.Series(["PAT0000001", "PAT0000042", "HCP000007"])
    assert entity_numbers(ids).tolist() == [1, 42, 7]
