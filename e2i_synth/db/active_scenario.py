"""The scenario the database's data came from (table e2i_active_scenario, one row)."""

from __future__ import annotations

import psycopg
from psycopg import sql


def get_active_yaml(conn: psycopg.Connection) -> str | None:
    exists = conn.execute("SELECT to_regclass('e2i_active_scenario') IS NOT NULL").fetchone()[0]
    if not exists:
        return None
    row = conn.execute("SELECT scenario_yaml FROM e2i_active_scenario").fetchone()
    return row[0] if row else None


def activate(
    conn: psycopg.Connection, scenario_hash: str, scenario_yaml: str, data_tables: list[str]
) -> bool:
    """Record the scenario about to be materialized; True if it replaced a different one.

    When the scenario changes, the data tables are emptied in the same transaction: rows of
    the old scenario would otherwise mix with, or be orphaned by, the new one.
    """
    with conn.transaction():
        row = conn.execute("SELECT scenario_hash FROM e2i_active_scenario FOR UPDATE").fetchone()
        changed = row is not None and row[0] != scenario_hash
        if changed and data_tables:
            conn.execute(
                sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, data_tables)))
            )
        conn.execute(
            """INSERT INTO e2i_active_scenario (singleton, scenario_hash, scenario_yaml)
               VALUES (true, %s, %s)
               ON CONFLICT (singleton) DO UPDATE
               SET scenario_hash = excluded.scenario_hash,
                   scenario_yaml = excluded.scenario_yaml,
                   activated_at = now()""",
            (scenario_hash, scenario_yaml),
        )
    return changed
