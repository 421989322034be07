"""The Dagster resource for the database: which PostgreSQL, migrated, and connections to it."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg
from psycopg import sql

from e2i_synth.db import connection, migrate

# Set by `e2i-synth materialize --parallel` for the executor's step processes (which build
# their resources from e2i_synth.definitions) while it loads a scenario change into staging.
STAGING_ENV = "E2I_STAGING_SCHEMA"


class Database(dg.ConfigurableResource):
    """An existing PostgreSQL (`url`, from the E2I_DATABASE_URL env var) or the embedded one."""

    url: str | None = None
    home: str | None = None  # folder holding .e2i/ for the embedded server (default: cwd)
    migrate_on_setup: bool = True  # False for dry runs, which must not touch the database
    # A scenario change loads into this schema (see db/active_scenario.py): every connection
    # resolves table names there first (search_path = staging, public), so the IO manager and
    # the checks read and write staging without knowing it.
    staging_schema: str | None = None

    def url_in_use(self) -> str:
        # Outside a Dagster run (the CLI) an EnvVar field is still the variable's name.
        url = self.url.get_value() if isinstance(self.url, dg.EnvVar) else self.url
        return connection.resolve_url(url, Path(self.home) if self.home else None)

    def masked_url(self) -> str:
        return connection.mask_url(self.url_in_use())

    @contextmanager
    def connect(self, **kwargs) -> Iterator[psycopg.Connection]:
        staging = self.staging_schema or os.environ.get(STAGING_ENV)
        with connection.connect(self.url_in_use(), **kwargs) as conn:
            if staging:
                path = f"{sql.Identifier(staging).as_string(conn)}, public"
                conn.execute("SELECT set_config('search_path', %s, false)", (path,))
                if not conn.autocommit:
                    conn.commit()
            yield conn

    def migrate(self) -> list[migrate.Migration]:
        return migrate.migrate(self.url_in_use())

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Every run works on a migrated database, even the first one on a new server.
        if self.migrate_on_setup:
            self.migrate()
