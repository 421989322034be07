"""Least privilege: RLS on every table, a reader role (the agent under test) that can read the
data but never write it nor read its answer key, a scorer role that reads the answer key, and
no lock the reader can take that makes a load or a migration wait forever."""

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
import pytest

from e2i_synth.cli import main
from e2i_synth.core.scenario import load_scenario
from e2i_synth.db.connection import connect
from e2i_synth.db.copy import replace_rows
from e2i_synth.db.locks import LOCK_TIMEOUT_ENV, LockTimeout
from e2i_synth.db.migrate import (
    ADVISORY_LOCK_KEY,
    DEFAULT_READER_ROLE,
    DEFAULT_SCORER_ROLE,
    READER_ROLE_ENV,
    SCORER_ROLE_ENV,
    migrate,
)
from e2i_synth.db.resource import Database
from e2i_synth.pipeline.runner import MATERIALIZE_LOCK_KEY, materialize
from e2i_synth.tables import TABLES
from e2i_synth_tests.conftest import _url_for

# The answer key and the scenario that planted it: the scorer's, never the agent's.
ANSWER_KEY_TABLES = ("ground_truth", "e2i_active_scenario")


def _as_role(db_url: str, role: str) -> str:
    base, _, query = db_url.partition("?")
    scheme, rest = base.split("://", 1)
    host_and_db = rest.split("@", 1)[1]
    return f"{scheme}://{role}@{host_and_db}" + (f"?{query}" if query else "")


def _as_reader(db_url: str) -> str:
    return _as_role(db_url, DEFAULT_READER_ROLE)


def test_every_table_has_row_level_security_and_a_policy_for_its_role(db_url):
    """Data tables: a SELECT policy for the reader. The answer key: for the scorer only."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            """SELECT c.relname, c.relrowsecurity,
                      array(SELECT r::text FROM pg_policies p, unnest(p.roles) r
                            WHERE p.tablename = c.relname AND p.cmd = 'SELECT' ORDER BY 1)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'public' AND c.relkind = 'r'"""
        ).fetchall()
    assert {name for name, _, _ in rows} >= set(TABLES) | set(ANSWER_KEY_TABLES)
    for name, rls, roles in rows:
        expected = [DEFAULT_SCORER_ROLE] if name in ANSWER_KEY_TABLES else [DEFAULT_READER_ROLE]
        assert (name, rls, roles) == (name, True, expected)


@pytest.mark.parametrize("table", ANSWER_KEY_TABLES)
def test_agent_role_is_refused_the_answer_key_and_the_scorer_reads_it(db_url, table):
    with psycopg.connect(db_url) as conn:  # something to hide
        conn.execute(
            "INSERT INTO e2i_active_scenario (scenario_hash, scenario_yaml) VALUES (%s, %s)",
            ("0" * 64, "true_ate: 0.04"),
        )
    with psycopg.connect(_as_reader(db_url)) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=table):
            conn.execute(f"SELECT * FROM {table}")
    with psycopg.connect(_as_role(db_url, DEFAULT_SCORER_ROLE), autocommit=True) as conn:
        conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert conn.execute("SELECT count(*) FROM e2i_active_scenario").fetchone()[0] == 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the scorer only reads
            conn.execute(f"DELETE FROM {table}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # and only the answer key
            conn.execute("SELECT count(*) FROM hcp_profiles")


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
            if table not in ANSWER_KEY_TABLES:
                conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                with conn.transaction():
                    conn.execute(statement.format(t=table, c=spec.columns[0]))


# --- The agent role holding the loader's locks: a bounded wait naming it ---------------------


def _finishes(call: Callable[[], object], within: float = 60) -> BaseException | None:
    """Run `call` in a thread; fail if it is still waiting after `within` seconds (it would
    wait forever before issue 12). Returns what it raised."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(within)
    assert not thread.is_alive(), f"still waiting for the lock after {within} s"
    return raised[0] if raised else None


@pytest.fixture
def reader_holding(db_url, monkeypatch):
    """A function that makes the agent role take an advisory lock and returns its pid."""
    monkeypatch.setenv(LOCK_TIMEOUT_ENV, "1")
    held: list[psycopg.Connection] = []

    def take(key_sql: str, *params: object) -> int:
        conn = psycopg.connect(_as_reader(db_url), autocommit=True)
        held.append(conn)
        conn.execute(f"SELECT pg_advisory_lock({key_sql})", params)
        return conn.info.backend_pid

    yield take
    for conn in held:
        conn.close()


