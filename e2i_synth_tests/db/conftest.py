"""Load tests' shared data: the small scenario, its entities, triggers and metrics as frames,
and a fresh test database holding them."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from e2i_synth.core.scenario import Scenario, load_scenario
from e2i_synth.db.copy import replace_rows
from e2i_synth.db.resource import Database
from e2i_synth.tables import TABLES
from e2i_synth.tables.activity.triggers import generate_triggers
from e2i_synth.tables.entities.hcp_profiles import generate_hcp_profiles
from e2i_synth.tables.entities.patient_journeys import generate_patient_journeys
from e2i_synth.tables.metrics.business_metrics import generate_business_metrics

LOADED = ("hcp_profiles", "patient_journeys", "triggers", "business_metrics")


@pytest.fixture(scope="session")
def scenario() -> Scenario:
    return load_scenario(scale="small")


@pytest.fixture(scope="session")
def frames(scenario) -> dict[str, pl.DataFrame]:
    hcps = generate_hcp_profiles(scenario)
    patients = generate_patient_journeys(scenario, hcps)
    end = scenario.end_date + timedelta(days=1)
    return {
        "hcp_profiles": hcps,
        "patient_journeys": patients,
        "triggers": generate_triggers(scenario, hcps, patients, scenario.start_date, end),
        "business_metrics": generate_business_metrics(scenario, patients, scenario.start_date, end),
    }


@pytest.fixture
def loaded(copy_of, frames) -> Database:
    """A new test database holding the small scenario's entities, triggers and metrics (loaded
    once per session, copied for each test)."""

    def load(database: Database) -> None:
        with database.connect() as conn:
            for table in LOADED:
                replace_rows(conn, TABLES[table], [frames[table]])

    return Database(url=copy_of("small_frames", load))
