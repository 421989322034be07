"""business_metrics generator: monthly KPI series against target, read from the simulated market.

Each series is (brand, region, metric). Volumes and share are the world's (e2i_synth.world.market):
TRx is carryover + patient weight x the region-month's fills, NRx weight x its first fills, and
market_share the brand's TRx over market_trx, the class's TRx (all brands, competitors
included), which the row stores as its denominator. The target of these is the same world
without the refill and start shocks of the planted gaps: the plan of a perfect forecaster, so
an unplanted series is exactly on target before measurement, a refill shock shows in TRx and
share alike (NRx are first fills, which it leaves alone) and a start shock in NRx, then in TRx
and share as the patients who did not start do not refill. market_trx is planned: the brand's
counterfactual TRx over its planned share (the adoption curve below).

The other metrics (conversion, engagement, adherence, OS) are a survey of a plan: a brand
adoption curve (a logistic between a floor and a cap, anchored on fixed calendar months) times a
monthly seasonality profile, with a fixed per-region tilt of +-5%. Two of them measure the
world's shocks (surveyed_series): adherence_rate the refills taken, so a refill shock in its
brand and region (planted on adherence_rate, trx or market_share) scales its true value by the
shock's achievement_rate, the chance that a refill is dispensed; conversion_rate the new
patients who start, so a start shock (planted on nrx or conversion_rate) scales it by the chance
that a start goes ahead, in the months of diagnosis it strikes. No gap can be planted on
hcp_engagement_score or os_rate: the world has no cause for one (core.scenario.NO_WORLD_CAUSE).

The observed value adds the measurement's own sampling error, drawn with the standard error of
the true value at the row's sample_size (a pharmacy panel projection for volumes, a survey for
the other metrics). So the row's own statistics (confidence interval, statistical_significance)
mean what they say: an unplanted row is significant at its nominal rate, a planted gap at the
power its size gives.

Every month of a series is a pure function of (scenario, patient_journeys, month): its random
draws come from rng_for(seed, "business_metrics", brand, region, metric, month), the plan is a
function of the calendar month and the world's counts of the patients. So any window of months
can be generated on its own; mom_change and yoy_change recompute the earlier months they need.
"""

from datetime import date, timedelta

import numpy as np
import polars as pl
from scipy.special import erf

from e2i_synth.core.scenario import START_SHOCK_METRICS, GapSpec, Scenario
from e2i_synth.core.seeds import rng_for
from e2i_synth.core.split import split_for_dates
from e2i_synth.core.vocabulary import BRAND_METRICS, COMMON_METRICS, REGION_WEIGHTS
from e2i_synth.tables.metrics.business_metrics_model import (
    ENGAGEMENT_SCALE_MAX,
    METRIC_TYPES,
    SPEC,
    UNIT_INTERVAL_METRICS,
)
from e2i_synth.world.market import carryover, month_index, patient_weight, world_counts

