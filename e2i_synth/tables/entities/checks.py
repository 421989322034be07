"""Checks of the entity tables."""

from e2i_synth.pipeline.table_checks import table_checks
from e2i_synth.tables import TABLES

ENTITY_CHECKS = [
    *table_checks(TABLES["hcp_profiles"], expected=lambda s: s.n_hcps),
    *table_checks(TABLES["patient_journeys"], expected=lambda s: s.n_patients),
]
