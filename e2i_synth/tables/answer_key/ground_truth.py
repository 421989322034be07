"""ground_truth generator: the answer key of a scenario, stated with the data it describes.

Pure like every generator. Each row separates what the scenario planted, what this sample
realised, what the reference method recovers on it, and whether the plant is detectable at
this size (power of the reference method >= answer_key.bounds.DETECTABLE_POWER); the
e2i_synth.tables.answer_key modules compute all of it, and the asset checks reuse them.
"""

import json

import polars as pl

from e2i_synth.core.scenario import Scenario
from e2i_synth.stats.causal import ADJUSTMENT_SET, OUTCOME, TREATMENT
from e2i_synth.stats.drift import KS_ALPHA, PSI_THRESHOLD
from e2i_synth.tables.answer_key.bounds import DETECTABLE_POWER, FALSE_FAILURE_RATE
from e2i_synth.tables.answer_key.causal import CausalAnswer, causal_answer
from e2i_synth.tables.answer_key.drift import (
    DriftAnswer,
    accepted_moving,
    drift_answers,
    shows_in,
)
from e2i_synth.tables.answer_key.gaps import gap_answers, reference_gap_findings, scored_rows

ESTIMAND = (
    "average change in P(treatment_initiated) per one-point increase of engagement_score "
    "over the patients of patient_journeys, identified by backdoor adjustment for "
    "disease_severity and academic_hcp"
)


CAUSAL_ANSWER_ID = f"causal_effect:{TREATMENT}->{OUTCOME}"


def _json(data: object) -> str:
    return json.dumps(data, sort_keys=True, default=str)


def reference_answers(
    scenario: Scenario, causal: CausalAnswer, drifts: list[DriftAnswer], scored: pl.DataFrame
) -> dict:
    """The reference methods' answers on this sample, in the format of answer_key.answers: the
    series the reference Gap Analyzer reports, the features the Drift Monitor rule flags (it
    estimates no onset), the adjusted estimate and interval (none when not identified)."""
    effects = []
    if causal.adjusted is not None:
        effects.append(
            {"answer_id": CAUSAL_ANSWER_ID, "estimate": causal.adjusted, "ci95": list(causal.ci95)}
        )
    return {
        "scenario_hash": scenario.content_hash(),
        "agent": "reference methods (e2i_synth.tables.answer_key)",
        "gaps": reference_gap_findings(scored),
        "drift": {
            "window": scenario.monitoring.model_dump(mode="json"),
            "flagged": [{"feature": d.feature} for d in drifts if d.flagged],
        },
        "effects": effects,
    }


def generate_ground_truth(
    scenario: Scenario,
    patient_journeys: pl.DataFrame,
    features: pl.DataFrame,
    feature_values: pl.DataFrame,
    business_metrics: pl.DataFrame,
    package_version: str,
    models: dict[str, dict] | None = None,
) -> pl.DataFrame:
    """The answer key; `models` (answer_key.models.model_answers: the ML models'
    discrimination and calibration) goes into the scenario row when given."""
    causal = causal_answer(scenario, patient_journeys)
    drifts = drift_answers(scenario, features, feature_values, patient_journeys=patient_journeys)
    scored = scored_rows(scenario, business_metrics)
    rows: list[dict] = [
        {
            "answer_id": "scenario",
            "kind": "scenario",
            "subject": scenario.name,
            "planted": True,
            "expected_value": None,
            "details": _json(
                {
                    "scenario": scenario.model_dump(mode="json"),
                    "detectable_power": DETECTABLE_POWER,
                    "blocking_false_failure_rate": FALSE_FAILURE_RATE,
                    # What the reference methods answer on this sample, in the benchmark's
                    # answer format: the baseline every scorecard compares with.
                    "reference_answers": reference_answers(scenario, causal, drifts, scored),
                    **({"models": models} if models is not None else {}),
                }
            ),
        }
    ]

    rows.append(
        {
            "answer_id": CAUSAL_ANSWER_ID,
            "kind": "causal_effect",
            "subject": f"{TREATMENT} -> {OUTCOME}",
            "planted": causal.planted != 0,
            "expected_value": causal.planted,
            "details": _json(
                {
                    "estimand": ESTIMAND,
                    "treatment": TREATMENT,
                    "outcome": OUTCOME,
                    "unit": "patient (one row of patient_journeys)",
                    "scale": "probability points per engagement point (linear probability model)",
                    "adjustment_set": list(ADJUSTMENT_SET),
                    "estimator": "OLS with HC1 errors (statsmodels)",
                    "n": causal.n,
                    **causal.as_details(),
                }
            ),
        }
    )

    windows = scenario.monitoring.model_dump(mode="json")
    for drift in drifts:
        rows.append(
            {
                "answer_id": f"drift:{drift.feature}",
                "kind": "drift",
                "subject": drift.feature,
                "planted": drift.planted is not None,
                "expected_value": drift.psi,
                "details": _json(
                    {
                        **drift.as_details(),
                        "shows_in": (
                            shows_in(scenario, drift.planted, patient_journeys)
                            if drift.planted
                            else []
                        ),
                        "downstream_of_planted": drift.feature in accepted_moving(scenario),
                        "windows": windows,
                        "thresholds": {"psi": PSI_THRESHOLD, "ks_alpha": KS_ALPHA},
                    }
                ),
            }
        )

    for gap in gap_answers(scenario, scored):
        rows.append(
            {
                "answer_id": f"gap:{gap.key}",
                "kind": "gap",
                "subject": gap.key,
                "planted": True,
                "expected_value": gap.gap.achievement_rate,
                "details": _json(gap.as_details()),
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
