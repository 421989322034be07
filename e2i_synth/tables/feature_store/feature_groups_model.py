"""feature_groups: the feature store's groups, one row per group in domain.FEATURE_GROUPS."""

import pandera.polars as pa
import polars as pl

from e2i_synth.core.table_spec import TableSpec
from e2i_synth.core.vocabulary import FEATURE_GROUPS

# Entity keys a feature can be keyed by: a column of an entity table, or the brand.
ENTITY_KEYS: tuple[str, ...] = ("hcp_id", "patient_id", "brand")


class FeatureGroups(pa.DataFrameModel):
    feature_group_id: str = pa.Field(
        unique=True, str_matches=r"^FG\d{3}$", description="group key, FGnnn"
    )
    name: str = pa.Field(
        unique=True, isin=tuple(FEATURE_GROUPS), description="group name, e.g. patient_features"
    )
    description: str = pa.Field(description="what the group's features describe")
    entity_key: str = pa.Field(
        isin=ENTITY_KEYS, description="key every feature of the group is observed for"
    )
    owner: str = pa.Field(
        str_matches=r"^[a-z][a-z0-9-]*$", description="team that owns the group's pipelines"
    )
    version: pl.Int16 = pa.Field(ge=1, description="schema version of the group (1 = first)")
    created_date: pl.Date = pa.Field(description="date the group was registered")
    updated_date: pl.Date = pa.Field(description="date of the group's latest version")

    @pa.dataframe_check(description="a group is updated on or after it is created")
    def updated_after_created(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("updated_date") >= pl.col("created_date"))

    class Config:
        strict = True


SPEC = TableSpec(
    name="feature_groups",
    model=FeatureGroups,
    primary_key=("feature_group_id",),
    description="Feature store groups: entity key, owner and version of each group of features.",
)