# Brand adoption curve: logistic midpoint (a calendar month) and time scale in months.
ADOPTION_CURVE: dict[str, tuple[date, float]] = {
    "Remibrutinib": (date(2025, 7, 1), 5.0),  # launch ramp
    "Fabhalta": (date(2025, 1, 1), 8.0),  # new indications
    "Kisqali": (date(2024, 10, 1), 12.0),  # adjuvant expansion of a mature brand
}
# (floor, cap) of the planned level along the adoption curve, in the metric's own unit (trx and
# nrx come from the world and have none; market_share's is the planned share).
PLAN_LEVELS: dict[str, dict[str, tuple[float, float]]] = {
    "Remibrutinib": {
        "market_share": (0.03, 0.15),
        "conversion_rate": (0.10, 0.22),
        "hcp_engagement_score": (5.0, 7.2),
    },
    "Fabhalta": {
        "market_share": (0.10, 0.28),
        "conversion_rate": (0.16, 0.26),
        "hcp_engagement_score": (5.5, 7.0),
        "adherence_rate": (0.78, 0.86),
    },
    "Kisqali": {
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


def generate_business_metrics(
    scenario: Scenario, patient_journeys: pl.DataFrame, start: date, end: date
) -> pl.DataFrame:
    """Rows of every series for the scenario's months with metric_date in [start, end), from the
    world of patient_journeys (its TIMELINE_COLUMNS)."""
    first, last = month_index(scenario.start_date), month_index(scenario.end_date)
    months = window_months(scenario, start, end)
    if not months:
        return pl.DataFrame(schema=SPEC.polars_schema)
    wanted = set(months)
    # Each month's mom and yoy need the month before and the month a year before.
    needed = sorted({m - k for m in wanted for k in (0, 1, 12)} & set(range(first, last + 1)))
    frame = _monthly_values(scenario, needed, world_counts(scenario, patient_journeys))

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
    total_weight = sum(weights.values())  # the survey's sample size splits like the regions
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
                "_floor": float(PLAN_LEVELS[brand].get(metric, (1, 1))[0]),
                "_cap": float(PLAN_LEVELS[brand].get(metric, (1, 1))[1]),
                "_weight": patient_weight(scenario, brand),
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


def _monthly_values(scenario: Scenario, months: list[int], counts: pl.DataFrame) -> pl.DataFrame:
    """Every series x month: target, value and statistics (not mom/yoy), plus `_month`."""
    calendar = pl.DataFrame(
        {"_month": months, "metric_date": [month_start(i) for i in months]},
        schema={"_month": pl.Int64, "metric_date": pl.Date},
    )
    grid = (
        calendar.join(_series_frame(scenario), how="cross")
        .join(counts, on=["brand", "region", "_month"], how="left", maintain_order="left")
        .with_columns(pl.col("trx", "nrx", "trx_without_shock", "nrx_without_shock").fill_null(0))
    )
    col = {name: grid[name].to_numpy() for name in grid.columns}
    month, metric = col["_month"], col["metric_name"]
    is_volume = col["metric_type"] == "volume"

    # The survey plan: adoption curve x seasonality x the region's tilt.
    growth = 1 / (1 + np.exp(-(month - col["_mid"]) / col["_tau"]))
    level = col["_floor"] + (col["_cap"] - col["_floor"]) * growth
    season = 1 + col["_amplitude"] * (np.array(SEASONALITY)[month % 12] - 1)
    survey_plan = level * season * col["_tilt"]
    # The world: the brand's counterfactual TRx, and the market's TRx at the planned share.
    weight = col["_weight"]
    carry = _carryover(scenario, grid)
    planned_trx = carry + weight * col["trx_without_shock"]
    market_trx = np.where(metric == "market_share", np.round(planned_trx / survey_plan), np.nan)
    simulated = np.select(
        [metric == "trx", metric == "nrx", metric == "market_share"],
        [col["trx"], col["nrx"], col["trx"]],
        default=-1,
    )
    planned = np.select(
        [metric == "trx", metric == "nrx", metric == "market_share"],
        [planned_trx, weight * col["nrx_without_shock"], planned_trx / market_trx],
        default=survey_plan,
    )
    decimals = col["_decimals"]
    target = _round(planned, decimals)
    grid = grid.with_columns(
        target=target,
        simulated_count=pl.when(pl.Series(simulated) >= 0).then(
            pl.Series(simulated, dtype=pl.Int32)
        ),
        market_trx=pl.Series(market_trx).fill_nan(None),
    )

    # Random draws of each (series, month) from its own stream: a normal and a uniform.
    draws = np.array(
        [
            _draws(scenario.seed, *row)
            for row in grid.select("brand", "region", "metric_name", "_month").iter_rows()
        ]
    )
    z, u = draws[:, 0], draws[:, 1]
    expected = true_value(scenario, grid)
    kind = col["metric_type"]
    capture = PANEL_CAPTURE[0] + (PANEL_CAPTURE[1] - PANEL_CAPTURE[0]) * u
    surveyed = col["_national_n"] * col["_share"] * (0.9 + 0.2 * u)
    sample_size = np.maximum(1, np.round(np.where(is_volume, expected * capture, surveyed)))
    upper = col["_upper"]
    observed = expected + standard_error(expected, sample_size, kind) * z
    value = np.clip(_round(observed, decimals), 0, upper)
    grid = grid.with_columns(value=value)
    # NRx are a subset of TRx: cap NRx one below the same month's TRx (binding only when a
    # deep TRx gap is planted).
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
    # No achievement without a plan: a region-month whose world had no first fill plans 0 NRx.
    planned_any = target > 0
    achievement_rate = np.where(planned_any, value / np.where(planned_any, target, 1), np.nan)
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
        achievement_rate=pl.Series(achievement_rate).fill_nan(None),
        roi=pl.Series(roi).fill_nan(None),
        statistical_significance=np.round(significance, 4),
        confidence_interval_lower=ci_lower,
        confidence_interval_upper=ci_upper,
        sample_size=pl.Series(sample_size.astype(np.int32)),
    )


def _carryover(scenario: Scenario, rows: pl.DataFrame) -> np.ndarray:
    """The prevalent pool's TRx of each row's (brand, region, month)."""
    carry = np.zeros(rows.height)
    brand, region = rows["brand"].to_numpy(), rows["region"].to_numpy()
    month = rows["metric_date"].dt.year().to_numpy() * 12 + rows["metric_date"].dt.month() - 1
    month = np.asarray(month)
    for b in scenario.brands:
        for r in scenario.regions:
            hit = (brand == b) & (region == r)
            carry[hit] = carryover(scenario, b, r, month[hit])
    return carry


def true_value(scenario: Scenario, rows: pl.DataFrame) -> np.ndarray:
    """The true value of each row (brand, region, metric_name, metric_date, target,
    simulated_count, market_trx) before measurement: the world's for trx, nrx and market_share
    (carryover + patient weight x simulated_count; over market_trx for the share), else the
    target times the planted rate of a shock the survey measures (planned_achievement)."""
    metric = rows["metric_name"].to_numpy()
    weight = rows["brand"].replace_strict(
        {b: patient_weight(scenario, b) for b in scenario.brands}, return_dtype=pl.Float64
    )
    count = rows["simulated_count"].cast(pl.Float64).fill_null(0).to_numpy()
    trx = _carryover(scenario, rows) + weight.to_numpy() * count
    market = rows["market_trx"].fill_null(1.0).to_numpy()
    world = np.select(
        [metric == "trx", metric == "nrx", metric == "market_share"],
        [trx, weight.to_numpy() * count, trx / market],
        default=rows["target"].to_numpy(),
    )
    return world * planned_achievement(scenario, rows).to_numpy()


# The survey metrics that measure the world's shocks: the refills taken (every refill shock
# scales it) and the new patients who start (every start shock scales it).
REFILL_SURVEY_METRIC = "adherence_rate"
START_SURVEY_METRIC = "conversion_rate"


def surveyed_series(gap: GapSpec) -> str | None:
    """The survey series whose true value a planted gap's shock scales: conversion_rate for a
    start shock, adherence_rate for a refill shock where the brand reports it (the world's
    volumes show the rest); None for none."""
    if gap.metric_name in START_SHOCK_METRICS:
        return START_SURVEY_METRIC
    return REFILL_SURVEY_METRIC if REFILL_SURVEY_METRIC in BRAND_METRICS[gap.brand] else None


def planned_achievement(scenario: Scenario, rows: pl.DataFrame) -> pl.Series:
    """The planted rate of each row (brand, region, metric_name, metric_date) of a surveyed
    series (surveyed_series): the gap's achievement_rate from its start_month (to its end_month,
    if it recovers), else 1."""
    rate = pl.lit(1.0)
    for gap in sorted(scenario.gaps, key=lambda g: g.start_month):
        surveyed = surveyed_series(gap)
        if surveyed is None:
            continue
        hit = (
            (pl.col("brand") == gap.brand)
            & (pl.col("region") == gap.region)
            & (pl.col("metric_name") == surveyed)
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
