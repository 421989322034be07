"""business_metrics: the generator's rules at full scale, window equivalence, determinism, the
migration against the model, and the pipeline through real Dagster with every check."""

from datetime import date

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from e2i_synth.core.scenario import Scenario, load_scenario
from e2i_synth.core.split import split_for_dates
from e2i_synth.core.table_spec import pg_type_for
from e2i_synth.core.vocabulary import BRAND_METRICS, COMMON_METRICS, REGION_WEIGHTS
from e2i_synth.db.copy import count_rows
from e2i_synth.tables import TABLES
from e2i_synth.tables.answer_key.bounds import bonferroni_z
from e2i_synth.tables.answer_key.gaps import scored_rows
from e2i_synth.tables.metrics import assets as metrics
from e2i_synth.tables.metrics.business_metrics import (
    expected_row_count,
    generate_business_metrics,
    metric_series,
    scenario_months,
    scenario_window,
)
from e2i_synth.tables.metrics.business_metrics_model import (
    NATIONAL_TRX_RANGE,
    UNIT_INTERVAL_METRICS,
)
from e2i_synth.tables.metrics.checks import (
    METRICS_CHECKS,
    arithmetic_reconciles,
    month_continuity,
    value_ranges,
)
from e2i_synth_tests.pipeline import failed_checks, run

SPEC = TABLES["business_metrics"]
SERIES = ["brand", "region", "metric_name"]
ASSETS = dg.load_assets_from_modules([metrics])


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    scenario = load_scenario(None, scale="full")
    assert scenario.gaps, "the default scenario plants gaps"
    return scenario


@pytest.fixture(scope="module")
def frame(scenario: Scenario) -> pl.DataFrame:
    return generate_business_metrics(scenario, *scenario_window(scenario))


def _planted(frame: pl.DataFrame, scenario: Scenario) -> pl.Expr:
    """Rows from a planted gap's start_month on."""
    hit = pl.lit(False)
    for gap in scenario.gaps:
        hit = hit | (
            (pl.col("brand") == gap.brand)
            & (pl.col("region") == gap.region)
            & (pl.col("metric_name") == gap.metric_name)
            & (pl.col("metric_date") >= gap.start_month)
        )
    return hit


# --- generator rules at full scale -------------------------------------------------------------


def test_every_series_has_every_month_once(scenario, frame):
    months = scenario_months(scenario)
    series = metric_series(scenario)
    assert len(months) == 30  # 2024-01 .. 2026-06
    assert len(series) == 4 * (3 * len(COMMON_METRICS) + sum(map(len, BRAND_METRICS.values())))
    assert frame.height == expected_row_count(scenario) == 30 * 68 == 2040
    assert frame.select(*SERIES, "metric_date").is_unique().all()
    per_series = frame.group_by(SERIES).agg(pl.col("metric_date").sort())
    assert per_series.height == len(series)
    for dates in per_series["metric_date"]:
        assert dates.to_list() == months
    assert SPEC.validate(frame).height == frame.height
    assert "BM-Kisqali-northeast-trx-2025-03" in frame["metric_id"].to_list()
    assert frame.filter(pl.col("metric_name") == "os_rate")["brand"].unique().to_list() == [
        "Kisqali"
    ]
    assert frame.filter(pl.col("metric_name") == "adherence_rate")["brand"].unique().to_list() == [
        "Fabhalta"
    ]


def test_volumes_split_national_trx_by_region_weight(frame):
    trx = frame.filter(pl.col("metric_name") == "trx")
    national = trx.group_by("brand", "metric_date").agg(
        pl.col("value").sum().alias("national"), pl.col("target").sum().alias("national_target")
    )
    for brand, (lo, hi) in NATIONAL_TRX_RANGE.items():
        values = national.filter(pl.col("brand") == brand)["national"]
        assert values.len() == 30
        assert lo <= values.min() and values.max() <= hi, brand
    shares = trx.join(national, on=["brand", "metric_date"]).with_columns(
        share=pl.col("target") / pl.col("national_target"),
        weight=pl.col("region").replace_strict(REGION_WEIGHTS),
    )
    # Targets are whole prescriptions, so the split is exact up to rounding.
    assert (shares["share"] - shares["weight"]).abs().max() < 1e-3
    counts = frame.filter(pl.col("metric_type") == "volume")
    assert (counts["value"] == counts["value"].round(0)).all()
    assert (counts["target"] == counts["target"].round(0)).all()
    pairs = frame.filter(pl.col("metric_name") == "nrx").join(
        trx, on=["brand", "region", "metric_date"], suffix="_trx"
    )
    assert pairs.height == trx.height
    assert (pairs["value"] < pairs["value_trx"]).all()
    assert (pairs["target"] < pairs["target_trx"]).all()


