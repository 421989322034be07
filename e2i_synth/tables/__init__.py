"""The tables, a folder per family. TABLES is the registry of TableSpecs the loader, checks and
tests read: one line per table."""

import importlib
import importlib.util
import pkgutil
from types import ModuleType

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


def family_modules(kind: str) -> list[ModuleType]:
    """Each table family's `kind` module ("assets" or "checks"), in folder order: a family is
    a package under tables/ that has one."""
    found = []
    for family in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg):
        if importlib.util.find_spec(f"{__name__}.{family}.{kind}") is not None:
            found.append(importlib.import_module(f"{__name__}.{family}.{kind}"))
    return found


__all__ = ["TABLES", "FrameValidationError", "TableSpec", "family_modules"]
