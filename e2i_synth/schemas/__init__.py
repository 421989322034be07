"""One pandera model per table; TABLES is the registry the loader, checks and tests read."""

from e2i_synth.schemas import (
    business_metrics,
    feature_groups,
    feature_values,
    features,
    ground_truth,
    hcp_profiles,
    ml_predictions,
    patient_journeys,
    treatment_events,
    triggers,
)
from e2i_synth.schemas.base import FrameValidationError, TableSpec

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        hcp_profiles.SPEC,
        patient_journeys.SPEC,
        treatment_events.SPEC,
        ml_predictions.SPEC,
        triggers.SPEC,
        business_metrics.SPEC,
        feature_groups.SPEC,
        features.SPEC,
        feature_values.SPEC,
        ground_truth.SPEC,
    )
}

__all__ = ["TABLES", "FrameValidationError", "TableSpec"]
