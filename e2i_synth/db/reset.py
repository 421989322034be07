"""`e2i-synth db reset`: back to an empty, migrated project database.

Two targets, two scopes, both chosen to remove only what e2i-synth made:
- the embedded server: stop it and delete `.e2i/pgdata` (every database on it: the project's
  data and Dagster's run history `e2i_dagster`) and `.e2i/dagster` (run artifacts and compute
  logs), then start a new server and migrate. `.e2i/` holds nothing else.
- $E2I_DATABASE_URL: in that database only, drop the tables and functions the migrations
  create (found by reading sql/migrations, plus the ledger) in one transaction, then migrate
  again. No CASCADE: a view or key of yours that depends on an e2i table makes the drop fail
  and nothing is dropped. Other tables, other databases (Dagster's e2i_dagster history) and the
  server-wide roles e2i_reader / e2i_scorer are kept (other databases may use the roles;
  the grants on the dropped tables go with them).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from e2i_synth.db import embedded
from e2i_synth.db.connection import connect, mask_url
from e2i_synth.db.locks import advisory_lock
from e2i_synth.db.migrate import ADVISORY_LOCK_KEY, LEDGER, MigrationError, discover, migrate

_CREATED = re.compile(r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(TABLE|FUNCTION)\s+(\w+)", re.I | re.M)


@dataclass(frozen=True)
class ResetReport:
    target: str  # what was reset, in words
    dropped: list[str]  # objects dropped (URL) or folders deleted (embedded)
    applied: int  # migrations applied afterwards
    unit: str = "table(s) and function(s)"


def migration_objects(folder: Path | None = None) -> tuple[list[str], list[str]]:
    """(tables, functions) created by the migrations, in creation order; the ledger first."""
    tables, functions = [LEDGER], []
    for migration in discover(folder):
        for kind, name in _CREATED.findall(migration.sql):
            target = tables if kind.upper() == "TABLE" else functions
            if name not in target:
                target.append(name)
    return tables, functions


def reset_url(url: str, folder: Path | None = None) -> ResetReport:
    """Drop e2i-synth's tables and functions in the database at `url`, then migrate."""
    tables, functions = migration_objects(folder)
    with connect(url, autocommit=True) as conn:
        # The migrations' own lock: no `db migrate` runs while the tables go.
        advisory_lock(conn, ADVISORY_LOCK_KEY, "db reset")
        try:
            present = [
                t
                for t in tables
                if conn.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0] is not None
            ]
            try:
                with conn.transaction():
                    if present:
                        conn.execute(
                            sql.SQL("DROP TABLE {}").format(
                                sql.SQL(", ").join(map(sql.Identifier, present))
                            )
                        )
                    for name in functions:
                        conn.execute(
                            sql.SQL("DROP FUNCTION IF EXISTS {}").format(sql.Identifier(name))
                        )
            except psycopg.errors.DependentObjectsStillExist as exc:
                raise MigrationError(
                    f"db reset dropped nothing: objects outside e2i-synth depend on its tables "
                    f"({exc.diag.message_detail or exc}); drop or move them first"
                ) from None
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    applied = migrate(url, folder)
    return ResetReport(mask_url(url), present + functions, len(applied))


def reset_embedded(home: Path | None = None) -> ResetReport:
    """Stop the embedded server, delete its data and Dagster's artifacts, start and migrate."""
    pgdata = embedded.data_dir(home)
    embedded.stop_embedded(pgdata)
    deleted = []
    for folder in (pgdata, pgdata.parent / "dagster"):
        if folder.exists():
            shutil.rmtree(folder)
            deleted.append(str(folder))
    # pgserver caches a handle per folder that would point at the deleted cluster.
    embedded._import_pgserver()
    from pgserver.postgres_server import PostgresServer

    PostgresServer._instances.pop(pgdata.resolve(), None)
    embedded.start_embedded.cache_clear()
    url = embedded.start_embedded(pgdata)
    applied = migrate(url)
    return ResetReport(f"embedded PostgreSQL in {pgdata}", deleted, len(applied), "folder(s)")
