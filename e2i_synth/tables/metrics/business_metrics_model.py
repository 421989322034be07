"""business_metrics: monthly KPI series per brand x region x metric, each against its target.

The Gap Analyzer reads it to find shortfalls against target, so every row reconciles exactly:
achievement_rate = value / target (null without a target), mom_change and yoy_change follow
from the same series' earlier values, and the confidence interval contains the value.
"""

import pandera.polars as pa
import polars as pl

from e2i_synth.core.table_spec import TableSpec
from e2i_synth.core.vocabulary import BRANDS, DATA_SPLITS, METRIC_NAMES, REGIONS

# Kind of quantity each metric is; it decides its unit, rounding and statistics.
METRIC_TYPES: dict[str, str] = {
    "trx": "volume",
    "nrx": "volume",
    "market_share": "share",
    "conversion_rate": "rate",
    "hcp_engagement_score": "engagement",
    "adherence_rate": "rate",
    "os_rate": "outcome",
}
METRIC_TYPE_NAMES: tuple[str, ...] = ("volume", "share", "rate", "engagement", "outcome")
# Metrics that are proportions, in [0, 1]; the engagement score is on a 0-10 scale.
UNIT_INTERVAL_METRICS: tuple[str, ...] = tuple(
    m for m, t in METRIC_TYPES.items() if t in ("share", "rate", "outcome")
)
ENGAGEMENT_SCALE_MAX = 10.0
# Metrics read from the simulated market (e2i_synth.world.market); the others are surveys.
WORLD_METRICS: tuple[str, ...] = ("trx", "nrx", "market_share")
# Plausible national TRx per month (sum over the regions), per brand: (min, max).
NATIONAL_TRX_RANGE: dict[str, tuple[int, int]] = {
    "Remibrutinib": (5_000, 50_000),
    "Fabhalta": (2_000, 20_000),
    "Kisqali": (10_000, 100_000),
}
# National TRx are weighted simulated fills: below this scale too few fills to hold the range.
RANGE_MIN_SCALE = 1.0
# Relative tolerance of the stored arithmetic (achievement, changes), on a scale of at least 1.
RECONCILE_TOLERANCE = 1e-9


def _close(stored: pl.Expr, expected: pl.Expr) -> pl.Expr:
    scale = pl.max_horizontal(expected.abs(), pl.lit(1.0))
    return (stored - expected).abs() <= RECONCILE_TOLERANCE * scale


