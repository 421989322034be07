"""The scenario change's swap renames staging's tables into public (db/active_scenario.py), so
staging's tables are clones of public's built from the catalog (db/catalog.py). The guard: a
public schema after swaps is indistinguishable, catalog-wise, from a freshly migrated one
(names and definitions of tables, columns, constraints, indexes, triggers, policies; grants,
owner, persistence, RLS, comments; the schemas, their grants, the functions and the migration
ledger), so a migration adding something the clone misses fails here. Then what the swap keeps
(grants, foreign keys, rows), what it refuses, and a clone of what no migration has yet.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from e2i_synth.db.active_scenario import (
    ACTIVE_TABLE,
    OLD_SCHEMA,
    STAGING_SCHEMA,
    SwapError,
    get_active_hash,
    prepare_staging,
    swap_in,
)
from e2i_synth.db.catalog import CloneError, describe
from e2i_synth.db.migrate import DEFAULT_READER_ROLE, DEFAULT_SCORER_ROLE
from e2i_synth.tables import TABLES
from e2i_synth_tests.pipeline import SHORT_A_KEY, fingerprints, load_short_a

_SCHEMAS = """
SELECT n.nspname, n.nspacl::text FROM pg_namespace n
WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' ORDER BY 1
"""
_FUNCTIONS = """
SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public' ORDER BY 1, 2
"""
_LEDGER = "SELECT version, name, checksum FROM e2i_schema_migrations ORDER BY version"
_TYPES = """
SELECT t.typname, t.typtype::text FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = 'public' ORDER BY 1
"""


def catalog(url: str) -> dict[str, object]:
    """What the guard compares: every public table's catalog (db/catalog.describe), the
    schemas and their grants, public's functions and types, the migration ledger."""
    with psycopg.connect(url) as conn:
        return {
            "tables": describe(conn, "public"),
            "schemas": conn.execute(_SCHEMAS).fetchall(),
            "functions": conn.execute(_FUNCTIONS).fetchall(),
            "types": conn.execute(_TYPES).fetchall(),
            "ledger": conn.execute(_LEDGER).fetchall(),
        }


def _copy_public_into_staging(url: str, scenario_hash: str = "h2") -> None:
    """prepare_staging, then every public row into it (the scenario's YAML kept)."""
    with psycopg.connect(url) as conn:
        yaml = conn.execute(f"SELECT scenario_yaml FROM {ACTIVE_TABLE}").fetchone()[0]
        prepare_staging(conn, scenario_hash, yaml)
        with conn.transaction():
            for name in TABLES:
                conn.execute(
                    sql.SQL("INSERT INTO {s}.{t} SELECT * FROM public.{t}").format(
                        s=sql.Identifier(STAGING_SCHEMA), t=sql.Identifier(name)
                    )
                )


@pytest.fixture
def loaded_a(copy_of, monkeypatch) -> str:
    """A database holding SHORT_A: its first load was staged and swapped in."""
    return copy_of(SHORT_A_KEY, load_short_a)


def test_a_swapped_in_schema_is_indistinguishable_from_a_freshly_migrated_one(loaded_a, db_url):
    migrated = catalog(db_url)
    assert migrated["tables"]["hcp_profiles"]["policies"]  # the guard reads something
    assert catalog(loaded_a) == migrated  # after the first load's swap
    _copy_public_into_staging(loaded_a)
    with psycopg.connect(loaded_a) as conn:
        swap_in(conn)
    assert catalog(loaded_a) == migrated  # and after another swap


def test_a_swap_keeps_rows_grants_policies_and_foreign_keys(loaded_a):
    before = fingerprints(loaded_a)
    with psycopg.connect(loaded_a) as conn:
        oids = dict(
            conn.execute(
                "SELECT relname, oid FROM pg_class WHERE relname = ANY(%s)", (list(TABLES),)
            ).fetchall()
        )
    _copy_public_into_staging(loaded_a, "h2")
    with psycopg.connect(loaded_a) as conn:
        assert swap_in(conn)[0] == "h2"
        assert get_active_hash(conn) == "h2"
        moved = dict(
            conn.execute(
                "SELECT relname, oid FROM pg_class WHERE relname = ANY(%s)", (list(TABLES),)
            ).fetchall()
        )
        assert set(moved) == set(oids) and not set(moved.values()) & set(oids.values())
        left = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)",
            ([STAGING_SCHEMA, OLD_SCHEMA],),
        ).fetchall()
        assert left == []
        persistence = conn.execute(
            "SELECT DISTINCT relpersistence FROM pg_class WHERE relname = ANY(%s)",
            (list(TABLES),),
        ).fetchall()
        assert persistence == [("p",)]
        assert conn.execute(
            "SELECT has_table_privilege(%s, 'public.hcp_profiles', 'SELECT'), "
            "has_table_privilege(%s, 'public.ground_truth', 'SELECT'), "
            "has_table_privilege(%s, 'public.ground_truth', 'SELECT'), "
            "has_table_privilege(%s, 'public.hcp_profiles', 'INSERT')",
            (DEFAULT_READER_ROLE, DEFAULT_READER_ROLE, DEFAULT_SCORER_ROLE, DEFAULT_READER_ROLE),
        ).fetchone() == (True, False, True, False)
        # The foreign keys join the swapped-in tables: HCPs with triggers cannot go.
        conn.commit()
        with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
            conn.execute("DELETE FROM hcp_profiles")
    assert fingerprints(loaded_a) == before
    # The reader role reads the swapped-in rows through its policy.
    with psycopg.connect(loaded_a) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(DEFAULT_READER_ROLE)))
        assert conn.execute("SELECT count(*) FROM hcp_profiles").fetchone()[0] > 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM ground_truth")


