"""`e2i-synth --version`, help per `db` action, and `db reset` on both targets: a URL (refused
without --yes; drops only e2i-synth's objects, then migrates) and the embedded server (asks;
deletes .e2i data and starts an empty, migrated one)."""

import io

import psycopg
import pytest

from e2i_synth.cli import main
from e2i_synth.db import embedded
from e2i_synth.db.migrate import discover, migrate
from e2i_synth.db.reset import migration_objects


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("e2i-synth 0.")


def test_db_help_says_what_each_action_does(capsys):
    with pytest.raises(SystemExit):
        main(["db", "--help"])
    out = capsys.readouterr().out
    for action in ("up", "down", "url", "migrate", "status", "reset"):
        assert f"    {action} " in out
    with pytest.raises(SystemExit):
        main(["db", "reset", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--yes" in out and "no CASCADE" in out and "e2i_dagster" in out


def _tables(conn) -> set[str]:
    return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")}


def test_reset_of_a_url_needs_yes_and_drops_only_e2i_objects(monkeypatch, db_url, capsys):
    monkeypatch.setenv("E2I_DATABASE_URL", db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE mine (x int)")
        conn.execute("INSERT INTO mine VALUES (1)")
        conn.execute(
            "INSERT INTO e2i_active_scenario (singleton, scenario_hash, scenario_yaml) "
            "VALUES (true, 'h', 'y')"
        )
    assert main(["db", "reset"]) == 2
    assert "--yes" in capsys.readouterr().err
    with psycopg.connect(db_url) as conn:  # refused: untouched
        assert conn.execute("SELECT count(*) FROM e2i_active_scenario").fetchone()[0] == 1

    assert main(["db", "reset", "--yes"]) == 0
    out = capsys.readouterr().out
    assert f"{len(discover())} migration(s) applied" in out
    tables, functions = migration_objects()
    with psycopg.connect(db_url) as conn:
        assert set(tables) | {"mine"} == _tables(conn)
        assert conn.execute("SELECT count(*) FROM e2i_active_scenario").fetchone()[0] == 0
        assert conn.execute("SELECT x FROM mine").fetchall() == [(1,)]
        # the security migration ran again: the reader may read data, not the answer key
        granted = conn.execute(
            "SELECT has_table_privilege('e2i_reader', 'hcp_profiles', 'SELECT'), "
            "has_table_privilege('e2i_reader', 'ground_truth', 'SELECT')"
        ).fetchone()
        assert granted == (True, False)
    assert {"ground_truth", "e2i_schema_migrations"} <= set(tables)
    assert "e2i_secure_table" in functions

    # An object of the user's that depends on an e2i table: nothing is dropped.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE VIEW my_view AS SELECT hcp_id FROM hcp_profiles")
    assert main(["db", "reset", "--yes"]) == 2
    assert "dropped nothing" in capsys.readouterr().err
    with psycopg.connect(db_url) as conn:
        assert set(tables) | {"mine"} == _tables(conn)


def test_reset_of_the_embedded_server_asks_then_starts_empty(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("E2I_DATABASE_URL", raising=False)
    monkeypatch.setenv("E2I_HOME", str(tmp_path))
    pgdata = embedded.data_dir(tmp_path)
    try:
        url = embedded.start_embedded(pgdata)
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE leftover (x int)")
        (tmp_path / ".e2i" / "dagster").mkdir()

        class Terminal(io.StringIO):
            def isatty(self):
                return True

        monkeypatch.setattr("sys.stdin", Terminal("no\n"))
        assert main(["db", "reset"]) == 2
        assert "nothing done" in capsys.readouterr().err
        assert embedded.is_running(pgdata)

        monkeypatch.setattr("sys.stdin", Terminal("yes\n"))
        assert main(["db", "reset"]) == 0
        assert f"{len(discover())} migration(s) applied" in capsys.readouterr().out
        assert not (tmp_path / ".e2i" / "dagster").exists()
        url = embedded.start_embedded(pgdata)
        with psycopg.connect(url) as conn:
            tables = _tables(conn)
        assert "leftover" not in tables and "ground_truth" in tables
    finally:
        embedded.stop_embedded(pgdata)
