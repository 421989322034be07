"""The scenario the database's data came from (table e2i_active_scenario, one row), and how a
scenario change replaces every table at once.

A change of scenario rewrites every table, over many Dagster runs. Doing that in place (as it
was done: TRUNCATE everything, record the new scenario, then load table by table) leaves the
database empty or mixed whenever the run is killed or a check fails, and readers see empty
tables meanwhile. Instead the new scenario is loaded into a staging schema (STAGING_SCHEMA),
whose tables are copies of the public ones (columns, defaults, CHECKs, keys, indexes and the
foreign keys between them), with the run's connections on `search_path = e2i_next, public`:
the IO manager, the checks and the scenario resource work unchanged against staging, and the
staging schema also holds its own e2i_active_scenario row, the new scenario, which every step
of the run (in this process or another) reads. When every stage and check has passed,
swap_in() replaces the public tables' contents and the recorded scenario in ONE transaction.

Why copy rows in the swap (DELETE + INSERT ... SELECT) rather than swap schemas (rename the
tables): the public tables keep their OIDs, and so their grants, row-level security policies,
foreign keys, index and constraint names (sql/schema.sql stays exact) and whatever a DBA or
another migration added to them, without this module knowing about any of it; readers are
never blocked (DELETE and INSERT take ROW EXCLUSIVE locks, a rename takes ACCESS EXCLUSIVE).
The price is one server-side copy of every row at the end of a scenario change. A run that
fails or is killed leaves staging behind (inspectable), never public; the next scenario change
drops it first. The staging schema gets no grants, so the reader role never sees a half-loaded
scenario or its answer key.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from psycopg import sql

from e2i_synth.core.scenario import parse_scenario
from e2i_synth.db.copy import may_turn_row_triggers_off
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
    """An empty staging schema shaped like public (a previous failed run's is dropped),
    recording the scenario being loaded into it."""
    s = sql.Identifier(schema)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(s))
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(s))
        # UNLOGGED: the load into staging writes no WAL (the swap's copy into public does,
        # and only that copy must survive a crash). A crash empties unlogged tables, which
        # loses nothing: public still holds the previous scenario, and the next scenario change
        # drops staging anyway.
        for name in [*TABLES, ACTIVE_TABLE]:
            cur.execute(
                sql.SQL("CREATE UNLOGGED TABLE {s}.{t} (LIKE public.{t} INCLUDING ALL)").format(
                    s=s, t=sql.Identifier(name)
                )
            )
        # LIKE copies no foreign keys: the same ones, between the staging tables, so a load
        # into staging is refused exactly as a load into public would be.
        for name in TABLES:
            for fk in _public_foreign_keys(cur, name):
                cur.execute(
                    sql.SQL(
                        "ALTER TABLE {s}.{t} ADD CONSTRAINT {n} FOREIGN KEY ({c}) "
                        "REFERENCES {s}.{r} ({rc}) {deferrable}"
                    ).format(
                        s=s,
                        t=sql.Identifier(name),
                        n=sql.Identifier(fk[0]),
                        c=sql.SQL(", ").join(map(sql.Identifier, fk[2])),
                        r=sql.Identifier(fk[1]),
                        rc=sql.SQL(", ").join(map(sql.Identifier, fk[3])),
                        deferrable=sql.SQL(
                            {
                                (True, True): "DEFERRABLE INITIALLY DEFERRED",
                                (True, False): "DEFERRABLE INITIALLY IMMEDIATE",
                            }.get((fk[4], fk[5]), "NOT DEFERRABLE")
                        ),
                    )
                )
        _record(
            cur,
            sql.SQL("{}.{}").format(s, sql.Identifier(ACTIVE_TABLE)),
            scenario_hash,
            scenario_yaml,
        )


def _public_foreign_keys(cur: psycopg.Cursor, table: str) -> list[tuple]:
    """(name, referenced table, columns, referenced columns, deferrable, deferred) of each
    foreign key from public.`table` to another public table."""
    return cur.execute(
        """SELECT c.conname, parent.relname,
                  array(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n
                        ORDER BY k.i),
                  array(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
                        JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n
                        ORDER BY k.i),
                  c.condeferrable, c.condeferred
           FROM pg_constraint c
           JOIN pg_class parent ON parent.oid = c.confrelid
           JOIN pg_namespace pn ON pn.oid = parent.relnamespace AND pn.nspname = 'public'
           WHERE c.contype = 'f' AND c.conrelid = format('public.%%I', %s::text)::regclass
           ORDER BY c.conname""",
        (table,),
    ).fetchall()


def staging_exists(conn: psycopg.Connection, schema: str = STAGING_SCHEMA) -> bool:
    query = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)"
    return conn.execute(query, (schema,)).fetchone()[0]


def swap_in(conn: psycopg.Connection, schema: str = STAGING_SCHEMA) -> tuple[str, str]:
    """Replace every public table's rows, and the recorded scenario, with staging's, in one
    transaction, then drop staging (in it too); the (hash, yaml) of the scenario swapped in.

    Readers see the previous scenario until commit and the new one after, never a mix or an
    empty table; a failure (or a kill) anywhere rolls everything back."""
    s = sql.Identifier(schema)
    names = list(TABLES)  # in foreign-key order: referenced tables first
    public = [sql.SQL("public.{}").format(sql.Identifier(n)) for n in names]
    with conn.transaction(), conn.cursor() as cur:
        # Writers of these tables (a load of a window, a rerun of one table) wait until
        # commit, and the swap waits for them; readers are never blocked.
        cur.execute(
            sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(sql.SQL(", ").join(public))
        )
        staged = sql.SQL("SELECT scenario_hash, scenario_yaml FROM {}.{}").format(
            s, sql.Identifier(ACTIVE_TABLE)
        )
        scenario_hash, scenario_yaml = cur.execute(staged).fetchone()
        # No foreign key is checked again, when the session may turn row triggers off: every
        # key from one of these tables points to another of them (prepare_staging copies them
        # between the staging tables, and fails on any other), staging enforced the very same
        # keys on its rows, and every table is replaced at once. Else the deferred triggers
        # check them at commit.
        set_based = may_turn_row_triggers_off(cur)
        if set_based:
            cur.execute("SET LOCAL session_replication_role = replica")
        for table in reversed(public):
            cur.execute(sql.SQL("DELETE FROM {}").format(table))
        for name, table in zip(names, public, strict=True):
            columns = sql.SQL(", ").join(map(sql.Identifier, TABLES[name].columns))
            cur.execute(
                sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {s}.{n}").format(
                    t=table, c=columns, s=s, n=sql.Identifier(name)
                )
            )
        if set_based:
            cur.execute("SET LOCAL session_replication_role = origin")
        # Last, so a concurrent materialize's reader of the recorded scenario waits the
        # shortest time.
        _record(cur, sql.Identifier(ACTIVE_TABLE), scenario_hash, scenario_yaml)
        cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(s))
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    return scenario_hash, scenario_yaml