def test_rates_and_scores_stay_on_their_scales(frame):
    rates = frame.filter(pl.col("metric_name").is_in(UNIT_INTERVAL_METRICS))
    for column in ("value", "target", "confidence_interval_lower", "confidence_interval_upper"):
        assert rates[column].is_between(0, 1).all(), column
    assert (rates["value"] == rates["value"].round(6)).all()
    score = frame.filter(pl.col("metric_name") == "hcp_engagement_score")
    assert score["value"].is_between(0, 10).all() and score["target"].is_between(0, 10).all()
    assert score["confidence_interval_upper"].max() <= 10
    assert (score["value"] == score["value"].round(4)).all()
    assert frame["statistical_significance"].is_between(0, 1).all()
    assert (frame["confidence_interval_lower"] <= frame["value"]).all()
    assert (frame["value"] <= frame["confidence_interval_upper"]).all()
    assert (frame["roi"].is_not_null() == (frame["metric_type"] == "volume")).all()


def test_planted_gaps_are_visible(scenario, frame):
    scored = scored_rows(scenario, frame)
    limit = bonferroni_z(scored.height)
    for gap in scenario.gaps:
        rows = scored.filter(
            pl.col("brand") == gap.brand,
            pl.col("region") == gap.region,
            pl.col("metric_name") == gap.metric_name,
        )
        after = rows.filter(pl.col("metric_date") >= gap.start_month)
        before = rows.filter(pl.col("metric_date") < gap.start_month)
        assert after.height > 0 and before.height > 0
        # The true value is target x the planted rate: each month within its sampling error,
        # the mean of the months within 4 standard errors of that mean.
        assert (after["expected"] == after["target"] * gap.achievement_rate).all()
        assert (after["z"] <= limit).all(), gap
        achieved = (after["value"] / after["target"]).mean()
        mean_se = (after["se"] / after["target"]).pow(2).sum() ** 0.5 / after.height
        assert abs(achieved - gap.achievement_rate) <= 4 * mean_se, (gap, achieved)
        assert (before["expected"] == before["target"]).all()
        # The row's own statistics show the gap: significant and below target in most months.
        assert after["flagged"].mean() >= 0.5, gap
    # A Gap Analyzer's series rule: three months in a row below target and significant. On this
    # seed it finds exactly the planted series, from their start month.
    runs = (
        scored.sort(*SERIES, "metric_date")
        .with_columns(
            run=pl.col("flagged").cast(pl.Int32).rolling_sum(3).over(SERIES),
        )
        .filter(pl.col("run") == 3)
        .group_by(SERIES)
        .agg(pl.col("metric_date").min().dt.offset_by("-2mo"))
        .sort(SERIES)
    )
    expected = sorted((g.brand, g.region, g.metric_name, g.start_month) for g in scenario.gaps)
    assert sorted(runs.iter_rows()) == expected
    volume_gaps = frame.filter(_planted(frame, scenario), pl.col("metric_type") == "volume")
    assert (volume_gaps["statistical_significance"] > 0.99).all()


def test_unplanted_rows_are_on_target_within_their_sampling_error(scenario, frame):
    scored = scored_rows(scenario, frame).filter(~_planted(frame, scenario))
    assert (scored["expected"] == scored["target"]).all()
    assert scored["z"].max() <= bonferroni_z(frame.height)
    # The row's own significance is calibrated: about 5% of on-target rows reach 0.95.
    significant = (scored["statistical_significance"] >= 0.95).mean()
    assert 0.03 <= significant <= 0.07, significant
    signed = (scored["value"] - scored["expected"]) / scored["se"]
    assert abs(signed.mean()) < 0.1 and 0.9 < signed.std() < 1.1


