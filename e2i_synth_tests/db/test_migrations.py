"""Migrations: order, ledger, checksum refusal, rollback, concurrency, schema.sql and the models."""

import re
import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from e2i_synth.db.migrate import (
    AMENDED,
    LEDGER,
    MigrationError,
    discover,
    migrate,
    sql_dir,
    status,
)
from e2i_synth.tables import TABLES


def _ledger(url: str) -> list[tuple[int, str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            f"SELECT version, name, checksum FROM {LEDGER} ORDER BY version"
        ).fetchall()


def _copy_migrations(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    shutil.copytree(sql_dir() / "migrations", folder)
    return folder


def test_migrations_apply_in_order_and_are_recorded_once(empty_db_url):
    applied = migrate(empty_db_url)
    files = discover()
    assert [m.version for m in applied] == sorted(m.version for m in files)
    assert _ledger(empty_db_url) == [(m.version, m.name, m.checksum) for m in files]
    assert migrate(empty_db_url) == []  # nothing pending the second time
    assert len(_ledger(empty_db_url)) == len(files)


def test_later_migration_builds_on_earlier_one(empty_db_url, tmp_path):
    folder = _copy_migrations(tmp_path)
    (folder / "900_add_column.sql").write_text("ALTER TABLE hcp_profiles ADD COLUMN extra int;")
    (folder / "901_use_column.sql").write_text("UPDATE hcp_profiles SET extra = 1;")
    migrate(empty_db_url, folder)
    assert [v for v, _, _ in _ledger(empty_db_url)][-2:] == [900, 901]


def test_changed_migration_is_refused_with_its_name(empty_db_url, tmp_path):
    folder = _copy_migrations(tmp_path)
    migrate(empty_db_url, folder)
    first = sorted(folder.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after it was applied\n")
    with pytest.raises(MigrationError, match=first.name):
        migrate(empty_db_url, folder)


def test_failing_migration_rolls_back_and_is_not_recorded(empty_db_url, tmp_path):
    folder = _copy_migrations(tmp_path)
    (folder / "900_broken.sql").write_text(
        "CREATE TABLE half_done (id int); SELECT * FROM no_such_table;"
    )
    with pytest.raises(MigrationError, match="900_broken.sql"):
        migrate(empty_db_url, folder)
    versions = [v for v, _, _ in _ledger(empty_db_url)]
    assert 900 not in versions and versions == sorted(m.version for m in discover())
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT to_regclass('half_done')").fetchone()[0] is None


def test_concurrent_migrate_applies_each_migration_once(empty_db_url):
    errors: list[BaseException] = []
    applied: list[int] = []

    def worker() -> None:
        try:
            applied.extend(m.version for m in migrate(empty_db_url))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(applied) == sorted(m.version for m in discover())  # each exactly once overall
    assert len(_ledger(empty_db_url)) == len(discover())


CATALOG_QUERIES = {
    "columns": """SELECT table_name, column_name, ordinal_position, data_type, is_nullable,
                         column_default
                  FROM information_schema.columns WHERE table_schema = 'public'
                  ORDER BY table_name, ordinal_position""",
    "constraints": """SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
                      FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
                      WHERE n.nspname = 'public' ORDER BY 1, 2""",
    "indexes": """SELECT tablename, indexname, indexdef FROM pg_indexes
                  WHERE schemaname = 'public' ORDER BY 1, 2""",
    "policies": """SELECT tablename, policyname, roles::text, cmd, qual FROM pg_policies
                   WHERE schemaname = 'public' ORDER BY 1, 2""",
    "rls": """SELECT relname, relrowsecurity FROM pg_class c JOIN pg_namespace n
              ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND relkind = 'r' ORDER BY 1""",
    "grants": """SELECT table_name, grantee, privilege_type
                  FROM information_schema.role_table_grants
                  WHERE table_schema = 'public' AND grantee <> current_user ORDER BY 1, 2, 3""",
    "functions": """SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p
                     JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE n.nspname = 'public' ORDER BY 1""",
    "ledger": f"SELECT version, name, checksum FROM {LEDGER} ORDER BY version",
}


def _normalise(value: object) -> object:
    # A dump reloaded re-parses CHECK expressions: `(a OR b) OR c` comes back as `a OR b OR c`.
    # Parentheses and spacing are not meaning here; everything else must match exactly.
    return re.sub(r"[()\s]", "", value) if isinstance(value, str) else value


def _catalog(url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(url) as conn:
        return {
            name: [tuple(map(_normalise, row)) for row in conn.execute(q).fetchall()]
            for name, q in CATALOG_QUERIES.items()
        }


def test_schema_sql_equals_the_migrated_schema(db_url, server_url):
    import uuid

    from e2i_synth_tests.conftest import _url_for

    name = f"t_schema_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        fresh = _url_for(server_url, name)
        with psycopg.connect(fresh, autocommit=True) as conn:
            conn.execute((sql_dir() / "schema.sql").read_text())
        migrated, loaded = _catalog(db_url), _catalog(fresh)
        for part in CATALOG_QUERIES:
            assert loaded[part] == migrated[part], f"schema.sql differs in {part}: run make schema"
        assert migrate(fresh) == []  # a fresh install from schema.sql has nothing pending
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.mark.parametrize("table", sorted(TABLES))
def test_migrated_table_matches_its_pandera_model(db_url, table):
    spec = TABLES[table]
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            """SELECT column_name, data_type, is_nullable FROM information_schema.columns
               WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position""",
            (table,),
        ).fetchall()
        pk = conn.execute(
            """SELECT a.attname FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
               WHERE i.indrelid = %s::regclass AND i.indisprimary
               ORDER BY array_position(i.indkey, a.attnum)""",
            (table,),
        ).fetchall()
    expected = [(c, spec.pg_type(c), "YES" if spec.nullable[c] else "NO") for c in spec.columns]
    assert rows == expected
    assert tuple(r[0] for r in pk) == spec.primary_key


def test_a_database_loaded_before_010_upgrades_and_an_amended_file_counts_as_applied(
    empty_db_url, tmp_path
):
    # A database loaded by the generator before 010: business_metrics rows without counts.
    folder = _copy_migrations(tmp_path)
    later = [p for p in folder.glob("*.sql") if int(p.name[:3]) >= 10]
    for path in later:
        path.unlink()
    migrate(empty_db_url, folder)
    with psycopg.connect(empty_db_url) as conn:
        conn.execute(
            """INSERT INTO business_metrics (metric_id, metric_date, metric_type, metric_name,
               brand, region, value, target, achievement_rate, roi, statistical_significance,
               confidence_interval_lower, confidence_interval_upper, sample_size, data_split)
               VALUES ('BM-Kisqali-west-trx-2025-01', '2025-01-01', 'volume', 'trx', 'Kisqali',
               'west', 90, 100, 0.9, 2.0, 0.5, 80, 100, 50, 'train')"""
        )
    # 010 then applies: the older rows are derived data, removed for the next load to rebuild.
    assert [m.version for m in migrate(empty_db_url)] == [m.version for m in discover()][9:]
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT count(*) FROM business_metrics").fetchone()[0] == 0
        # A database that ran 010's earlier text (on an empty table) reads it as applied.
        conn.execute(
            f"UPDATE {LEDGER} SET checksum = %s WHERE version = 10",
            (next(iter(AMENDED["010_business_metrics_world.sql"])),),
        )
    assert migrate(empty_db_url) == []
    with psycopg.connect(empty_db_url) as conn:
        assert {s.state for s in status(conn)} == {"applied"}
