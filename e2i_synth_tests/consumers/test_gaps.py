"""The Gap Analyzer's queries (consumers/gaps.py) on a loaded business_metrics table: the seed's
success criterion is that get_time_series returns one brand/region/metric series in month
order, with its target and achievement, bounded by the window it is asked for."""

from datetime import date

import polars as pl

from e2i_synth.consumers.gaps import SERIES_COLUMNS, achievement_by_series, get_time_series
from e2i_synth.core.scenario import load_scenario
from e2i_synth.db.copy import replace_rows
from e2i_synth.db.resource import Database
from e2i_synth.tables import TABLES
from e2i_synth.tables.entities.hcp_profiles import generate_hcp_profiles
from e2i_synth.tables.entities.patient_journeys import generate_patient_journeys
from e2i_synth.tables.metrics.business_metrics import generate_business_metrics, scenario_window


def _loaded(database: Database) -> pl.DataFrame:
    scenario = load_scenario(None)
    patients = generate_patient_journeys(scenario, generate_hcp_profiles(scenario))
    frame = generate_business_metrics(scenario, patients, *scenario_window(scenario))
    with database.connect() as conn:
        replace_rows(conn, TABLES["business_metrics"], [frame])
    return frame


def test_get_time_series_returns_one_series_in_month_order_within_its_window(database):
    frame = _loaded(database)
    first = frame.row(0, named=True)
    brand, region, metric = first["brand"], first["region"], first["metric_name"]
    expected = frame.filter(
        (pl.col("brand") == brand)
        & (pl.col("region") == region)
        & (pl.col("metric_name") == metric)
    ).sort("metric_date")

    whole = get_time_series(database, brand, region, metric)
    assert whole.columns == list(SERIES_COLUMNS)
    assert whole["metric_date"].to_list() == expected["metric_date"].to_list()
    assert whole["value"].to_list() == expected["value"].cast(pl.Float64).to_list()
    assert whole["target"].to_list() == expected["target"].cast(pl.Float64).to_list()

    months = expected["metric_date"].to_list()
    start, end = months[2], months[5]
    window = get_time_series(database, brand, region, metric, start=start, end=end)
    assert window["metric_date"].to_list() == months[2:5]  # [start, end)

    assert get_time_series(database, brand, region, "no_such_metric").is_empty()
    assert get_time_series(database, brand, region, metric, end=date(1990, 1, 1)).is_empty()


def test_achievement_by_series_covers_every_loaded_row(database):
    frame = _loaded(database)
    scan = achievement_by_series(database)
    assert scan.height == frame.height
    keys = ["brand", "region", "metric_name", "metric_date"]
    assert scan.select(keys).equals(frame.select(keys).sort(keys))
