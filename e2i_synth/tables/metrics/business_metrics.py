"""business_metrics generator: monthly KPI series against a planned target, with planted gaps.

Each series is (brand, region, metric). Its target follows a plan: a brand adoption curve (a
logistic between a floor and a cap, anchored on fixed calendar months so it never leaves its
range however long the scenario) times a monthly seasonality profile (January dip after
deductible resets, autumn peak). National TRx is planned per brand and split over the regions by
REGION_WEIGHTS (restricted to the scenario's regions, renormalised); NRx is a falling share of
TRx; the other metrics get a fixed per-region tilt of +-5%.

The true value is target x planned achievement: exactly on target (1) for unplanted months, the
gap's achievement_rate from a planted GapSpec's start_month. The observed value adds the
measurement's own sampling error, drawn with the standard error of the true value at the row's
sample_size (a pharmacy panel projection for volumes, a survey for the other metrics). So the
row's own statistics (confidence interval, statistical_significance) mean what they say: an
unplanted row is significant at its nominal rate, a planted gap at the power its size gives.

Every month of a series is a pure function of (scenario, series, month): its random draws come
from rng_for(seed, "business_metrics", brand, region, metric, month) and the plan is a function
of the calendar month. So any window of months can be generated on its own; mom_change and
yoy_change recompute the earlier months they need instead of reading them.
"""

from datetime import date, timedelta

import numpy as np
import polars as pl
from scipy.special import erf

from e2i_synth.core.scenario import Scenario
from e2i_synth.core.seeds import rng_for
from e2i_synth.core.split import split_for_dates
from e2i_synth.core.vocabulary import BRAND_METRICS, COMMON_METRICS, REGION_WEIGHTS
from e2i_synth.tables.metrics.business_metrics_model import (
    ENGAGEMENT_SCALE_MAX,
    METRIC_TYPES,
    SPEC,
    UNIT_INTERVAL_METRICS,
)

# Brand adoption curve: logistic midpoint (a calendar month) and time scale in months.
ADOPTION_CURVE: dict[str, tuple[date, float]] = {
    "Remibrutinib": (date(2025, 7, 1), 5.0),  # launch ramp
    "Fabhalta": (date(2025, 1, 1), 8.0),  # new indications
    "Kisqali": (date(2024, 10, 1), 12.0),  # adjuvant expansion of a mature brand
}
# (floor, cap) of the planned level along the adoption curve. trx is national TRx per month
# (kept well inside schemas.business_metrics.NATIONAL_TRX_RANGE with seasonality and noise);
# nrx is a share of TRx; the others are the metric's own unit.
PLAN_LEVELS: dict[str, dict[str, tuple[float, float]]] = {
    "Remibrutinib": {
        "trx": (8_000, 40_000),
        "nrx": (0.45, 0.30),
        "market_share": (0.03, 0.15),
        "conversion_rate": (0.10, 0.22),
        "hcp_engagement_score": (5.0, 7.2),
    },
    "Fabhalta": {
        "trx": (4_000, 16_000),
        "nrx": (0.35, 0.25),
        "market_share": (0.10, 0.28),
        "conversion_rate": (0.16, 0.26),
        "hcp_engagement_score": (5.5, 7.0),
        "adherence_rate": (0.78, 0.86),
    },
    "Kisqali": {
        "trx": (35_000, 80_000),
        "nrx": (0.22, 0.18),
        "market_share": (0.24, 0.36),
        "conversion_rate": (0.28, 0.35),
        "hcp_engagement_score": (6.2, 7.4),
        "os_rate": (0.80, 0.84),
    },
}
# Multiplier of the plan per calendar month (mean 1), and how strongly each type follows it.
SEASONALITY = (0.94, 0.97, 1.01, 1.01, 1.02, 1.00, 0.98, 0.99, 1.01, 1.03, 1.02, 1.02)
SEASONAL_AMPLITUDE = {"volume": 1.0, "share": 0.3, "rate": 0.3, "engagement": 0.5, "outcome": 0.0}
REGION_TILT = 0.05  # non-volume targets vary by region within +-5%
DECIMALS = {"volume": 0, "share": 6, "rate": 6, "engagement": 4, "outcome": 6}
# ROI of volume metrics: planned revenue per promotional dollar, scaled by achievement.
PLANNED_RETURN = {"Remibrutinib": 2.4, "Fabhalta": 3.1, "Kisqali": 3.6}
# Statistics: volume is projected from a pharmacy panel capturing 60-68% of prescriptions
# (design effect 2); the other metrics come from samples of this national size.
PANEL_CAPTURE = (0.60, 0.68)
VOLUME_DESIGN_EFFECT = 2.0
NATIONAL_SAMPLE = {
    "market_share": 40_000,
    "conversion_rate": 10_000,
    "hcp_engagement_score": 800,
    "adherence_rate": 1_200,
    "os_rate": 2_500,
}
ENGAGEMENT_SD = 1.8
Z_95 = 1.959963984540054


