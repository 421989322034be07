"""Least privilege: RLS on every table, and a reader role that can read but never write."""

import psycopg
import pytest

from e2i_synth.db.migrate import DEFAULT_READER_ROLE
from e2i_synth.schemas import TABLES


def _as_reader(db_url: str) -> str:
    base, _, query = db_url.partition("?")
    scheme, rest = base.split("://", 1)
    host_and_db = rest.split("@", 1)[1]
    return f"{scheme}://{DEFAULT_READER_ROLE}@{host_and_db}" + (f"?{query}" if query else "")


def test_every_table_has_row_level_security_and_a_reader_policy(db_url):
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            """SELECT c.relname, c.relrowsecurity,
                      EXISTS (SELECT 1 FROM pg_policies p
                              WHERE p.tablename = c.relname AND p.cmd = 'SELECT'
                              AND %s = ANY(p.roles))
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'public' AND c.relkind = 'r'""",
            (DEFAULT_READER_ROLE,),
        ).fetchall()
    assert {name for name, _, _ in rows} >= set(TABLES)
    assert [name for name, rls, policy in rows if not (rls and policy)] == []


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO {t} SELECT * FROM {t} LIMIT 1",
        "UPDATE {t} SET {c} = {c}",
        "DELETE FROM {t}",
        "TRUNCATE {t}",
    ],
)
def test_reader_can_select_but_not_write(db_url, statement):
    with psycopg.connect(_as_reader(db_url)) as conn:
        for table, spec in TABLES.items():
            conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                with conn.transaction():
                    conn.execute(statement.format(t=table, c=spec.columns[0]))