def test_db_migrate_does_not_wait_forever_for_the_agent_role(db_url, reader_holding):
    pid = reader_holding("%s", ADVISORY_LOCK_KEY)
    started = time.monotonic()
    exc = _finishes(lambda: migrate(db_url))
    assert isinstance(exc, LockTimeout), exc
    assert time.monotonic() - started < 20
    assert f"pid {pid}" in str(exc) and f"role {DEFAULT_READER_ROLE}" in str(exc)
    assert "db migrate" in str(exc) and LOCK_TIMEOUT_ENV in str(exc)


def test_db_migrate_cli_exits_2_naming_the_holder(db_url, reader_holding, monkeypatch, capsys):
    pid = reader_holding("%s", ADVISORY_LOCK_KEY)
    monkeypatch.setenv("E2I_DATABASE_URL", db_url)
    assert main(["db", "migrate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: db migrate") and f"pid {pid}" in err and "Traceback" not in err


def test_materialize_does_not_wait_forever_for_the_agent_role(db_url, reader_holding):
    pid = reader_holding("%s", MATERIALIZE_LOCK_KEY)
    scenario = load_scenario(scale=0.05)
    exc = _finishes(lambda: materialize(scenario, Database(url=db_url), isolate=False))
    assert isinstance(exc, LockTimeout), exc
    assert f"pid {pid}" in str(exc) and f"role {DEFAULT_READER_ROLE}" in str(exc)


def test_the_agent_role_cannot_hold_a_window_loads_lock(db_url, reader_holding):
    """A load locks its table (SHARE ROW EXCLUSIVE), which a role that may only read cannot
    take; holding the old per-window advisory key, or reading, no longer delays the load."""
    window = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    key = f"feature_values:{window[0].isoformat()}:{window[1].isoformat()}"
    reader_holding("hashtextextended(%s, 0)", key)
    with psycopg.connect(_as_reader(db_url)) as reader:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("LOCK TABLE feature_values IN SHARE ROW EXCLUSIVE MODE")
        reader.rollback()
        reader.execute("SELECT count(*) FROM feature_values")  # a read in an open transaction
        spec = TABLES["feature_values"]

        def load() -> None:
            with connect(db_url) as conn:  # the loader's connection (Database.connect)
                replace_rows(conn, spec, [], window)

        assert _finishes(load, within=20) is None


# --- Two first-time migrations of two databases on one server --------------------------------


def test_first_migrations_of_two_databases_on_one_server_do_not_race(server_url, monkeypatch):
    """The roles are per server, the migration lock per database: both migrations find the
    roles missing and create them. Fresh role names each round, so each round is a first."""
    for _ in range(6):  # main failed 2 rounds in 5
        suffix = uuid.uuid4().hex[:8]
        roles = (f"t_reader_{suffix}", f"t_scorer_{suffix}")
        monkeypatch.setenv(READER_ROLE_ENV, roles[0])
        monkeypatch.setenv(SCORER_ROLE_ENV, roles[1])
        names = [f"t_race_{suffix}_{i}" for i in range(2)]
        with psycopg.connect(server_url, autocommit=True) as conn:
            for name in names:
                conn.execute(f'CREATE DATABASE "{name}"')
        errors: list[BaseException] = []
        barrier = threading.Barrier(2)

        def first_migration(
            url: str, barrier: threading.Barrier = barrier, errors: list = errors
        ) -> None:
            barrier.wait()
            try:
                migrate(url)
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        threads = [
            threading.Thread(target=first_migration, args=(_url_for(server_url, n),)) for n in names
        ]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            assert errors == []
            for name in names:
                with psycopg.connect(_as_role(_url_for(server_url, name), roles[0])) as conn:
                    conn.execute("SELECT count(*) FROM hcp_profiles").fetchone()
        finally:
            with psycopg.connect(server_url, autocommit=True) as conn:
                for name in names:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                for role in roles:
                    conn.execute(f'DROP ROLE IF EXISTS "{role}"')