class BusinessMetrics(pa.DataFrameModel):
    metric_id: str = pa.Field(
        unique=True,
        str_matches=r"^BM-[A-Za-z]+-[a-z]+-[a-z_]+-\d{4}-\d{2}$",
        description="key BM-<brand>-<region>-<metric_name>-<YYYY-MM>, "
        "e.g. BM-Kisqali-northeast-trx-2025-03",
    )
    metric_date: pl.Date = pa.Field(description="first day of the month the row measures")
    metric_type: str = pa.Field(
        isin=METRIC_TYPE_NAMES,
        description="kind of metric: volume (Rx counts), share, rate, engagement or outcome",
    )
    metric_name: str = pa.Field(isin=METRIC_NAMES, description="the KPI, e.g. trx, market_share")
    brand: str = pa.Field(isin=BRANDS, description="brand measured")
    region: str = pa.Field(isin=REGIONS, description="US sales region measured")
    value: pl.Float64 = pa.Field(
        ge=0,
        description="observed value (the true value plus sampling error of the row's "
        "sample_size): volume a whole count of prescriptions, share/rate/outcome a proportion "
        "rounded to 6 decimals, engagement a 0-10 score rounded to 4 decimals",
    )
    target: pl.Float64 = pa.Field(
        ge=0,
        description="planned value, rounded like value: for trx, nrx and market_share the same "
        "simulated market without the planted refill and start shocks (0 NRx where that world "
        "had no first fill); for the other metrics trend x seasonality",
    )
    achievement_rate: pl.Float64 = pa.Field(
        ge=0,
        nullable=True,
        description="value / target from the stored numbers, not rounded (1.0 = on target); "
        "null where target is 0",
    )
    yoy_change: pl.Float64 = pa.Field(
        nullable=True,
        description="value / value 12 months earlier - 1, not rounded; null without that month",
    )
    mom_change: pl.Float64 = pa.Field(
        nullable=True,
        description="value / previous month's value - 1, not rounded; null in the first month",
    )
    roi: pl.Float64 = pa.Field(
        nullable=True,
        description="return on planned promotional spend, achievement_rate x the brand's planned "
        "revenue-to-spend multiple - 1, rounded to 4 decimals; volume metrics with a target "
        "only, else null",
    )
    statistical_significance: pl.Float64 = pa.Field(
        ge=0,
        le=1,
        description="confidence (1 - two-sided p-value) that value differs from target, "
        "from the row's own standard error, rounded to 4 decimals: an on-target row reaches "
        "0.95 in 5% of months",
    )
    confidence_interval_lower: pl.Float64 = pa.Field(
        ge=0, description="lower bound of the 95% interval of value, rounded down like value"
    )
    confidence_interval_upper: pl.Float64 = pa.Field(
        ge=0, description="upper bound of the 95% interval of value, rounded up like value"
    )
    sample_size: pl.Int32 = pa.Field(
        ge=1,
        description="observations behind value: panel-captured prescriptions for volume, "
        "prescriptions, HCPs or patients observed for the other metrics",
    )
    data_split: str = pa.Field(isin=DATA_SPLITS, description="ML split, assigned by metric_date")
    simulated_count: pl.Int32 = pa.Field(
        ge=0,
        nullable=True,
        description="the simulated patients' fills behind the row (trx and market_share: "
        "prescriptions and refills of the brand's patients of the region in the month, as in "
        "treatment_events; nrx: prescriptions, the first fills); null for the other metrics",
    )
    market_trx: pl.Float64 = pa.Field(
        gt=0,
        nullable=True,
        description="market_share's denominator: planned TRx of the brand's class (competitors "
        "included) in the region-month, whole prescriptions; national share = sum(value x "
        "market_trx) / sum(market_trx); null for the other metrics",
    )

    @pa.dataframe_check(description="metric_date is the first day of its month")
    def first_of_month(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("metric_date").dt.day() == 1)

    @pa.dataframe_check(description="metric_type is the type of metric_name")
    def type_of_metric(cls, data: pa.PolarsData) -> pl.LazyFrame:
        expected = pl.col("metric_name").replace_strict(METRIC_TYPES, default=None)
        return data.lazyframe.select((pl.col("metric_type") == expected).fill_null(False))

    @pa.dataframe_check(description="achievement_rate = value / target, null where target is 0")
    def achievement_reconciles(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.when(pl.col("target") > 0)
            .then(_close(pl.col("achievement_rate"), pl.col("value") / pl.col("target")))
            .otherwise(pl.col("achievement_rate").is_null())
            .fill_null(False)
        )

    @pa.dataframe_check(description="the confidence interval contains value")
    def interval_contains_value(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("confidence_interval_lower") <= pl.col("value"))
            & (pl.col("value") <= pl.col("confidence_interval_upper"))
        )

    @pa.dataframe_check(description="shares, rates and outcomes lie in [0, 1], scores in [0, 10]")
    def within_scale(cls, data: pa.PolarsData) -> pl.LazyFrame:
        upper = (
            pl.when(pl.col("metric_name").is_in(UNIT_INTERVAL_METRICS))
            .then(1.0)
            .when(pl.col("metric_type") == "engagement")
            .then(ENGAGEMENT_SCALE_MAX)
            .otherwise(float("inf"))
        )
        return data.lazyframe.select(
            (pl.col("value") <= upper)
            & (pl.col("target") <= upper)
            & (pl.col("confidence_interval_upper") <= upper)
        )

    @pa.dataframe_check(description="roi is set exactly for volume metrics with a target")
    def roi_iff_volume(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("roi").is_not_null()
            == ((pl.col("metric_type") == "volume") & (pl.col("target") > 0))
        )

    @pa.dataframe_check(description="simulated_count is set exactly for trx, nrx, market_share")
    def count_iff_world(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("simulated_count").is_not_null() == pl.col("metric_name").is_in(WORLD_METRICS)
        )

    @pa.dataframe_check(description="market_trx is set exactly for market_share")
    def denominator_iff_share(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("market_trx").is_not_null() == (pl.col("metric_name") == "market_share")
        )

    class Config:
        strict = True


SPEC = TableSpec(
    name="business_metrics",
    model=BusinessMetrics,
    primary_key=("metric_id",),
    description="Monthly KPI series per brand, region and metric against target, with planted "
    "shortfalls for the Gap Analyzer.",
    partition_column="metric_date",
)
