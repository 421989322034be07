"""Database outage: a stopped or unresponsive server gives a clear error quickly, a load cut
off mid-COPY leaves the previous rows, and a job with a retry policy rides the outage out."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import psycopg
import pytest

from e2i_synth.cli import main
from e2i_synth.core.scenario import (
    load_scenario,
)
from e2i_synth.db import embedded
from e2i_synth.db.connection import DatabaseUnavailable, connect, mask_url
from e2i_synth.db.copy import LoadError, count_rows, read_table, replace_rows
from e2i_synth.db.io_manager import PostgresIOManager
from e2i_synth.db.migrate import migrate
from e2i_synth.db.resource import Database
from e2i_synth.pipeline.resources import ScenarioResource
from e2i_synth.tables import TABLES
from e2i_synth.tables.entities.hcp_profiles import generate_hcp_profiles
from e2i_synth_tests.bounded import ERROR_WITHIN, HANG_LIMIT, bounded
from e2i_synth_tests.conftest import _url_for
from e2i_synth_tests.servers import dedicated_pgdata, start_server, with_password

pytestmark = pytest.mark.soak  # servers stopped and restarted, timeouts: `make soak`

HCPS = TABLES["hcp_profiles"]


OUTAGE_PASSWORD = "S3cr3t-outage-7f3a"  # trust auth ignores it; it must never be shown


@pytest.fixture(scope="module")
def own_pgdata() -> Iterator[Path]:
    """pgdata of a server of our own, which the outage tests stop and start."""
    with dedicated_pgdata("e2i-outage-pg-") as pgdata:
        yield pgdata


@pytest.fixture
def own_db(own_pgdata) -> str:
    """A new, migrated database on the dedicated (running) server; its URL carries a password."""
    server = start_server(own_pgdata)
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    url = with_password(_url_for(server, name), OUTAGE_PASSWORD)
    migrate(url)
    return url


def test_stopped_database_gives_a_clear_error_quickly(own_db, own_pgdata, monkeypatch, capsys):
    monkeypatch.setenv("E2I_DATABASE_URL", own_db)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert embedded.stop_embedded(own_pgdata)
    outcome, seconds = bounded(lambda: connect(own_db))
    assert isinstance(outcome, DatabaseUnavailable), outcome
    assert f"cannot connect to {mask_url(own_db)}" in str(outcome)
    assert OUTAGE_PASSWORD not in str(outcome)
    assert seconds < ERROR_WITHIN
    capsys.readouterr()
    for argv in (["db", "status"], ["db", "migrate"], ["materialize", "--scale", "small"]):
        code, seconds = bounded(lambda argv=argv: main(argv))
        out, err = capsys.readouterr()
        assert code == 2, (argv, out, err)
        assert f"error: cannot connect to {mask_url(own_db)}" in err
        assert OUTAGE_PASSWORD not in out + err
        assert seconds < ERROR_WITHIN, (argv, seconds)


def test_unresponsive_database_times_out_instead_of_hanging():
    """A server that accepts the TCP connection and never answers: connect_timeout (10s)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        url = f"postgresql://agent:{OUTAGE_PASSWORD}@127.0.0.1:{port}/e2i"
        outcome, seconds = bounded(lambda: connect(url))
    assert isinstance(outcome, DatabaseUnavailable), outcome
    assert "timeout" in str(outcome) and mask_url(url) in str(outcome)
    assert OUTAGE_PASSWORD not in str(outcome)
    assert 5 < seconds < ERROR_WITHIN, seconds


def test_outage_during_a_load_leaves_the_previous_rows_and_a_retry_succeeds(own_db, own_pgdata):
    previous = generate_hcp_profiles(load_scenario(scale="small"))
    new = generate_hcp_profiles(load_scenario(scale=2))  # 1,000 HCPs
    with connect(own_db) as conn:
        replace_rows(conn, HCPS, [previous])

    def chunks() -> Iterator[pl.DataFrame]:
        yield new.head(200)
        embedded.stop_embedded(own_pgdata)  # the server goes away in the middle of the COPY
        yield new.slice(200)

    def load() -> int:
        with connect(own_db) as conn:
            return replace_rows(conn, HCPS, chunks())

    outcome, seconds = bounded(load)
    assert isinstance(outcome, LoadError), outcome
    assert "hcp_profiles" in str(outcome) and "rolled back" in str(outcome)
    assert OUTAGE_PASSWORD not in str(outcome)
    assert seconds < ERROR_WITHIN
    # Back up: exactly the previous version, nothing of the interrupted load.
    assert start_server(own_pgdata)
    with connect(own_db) as conn:
        assert read_table(conn, HCPS).equals(HCPS.validate(previous).sort("hcp_id"))
        # The retry loads the new version once; a second retry does not double it.
        for _ in range(2):
            assert replace_rows(conn, HCPS, [new]) == new.height
            assert count_rows(conn, "hcp_profiles") == new.height
        assert read_table(conn, HCPS).equals(HCPS.validate(new).sort("hcp_id"))


def test_a_job_with_a_retry_policy_rides_out_an_outage(own_db, own_pgdata, scenario, frames):
    """The assets as they are, in a job with op_retry_policy: a step that cannot reach the
    database is retried until the server is back, and the run loads everything once."""
    from e2i_synth.definitions import ASSETS

    database = Database(url=own_db, migrate_on_setup=False)  # setup must not need the server
    resources = {
        "database": database,
        "io_manager": PostgresIOManager(database=database),
        "scenario": ScenarioResource(database=database, yaml_text=scenario.to_yaml()),
    }
    job = dg.define_asset_job(
        "ride_out_outage",
        selection=dg.AssetSelection.assets("hcp_profiles", "patient_journeys"),
        op_retry_policy=dg.RetryPolicy(max_retries=30, delay=0.5),
    )
    defs = dg.Definitions(assets=ASSETS, jobs=[job], resources=resources)
    instance = dg.DagsterInstance.ephemeral()
    embedded.stop_embedded(own_pgdata)
    finished = threading.Event()

    def restart_after_first_retry() -> None:
        # The server comes back only once a step has failed for want of it and asked for a
        # retry, however slow the machine is.
        while not finished.is_set():
            events = [e for r in instance.get_runs() for e in instance.all_logs(r.run_id)]
            if any(e.dagster_event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY for e in events):
                start_server(own_pgdata)
                return
            time.sleep(0.05)

    restarter = threading.Thread(target=restart_after_first_retry, daemon=True)
    restarter.start()
    try:
        result = defs.resolve_job_def("ride_out_outage").execute_in_process(
            instance=instance, raise_on_error=False
        )
    finally:
        finished.set()
        restarter.join(HANG_LIMIT)
    retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retried and retried[0].step_key == "hcp_profiles"
    assert result.success
    with connect(own_db) as conn:
        assert count_rows(conn, "hcp_profiles") == frames["hcp_profiles"].height
        assert count_rows(conn, "patient_journeys") == frames["patient_journeys"].height


def test_embedded_server_restarts_in_the_same_process(own_pgdata):
    url = embedded.start_embedded(own_pgdata)
    embedded.stop_embedded(own_pgdata)
    url = embedded.start_embedded(own_pgdata)
    connect(url).close()
