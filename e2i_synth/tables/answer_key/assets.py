"""The ground_truth asset: the answer key, materialized with the data it describes."""

from importlib.metadata import version

import dagster as dg
import polars as pl

from e2i_synth.db.active_scenario import MONITORING_WINDOWS
from e2i_synth.pipeline.inputs import reading
from e2i_synth.pipeline.resources import ScenarioResource
from e2i_synth.pipeline.table_asset import table_asset
from e2i_synth.tables.activity import ml_predictions
from e2i_synth.tables.answer_key import causal, drift, gaps
from e2i_synth.tables.answer_key.ground_truth import generate_ground_truth
from e2i_synth.tables.answer_key.models import model_answers


@dg.asset(
    **table_asset("ground_truth", "answer_key"),
    deps=["ml_predictions"],  # its models' figures are regenerated, not read
    ins={
        **reading(
            hcp_profiles=ml_predictions.HCP_COLUMNS,
            patient_journeys=tuple(dict.fromkeys(causal.COLUMNS + ml_predictions.PATIENT_COLUMNS)),
            features=drift.FEATURE_COLUMNS,
            business_metrics=gaps.COLUMNS,
        ),
        # Only the monitoring windows: the drift answers read nothing else of it.
        "feature_values": dg.AssetIn(
            metadata={"columns": list(drift.VALUE_COLUMNS), "rows": MONITORING_WINDOWS}
        ),
    },
)
def ground_truth(
    scenario: ScenarioResource,
    hcp_profiles: pl.DataFrame,
    patient_journeys: pl.DataFrame,
    features: pl.DataFrame,
    feature_values: pl.DataFrame,
    business_metrics: pl.DataFrame,
) -> pl.DataFrame:
    loaded = scenario.load()
    return generate_ground_truth(
        loaded,
        patient_journeys,
        features,
        feature_values,
        business_metrics,
        package_version=version("e2i-synth"),
        models=model_answers(loaded, hcp_profiles, patient_journeys),
    )
