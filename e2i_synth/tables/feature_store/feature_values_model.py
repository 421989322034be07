"""feature_values: observed values of the feature store's features, over time.

entity_values and value are JSON (jsonb in PostgreSQL, JSON text in polars). The key
(feature_id, entity_values, event_timestamp) is unique: the loader this replaces lost rows to
duplicates of it, so the generator makes it unique by construction and the table enforces it.
"""

from typing import Annotated

import pandera.polars as pa
import polars as pl

from e2i_synth.core.table_spec import TableSpec
from e2i_synth.core.vocabulary import DATA_SPLITS

FRESHNESS_STATUSES: tuple[str, ...] = ("fresh", "stale", "expired")
# An expired value is older than this many freshness windows (stale: older than one).
STALE_WINDOWS = 3
# JSON forms, as generated and as PostgreSQL renders jsonb (keys shortest first): the keys an
# analyst joins on (an HCP; a brand and its HCP; a patient with its brand and HCP), a scalar.
_ID = '"[A-Za-z0-9]+"'
ENTITY_VALUES_PATTERN = (
    rf'^\{{("hcp_id": {_ID}|"brand": {_ID}, "hcp_id": {_ID}'
    rf'|"brand": {_ID}, "hcp_id": {_ID}, "patient_id": {_ID})\}}$'
)
VALUE_PATTERN = r'^(-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|true|false|"[a-z0-9_]+")$'


class FeatureValues(pa.DataFrameModel):
    feature_value_id: str = pa.Field(
        unique=True,
        str_matches=r"^FV-\d{8}-\d{5,}$",
        description="key FV-<event date YYYYMMDD>-<index within the day>",
    )
    feature_id: str = pa.Field(
        str_matches=r"^FEAT\d{3}$", description="feature observed (features.feature_id)"
    )
    entity_values: str = pa.Field(
        str_matches=ENTITY_VALUES_PATTERN,
        description="JSON object of the keys an analyst joins on: hcp_id (an HCP feature), brand "
        "and hcp_id (a brand feature, kept per HCP), brand, hcp_id and patient_id (a patient "
        "feature)",
    )
    value: str = pa.Field(
        str_matches=VALUE_PATTERN,
        description="JSON scalar: a number (float, int), a boolean or a category string",
    )
    event_timestamp: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(
        description="when the value was observed (UTC)"
    )
    freshness_status: str = pa.Field(
        isin=FRESHNESS_STATUSES,
        description="age at the scenario's reference date vs the feature's freshness window: "
        "fresh (<= 1 window), stale (<= 3 windows), expired",
    )
    data_split: str = pa.Field(
        isin=DATA_SPLITS,
        description="ML split of the event date (every row: the date rule)",
    )

    @pa.dataframe_check(description="the id's date is the event date (UTC)")
    def id_dated_by_event(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("feature_value_id").str.slice(3, 8)
            == pl.col("event_timestamp").dt.strftime("%Y%m%d")
        )

    class Config:
        strict = True
        unique = ["feature_id", "entity_values", "event_timestamp"]


SPEC = TableSpec(
    name="feature_values",
    model=FeatureValues,
    primary_key=("feature_value_id",),
    description="Feature values over time per entity, with freshness status and ML split.",
    partition_column="event_timestamp",
    json_columns=("entity_values", "value"),
)
