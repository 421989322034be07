"""ground_truth generator: the answer key of a scenario, stated with the data it describes.

Pure like every generator: the planted facts come from the scenario, the statistics from the
generated frames (the same rows that are loaded).
"""

import json

import polars as pl

from e2i_synth.scenario import Scenario
from e2i_synth.stats.causal import ADJUSTMENT_SET, OUTCOME, TREATMENT, estimate_ate_from_frame
from e2i_synth.stats.drift import KS_ALPHA, PSI_THRESHOLD, drift_statistics

ESTIMAND = (
    "average change in P(treatment_initiated) per one-point increase of engagement_score "
    "over the patients of patient_journeys, identified by backdoor adjustment for "
    "disease_severity and academic_hcp"
)


def _json(data: object) -> str:
    return json.dumps(data, sort_keys=True, default=str)


def _series_key(brand: str, region: str, metric_name: str) -> str:
    return f"{brand}/{region}/{metric_name}"


def generate_ground_truth(
    scenario: Scenario,
    patient_journeys: pl.DataFrame,
    features: pl.DataFrame,
    feature_values: pl.DataFrame,
    business_metrics: pl.DataFrame,
    package_version: str,
) -> pl.DataFrame:
    rows: list[dict] = [
        {
            "answer_id": "scenario",
            "kind": "scenario",
            "subject": scenario.name,
            "planted": True,
            "expected_value": None,
            "details": _json({"scenario": scenario.model_dump(mode="json")}),
        }
    ]

    estimate = estimate_ate_from_frame(patient_journeys)
    true_ate = scenario.causal.true_ate
    rows.append(
        {
            "answer_id": f"causal_effect:{TREATMENT}->{OUTCOME}",
            "kind": "causal_effect",
            "subject": f"{TREATMENT} -> {OUTCOME}",
            "planted": true_ate != 0,
            "expected_value": true_ate,
            "details": _json(
                {
                    "estimand": ESTIMAND,
                    "treatment": TREATMENT,
                    "outcome": OUTCOME,
                    "unit": "patient (one row of patient_journeys)",
                    "scale": "probability points per engagement point (linear probability model)",
                    "adjustment_set": list(ADJUSTMENT_SET),
                    "true_ate": true_ate,
                    "naive_estimate": estimate.naive,
                    "naive_bias": estimate.naive - true_ate,
                    "adjusted_estimate": estimate.adjusted,
                    "adjusted_ci95": [estimate.ci_lower, estimate.ci_upper],
                    "estimator": "OLS with HC1 errors (statsmodels)",
                    "n": estimate.n,
                }
            ),
        }
    )

    planted_drifts = {d.feature: d for d in scenario.drifts}
    windows = scenario.monitoring.model_dump(mode="json")
    stats = drift_statistics(feature_values, features, scenario.monitoring)
    for stat in stats.iter_rows(named=True):
        drift = planted_drifts.get(stat["feature"])
        rows.append(
            {
                "answer_id": f"drift:{stat['feature']}",
                "kind": "drift",
                "subject": stat["feature"],
                "planted": drift is not None,
                "expected_value": stat["psi"],
                "details": _json(
                    {
                        **stat,
                        "windows": windows,
                        "thresholds": {"psi": PSI_THRESHOLD, "ks_alpha": KS_ALPHA},
                        "planted": drift.model_dump(mode="json") if drift else None,
                    }
                ),
            }
        )

    for gap in scenario.gaps:
        key = _series_key(gap.brand, gap.region, gap.metric_name)
        observed = business_metrics.filter(
            (pl.col("brand") == gap.brand)
            & (pl.col("region") == gap.region)
            & (pl.col("metric_name") == gap.metric_name)
            & (pl.col("metric_date") >= gap.start_month)
        )["achievement_rate"]
        rows.append(
            {
                "answer_id": f"gap:{key}",
                "kind": "gap",
                "subject": key,
                "planted": True,
                "expected_value": gap.achievement_rate,
                "details": _json(
                    {
                        **gap.model_dump(mode="json"),
                        "months": observed.len(),
                        "observed_mean_achievement": observed.mean(),
                    }
                ),
            }
        )

    return pl.DataFrame(
        rows,
        schema={
            "answer_id": pl.String,
            "kind": pl.String,
            "subject": pl.String,
            "planted": pl.Boolean,
            "expected_value": pl.Float64,
            "details": pl.String,
        },
    ).with_columns(
        scenario_hash=pl.lit(scenario.content_hash()),
        seed=pl.lit(scenario.seed, dtype=pl.Int64),
        package_version=pl.lit(package_version),
    )
