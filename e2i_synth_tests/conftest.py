"""A real PostgreSQL for the whole test session (embedded pgserver), a fresh database per test."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from e2i_synth.db.connection import with_database
from e2i_synth.db.migrate import migrate
from e2i_synth.db.resource import Database


def _url_for(server_url: str, dbname: str) -> str:
    return with_database(server_url, dbname)


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """URL of a PostgreSQL server: $E2I_TEST_DATABASE_URL, else an embedded one for this session."""
    if os.environ.get("E2I_TEST_DATABASE_URL"):
        yield os.environ["E2I_TEST_DATABASE_URL"]
        return
    import pgserver

    # The embedded server runs as the `pgserver` user when we are root: the folder must be open.
    folder = Path(tempfile.mkdtemp(prefix="e2i-test-pg-"))
    folder.chmod(0o755)
    server = pgserver.get_server(str(folder / "pgdata"), cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def empty_db_url(server_url: str) -> Iterator[str]:
    """A new, empty database on the session server, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _url_for(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(empty_db_url: str) -> str:
    """A new database with every migration applied."""
    migrate(empty_db_url)
    return empty_db_url


@pytest.fixture
def database(db_url: str) -> Database:
    return Database(url=db_url)
