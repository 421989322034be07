"""ml_predictions: scores of the deployed models for patients and HCPs, one row per scoring."""

from typing import Annotated

import pandera.polars as pa
import polars as pl

from e2i_synth.core.table_spec import TableSpec
from e2i_synth.core.vocabulary import BRANDS, DATA_SPLITS

# prediction_type -> (model_name, entity_type it scores, decision threshold).
PREDICTION_MODELS: dict[str, tuple[str, str, float]] = {
    "treatment_propensity": ("propensity_xgb", "patient", 0.5),
    "churn_risk": ("churn_gbm", "patient", 0.15),
    "next_best_action": ("nba_contextual_bandit", "hcp", 0.5),
}
PREDICTION_TYPES: tuple[str, ...] = tuple(PREDICTION_MODELS)
MODEL_NAMES: tuple[str, ...] = tuple(m for m, _, _ in PREDICTION_MODELS.values())
ENTITY_TYPES: tuple[str, ...] = ("patient", "hcp")
NEXT_BEST_ACTIONS: tuple[str, ...] = (
    "schedule_rep_visit",
    "send_email",
    "invite_to_webinar",
    "share_clinical_data",
    "offer_speaker_program",
    "provide_samples",
)


class MlPredictions(pa.DataFrameModel):
    prediction_id: str = pa.Field(
        unique=True,
        str_matches=r"^PRD-\d{8}-\d{6}$",
        description="key PRD-<YYYYMMDD>-<n>: prediction day and its number within the day",
    )
    model_name: str = pa.Field(isin=MODEL_NAMES, description="deployed model that scored")
    model_version: str = pa.Field(
        str_matches=r"^\d+\.\d+\.\d+$", description="semantic version; retrained each quarter"
    )
    prediction_type: str = pa.Field(isin=PREDICTION_TYPES, description="what is predicted")
    entity_type: str = pa.Field(isin=ENTITY_TYPES, description="scored entity: patient or hcp")
    patient_id: str = pa.Field(
        nullable=True, description="scored patient (patient_journeys); null for HCP-level rows"
    )
    hcp_id: str = pa.Field(description="scored HCP, or the scored patient's HCP (hcp_profiles)")
    brand: str = pa.Field(isin=BRANDS, description="brand the prediction is about")
    score: pl.Float64 = pa.Field(ge=0, le=1, description="model score (probability) in [0, 1]")
    threshold: pl.Float64 = pa.Field(gt=0, lt=1, description="decision threshold of the model")
    predicted_label: bool = pa.Field(description="score >= threshold")
    recommended_action: str = pa.Field(
        nullable=True,
        isin=NEXT_BEST_ACTIONS,
        description="recommended action of next_best_action; null for other types",
    )
    prediction_timestamp: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(
        description="when the model scored (UTC); the partition column"
    )
    data_split: str = pa.Field(
        isin=DATA_SPLITS,
        description="ML split of the prediction date (every row: the date rule)",
    )

    @pa.dataframe_check(description="predicted_label is score >= threshold")
    def label_from_threshold(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("predicted_label") == (pl.col("score") >= pl.col("threshold"))
        )

    @pa.dataframe_check(description="patient_id is set exactly on patient-level rows")
    def patient_iff_patient_entity(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("patient_id").is_not_null() == (pl.col("entity_type") == "patient")
        )

    @pa.dataframe_check(description="recommended_action is set exactly on next_best_action rows")
    def action_iff_next_best_action(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("recommended_action").is_not_null()
            == (pl.col("prediction_type") == "next_best_action")
        )

    class Config:
        strict = True


SPEC = TableSpec(
    name="ml_predictions",
    model=MlPredictions,
    primary_key=("prediction_id",),
    description="Model scores: treatment propensity and churn risk per patient, next best "
    "action per HCP.",
    partition_column="prediction_timestamp",
)
