"""hcp_profiles and patient_journeys from generation to PostgreSQL, with every check."""

import dagster as dg

from e2i_synth.db.copy import count_rows
from e2i_synth.tables.entities import assets as entities
from e2i_synth.tables.entities.checks import ENTITY_CHECKS
from e2i_synth_tests.pipeline import failed_checks, run

ASSETS = dg.load_assets_from_modules([entities])


def test_entities_load_with_every_check_passing(database):
    result = run(database, ASSETS, ENTITY_CHECKS, scale="small")
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == len(ENTITY_CHECKS)
    assert failed_checks(result) == []
    with database.connect() as conn:
        assert count_rows(conn, "hcp_profiles") == 50
        assert count_rows(conn, "patient_journeys") == 250
