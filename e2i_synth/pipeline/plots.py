"""Numbers per partition for the UI's Plots tab: the planted drift and gaps, drawn by Dagster.

Computed from the frame the asset is about to write (a group_by over rows already in memory)
and attached to each partition's materialization with `context.add_asset_metadata(...,
partition_key=...)`, so a backfill range run still gives every day or month its own points.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import dagster as dg
import polars as pl

from e2i_synth.core.scenario import GapSpec

DAY_FORMAT = "%Y-%m-%d"


def feature_daily_means(
    values: pl.DataFrame, features: pl.DataFrame
) -> dict[str, dict[str, float]]:
    """{day: {"mean <feature name>": mean}} for every numeric value (JSON numbers; booleans and
    category strings are left out) of feature_values."""
    if values.is_empty():
        return {}
    names = dict(zip(features["feature_id"], features["name"], strict=True))
    means = (
        values.select(
            pl.col("event_timestamp").dt.date().alias("day"),
            "feature_id",
            pl.col("value").cast(pl.Float64, strict=False).alias("number"),
        )
        .drop_nulls("number")
        .group_by("day", "feature_id")
        .agg(pl.col("number").mean())
        .sort("day", "feature_id")
    )
    out: dict[str, dict[str, float]] = {}
    for day, feature_id, mean in means.iter_rows():
        out.setdefault(day.strftime(DAY_FORMAT), {})[
            f"mean {names.get(feature_id, feature_id)}"
        ] = mean
    return out


def _series(gap: GapSpec) -> str:
    return f"{gap.brand}/{gap.region}/{gap.metric_name}"


def achievement_by_month(
    metrics: pl.DataFrame, gaps: Iterable[GapSpec]
) -> dict[str, dict[str, float]]:
    """{month: {...}}: the mean achievement_rate over every series, and the achievement_rate of
    each series with a planted gap (its dip shows from the gap's start_month)."""
    if metrics.is_empty():
        return {}
    out: dict[str, dict[str, float]] = {}
    overall = (
        metrics.group_by("metric_date").agg(pl.col("achievement_rate").mean()).sort("metric_date")
    )
    for month, mean in overall.iter_rows():
        if mean is not None:
            out.setdefault(month.strftime(DAY_FORMAT), {})["mean achievement_rate"] = mean
    for gap in gaps:
        rows = metrics.filter(
            (pl.col("brand") == gap.brand)
            & (pl.col("region") == gap.region)
            & (pl.col("metric_name") == gap.metric_name)
        )
        for month, rate in (
            rows.group_by("metric_date").agg(pl.col("achievement_rate").mean()).iter_rows()
        ):
            if rate is not None:
                out.setdefault(month.strftime(DAY_FORMAT), {})[
                    f"achievement_rate {_series(gap)}"
                ] = rate
    return out


def add_partition_metadata(
    context: dg.AssetExecutionContext, per_partition: Mapping[str, Mapping[str, float]]
) -> None:
    """Each partition's numbers as float metadata on that partition's materialization."""
    targeted = set(context.partition_keys)
    for key, numbers in per_partition.items():
        if key in targeted and numbers:
            context.add_asset_metadata(
                {name: dg.MetadataValue.float(float(v)) for name, v in sorted(numbers.items())},
                partition_key=key,
            )


__all__ = ["achievement_by_month", "add_partition_metadata", "feature_daily_means"]