def month_index(day: date) -> int:
    """Months since year 0 of the month containing `day`."""
    return day.year * 12 + day.month - 1


def month_start(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def scenario_window(scenario: Scenario) -> tuple[date, date]:
    """[first day of start_date's month, first day of the month after end_date's month)."""
    return (
        month_start(month_index(scenario.start_date)),
        month_start(month_index(scenario.end_date) + 1),
    )


def scenario_months(scenario: Scenario) -> list[date]:
    first, last = month_index(scenario.start_date), month_index(scenario.end_date)
    return [month_start(i) for i in range(first, last + 1)]


def metric_series(scenario: Scenario) -> list[tuple[str, str, str]]:
    """Every (brand, region, metric_name) series of the scenario."""
    return [
        (brand, region, metric)
        for brand in scenario.brands
        for region in scenario.regions
        for metric in COMMON_METRICS + BRAND_METRICS[brand]
    ]


def expected_row_count(scenario: Scenario) -> int:
    return len(scenario_months(scenario)) * len(metric_series(scenario))


def window_months(scenario: Scenario, start: date, end: date) -> range:
    """Month indexes of the scenario's months whose first day lies in [start, end): the months
    a load of that window holds (none for a window after end_date's month)."""
    first, last = month_index(scenario.start_date), month_index(scenario.end_date)
    lo = max(first, month_index(start) + (start.day > 1))
    hi = min(last, month_index(end - timedelta(days=1)))
    return range(lo, max(lo, hi + 1))


def rows_in_window(scenario: Scenario, start: date, end: date) -> int:
    """Rows generate_business_metrics gives for [start, end)."""
    return len(window_months(scenario, start, end)) * len(metric_series(scenario))


def generate_business_metrics(scenario: Scenario, start: date, end: date) -> pl.DataFrame:
    """Rows of every series for the scenario's months with metric_date in [start, end)."""
    first, last = month_index(scenario.start_date), month_index(scenario.end_date)
    months = window_months(scenario, start, end)
    if not months:
        return pl.DataFrame(schema=SPEC.polars_schema)
    wanted = set(months)
    # Each month's mom and yoy need the month before and the month a year before.
    needed = sorted({m - k for m in wanted for k in (0, 1, 12)} & set(range(first, last + 1)))
    frame = _monthly_values(scenario, needed)

    keys = ["brand", "region", "metric_name"]

    def shifted(months: int, name: str) -> pl.DataFrame:
        return frame.select(*keys, pl.col("_month") + months, pl.col("value").alias(name))

    def change(name: str) -> pl.Expr:
        earlier = pl.col(name)
        return pl.when(earlier > 0).then(pl.col("value") / earlier - 1)

    return (
        frame.filter(pl.col("_month").is_in(sorted(wanted)))
        .join(shifted(1, "_previous"), on=[*keys, "_month"], how="left")
        .join(shifted(12, "_year_before"), on=[*keys, "_month"], how="left")
        .with_columns(
            mom_change=change("_previous"),
            yoy_change=change("_year_before"),
            data_split=split_for_dates(pl.col("metric_date"), scenario),
        )
        .sort("_month", "brand", "region", "metric_name")
        .select(SPEC.columns)
    )


def _series_frame(scenario: Scenario) -> pl.DataFrame:
    """One row per series with its fixed plan parameters."""
    weights = {r: REGION_WEIGHTS[r] for r in scenario.regions}
    total_weight = sum(weights.values())
    rows = []
    for brand, region, metric in metric_series(scenario):
        kind = METRIC_TYPES[metric]
        mid, tau = ADOPTION_CURVE[brand]
        tilt_rng = rng_for(scenario.seed, "business_metrics", brand, region, metric)
        rows.append(
            {
                "brand": brand,
                "region": region,
                "metric_name": metric,
                "metric_type": kind,
                "_share": weights[region] / total_weight,
                "_tilt": 1.0 if kind == "volume" else 1 + REGION_TILT * tilt_rng.uniform(-1, 1),
                "_floor": float(PLAN_LEVELS[brand][metric][0]),
                "_cap": float(PLAN_LEVELS[brand][metric][1]),
                "_trx_floor": float(PLAN_LEVELS[brand]["trx"][0]),
                "_trx_cap": float(PLAN_LEVELS[brand]["trx"][1]),
                "_mid": month_index(mid),
                "_tau": tau,
                "_amplitude": SEASONAL_AMPLITUDE[kind],
                "_decimals": DECIMALS[kind],
                "_upper": 1.0
                if metric in UNIT_INTERVAL_METRICS
                else ENGAGEMENT_SCALE_MAX
                if kind == "engagement"
                else float("inf"),
                "_national_n": float(NATIONAL_SAMPLE.get(metric, 0)),
                "_planned_return": PLANNED_RETURN[brand],
            }
        )
    return pl.DataFrame(rows)


def _monthly_values(scenario: Scenario, months: list[int]) -> pl.DataFrame:
    """Every series x month: target, value and statistics (not mom/yoy), plus `_month`."""
    calendar = pl.DataFrame(
        {"_month": months, "metric_date": [month_start(i) for i in months]},
        schema={"_month": pl.Int64, "metric_date": pl.Date},
    )
    grid = calendar.join(_series_frame(scenario), how="cross")
    col = {name: grid[name].to_numpy() for name in grid.columns}
    month, metric = col["_month"], col["metric_name"]
    is_volume = col["metric_type"] == "volume"

    # The plan: adoption curve x seasonality; national TRx split by region, others tilted.
    growth = 1 / (1 + np.exp(-(month - col["_mid"]) / col["_tau"]))
    level = col["_floor"] + (col["_cap"] - col["_floor"]) * growth
    trx_level = col["_trx_floor"] + (col["_trx_cap"] - col["_trx_floor"]) * growth
    season = 1 + col["_amplitude"] * (np.array(SEASONALITY)[month % 12] - 1)
    trx_target = trx_level * season * col["_share"]
    planned = np.select(
        [metric == "trx", metric == "nrx"],
        [trx_target, trx_target * level],
        default=level * season * col["_tilt"],
    )
    decimals = col["_decimals"]
    target = _round(planned, decimals)

    # Random draws of each (series, month) from its own stream: a normal and a uniform.
    draws = np.array(
        [
            _draws(scenario.seed, *row)
            for row in grid.select("brand", "region", "metric_name", "_month").iter_rows()
        ]
    )
    z, u = draws[:, 0], draws[:, 1]
    expected = target * planned_achievement(scenario, grid).to_numpy()
    kind = col["metric_type"]
    capture = PANEL_CAPTURE[0] + (PANEL_CAPTURE[1] - PANEL_CAPTURE[0]) * u
    surveyed = col["_national_n"] * col["_share"] * (0.9 + 0.2 * u)
    sample_size = np.maximum(1, np.round(np.where(is_volume, expected * capture, surveyed)))
    upper = col["_upper"]
    observed = expected + standard_error(expected, sample_size, kind) * z
    value = np.clip(_round(observed, decimals), 0, upper)
    grid = grid.with_columns(value=value)
    # NRx are a subset of TRx: cap NRx one below the same month's TRx (binding only when a
    # deep TRx gap, below about 55% of target, is planted).
    trx = grid.filter(pl.col("metric_name") == "trx").select(
        "brand", "region", "_month", _trx="value"
    )
    cap = (
        grid.join(trx, on=["brand", "region", "_month"], how="left", maintain_order="left")
        .select(pl.when(pl.col("metric_name") == "nrx").then(pl.col("_trx") - 1))
        .to_series()
        .fill_null(np.inf)
        .to_numpy()
    )
    value = np.maximum(np.minimum(value, cap), 0)

    # The row's own statistics, from the observed value (as an analyst computes them).
    se = standard_error(value, sample_size, kind)
    scale = 10.0**decimals
    ci_lower = np.minimum(np.floor(np.maximum(value - Z_95 * se, 0) * scale) / scale, value)
    ci_upper = np.maximum(np.ceil(np.minimum(value + Z_95 * se, upper) * scale) / scale, value)
    # Confidence that value differs from target: 1 - the two-sided p-value of the difference.
    distance = np.abs(value - target)
    significance = np.where(
        se > 0, erf(distance / (np.maximum(se, 1e-300) * np.sqrt(2))), (distance > 0) * 1.0
    )
    achievement_rate = value / target
    roi = np.where(is_volume, np.round(achievement_rate * col["_planned_return"] - 1, 4), np.nan)

    return grid.with_columns(
        metric_id=pl.format(
            "BM-{}-{}-{}-{}",
            "brand",
            "region",
            "metric_name",
            pl.col("metric_date").dt.strftime("%Y-%m"),
        ),
        value=value,
        target=target,
        achievement_rate=achievement_rate,
        roi=pl.Series(roi).fill_nan(None),
        statistical_significance=np.round(significance, 4),
        confidence_interval_lower=ci_lower,
        confidence_interval_upper=ci_upper,
        sample_size=pl.Series(sample_size.astype(np.int32)),
    )


def planned_achievement(scenario: Scenario, rows: pl.DataFrame) -> pl.Series:
    """The true achievement of each row (brand, region, metric_name, metric_date): the planted
    gap's rate from its start_month (to its end_month, if it recovers), else exactly 1."""
    rate = pl.lit(1.0)
    for gap in sorted(scenario.gaps, key=lambda g: g.start_month):
        hit = (
            (pl.col("brand") == gap.brand)
            & (pl.col("region") == gap.region)
            & (pl.col("metric_name") == gap.metric_name)
            & (pl.col("metric_date") >= gap.start_month)
        )
        if gap.end_month is not None:  # a gap that recovers: on target again after end_month
            hit = hit & (pl.col("metric_date") <= gap.end_month)
        rate = pl.when(hit).then(pl.lit(gap.achievement_rate)).otherwise(rate)
    return rows.with_columns(rate.alias("planned_achievement"))["planned_achievement"]


def standard_error(
    value: np.ndarray, sample_size: np.ndarray, metric_type: np.ndarray
) -> np.ndarray:
    """Standard error of a metric's value at its sample size: a panel projection for volumes
    (design effect VOLUME_DESIGN_EFFECT), a mean score for engagement, a proportion otherwise."""
    value = np.asarray(value, dtype=float)
    sample_size = np.asarray(sample_size, dtype=float)
    metric_type = np.asarray(metric_type)
    p = np.clip(value, 1e-6, 1 - 1e-6)
    return np.select(
        [metric_type == "volume", metric_type == "engagement"],
        [
            np.maximum(value, 0) * np.sqrt(VOLUME_DESIGN_EFFECT / sample_size),
            ENGAGEMENT_SD / np.sqrt(sample_size),
        ],
        default=np.sqrt(p * (1 - p) / sample_size),
    )


def _round(values: np.ndarray, decimals: np.ndarray) -> np.ndarray:
    scale = 10.0**decimals
    return np.round(values * scale) / scale


def _draws(seed: int, brand: str, region: str, metric: str, month: int) -> tuple[float, float]:
    rng = rng_for(seed, "business_metrics", brand, region, metric, month_start(month).isoformat())
    return rng.standard_normal(), rng.random()
