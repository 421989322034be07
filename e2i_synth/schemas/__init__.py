"""One pandera model per table; TABLES is the registry the loader, checks and tests read."""

from e2i_synth.schemas import hcp_profiles, patient_journeys
from e2i_synth.schemas.base import FrameValidationError, TableSpec

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        hcp_profiles.SPEC,
        patient_journeys.SPEC,
    )
}

__all__ = ["TABLES", "FrameValidationError", "TableSpec"]
