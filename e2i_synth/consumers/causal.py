"""Causal agents' reference query: the effect of engagement_score on treatment_initiated,
estimated from the loaded patient_journeys (see e2i_synth.stats.causal for the estimator)."""

from e2i_synth.db.copy import read_table
from e2i_synth.db.resource import Database
from e2i_synth.stats.causal import AteEstimate, estimate_ate_from_frame
from e2i_synth.tables import TABLES

__all__ = ["AteEstimate", "estimate_ate", "estimate_ate_from_frame"]


def estimate_ate(database: Database, alpha: float = 0.05) -> AteEstimate:
    """estimate_ate_from_frame on the loaded patient_journeys table."""
    with database.connect() as conn:
        journeys = read_table(conn, TABLES["patient_journeys"])
    return estimate_ate_from_frame(journeys, alpha)
