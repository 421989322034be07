"""The scenario the database's data came from (table e2i_active_scenario, one row), and how a
scenario change replaces every table at once.

A change of scenario rewrites every table, over many Dagster runs. Doing that in place (as it
was done: TRUNCATE everything, record the new scenario, then load table by table) leaves the
database empty or mixed whenever the run is killed or a check fails, and readers see empty
tables meanwhile. Instead the new scenario is loaded into a staging schema (STAGING_SCHEMA),
whose tables are exact clones of the public ones, built from the catalog (db/catalog.py: the
same column, constraint, index, trigger and policy names, the foreign keys between them,
grants, row-level security, comments, owner; LOGGED), with the run's connections on
`search_path = e2i_next, public`: the IO manager, the checks and the scenario resource work
unchanged against staging, and the staging schema also holds its own e2i_active_scenario row,
the new scenario, which every step of the run (in this process or another) reads. When every
stage and check has passed, swap_in() renames staging's tables into public in ONE transaction:
each public table moves to OLD_SCHEMA (ALTER TABLE ... SET SCHEMA), its staging clone to
public, the recorded scenario's table last, and the old tables are dropped before commit.

A rename rather than a copy of every row: the swap writes catalog rows only, whatever the
scale, and the rows reach the WAL once, in the load. What public's tables carried by OID
(grants, RLS policies, foreign keys, index and constraint names, comments) the clones carry by
construction; swap_in() refuses staging unless its catalog equals public's (db/catalog.describe,
so a migration run during a change is caught), and a test compares a swapped-in public schema
with a freshly migrated one, so sql/schema.sql stays exact. What a clone cannot reproduce
(views or foreign keys of other tables on these, sequences or identity columns, column grants,
partitions) makes prepare_staging() fail, naming it. The price: the swap takes ACCESS EXCLUSIVE
locks on every table, so readers and writers of them wait for the swap (a fraction of a second:
catalog updates); a swap that cannot get its locks within a few seconds (behind a long query)
rolls back and retries rather than keep readers queued behind it. And, as for TRUNCATE, a
rename is not MVCC-safe: a REPEATABLE READ or SERIALIZABLE transaction whose snapshot predates
the staged load's last commit, and which reads these tables only after the swap, would see the
new tables as of that snapshot; swap_in() therefore first waits until no session holds such a
snapshot (as CREATE INDEX CONCURRENTLY waits for older snapshots), up to $E2I_LOCK_TIMEOUT.

A run that fails or is killed leaves staging behind (inspectable), never public; the next
scenario change drops it first. The staging schema gets no grants, so the reader role never
sees a half-loaded scenario or its answer key (its tables carry public's grants, which take
effect only once they are in public).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from e2i_synth.core.scenario import parse_scenario
from e2i_synth.db.catalog import clone_tables, describe
from e2i_synth.db.copy import LoadError
from e2i_synth.db.locks import LOCK_TIMEOUT_ENV, lock_timeout_s
from e2i_synth.tables import TABLES

ACTIVE_TABLE = "e2i_active_scenario"
STAGING_SCHEMA = "e2i_next"


def get_active_yaml(conn: psycopg.Connection) -> str | None:
    row = _active(conn, "scenario_yaml")
    return row[0] if row else None


# An input read only over the scenario's monitoring windows (io_manager: `rows` metadata).
MONITORING_WINDOWS = "monitoring_windows"


def recorded_monitoring_span(conn: psycopg.Connection) -> tuple[datetime, datetime] | None:
    """From the first monitoring window's start to the last's end (UTC midnights), of the
    scenario recorded where this connection reads (staging during a scenario change); None
    when none is recorded (assets materialized outside the runner): then read everything."""
    recorded = get_active_yaml(conn)
    if recorded is None:
        return None
    w = parse_scenario(recorded, "recorded scenario").monitoring
    first, last = min(w.baseline_start, w.current_start), max(w.baseline_end, w.current_end)
    return tuple(datetime(d.year, d.month, d.day, tzinfo=UTC) for d in (first, last))


def get_active_hash(conn: psycopg.Connection) -> str | None:
    """The content hash of the scenario the data (visible on this connection) came from."""
    row = _active(conn, "scenario_hash")
    return row[0] if row else None


def _active(conn: psycopg.Connection, column: str) -> tuple | None:
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (ACTIVE_TABLE,)).fetchone()[0]
    if not exists:
        return None
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.Identifier(column), sql.Identifier(ACTIVE_TABLE)
    )
    return conn.execute(query).fetchone()


def _record(cur: psycopg.Cursor, table: sql.Composable, scenario_hash: str, yaml: str) -> None:
    cur.execute(
        sql.SQL(
            """INSERT INTO {} (singleton, scenario_hash, scenario_yaml) VALUES (true, %s, %s)
               ON CONFLICT (singleton) DO UPDATE
               SET scenario_hash = excluded.scenario_hash,
                   scenario_yaml = excluded.scenario_yaml,
                   activated_at = now()"""
        ).format(table),
        (scenario_hash, yaml),
    )


def touch(conn: psycopg.Connection, scenario_hash: str, scenario_yaml: str) -> None:
    """Record a scenario over the same one (a rerun) or over none (a database never loaded by
    the CLI, whose tables hold nothing of another recorded scenario)."""
    with conn.transaction(), conn.cursor() as cur:
        row = cur.execute(
            sql.SQL("SELECT scenario_hash FROM {} FOR UPDATE").format(sql.Identifier(ACTIVE_TABLE))
        ).fetchone()
        if row is not None and row[0] != scenario_hash:
            raise RuntimeError("a different scenario is recorded: change it with swap_in()")
        _record(cur, sql.Identifier(ACTIVE_TABLE), scenario_hash, scenario_yaml)


def prepare_staging(
    conn: psycopg.Connection,
    scenario_hash: str,
    scenario_yaml: str,
    schema: str = STAGING_SCHEMA,
) -> None:
    """An empty staging schema whose tables are exact clones of the public ones (db/catalog.py;
    a previous failed run's schema is dropped), recording the scenario being loaded into it.

    LOGGED, as public's are: the tables are renamed into public as they are, and the rows reach
    the WAL once, in the load (UNLOGGED tables set LOGGED before the swap were measured no
    better: README.md)."""
    s = sql.Identifier(schema)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(s))
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(s))
        # The clone's foreign keys join the staging tables, so a load into staging is refused
        # exactly as a load into public would be.
        clone_tables(cur, [*TABLES, ACTIVE_TABLE], schema)
        _record(
            cur,
            sql.SQL("{}.{}").format(s, sql.Identifier(ACTIVE_TABLE)),
            scenario_hash,
            scenario_yaml,
        )


def staging_exists(conn: psycopg.Connection, schema: str = STAGING_SCHEMA) -> bool:
    query = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)"
    return conn.execute(query, (schema,)).fetchone()[0]


# Where swap_in() moves the public tables it replaces, in its transaction (dropped in it too).
OLD_SCHEMA = "e2i_prev"
ATTEMPT_LOCK_TIMEOUT = "5s"  # per attempt to lock the tables; then the swap rolls back, retries


class SwapError(LoadError):
    """The swap could not run; public still holds the previous scenario."""


def swap_in(
    conn: psycopg.Connection,
    schema: str = STAGING_SCHEMA,
    *,
    attempt_lock_timeout: str = ATTEMPT_LOCK_TIMEOUT,
    wait: float | None = None,
) -> tuple[str, str]:
    """Rename staging's tables into public in place of the public ones, the recorded scenario
    with them, in one transaction, dropping the previous tables and staging in it too; the
    (hash, yaml) of the scenario swapped in.

    Readers see the previous scenario until commit and the new one after, never a mix or an
    empty table; a failure (or a kill) anywhere rolls everything back. Readers and writers of
    these tables wait while the swap holds them (ACCESS EXCLUSIVE; catalog updates only, and
    the old tables' files unlinked at commit). A swap that cannot lock them within
    `attempt_lock_timeout` (behind a long reader, or in a deadlock with a reader that locks
    them in another order) rolls back and tries again, so it never holds some tables while
    readers queue behind it for long; it gives up after `wait` seconds in all ($E2I_LOCK_TIMEOUT,
    default 600), the same bound as every other lock wait of ours."""
    wait = lock_timeout_s() if wait is None else wait
    deadline = time.monotonic() + wait
    _wait_for_older_snapshots(conn, deadline)
    attempt = 0
    while True:
        attempt += 1
        try:
            return _swap(conn, schema, attempt_lock_timeout)
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as exc:
            if time.monotonic() > deadline:
                raise SwapError(
                    f"could not lock the tables to swap in {attempt} attempts over {wait:g} s "
                    f"({LOCK_TIMEOUT_ENV}): {exc}"
                ) from exc
            time.sleep(min(0.05 * attempt, 1.0))


def _swap(conn: psycopg.Connection, schema: str, lock_timeout: str) -> tuple[str, str]:
    s, old = sql.Identifier(schema), sql.Identifier(OLD_SCHEMA)
    names = list(TABLES)  # in foreign-key order: referenced tables first
    everything = [*names, ACTIVE_TABLE]

    def tables(where: sql.Identifier, which: list[str]) -> sql.Composable:
        return sql.SQL(", ").join(sql.SQL("{}.{}").format(where, sql.Identifier(n)) for n in which)

    public = sql.Identifier("public")
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT set_config('lock_timeout', %s, true)", (lock_timeout,))
        # A fixed order: the data tables (public, then staging), then the recorded scenario's
        # table last, so that a materialize reading the recorded scenario waits the shortest.
        cur.execute(
            sql.SQL("LOCK TABLE {}, {} IN ACCESS EXCLUSIVE MODE").format(
                tables(public, names), tables(s, names)
            )
        )
        staged = sql.SQL("SELECT scenario_hash, scenario_yaml FROM {}.{}").format(
            s, sql.Identifier(ACTIVE_TABLE)
        )
        scenario_hash, scenario_yaml = cur.execute(staged).fetchone()
        # Staging must be public's exact clone (a migration may have run since it was made).
        here, there = describe(conn, "public", everything), describe(conn, schema, everything)
        different = sorted(
            f"{t}.{part}"
            for t in everything
            for part in set(here.get(t, {})) | set(there.get(t, {}))
            if here.get(t, {}).get(part) != there.get(t, {}).get(part)
        )
        if different:
            raise SwapError(
                f"schema {schema} is not an exact clone of public (differs in "
                f"{', '.join(different)}): public changed since the change began; rerun it"
            )
        cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(old))
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(old))
        for name in names:
            t = sql.Identifier(name)
            cur.execute(sql.SQL("ALTER TABLE public.{} SET SCHEMA {}").format(t, old))
            cur.execute(sql.SQL("ALTER TABLE {}.{} SET SCHEMA public").format(s, t))
        active = sql.Identifier(ACTIVE_TABLE)
        cur.execute(
            sql.SQL("LOCK TABLE public.{a}, {s}.{a} IN ACCESS EXCLUSIVE MODE").format(a=active, s=s)
        )
        cur.execute(sql.SQL("ALTER TABLE public.{} SET SCHEMA {}").format(active, old))
        cur.execute(sql.SQL("ALTER TABLE {}.{} SET SCHEMA public").format(s, active))
        cur.execute(sql.SQL("UPDATE public.{} SET activated_at = now()").format(active))
        cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(old))
        cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(s))
    return scenario_hash, scenario_yaml


# The other sessions of this database whose oldest snapshot is older than `horizon` (an xid8):
# such a snapshot may predate the staged load's last commits. Not those waiting for an advisory
# lock: another materialize or migrate waiting for the one swapping (the runner's lock), which
# cannot go on before it, and reads with a new snapshot once it does.
_OLDER_SNAPSHOTS = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND backend_type = 'client backend' AND backend_xmin IS NOT NULL
  AND age(backend_xmin) > age(xid(%s::xid8))
  AND (wait_event_type, wait_event) IS DISTINCT FROM ('Lock', 'advisory')
ORDER BY pid
"""


def _wait_for_older_snapshots(conn: psycopg.Connection, deadline: float) -> None:
    """Until no other session holds a snapshot taken before the staged load committed.

    A rename is not MVCC-safe, as TRUNCATE is not: a REPEATABLE READ or SERIALIZABLE
    transaction whose snapshot was taken during the load, and which touches these tables only
    after the swap, would read the new tables as of that snapshot (partly loaded). Every
    snapshot taken from now on sees all of staging; the older ones are waited for, as CREATE
    INDEX CONCURRENTLY waits for them. (A transaction that has read a table holds its lock,
    so the swap waits for it anyway, and it never sees the new tables.)"""
    with conn.transaction():
        horizon = conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())").fetchone()[0]
    while True:
        with conn.transaction():
            pids = [r[0] for r in conn.execute(_OLDER_SNAPSHOTS, (str(horizon),))]
        if not pids:
            return
        if time.monotonic() > deadline:
            raise SwapError(
                f"sessions {pids} still hold snapshots older than the staged load after "
                f"{lock_timeout_s():g} s ({LOCK_TIMEOUT_ENV}; REPEATABLE READ or SERIALIZABLE "
                "transactions, or long queries): they would read the new tables partly; end "
                "them and rerun"
            )
        time.sleep(0.05)
