"""triggers: alerts the agents raise for HCPs (about one of their patients, or the HCP), with
their delivery lifecycle."""

from typing import Annotated

import pandera.polars as pa
import polars as pl

from e2i_synth.core.table_spec import TableSpec
from e2i_synth.core.vocabulary import BRANDS, DATA_SPLITS

# trigger_type -> whether it is about one patient of the HCP (else about the HCP).
TRIGGER_TYPES: dict[str, bool] = {
    "new_patient_diagnosed": True,
    "refill_gap": True,
    "high_propensity": True,
    "competitive_switch_risk": True,
    "engagement_drop": False,
}
PRIORITIES: tuple[str, ...] = ("low", "medium", "high", "critical")
CHANNELS: tuple[str, ...] = ("rep_app", "email", "crm_task")
STATUSES: tuple[str, ...] = ("created", "delivered", "viewed", "accepted", "dismissed", "expired")
# status -> which of (delivered_at, viewed_at, resolved_at) are set; None: either.
STATUS_TIMESTAMPS: dict[str, tuple[bool | None, bool | None, bool | None]] = {
    "created": (False, False, False),
    "delivered": (True, False, False),
    "viewed": (True, True, False),
    "accepted": (True, True, True),
    "dismissed": (True, True, True),
    "expired": (True, None, True),  # expired unanswered, seen or not
}
LIFECYCLE_COLUMNS: tuple[str, ...] = ("delivered_at", "viewed_at", "resolved_at")


def status_consistent() -> pl.Expr:
    """True where the set/null timestamps are those the status implies."""
    expr = pl.lit(False)
    for status, required in STATUS_TIMESTAMPS.items():
        ok = pl.col("status") == status
        for column, must_be_set in zip(LIFECYCLE_COLUMNS, required, strict=True):
            if must_be_set is not None:
                ok = ok & (pl.col(column).is_not_null() == must_be_set)
        expr = expr | ok
    return expr


def timestamps_ordered() -> pl.Expr:
    """created_at <= delivered_at <= viewed_at <= resolved_at, over the ones that are set."""
    created, delivered = pl.col("created_at"), pl.col("delivered_at")
    viewed, resolved = pl.col("viewed_at"), pl.col("resolved_at")
    after_delivery = pl.coalesce(viewed, delivered, created)
    return (
        (delivered.is_null() | (delivered >= created))
        & (viewed.is_null() | (viewed >= pl.coalesce(delivered, created)))
        & (resolved.is_null() | (resolved >= after_delivery))
    )


UtcTimestamp = Annotated[pl.Datetime, "us", "UTC"]


class Triggers(pa.DataFrameModel):
    trigger_id: str = pa.Field(
        unique=True,
        str_matches=r"^TRG-\d{8}-\d{6}$",
        description="key TRG-<YYYYMMDD>-<n>: creation day and its number within the day",
    )
    hcp_id: str = pa.Field(description="HCP the trigger is for (hcp_profiles.hcp_id)")
    patient_id: str = pa.Field(
        nullable=True,
        description="patient of that HCP the trigger is about (patient_journeys); null for "
        "HCP-level triggers",
    )
    brand: str = pa.Field(isin=BRANDS, description="brand concerned")
    trigger_type: str = pa.Field(isin=tuple(TRIGGER_TYPES), description="why the agent fired")
    priority: str = pa.Field(isin=PRIORITIES, description="low, medium, high or critical")
    reason: str = pa.Field(description="human-readable explanation shown to the rep")
    channel: str = pa.Field(isin=CHANNELS, description="where the trigger is delivered")
    created_at: UtcTimestamp = pa.Field(description="when the agent fired (UTC); partition column")
    status: str = pa.Field(isin=STATUSES, description="lifecycle state as of the reference date")
    delivered_at: UtcTimestamp = pa.Field(nullable=True, description="delivered to the HCP's rep")
    viewed_at: UtcTimestamp = pa.Field(nullable=True, description="opened by the rep")
    resolved_at: UtcTimestamp = pa.Field(
        nullable=True, description="accepted, dismissed or expired at"
    )
    data_split: str = pa.Field(
        isin=DATA_SPLITS,
        description="ML split of the creation date (every row: the date rule)",
    )

    @pa.dataframe_check(description="the set lifecycle timestamps are those the status implies")
    def status_matches_timestamps(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(status_consistent())

    @pa.dataframe_check(description="created_at <= delivered_at <= viewed_at <= resolved_at")
    def lifecycle_ordered(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(timestamps_ordered())

    @pa.dataframe_check(description="patient_id is set exactly for patient-level trigger types")
    def patient_iff_patient_type(cls, data: pa.PolarsData) -> pl.LazyFrame:
        patient_types = [t for t, about_patient in TRIGGER_TYPES.items() if about_patient]
        return data.lazyframe.select(
            pl.col("patient_id").is_not_null() == pl.col("trigger_type").is_in(patient_types)
        )

    class Config:
        strict = True


SPEC = TableSpec(
    name="triggers",
    model=Triggers,
    primary_key=("trigger_id",),
    description="Agent triggers for HCPs with their lifecycle: created, delivered, viewed, "
    "accepted, dismissed or expired.",
    partition_column="created_at",
)