def test_arithmetic_reconciles_exactly(scenario, frame):
    assert (frame["achievement_rate"] == frame["value"] / frame["target"]).all()
    recomputed = frame.sort(*SERIES, "metric_date").with_columns(
        expected_mom=(pl.col("value") / pl.col("value").shift(1) - 1).over(SERIES),
        expected_yoy=(pl.col("value") / pl.col("value").shift(12) - 1).over(SERIES),
        position=pl.int_range(pl.len()).over(SERIES),
    )
    assert (recomputed["mom_change"].is_null() == (recomputed["position"] == 0)).all()
    assert (recomputed["yoy_change"].is_null() == (recomputed["position"] < 12)).all()
    # Same IEEE operations on the same stored numbers: equal, not just close.
    assert recomputed["mom_change"].eq_missing(recomputed["expected_mom"]).all()
    assert recomputed["yoy_change"].eq_missing(recomputed["expected_yoy"]).all()
    split = frame.select(split_for_dates(pl.col("metric_date"), scenario))
    assert frame["data_split"].equals(split.to_series(), check_names=False)
    assert frame["data_split"].unique().len() == 4


# --- windows and determinism ------------------------------------------------------------------


def test_windows_concatenate_to_the_whole(scenario, frame):
    start, end = scenario_window(scenario)
    for cut in (date(2024, 2, 1), date(2025, 1, 1), date(2025, 6, 1), date(2026, 6, 1)):
        parts = pl.concat(
            [
                generate_business_metrics(scenario, start, cut),
                generate_business_metrics(scenario, cut, end),
            ]
        )
        assert_frame_equal(parts, frame)
    months = scenario_months(scenario)
    bounds = [*months, end]
    one_by_one = pl.concat(
        [
            generate_business_metrics(scenario, a, b)
            for a, b in zip(bounds, bounds[1:], strict=False)
        ]
    )
    assert_frame_equal(one_by_one, frame)
    # A one-month window still carries mom and yoy, recomputed from the earlier months.
    march = generate_business_metrics(scenario, date(2026, 3, 1), date(2026, 4, 1))
    assert march.height == len(metric_series(scenario))
    assert march["mom_change"].null_count() == 0 and march["yoy_change"].null_count() == 0


def test_windows_select_by_metric_date(scenario, frame):
    # [start, end) by metric_date: a month belongs to a window when its first day does.
    inside = generate_business_metrics(scenario, date(2025, 2, 15), date(2025, 5, 1))
    assert inside["metric_date"].unique().sort().to_list() == [
        date(2025, 3, 1),
        date(2025, 4, 1),
    ]
    assert generate_business_metrics(scenario, date(2025, 2, 2), date(2025, 3, 1)).is_empty()
    # Months outside the scenario have no rows; the schema is kept.
    before = generate_business_metrics(scenario, date(2020, 1, 1), date(2024, 1, 1))
    assert before.is_empty() and before.schema == frame.schema
    wide = generate_business_metrics(scenario, date(2020, 1, 1), date(2030, 1, 1))
    assert_frame_equal(wide, frame)


def test_generation_is_deterministic_and_per_series(scenario, frame):
    assert_frame_equal(generate_business_metrics(scenario, *scenario_window(scenario)), frame)
    other_seed = scenario.model_copy(update={"seed": scenario.seed + 1})
    reseeded = generate_business_metrics(other_seed, *scenario_window(other_seed))
    assert not reseeded["value"].equals(frame["value"])
    # Removing the gaps changes the planted months and nothing else.
    no_gaps = scenario.model_copy(update={"gaps": ()})
    clean = generate_business_metrics(no_gaps, *scenario_window(no_gaps))
    planted = _planted(frame, scenario)
    assert_frame_equal(clean.filter(~planted), frame.filter(~planted))
    assert (clean.filter(planted)["achievement_rate"] > 0.9).all()


def test_a_subset_of_regions_still_splits_the_national_figure(scenario):
    south_west = scenario.model_copy(update={"regions": ("south", "west"), "gaps": ()})
    frame = generate_business_metrics(south_west, *scenario_window(south_west))
    assert frame.height == expected_row_count(south_west) == 30 * 2 * 17
    national = (
        frame.filter(pl.col("metric_name") == "trx")
        .group_by("brand", "metric_date")
        .agg(pl.col("value").sum())
    )
    for brand, (lo, hi) in NATIONAL_TRX_RANGE.items():
        values = national.filter(pl.col("brand") == brand)["value"]
        assert lo <= values.min() and values.max() <= hi
    SPEC.validate(frame)


# --- PostgreSQL and Dagster -------------------------------------------------------------------


