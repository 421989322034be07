"""One pandera model per table; TABLES is the registry the loader, checks and tests read."""

from e2i_synth.core.table_spec import FrameValidationError, TableSpec
from e2i_synth.tables.activity import ml_predictions_model as ml_predictions
from e2i_synth.tables.activity import treatment_events_model as treatment_events
from e2i_synth.tables.activity import triggers_model as triggers
from e2i_synth.tables.answer_key import ground_truth_model as ground_truth
from e2i_synth.tables.entities import hcp_profiles_model as hcp_profiles
from e2i_synth.tables.entities import patient_journeys_model as patient_journeys
from e2i_synth.tables.feature_store import feature_groups_model as feature_groups
from e2i_synth.tables.feature_store import feature_values_model as feature_values
from e2i_synth.tables.feature_store import features_model as features
from e2i_synth.tables.metrics import business_metrics_model as business_metrics

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
