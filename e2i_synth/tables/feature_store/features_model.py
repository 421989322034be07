"""features: the feature store's feature definitions, one row per feature in domain.FEATURES."""

import pandera.polars as pa
import polars as pl

from e2i_synth.core.table_spec import TableSpec
from e2i_synth.core.vocabulary import FEATURES
from e2i_synth.tables.feature_store.feature_groups_model import ENTITY_KEYS

VALUE_TYPES: tuple[str, ...] = ("float", "int", "bool", "category")
REFRESH_CADENCES: tuple[str, ...] = ("daily", "weekly")
# Hours between two refreshes of each cadence; a freshness window covers at least one.
CADENCE_HOURS: dict[str, int] = {"daily": 24, "weekly": 168}


class Features(pa.DataFrameModel):
    feature_id: str = pa.Field(
        unique=True, str_matches=r"^FEAT\d{3}$", description="feature key, FEATnnn"
    )
    feature_group_id: str = pa.Field(
        str_matches=r"^FG\d{3}$", description="group of the feature (feature_groups)"
    )
    name: str = pa.Field(
        unique=True, isin=tuple(FEATURES), description="feature name, e.g. disease_severity"
    )
    value_type: str = pa.Field(
        isin=VALUE_TYPES, description="JSON type of its values: float, int, bool or category"
    )
    entity_keys: str = pa.Field(
        isin=ENTITY_KEYS, description="key its values are observed for (the group's entity key)"
    )
    description: str = pa.Field(description="what the feature measures")
    source_table: str = pa.Field(
        str_matches=r"^[a-z_]+$", description="table the feature is computed from"
    )
    source_columns: str = pa.Field(
        str_matches=r"^[a-z_]+(, [a-z_]+)*$",
        description="comma-separated columns of source_table it is computed from",
    )
    refresh_cadence: str = pa.Field(
        isin=REFRESH_CADENCES, description="how often the feature pipeline refreshes it"
    )
    freshness_window_hours: pl.Int32 = pa.Field(
        gt=0, description="age in hours up to which a value counts as fresh"
    )
    min_value: pl.Float64 = pa.Field(
        nullable=True, description="smallest valid value; null if unbounded or not numeric"
    )
    max_value: pl.Float64 = pa.Field(
        nullable=True, description="largest valid value; null if unbounded or not numeric"
    )
    allowed_values: str = pa.Field(
        nullable=True,
        description="JSON array of the categories of a category feature; null otherwise",
    )
    created_date: pl.Date = pa.Field(description="date the feature was registered")

    @pa.dataframe_check(description="the freshness window covers at least one refresh interval")
    def window_covers_cadence(cls, data: pa.PolarsData) -> pl.LazyFrame:
        hours = pl.col("refresh_cadence").replace_strict(CADENCE_HOURS, return_dtype=pl.Int32)
        return data.lazyframe.select(pl.col("freshness_window_hours") >= hours)

    @pa.dataframe_check(description="min_value <= max_value when both are set")
    def range_ordered(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("min_value").is_null()
            | pl.col("max_value").is_null()
            | (pl.col("min_value") <= pl.col("max_value"))
        )

    @pa.dataframe_check(description="allowed_values is set exactly for category features")
    def categories_iff_category(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("allowed_values").is_not_null() == (pl.col("value_type") == "category")
        )

    @pa.dataframe_check(description="only numeric features have a value range")
    def range_only_numeric(cls, data: pa.PolarsData) -> pl.LazyFrame:
        numeric = pl.col("value_type").is_in(["float", "int"])
        return data.lazyframe.select(
            numeric | (pl.col("min_value").is_null() & pl.col("max_value").is_null())
        )

    class Config:
        strict = True


SPEC = TableSpec(
    name="features",
    model=Features,
    primary_key=("feature_id",),
    description="Feature definitions: group, value type, entity key, source, freshness window.",
    json_columns=("allowed_values",),
)