def test_the_clone_copies_what_no_migration_has_yet(db_url):
    """Comments, a trigger, a named index, a restrictive policy, a grant: cloned by name."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("COMMENT ON TABLE hcp_profiles IS 'the HCPs'")
        conn.execute("COMMENT ON INDEX hcp_profiles_pkey IS 'the key'")
        conn.execute("COMMENT ON CONSTRAINT triggers_hcp_id_fkey ON triggers IS 'an fk'")
        conn.execute("CREATE INDEX some_named_index ON triggers (hcp_id) WHERE hcp_id <> ''")
        conn.execute(
            "CREATE FUNCTION public.nothing() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER a_trigger BEFORE INSERT ON triggers FOR EACH ROW "
            "EXECUTE FUNCTION public.nothing()"
        )
        conn.execute("ALTER TABLE triggers DISABLE TRIGGER a_trigger")
        conn.execute(
            "CREATE POLICY a_policy ON features AS RESTRICTIVE FOR SELECT TO PUBLIC USING (true)"
        )
        conn.execute("GRANT SELECT ON features TO PUBLIC")
        conn.execute("ALTER TABLE features SET (fillfactor = 90)")
        prepare_staging(conn, "h", "y")
        everything = [*TABLES, ACTIVE_TABLE]
        assert describe(conn, STAGING_SCHEMA, everything) == describe(conn, "public", everything)


def test_a_public_table_changed_after_staging_is_refused_and_public_kept(loaded_a):
    before = fingerprints(loaded_a)
    _copy_public_into_staging(loaded_a)
    with psycopg.connect(loaded_a) as conn:
        conn.execute("COMMENT ON COLUMN features.feature_id IS 'a later migration'")
        conn.commit()
        with pytest.raises(SwapError, match=r"features\.columns"):
            swap_in(conn)
        assert get_active_hash(conn) != "h2"
    assert fingerprints(loaded_a) == before


@pytest.mark.parametrize(
    "ddl, named",
    [
        ("CREATE VIEW hcp_view AS SELECT hcp_id FROM hcp_profiles", "view or rule"),
        ("ALTER TABLE features ADD COLUMN n integer GENERATED ALWAYS AS IDENTITY", "sequence"),
        ("ALTER TABLE features ADD COLUMN m serial", "sequence"),
        (
            "CREATE TABLE mine (h text REFERENCES hcp_profiles (hcp_id))",
            "foreign key mine_h_fkey of public.mine",
        ),
        ("GRANT SELECT (hcp_id) ON hcp_profiles TO PUBLIC", "column privileges"),
    ],
)
def test_what_a_clone_cannot_reproduce_is_refused_by_name(db_url, ddl, named):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(ddl)
        with pytest.raises(CloneError, match=named):
            prepare_staging(conn, "h", "y")
        assert conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (STAGING_SCHEMA,)
        ).fetchone() == (0,)


def test_a_swap_waits_for_a_snapshot_older_than_the_staged_load(loaded_a):
    """A REPEATABLE READ transaction whose snapshot predates the load would read the renamed
    tables as of that snapshot (partly): the swap waits for it, and gives up after `wait`."""
    with psycopg.connect(loaded_a) as old:
        old.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        old.execute("SELECT 1")  # the snapshot, before the load
        _copy_public_into_staging(loaded_a)
        with psycopg.connect(loaded_a) as conn:
            with pytest.raises(SwapError, match="older than the staged load"):
                swap_in(conn, wait=0.5)
            old.rollback()
            assert swap_in(conn, wait=5)[0] == "h2"
