"""The answer key must be true: reference consumers, run on the loaded data, find what was
planted and nothing else. Blocking checks on ground_truth."""

import dagster as dg
import polars as pl

from e2i_synth.assets.scenario_resource import ScenarioResource
from e2i_synth.checks.table_checks import table_checks
from e2i_synth.consumers.causal import estimate_ate
from e2i_synth.consumers.drift import drift_report
from e2i_synth.consumers.gaps import achievement_by_series
from e2i_synth.db.metadata import markdown_table
from e2i_synth.db.resource import Database
from e2i_synth.domain import FEATURES
from e2i_synth.schemas import TABLES

NAIVE_BIAS_MIN = 0.30  # the naive estimate is off by at least 30% of the true effect
GAP_TOLERANCE = 0.02  # mean achievement of a planted gap within +-2 points of the plan
ON_TARGET = (0.90, 1.10)  # unplanted series stay within this band of target, every month


@dg.asset_check(
    asset="ground_truth",
    blocking=True,
    description="backdoor-adjusted 95% CI covers TRUE_ATE; the naive estimate is biased by "
    f">= {NAIVE_BIAS_MIN:.0%} of it",
)
def causal_effect_recovered(database: Database, scenario: ScenarioResource) -> dg.AssetCheckResult:
    truth = scenario.load().causal.true_ate
    est = estimate_ate(database)
    bias = abs(est.naive - truth)
    passed = est.covers(truth) and bias >= NAIVE_BIAS_MIN * abs(truth)
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "true_ate": truth,
            "adjusted": est.adjusted,
            "ci95": f"[{est.ci_lower:.4f}, {est.ci_upper:.4f}]",
            "naive": est.naive,
            "naive_bias_share": bias / abs(truth) if truth else None,
            "n": est.n,
        },
    )


@dg.asset_check(
    asset="ground_truth",
    blocking=True,
    description="every planted drift is flagged (PSI >= 0.2 or KS p < 0.01); at most one "
    "unplanted feature is, none when nothing was planted",
)
def drift_recovered(database: Database, scenario: ScenarioResource) -> dg.AssetCheckResult:
    loaded = scenario.load()
    planted = {d.feature for d in loaded.drifts}
    report = drift_report(database, loaded.monitoring).with_columns(
        planted=pl.col("feature").is_in(list(planted))
    )
    missed = report.filter(pl.col("planted") & ~pl.col("drifted"))["feature"].to_list()
    false_alarms = report.filter(~pl.col("planted") & pl.col("drifted"))["feature"].to_list()
    allowed = 1 if planted else 0
    return dg.AssetCheckResult(
        passed=not missed and len(false_alarms) <= allowed and report.height == len(FEATURES),
        metadata={
            "missed_planted": missed,
            "unplanted_flagged": false_alarms,
            "report": dg.MetadataValue.md(markdown_table(report)),
        },
    )


@dg.asset_check(
    asset="ground_truth",
    blocking=True,
    description=f"planted gaps show their achievement (+-{GAP_TOLERANCE}) from their start "
    f"month; every other month of every series stays within {ON_TARGET} of target",
)
def gaps_recovered(database: Database, scenario: ScenarioResource) -> dg.AssetCheckResult:
    series = achievement_by_series(database)
    planted_mask = pl.lit(False)
    findings = []
    for gap in scenario.load().gaps:
        mask = (
            (pl.col("brand") == gap.brand)
            & (pl.col("region") == gap.region)
            & (pl.col("metric_name") == gap.metric_name)
            & (pl.col("metric_date") >= gap.start_month)
        )
        planted_mask = planted_mask | mask
        observed = series.filter(mask)["achievement_rate"]
        mean = observed.mean() if observed.len() else None
        findings.append(
            {
                "series": f"{gap.brand}/{gap.region}/{gap.metric_name}",
                "planted": gap.achievement_rate,
                "observed_mean": mean,
                "months": observed.len(),
                "recovered": mean is not None and abs(mean - gap.achievement_rate) <= GAP_TOLERANCE,
            }
        )
    off_target = series.filter(~planted_mask & ~pl.col("achievement_rate").is_between(*ON_TARGET))
    passed = all(f["recovered"] for f in findings) and off_target.is_empty()
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "planted_gaps": dg.MetadataValue.md(markdown_table(pl.DataFrame(findings)))
            if findings
            else "none planted",
            "unplanted_months_off_target": off_target.height,
            "off_target_examples": dg.MetadataValue.md(markdown_table(off_target)),
        },
    )


ANSWER_KEY_CHECKS = [
    *table_checks(TABLES["ground_truth"], expected=lambda s: 2 + len(FEATURES) + len(s.gaps)),
    causal_effect_recovered,
    drift_recovered,
    gaps_recovered,
]
