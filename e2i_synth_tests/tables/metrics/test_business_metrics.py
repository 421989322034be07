"""business_metrics: the generator's rules at full scale (volumes and share from the simulated
market, a planted access shock in TRx, share and the fills), window equivalence, determinism,
the migration against the model, and the pipeline through real Dagster with every check."""

from datetime import date

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from e2i_synth.core.scenario import GapSpec, Scenario, load_scenario
from e2i_synth.core.split import split_for_dates
from e2i_synth.core.table_spec import pg_type_for
from e2i_synth.core.vocabulary import BRAND_METRICS, COMMON_METRICS
from e2i_synth.db.copy import count_rows
from e2i_synth.tables import TABLES
from e2i_synth.tables.answer_key.bounds import bonferroni_z
from e2i_synth.tables.answer_key.gaps import gap_answers, gap_series, scored_rows
from e2i_synth.tables.entities import assets as entities
from e2i_synth.tables.entities.hcp_profiles import generate_hcp_profiles
from e2i_synth.tables.entities.patient_journeys import generate_patient_journeys
from e2i_synth.tables.metrics import assets as metrics
from e2i_synth.tables.metrics.business_metrics import (
    DECIMALS,
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
from e2i_synth.world.timelines import patient_timelines
from e2i_synth_tests.pipeline import failed_checks, run

SPEC = TABLES["business_metrics"]
SERIES = ["brand", "region", "metric_name"]
ASSETS = dg.load_assets_from_modules([entities, metrics])


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    scenario = load_scenario(None, scale="full")
    assert scenario.gaps, "the default scenario plants gaps"
    return scenario


@pytest.fixture(scope="module")
def patients(scenario: Scenario) -> pl.DataFrame:
    return generate_patient_journeys(scenario, generate_hcp_profiles(scenario))


@pytest.fixture(scope="module")
def frame(scenario: Scenario, patients: pl.DataFrame) -> pl.DataFrame:
    return generate_business_metrics(scenario, patients, *scenario_window(scenario))


def _generate(scenario: Scenario, start: date | None = None, end: date | None = None):
    patients = generate_patient_journeys(scenario, generate_hcp_profiles(scenario))
    window = scenario_window(scenario)
    return generate_business_metrics(scenario, patients, start or window[0], end or window[1])


def _with_and_without(gap: GapSpec) -> tuple[Scenario, pl.DataFrame, pl.DataFrame]:
    """The full-scale default scenario with only `gap` planted; its rows joined with those of
    the same scenario without it (suffix _clean); and the joined rows of the gap's brand and
    region from its start_month on."""
    base = load_scenario(None, scale="full")
    planted = base.model_copy(update={"gaps": (gap,)})
    clean = base.model_copy(update={"gaps": ()})
    both = _generate(planted).join(_generate(clean), on="metric_id", suffix="_clean")
    inside = both.filter(
        (pl.col("brand") == gap.brand)
        & (pl.col("region") == gap.region)
        & (pl.col("metric_date") >= gap.start_month)
    )
    return planted, both, inside


def _planted(frame: pl.DataFrame, scenario: Scenario) -> pl.Expr:
    """Rows from a planted gap's (or its imprint's) start_month on."""
    hit = pl.lit(False)
    for gap, _ in gap_series(scenario):
        hit = hit | (
            (pl.col("brand") == gap.brand)
            & (pl.col("region") == gap.region)
            & (pl.col("metric_name") == gap.metric_name)
            & (pl.col("metric_date") >= gap.start_month)
        )
    return hit


def _on_plan(scored: pl.DataFrame) -> bool:
    """True value equal to the target up to the target's rounding."""
    gap = (scored["expected"] - scored["target"]).abs()
    rounding = 0.5 * 10.0 ** -scored["metric_type"].replace_strict(DECIMALS)
    return bool((gap <= rounding + 1e-9).all())


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


def test_volumes_are_the_weighted_fills_of_the_world(scenario, patients, frame):
    trx = frame.filter(pl.col("metric_name") == "trx")
    national = trx.group_by("brand", "metric_date").agg(pl.col("value").sum().alias("national"))
    for brand, (lo, hi) in NATIONAL_TRX_RANGE.items():
        values = national.filter(pl.col("brand") == brand)["national"]
        assert values.len() == 30
        assert lo <= values.min() and values.max() <= hi, brand
    # simulated_count is what the fills of the world say, region by region and month by month.
    _, fills = patient_timelines(scenario, patients)
    counted = (
        fills.join(patients.select("patient_id", "brand", "region"), on="patient_id")
        .group_by("brand", "region", metric_date=pl.col("fill_date").dt.truncate("1mo"))
        .agg(trx=pl.len(), nrx=(pl.col("fill_number") == 0).sum())
    )
    stored = frame.filter(pl.col("metric_name").is_in(("trx", "nrx"))).pivot(
        "metric_name", index=["brand", "region", "metric_date"], values="simulated_count"
    )
    joined = stored.join(counted, on=["brand", "region", "metric_date"], how="left").fill_null(0)
    assert (joined["trx"] == joined["trx_right"]).all() and (
        joined["nrx"] == joined["nrx_right"]
    ).all()
    assert joined["trx"].sum() == fills.height
    counts = frame.filter(pl.col("metric_type") == "volume")
    assert (counts["value"] == counts["value"].round(0)).all()
    assert (counts["target"] == counts["target"].round(0)).all()
    pairs = frame.filter(pl.col("metric_name") == "nrx").join(
        trx, on=["brand", "region", "metric_date"], suffix="_trx"
    )
    assert pairs.height == trx.height
    assert (pairs["value"] < pairs["value_trx"]).all()
    assert (pairs["target"] < pairs["target_trx"]).all()
    # A share rolls up with its denominator: numerator and market stored, market above brand.
    share = frame.filter(pl.col("metric_name") == "market_share").join(
        trx, on=["brand", "region", "metric_date"], suffix="_trx"
    )
    assert (share["simulated_count"] == share["simulated_count_trx"]).all()
    assert (share["market_trx"] > share["target_trx"]).all()


def test_a_stronger_causal_effect_shows_in_national_trx(scenario):
    null = scenario.model_copy(
        update={"causal": scenario.causal.model_copy(update={"true_ate": 0.0}), "gaps": ()}
    )
    default = scenario.model_copy(update={"gaps": ()})
    totals = [
        _generate(s).filter(pl.col("metric_name") == "trx")["value"].sum() for s in (null, default)
    ]
    assert totals[0] != totals[1]


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
    with_target = (frame["metric_type"] == "volume") & (frame["target"] > 0)
    assert (frame["roi"].is_not_null() == with_target).all()


def test_planted_gaps_are_visible(scenario, frame):
    scored = scored_rows(scenario, frame)
    limit = bonferroni_z(scored.height)
    # The planted gaps, and the imprints of their shocks that the world made detectable (an
    # imprint is as large as the world makes it: the default's conversion gap takes a start
    # or two, too few for NRx to show at full scale).
    judged = [a.gap for a in gap_answers(scenario, scored) if a.imprint_of is None or a.detectable]
    assert {g.metric_name for g in judged} == {"trx", "market_share", "conversion_rate"}
    for gap in judged:
        rows = scored.filter(
            pl.col("brand") == gap.brand,
            pl.col("region") == gap.region,
            pl.col("metric_name") == gap.metric_name,
        )
        after = rows.filter(pl.col("metric_date") >= gap.start_month)
        before = rows.filter(pl.col("metric_date") < gap.start_month)
        assert after.height > 0 and before.height > 0
        # Each month within its sampling error of the true value, short of target on average.
        assert (after["z"] <= limit).all(), gap
        planned = after.filter(pl.col("target") > 0)
        assert (planned["value"] / planned["target"]).mean() < 0.95, gap
        assert _on_plan(before), gap
        # The row's own statistics show the gap: significant and below target in most months.
        assert after["flagged"].mean() >= 0.5, gap
    # A Gap Analyzer's series rule: three months in a row below target and significant. On this
    # seed it finds exactly the planted series and the shock's imprint, from their start month.
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
    expected = sorted((g.brand, g.region, g.metric_name, g.start_month) for g in judged)
    assert sorted(runs.iter_rows()) == expected


def test_an_access_shock_takes_refills_in_the_world_and_shows_in_trx_and_share(scenario):
    shock = next(g for g in scenario.gaps if g.metric_name == "trx")
    others = tuple(g for g in scenario.gaps if g is not shock)
    clean = _generate(scenario.model_copy(update={"gaps": others}))
    shocked = _generate(scenario)
    keys = ["metric_id"]
    both = shocked.join(clean, on=keys, suffix="_clean")
    hit = (
        (pl.col("brand") == shock.brand)
        & (pl.col("region") == shock.region)
        & (pl.col("metric_date") >= shock.start_month)
    )
    inside = both.filter(hit)
    trx = inside.filter(pl.col("metric_name") == "trx")
    # Fewer fills in the world, the plan is the world without the shock.
    assert trx["simulated_count"].sum() < trx["simulated_count_clean"].sum()
    assert (trx["target"] == trx["target_clean"]).all()
    share = inside.filter(pl.col("metric_name") == "market_share")
    assert (share["simulated_count"] == trx["simulated_count"]).all()
    assert (share["market_trx"] == share["market_trx_clean"]).all()
    # First fills are untouched: NRx counts equal, and outside the shock nothing moves.
    nrx = inside.filter(pl.col("metric_name") == "nrx")
    assert (nrx["simulated_count"] == nrx["simulated_count_clean"]).all()
    outside = both.filter(~hit)
    assert (outside["value"] == outside["value_clean"]).all()


def test_an_adherence_gap_is_missed_refills_in_the_world_and_shows_in_trx_share_and_adherence():
    """A planted adherence_rate gap is patients missing refills: the world dispenses fewer
    refills (treatment_events' fills), so trx and market_share fall against the plan, adherence
    falls by the planted rate, and the answer key lists trx and market_share as its imprint."""
    gap = GapSpec(
        brand="Fabhalta",
        region="northeast",
        metric_name="adherence_rate",
        start_month=date(2025, 4, 1),
        achievement_rate=0.8,
    )
    planted, both, inside = _with_and_without(gap)

    def rows(metric: str) -> pl.DataFrame:
        return inside.filter(pl.col("metric_name") == metric)

    trx, nrx = rows("trx"), rows("nrx")
    assert trx["simulated_count"].sum() < 0.9 * trx["simulated_count_clean"].sum()
    assert (trx["target"] == trx["target_clean"]).all()
    assert (nrx["simulated_count"] == nrx["simulated_count_clean"]).all()
    share = rows("market_share")
    assert (share["simulated_count"] == trx["simulated_count"]).all()
    # adherence's true value is its plan times the chance a refill is dispensed.
    scored = scored_rows(planted, both.select(SPEC.columns))
    adherence = scored.join(rows("adherence_rate").select("metric_id"), on="metric_id")
    assert adherence.height == 15
    assert (adherence["expected"] == adherence["target"] * gap.achievement_rate).all()
    imprints = {g.metric_name: of for g, of in gap_series(planted)}
    key = "Fabhalta/northeast/adherence_rate"
    assert imprints == {"adherence_rate": None, "trx": key, "market_share": key}
    # Outside the brand and region nothing moves.
    outside = both.join(inside.select("metric_id"), on="metric_id", how="anti")
    outside = outside.filter(pl.col("metric_date") >= gap.start_month)
    assert (outside["value"] == outside["value_clean"]).all()


def test_a_conversion_gap_is_fewer_starts_in_the_world_and_shows_in_nrx_trx_and_share():
    """A planted conversion_rate gap is a start shock: patients of the brand and region
    diagnosed from its start_month start less often (patient_journeys), so NRx fall against a
    target that is the world without the shock, TRx and share follow (the patients who did not
    start do not refill), conversion_rate's true value is its plan times the planted rate, and
    the answer key lists nrx, trx and market_share as its imprint."""
    gap = GapSpec(
        brand="Remibrutinib",
        region="south",
        metric_name="conversion_rate",
        start_month=date(2025, 4, 1),
        achievement_rate=0.5,
    )
    base = load_scenario(None, scale="full")
    clean = base.model_copy(update={"gaps": ()})
    planted = base.model_copy(update={"gaps": (gap,)})
    hcps = generate_hcp_profiles(base)
    journeys = generate_patient_journeys(planted, hcps)
    journeys_clean = generate_patient_journeys(clean, hcps)
    # Only patients of the brand and region diagnosed from start_month lose starts, and only
    # starts: every other column and every other patient is as without the shock.
    changed = journeys.join(journeys_clean, on="patient_id", suffix="_clean").filter(
        pl.col("treatment_initiated") != pl.col("treatment_initiated_clean")
    )
    assert changed.height > 10
    assert (~changed["treatment_initiated"]).all()
    assert (changed["brand"] == gap.brand).all() and (changed["region"] == gap.region).all()
    assert (changed["journey_start_date"] >= gap.start_month).all()
    assert_frame_equal(
        journeys.drop("treatment_initiated", "days_to_treatment"),
        journeys_clean.drop("treatment_initiated", "days_to_treatment"),
    )

    _, both, inside = _with_and_without(gap)

    def rows(metric: str) -> pl.DataFrame:
        return inside.filter(pl.col("metric_name") == metric)

    nrx, trx = rows("nrx"), rows("trx")
    # The plan is the world without the shock: targets unchanged, the world's counts lower.
    assert (nrx["target"] == nrx["target_clean"]).all()
    assert (trx["target"] == trx["target_clean"]).all()
    assert nrx["simulated_count"].sum() < 0.75 * nrx["simulated_count_clean"].sum()
    assert trx["simulated_count"].sum() < 0.9 * trx["simulated_count_clean"].sum()
    share = rows("market_share")
    assert (share["simulated_count"] == trx["simulated_count"]).all()
    # conversion_rate's true value is its plan times the chance a start goes ahead.
    scored = scored_rows(planted, both.select(SPEC.columns))
    conversion = scored.join(rows("conversion_rate").select("metric_id"), on="metric_id")
    assert conversion.height == 15
    assert (conversion["expected"] == conversion["target"] * gap.achievement_rate).all()
    imprints = {g.metric_name: of for g, of in gap_series(planted)}
    key = "Remibrutinib/south/conversion_rate"
    assert imprints == {"conversion_rate": None, "nrx": key, "trx": key, "market_share": key}
    # Before the shock and outside its brand and region nothing moves.
    outside = both.join(inside.select("metric_id"), on="metric_id", how="anti")
    assert (outside["value"] == outside["value_clean"]).all()


def test_unplanted_rows_are_on_target_within_their_sampling_error(scenario, frame):
    scored = scored_rows(scenario, frame).filter(~_planted(frame, scenario))
    assert _on_plan(scored)
    assert scored["z"].max() <= bonferroni_z(frame.height)
    # The row's own significance is calibrated: about 5% of on-target rows reach 0.95.
    significant = (scored["statistical_significance"] >= 0.95).mean()
    assert 0.03 <= significant <= 0.07, significant
    measured = scored.filter(pl.col("se") > 0)  # a zero-NRx month has no sampling error
    signed = (measured["value"] - measured["expected"]) / measured["se"]
    assert abs(signed.mean()) < 0.1 and 0.9 < signed.std() < 1.1


def test_arithmetic_reconciles_exactly(scenario, frame):
    planned = frame.filter(pl.col("target") > 0)
    assert (planned["achievement_rate"] == planned["value"] / planned["target"]).all()
    assert frame.filter(pl.col("target") == 0)["achievement_rate"].is_null().all()
    recomputed = frame.sort(*SERIES, "metric_date").with_columns(
        # No change from a month of 0 (an NRx month without a first fill).
        expected_mom=pl.when(pl.col("value").shift(1) > 0)
        .then(pl.col("value") / pl.col("value").shift(1) - 1)
        .over(SERIES),
        expected_yoy=pl.when(pl.col("value").shift(12) > 0)
        .then(pl.col("value") / pl.col("value").shift(12) - 1)
        .over(SERIES),
        position=pl.int_range(pl.len()).over(SERIES),
    )
    assert (recomputed["mom_change"].is_null() == recomputed["expected_mom"].is_null()).all()
    assert recomputed.filter(pl.col("position") == 0)["mom_change"].is_null().all()
    assert recomputed.filter(pl.col("position") < 12)["yoy_change"].is_null().all()
    # Same IEEE operations on the same stored numbers: equal, not just close.
    assert recomputed["mom_change"].eq_missing(recomputed["expected_mom"]).all()
    assert recomputed["yoy_change"].eq_missing(recomputed["expected_yoy"]).all()
    split = frame.select(split_for_dates(pl.col("metric_date"), scenario))
    assert frame["data_split"].equals(split.to_series(), check_names=False)
    assert frame["data_split"].unique().len() == 4


# --- windows and determinism ------------------------------------------------------------------


def test_windows_concatenate_to_the_whole(scenario, patients, frame):
    start, end = scenario_window(scenario)
    for cut in (date(2024, 2, 1), date(2025, 1, 1), date(2025, 6, 1), date(2026, 6, 1)):
        parts = pl.concat(
            [
                generate_business_metrics(scenario, patients, start, cut),
                generate_business_metrics(scenario, patients, cut, end),
            ]
        )
        assert_frame_equal(parts, frame)
    months = scenario_months(scenario)
    bounds = [*months, end]
    one_by_one = pl.concat(
        [
            generate_business_metrics(scenario, patients, a, b)
            for a, b in zip(bounds, bounds[1:], strict=False)
        ]
    )
    assert_frame_equal(one_by_one, frame)
    # A one-month window still carries mom and yoy, recomputed from the earlier months.
    march = generate_business_metrics(scenario, patients, date(2026, 3, 1), date(2026, 4, 1))
    assert march.height == len(metric_series(scenario))
    assert_frame_equal(march, frame.filter(pl.col("metric_date") == date(2026, 3, 1)))
    surveys = march.filter(pl.col("metric_name") != "nrx")  # NRx may follow a month of 0
    assert surveys["mom_change"].null_count() == 0 and surveys["yoy_change"].null_count() == 0


def test_windows_select_by_metric_date(scenario, patients, frame):
    # [start, end) by metric_date: a month belongs to a window when its first day does.
    inside = generate_business_metrics(scenario, patients, date(2025, 2, 15), date(2025, 5, 1))
    assert inside["metric_date"].unique().sort().to_list() == [
        date(2025, 3, 1),
        date(2025, 4, 1),
    ]
    assert generate_business_metrics(
        scenario, patients, date(2025, 2, 2), date(2025, 3, 1)
    ).is_empty()
    # Months outside the scenario have no rows; the schema is kept.
    before = generate_business_metrics(scenario, patients, date(2020, 1, 1), date(2024, 1, 1))
    assert before.is_empty() and before.schema == frame.schema
    wide = generate_business_metrics(scenario, patients, date(2020, 1, 1), date(2030, 1, 1))
    assert_frame_equal(wide, frame)


def test_generation_is_deterministic_and_per_series(scenario, frame):
    assert_frame_equal(_generate(scenario), frame)
    other_seed = scenario.model_copy(update={"seed": scenario.seed + 1})
    reseeded = _generate(other_seed)
    assert not reseeded["value"].equals(frame["value"])
    # Removing the gaps changes the planted months and nothing else.
    no_gaps = scenario.model_copy(update={"gaps": ()})
    clean = _generate(no_gaps)
    planted = _planted(frame, scenario)
    assert_frame_equal(clean.filter(~planted), frame.filter(~planted))
    # and there, without the plants, each row is its target within its sampling error.
    rescored = scored_rows(no_gaps, clean).filter(planted)
    assert _on_plan(rescored) and (rescored["z"] <= bonferroni_z(clean.height)).all()


def test_a_subset_of_regions_still_splits_the_national_figure(scenario):
    south_west = scenario.model_copy(update={"regions": ("south", "west"), "gaps": ()})
    frame = _generate(south_west)
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
    # At scale small the world has a few fills a month: the survey gap is found; the access
    # shock's (a few refills) may or may not be, as the answer key's power says.
    assert {
        (g.brand, g.region, g.metric_name, g.start_month)
        for g in scenario.gaps
        if g.metric_name == "conversion_rate"
    } <= set(short)


def test_checks_report_broken_rows(small_db):
    database = small_db  # the default scenario at scale small, every check passed
    with database.connect() as conn:
        assert _invoke(arithmetic_reconciles, database).passed
        assert _invoke(value_ranges, database, with_scenario=True).passed
        # A wrong mom_change, a TRx down to its NRx, and a missing month (of TRx: at scale
        # small many NRx months are 0, which have no change to check).
        conn.execute(
            "UPDATE business_metrics SET mom_change = mom_change + 0.01 "
            "WHERE metric_id = 'BM-Kisqali-south-trx-2025-03'"
        )
        nrx = conn.execute(
            "SELECT value FROM business_metrics WHERE metric_id = 'BM-Fabhalta-west-nrx-2025-04'"
        ).fetchone()[0]
        assert nrx > 0
        conn.execute(
            """UPDATE business_metrics SET value = %(v)s, target = %(v)s, achievement_rate = 1,
                   confidence_interval_lower = 0, confidence_interval_upper = %(v)s
               WHERE metric_id = 'BM-Fabhalta-west-trx-2025-04'""",
            {"v": nrx},
        )
        conn.execute(
            "DELETE FROM business_metrics WHERE metric_id = 'BM-Remibrutinib-west-trx-2025-05'"
        )
        conn.commit()
    arithmetic = _invoke(arithmetic_reconciles, database)
    assert not arithmetic.passed
    failing = arithmetic.metadata["examples"].value
    assert "BM-Kisqali-south-trx-2025-03" in failing
    assert "BM-Fabhalta-west-trx-2025-05" in failing
    assert "BM-Remibrutinib-west-trx-2025-06" in failing
    assert arithmetic.metadata["violations_by_rule"].value == {
        # the edited mom_change; the edited trx's own mom and the next month's
        "mom_change": 3,
        # the edited trx seen from a year later (its own row is reported as mom_change)
        "yoy_change": 1,
        # after the deleted month LAG reaches the wrong calendar month (12 rows = 13 months)
        "mom_change_without_previous_month": 1,
        "yoy_change_without_year_earlier_month": 11,
    }
    ranges = _invoke(value_ranges, database, with_scenario=True)
    assert not ranges.passed
    # the TRx down to its NRx, and the NRx whose TRx month was deleted
    assert ranges.metadata["violations_by_rule"].value == {"nrx_below_trx": 2}
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
