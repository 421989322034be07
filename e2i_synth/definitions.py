"""The one Definitions object: assets, checks, resources, jobs and schedules."""

import os

import dagster as dg

from e2i_synth.db.connection import URL_ENV
from e2i_synth.db.io_manager import PostgresIOManager
from e2i_synth.db.resource import Database
from e2i_synth.pipeline.jobs import IN_PROCESS_BY_DEFAULT, refresh_jobs
from e2i_synth.pipeline.resources import ScenarioResource
from e2i_synth.tables import family_modules

# Every table family (a folder under tables/) brings its assets.py and checks.py: adding a
# table or a family needs no line here.
ASSETS = dg.load_assets_from_modules(family_modules("assets"))
CHECKS = dg.load_asset_checks_from_modules(family_modules("checks"))
JOBS, SCHEDULES = refresh_jobs(ASSETS)


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
