"""Dagster's own storage (runs, event log, schedules) in the project's PostgreSQL.

dagster.yaml names this class, so every `dagster` command and the UI keep their history in the
same server as the data (in a database of its own, `e2i_dagster` by default, so Dagster's tables
never mix with the data tables): no URL in dagster.yaml, the embedded server by default, and
$E2I_DATABASE_URL (or $E2I_DAGSTER_DATABASE_URL for a separate one) when set.
"""

import os

import psycopg
from dagster import Field, StringSource
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from psycopg import sql

from e2i_synth.db.connection import connect, resolve_url, sqlalchemy_url, with_database

DAGSTER_URL_ENV = "E2I_DAGSTER_DATABASE_URL"
DEFAULT_DATABASE = "e2i_dagster"


def ensure_database(server_url: str, dbname: str) -> str:
    """URL of `dbname` on the server of `server_url`, created if missing."""
    with connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
                # Run history is not worth an fsync per event: a backfill writes thousands of
                # events, and losing the last few milliseconds of them in a crash is harmless.
                conn.execute(
                    sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(
                        sql.Identifier(dbname)
                    )
                )
            except psycopg.errors.DuplicateDatabase:
                pass  # created meanwhile by another process
    return with_database(server_url, dbname)


def dagster_storage_url(database: str = DEFAULT_DATABASE) -> str:
    url = os.environ.get(DAGSTER_URL_ENV) or ensure_database(resolve_url(), database)
    # dagster-postgres connects through SQLAlchemy with psycopg2 (postgres:// too).
    return sqlalchemy_url(url)


class E2iDagsterStorage(DagsterPostgresStorage):
    @classmethod
    def config_type(cls) -> dict:
        return {"database": Field(StringSource, is_required=False, default_value=DEFAULT_DATABASE)}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: dict
    ) -> "E2iDagsterStorage":
        return cls(
            postgres_url=dagster_storage_url(config_value.get("database", DEFAULT_DATABASE)),
            inst_data=inst_data,
        )
