"""Forward-only SQL migrations from sql/migrations, applied in order under an advisory lock.

Each file NNN_name.sql runs in its own transaction together with its ledger row
(e2i_schema_migrations: version, name, checksum). A file whose content changed after it was
applied is refused: migrations are history, new changes go in a new file.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from e2i_synth.db.connection import connect
from e2i_synth.db.locks import advisory_lock

LEDGER = "e2i_schema_migrations"
# Arbitrary constant key: every migrate call on any host serialises on it.
ADVISORY_LOCK_KEY = 0x6532_6953_796E  # "e2iSyn"
READER_ROLE_ENV = "E2I_READER_ROLE"
DEFAULT_READER_ROLE = "e2i_reader"
# The role that may read the answer key (ground_truth) and the scenario (e2i_active_scenario),
# which the reader (the agent under test) must not.
SCORER_ROLE_ENV = "E2I_SCORER_ROLE"
DEFAULT_SCORER_ROLE = "e2i_scorer"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """A migration could not be applied; the message names the file."""


# Files amended after release with a change that is a no-op wherever the earlier text applied
# (so a database that ran it is as if it ran the new one): their earlier checksums count as
# applied. 010 failed on any database holding business_metrics rows of the older generator;
# it now deletes them first, and the earlier text only ever succeeded on an empty table.
AMENDED: dict[str, frozenset[str]] = {
    "010_business_metrics_world.sql": frozenset(
        {"068cba02ce71c8f594185bdf6868d150826e1b2ecd8d21712eb8c8529474b59e"}
    ),
}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def ran_as(self, checksum: str) -> bool:
        """Whether the ledger's `checksum` is this file as it stands (or amended, AMENDED)."""
        return checksum == self.checksum or checksum in AMENDED.get(self.path.name, ())


def sql_dir() -> Path:
    """sql/ of the source tree (the package is installed editable, next to it)."""
    return Path(__file__).resolve().parents[2] / "sql"


def discover(folder: Path | None = None) -> list[Migration]:
    folder = folder or sql_dir() / "migrations"
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version number in {folder}")
    return found


def _ensure_ledger(conn: psycopg.Connection) -> None:
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {LEDGER} (
            version     integer PRIMARY KEY,
            name        text NOT NULL,
            checksum    text NOT NULL,
            applied_at  timestamp with time zone NOT NULL DEFAULT now())"""
    )


def applied(conn: psycopg.Connection) -> dict[int, tuple[str, str]]:
    """version -> (name, checksum) of the applied migrations ({} before the first)."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (LEDGER,)).fetchone()[0]
    if not exists:
        return {}
    rows = conn.execute(f"SELECT version, name, checksum FROM {LEDGER} ORDER BY version")
    return {v: (n, c) for v, n, c in rows}


@dataclass(frozen=True)
class MigrationStatus:
    """A migration file against the ledger: applied, pending, or edited after it was applied
    (its file's checksum differs from the one recorded when it ran)."""

    migration: Migration
    state: str  # "applied", "pending" or "edited"
    applied_checksum: str | None = None

    def describe(self) -> str:
        line = f"{self.state:<8} {self.migration.path.name}"
        if self.state == "edited":
            line += (
                f": file changed after it was applied (checksum {self.applied_checksum} in "
                f"{LEDGER}, {self.migration.checksum} on disk); applied migrations are "
                "immutable: restore the file and add a new migration"
            )
        return line


def status(conn: psycopg.Connection, folder: Path | None = None) -> list[MigrationStatus]:
    done = applied(conn)
    rows = []
    for m in discover(folder):
        if m.version not in done:
            rows.append(MigrationStatus(m, "pending"))
        else:
            checksum = done[m.version][1]
            state = "applied" if m.ran_as(checksum) else "edited"
            rows.append(MigrationStatus(m, state, checksum))
    return rows


def _role(env: str, default: str) -> str:
    role = os.environ.get(env) or default
    if not _IDENTIFIER.match(role):
        raise MigrationError(f"{env}={role[:70]!r} is not a lower-case SQL identifier")
    return role


def reader_role() -> str:
    """Name of the read-only role for agents ($E2I_READER_ROLE, default e2i_reader)."""
    return _role(READER_ROLE_ENV, DEFAULT_READER_ROLE)


def scorer_role() -> str:
    """Name of the role that reads the answer key ($E2I_SCORER_ROLE, default e2i_scorer)."""
    role = _role(SCORER_ROLE_ENV, DEFAULT_SCORER_ROLE)
    if role == reader_role():
        raise MigrationError(f"{SCORER_ROLE_ENV} and {READER_ROLE_ENV} must name two roles")
    return role


def ensure_role(conn: psycopg.Connection, role: str) -> None:
    """CREATE ROLE `role` LOGIN unless it exists, race-free across databases.

    Roles are per server while the migration lock is per database, so two first-time
    migrations of two databases on one server both see the role missing; the loser's CREATE
    fails on the unique role name and is ignored here, before any migration runs. Without the
    privilege to create roles, the migration that needs the role reports it."""
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
        return
    try:
        with conn.transaction():
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
        pass  # created meanwhile by a migration of another database
    except psycopg.errors.InsufficientPrivilege:
        pass


def migrate(url: str, folder: Path | None = None) -> list[Migration]:
    """Apply every pending migration; return those applied by this call."""
    migrations = discover(folder)
    newly: list[Migration] = []
    role, scorer = reader_role(), scorer_role()
    with connect(url, autocommit=True) as conn:
        conn.execute("SELECT set_config('e2i.reader_role', %s, false)", (role,))
        conn.execute("SELECT set_config('e2i.scorer_role', %s, false)", (scorer,))
        advisory_lock(conn, ADVISORY_LOCK_KEY, "db migrate")
        try:
            if [m for m in migrations if m.version not in applied(conn)]:
                for name in (role, scorer):
                    ensure_role(conn, name)
            _ensure_ledger(conn)
            done = applied(conn)
            for m in migrations:
                if m.version in done:
                    name, checksum = done[m.version]
                    if not m.ran_as(checksum):
                        raise MigrationError(
                            f"{m.path.name} changed after it was applied (checksum "
                            f"{checksum[:12]} in {LEDGER}, {m.checksum[:12]} on disk); "
                            "applied migrations are immutable: add a new migration instead"
                        )
                    continue
                try:
                    with conn.transaction():
                        conn.execute(m.sql)
                        conn.execute(
                            f"INSERT INTO {LEDGER} (version, name, checksum) VALUES (%s, %s, %s)",
                            (m.version, m.name, m.checksum),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"{m.path.name} failed and was rolled back: {exc}"
                    ) from exc
                newly.append(m)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    return newly
