"""ground_truth: the answer key, what the scenario planted and what the data shows of it."""

import pandera.polars as pa
import polars as pl

from e2i_synth.core.table_spec import TableSpec

ANSWER_KINDS = ("scenario", "causal_effect", "drift", "gap")


class GroundTruth(pa.DataFrameModel):
    answer_id: str = pa.Field(
        unique=True, description="key: <kind>:<subject>, e.g. gap:Kisqali/northeast/trx"
    )
    kind: str = pa.Field(
        isin=ANSWER_KINDS,
        description="scenario (provenance), causal_effect, drift (one row per feature) or gap",
    )
    subject: str = pa.Field(
        description="what the row is about: the estimand, feature or brand/region/metric series"
    )
    planted: bool = pa.Field(
        description="the scenario planted this effect, drift or gap (false: must not be found)"
    )
    expected_value: pl.Float64 = pa.Field(
        nullable=True,
        description="causal_effect: TRUE_ATE; drift: PSI between the windows; gap: planted "
        "achievement_rate; null for the scenario row",
    )
    details: str = pa.Field(
        description="JSON: planted (the scenario's parameter), realised (what this sample "
        "holds), recovered (what the reference method finds on it), power and detectable"
    )
    scenario_hash: str = pa.Field(str_matches=r"^[0-9a-f]{64}$", description="sha256 of scenario")
    seed: pl.Int64 = pa.Field(ge=0, description="scenario seed")
    package_version: str = pa.Field(description="e2i-synth version that generated the data")

    class Config:
        strict = True


SPEC = TableSpec(
    name="ground_truth",
    model=GroundTruth,
    primary_key=("answer_id",),
    description="Answer key: the planted causal effect, drifts and gaps, with their statistics.",
    json_columns=("details",),
)