def test_migration_matches_the_model(db_url):
    import psycopg

    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            """SELECT column_name, data_type, is_nullable FROM information_schema.columns
               WHERE table_name = 'business_metrics' ORDER BY ordinal_position"""
        ).fetchall()
        unique = conn.execute(
            """SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
               WHERE c.conrelid = 'business_metrics'::regclass AND c.contype IN ('u', 'p')
               ORDER BY c.contype"""
        ).fetchall()
    expected = [
        (name, pg_type_for(dtype), "YES" if SPEC.nullable[name] else "NO")
        for name, dtype in SPEC.polars_schema.items()
    ]
    assert rows == expected
    assert [u[0] for u in unique] == [
        "PRIMARY KEY (metric_id)",
        "UNIQUE (metric_date, brand, region, metric_name)",
    ]
    assert SPEC.partition_column == "metric_date"


def test_pipeline_loads_with_every_check_passing(database):
    result = run(database, ASSETS, METRICS_CHECKS, scale="small")
    assert result.success
    assert len(result.get_asset_check_evaluations()) == len(METRICS_CHECKS)
    assert failed_checks(result) == []
    scenario = load_scenario(None, scale="small")
    with database.connect() as conn:
        assert count_rows(conn, "business_metrics") == expected_row_count(scenario) == 2040
        # The Gap Analyzer's question, in SQL: which series fell significantly below target
        # three months in a row, since when.
        short = conn.execute(
            """WITH flagged AS (
                   SELECT brand, region, metric_name, metric_date,
                          (value < target AND statistical_significance >= 0.95)::int AS short
                   FROM business_metrics),
               runs AS (
                   SELECT *, sum(short) OVER (PARTITION BY brand, region, metric_name
                                              ORDER BY metric_date ROWS 2 PRECEDING) AS run
                   FROM flagged)
               SELECT brand, region, metric_name, (min(metric_date) - interval '2 months')::date
               FROM runs WHERE run = 3 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
        ).fetchall()
    assert short == sorted((g.brand, g.region, g.metric_name, g.start_month) for g in scenario.gaps)


def test_checks_report_broken_rows(small_db):
    database = small_db  # the default scenario at scale small, every check passed
    with database.connect() as conn:
        assert all(_invoke(c, database).passed for c in (arithmetic_reconciles, value_ranges))
        # A wrong mom_change, an NRx above its TRx, and a missing month.
        conn.execute(
            "UPDATE business_metrics SET mom_change = mom_change + 0.01 "
            "WHERE metric_id = 'BM-Kisqali-south-trx-2025-03'"
        )
        trx = conn.execute(
            "SELECT value FROM business_metrics WHERE metric_id = 'BM-Fabhalta-west-trx-2025-03'"
        ).fetchone()[0]
        conn.execute(
            """UPDATE business_metrics SET value = %(v)s, target = %(v)s, achievement_rate = 1,
                   confidence_interval_upper = %(v)s
               WHERE metric_id = 'BM-Fabhalta-west-nrx-2025-03'""",
            {"v": trx + 5},
        )
        conn.execute(
            "DELETE FROM business_metrics WHERE metric_id = 'BM-Remibrutinib-west-nrx-2025-05'"
        )
        conn.commit()
    arithmetic = _invoke(arithmetic_reconciles, database)
    assert not arithmetic.passed
    failing = arithmetic.metadata["examples"].value
    assert "BM-Kisqali-south-trx-2025-03" in failing
    assert "BM-Fabhalta-west-nrx-2025-04" in failing
    assert "BM-Remibrutinib-west-nrx-2025-06" in failing
    assert arithmetic.metadata["violations_by_rule"].value == {
        # the edited mom_change; the edited nrx's own mom and the next month's
        "mom_change": 3,
        # the edited nrx, seen from a year later
        "yoy_change": 1,
        # after the deleted month LAG reaches the wrong calendar month (12 rows = 13 months)
        "mom_change_without_previous_month": 1,
        "yoy_change_without_year_earlier_month": 11,
    }
    ranges = _invoke(value_ranges, database)
    assert not ranges.passed
    assert ranges.metadata["violations_by_rule"].value == {"nrx_below_trx": 1}
    continuity = _invoke(month_continuity, database, with_scenario=True)
    assert not continuity.passed
    assert continuity.metadata["violations_by_rule"].value == {
        "gap_before_month": 1,
        "missing_month": 1,
    }


def _invoke(check, database, with_scenario: bool = False) -> dg.AssetCheckResult:
    """Run one check directly (outside a run) against the database."""
    from e2i_synth.pipeline.resources import ScenarioResource

    resources = {"database": database}
    if with_scenario:
        resources["scenario"] = ScenarioResource(database=database, scale="small")
    return check(**resources)
