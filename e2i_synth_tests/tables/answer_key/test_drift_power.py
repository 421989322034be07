"""The drift answer's power is what the Drift Monitor can see: the simulation keeps each moved
value as feature_values stores it, so a change the store rounds away has no power."""

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

import e2i_synth.scenarios
from e2i_synth.core.scenario import DriftSpec, load_scenario
from e2i_synth.tables.answer_key.drift import simulated_power
from e2i_synth.tables.feature_store.catalog import generate_feature_groups, generate_features
from e2i_synth.tables.feature_store.feature_values import feature_bounds

SCENARIO = load_scenario(Path(e2i_synth.scenarios.__file__).parent / "default.yaml")


def _power(drift: DriftSpec, pool: np.ndarray, bounds: tuple[float, float]) -> float:
    return simulated_power(
        SCENARIO, drift, pl.Series(pool), "int", None, (4000, 4000), bounds=bounds
    )


def test_a_shift_the_store_rounds_away_has_no_power_and_a_real_one_has():
    features = generate_features(SCENARIO, generate_feature_groups(SCENARIO))
    (row,) = features.filter(name="trx_30d").iter_rows(named=True)
    bounds = feature_bounds(row)
    assert bounds[0] == 0  # a count: the store clips below at 0 and rounds to whole numbers
    # Counts of 0 (90%) and 1: mean 0.1, sd 0.3. A shift of -0.5 sd moves 0 to -0.15 and 1 to
    # 0.85, which the store keeps as 0 and 1: the monitor sees nothing.
    pool = np.repeat([0.0, 1.0], [3600, 400])
    invisible = DriftSpec(
        feature="trx_30d", kind="mean_shift", start=date(2026, 1, 1), magnitude=-0.5
    )
    assert _power(invisible, pool, bounds) <= 0.05
    # Four sd moves 1 to 2.3 and 0 to 1.2: kept as 2 and 1, a change the monitor always finds.
    visible = invisible.model_copy(update={"magnitude": 4.0})
    assert _power(visible, pool, bounds) == 1.0
