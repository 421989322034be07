"""The one Definitions object: assets, checks, resources, jobs and schedules."""

import os

import dagster as dg

from e2i_synth.db.connection import URL_ENV
from e2i_synth.db.io_manager import PostgresIOManager
from e2i_synth.db.resource import Database
from e2i_synth.pipeline.jobs import IN_PROCESS_BY_DEFAULT, JOBS, SCHEDULES
from e2i_synth.pipeline.resources import ScenarioResource
from e2i_synth.tables.activity import assets as activity
from e2i_synth.tables.activity.checks import ACTIVITY_CHECKS
from e2i_synth.tables.answer_key import assets as answer_key
from e2i_synth.tables.answer_key.checks import ANSWER_KEY_CHECKS
from e2i_synth.tables.entities import assets as entities
from e2i_synth.tables.entities.checks import ENTITY_CHECKS
from e2i_synth.tables.feature_store import assets as feature_store
from e2i_synth.tables.feature_store.checks import FEATURE_STORE_CHECKS
from e2i_synth.tables.metrics import assets as metrics
from e2i_synth.tables.metrics.checks import METRICS_CHECKS

ASSETS = dg.load_assets_from_modules([entities, activity, metrics, feature_store, answer_key])
CHECKS = [
    *ENTITY_CHECKS,
    *ACTIVITY_CHECKS,
    *METRICS_CHECKS,
    *FEATURE_STORE_CHECKS,
    *ANSWER_KEY_CHECKS,
]


def database_from_env() -> Database:
    # The URL (and so any password) is read from the environment by Dagster, never stored.
    return Database(url=dg.EnvVar(URL_ENV)) if os.environ.get(URL_ENV) else Database()


def build_resources(
    database: Database | None = None, scenario_path: str | None = None, scale: str | None = None
) -> dict[str, object]:
    database = database or database_from_env()
    return {
        "database": database,
        "io_manager": PostgresIOManager(database=database),
        "scenario": ScenarioResource(database=database, path=scenario_path, scale=scale),
    }


defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=CHECKS,
    jobs=JOBS,
    schedules=SCHEDULES,
    resources=build_resources(),
    executor=IN_PROCESS_BY_DEFAULT,
)
