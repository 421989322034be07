"""Crash safety at scale: a loader killed at any point of a large load leaves the previous version.

A subprocess replaces patient_journeys (1,000,000 rows) with e2i_synth.db.copy.replace_rows and
is SIGKILLed at several points while its COPY is in progress (seen in pg_stat_progress_copy),
and twice after the COPY, in the deferred constraint checks before commit (held there by a test
trigger, so the kill cannot come too late). After every kill
the table holds exactly the previous version (same count and content hash), the next load is
not blocked, and a final unkilled run gives the new version. A second test crashes the server
itself (immediate shutdown, no checkpoint) in the middle of the COPY and restarts it.

Slow (minutes): runs only with E2I_SOAK=1, e.g. `make soak`; `-s` prints the measured figures.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import psycopg
import pytest

from e2i_synth.core.scenario import load_scenario
from e2i_synth.db.connection import connect
from e2i_synth.db.copy import read_table, replace_rows
from e2i_synth.db.migrate import migrate
from e2i_synth.tables import TABLES
from e2i_synth.tables.entities.hcp_profiles import generate_hcp_profiles
from e2i_synth.tables.entities.patient_journeys import generate_patient_journeys
from e2i_synth_tests.servers import dedicated_pgdata, start_server

pytestmark = pytest.mark.soak

HCPS = TABLES["hcp_profiles"]
PATIENTS = TABLES["patient_journeys"]
SCALE = 400  # 200,000 HCPs and 1,000,000 patient journeys
PREVIOUS_ROWS = 250_000  # the previous version: a known smaller load
KILL_AFTER_COPY_START = (0.2, 0.5, 1.0, 2.0)  # seconds
LOADER_APP = "e2i-soak-loader"  # application_name of the loader's session
WAIT_LIMIT = 180.0  # seconds: nothing here may take longer (a hang fails, it does not block)

# The loader: read the new version, replace patient_journeys with it, commit. argv: url,
# parquet file, and optionally a session setting to apply first ("name=value").
LOADER = """
import sys
import polars as pl
from e2i_synth.db.connection import connect
from e2i_synth.db.copy import replace_rows
from e2i_synth.tables import TABLES

frame = pl.read_parquet(sys.argv[2])
with connect(sys.argv[1], application_name=sys.argv[3]) as conn:
    if len(sys.argv) > 4:
        name, value = sys.argv[4].split("=", 1)
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        conn.commit()
    replace_rows(conn, TABLES["patient_journeys"], [frame])
print("committed", flush=True)
"""

STATE = """SELECT count(*), md5(coalesce(string_agg(md5(t::text), '' ORDER BY patient_id), ''))
           FROM patient_journeys t"""
COPY_PROGRESS = """SELECT p.tuples_processed FROM pg_stat_progress_copy p
                   JOIN pg_stat_activity a USING (pid) WHERE a.application_name = %s"""
# After the COPY, before commit, made certain: a deferred constraint trigger (ALWAYS, so it is
# queued even while the load has the row triggers off) holds the first row it checks for
# STALL_SECONDS, so the loader is at SET CONSTRAINTS ALL IMMEDIATE, every row in and nothing
# committed, when the test finds it. Polling the set-based check alone raced: on a fast machine
# it ended and committed between the poll and the kill. The trigger changes no row.
STALL_SECONDS = 20
STALL_IN_DEFERRED_CHECK = f"""
    CREATE SEQUENCE e2i_soak_rows;
    CREATE FUNCTION e2i_soak_stall() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF nextval('e2i_soak_rows') = 1 THEN PERFORM pg_sleep({STALL_SECONDS}); END IF;
        RETURN NULL;
    END $$;
    CREATE CONSTRAINT TRIGGER e2i_soak_stall AFTER INSERT ON patient_journeys
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION e2i_soak_stall();
    ALTER TABLE patient_journeys ENABLE ALWAYS TRIGGER e2i_soak_stall"""
DROP_STALL = """DROP TRIGGER e2i_soak_stall ON patient_journeys;
                DROP FUNCTION e2i_soak_stall(); DROP SEQUENCE e2i_soak_rows"""
IN_DEFERRED_CHECK = """SELECT count(*) FROM pg_stat_activity WHERE application_name = %s
                       AND state = 'active' AND wait_event = 'PgSleep'
                       AND query LIKE 'SET CONSTRAINTS%%'"""
LOADER_SESSIONS = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
TABLE_LOCKS = """SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                 WHERE c.relname IN ('patient_journeys', 'hcp_profiles')"""


@dataclass
class Versions:
    hcps: pl.DataFrame
    previous: pl.DataFrame
    new: pl.DataFrame
    new_file: Path


@dataclass
class Kill:
    point: str
    rows_copied: int | None  # tuples_processed of the COPY when killed (None: after the COPY)
    lock_wait: float  # seconds until the next load could take the table lock
    session_gone: float  # seconds until the killed loader's server session had ended


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> Versions:
    scenario = load_scenario(scale=SCALE)
    hcps = generate_hcp_profiles(scenario)
    new = generate_patient_journeys(scenario, hcps)
    new_file = tmp_path_factory.mktemp("soak") / "patient_journeys.parquet"
    new.write_parquet(new_file)
    return Versions(hcps, new.head(PREVIOUS_ROWS), new, new_file)


def _state(url: str) -> tuple[int, str]:
    with psycopg.connect(url) as conn:
        return conn.execute(STATE).fetchone()


def _load_previous(url: str, versions: Versions) -> tuple[int, str]:
    with connect(url, autocommit=True) as conn:
        # A load left blocked fails instead of hanging.
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{WAIT_LIMIT:.0f}s",))
        replace_rows(conn, PATIENTS, [versions.previous])
    return _state(url)


def _start_loader(url: str, versions: Versions, setting: str | None = None) -> subprocess.Popen:
    argv = [sys.executable, "-c", LOADER, url, str(versions.new_file), LOADER_APP]
    return subprocess.Popen(
        [*argv, *([setting] if setting else [])], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _poll(conn: psycopg.Connection, query: str, done, loader: subprocess.Popen | None = None):
    """Run `query` until done(row) (every 5 ms); fail if the loader exits or time runs out."""
    deadline = time.monotonic() + WAIT_LIMIT
    while time.monotonic() < deadline:
        row = conn.execute(query, (LOADER_APP,)).fetchone()
        if done(row):
            return row
        if loader is not None and loader.poll() is not None:
            pytest.fail(f"the loader exited ({loader.returncode}) before the point to kill it")
        time.sleep(0.005)
    pytest.fail(f"timed out after {WAIT_LIMIT:.0f}s waiting for: {query}")


def _kill_and_check(url: str, loader: subprocess.Popen, point: str, before: tuple[int, str]):
    """SIGKILL the loader, then: the previous version intact, no lock left behind."""
    with psycopg.connect(url, autocommit=True) as mon:
        progress = mon.execute(COPY_PROGRESS, (LOADER_APP,)).fetchone()
        loader.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        assert loader.wait(timeout=30) == -signal.SIGKILL
        # Readers are never blocked and see the previous row count at once.
        assert mon.execute("SELECT count(*) FROM patient_journeys").fetchone()[0] == before[0]
        # The next load can take the table lock (the one replace_rows takes), i.e. the killed
        # load left no lock behind once its session ended; a lock never released fails here.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{WAIT_LIMIT:.0f}s",))
            with conn.transaction():
                conn.execute("LOCK TABLE patient_journeys IN SHARE ROW EXCLUSIVE MODE")
        lock_wait = time.monotonic() - killed
        _poll(mon, LOADER_SESSIONS, lambda row: row[0] == 0)
        session_gone = time.monotonic() - killed
        assert mon.execute(TABLE_LOCKS).fetchone()[0] == 0, "a lock outlived the killed loader"
    # Exactly the previous version: same rows, same content, nothing of the killed load.
    assert _state(url) == before, f"killed {point}: the table is not the previous version"
    return Kill(point, None if progress is None else progress[0], lock_wait, session_gone)


def _report(title: str, kills: list[Kill], total: int) -> None:
    print(f"\n{title}")
    for k in kills:
        rows = "after COPY" if k.rows_copied is None else f"{k.rows_copied:>9,} of {total:,}"
        print(
            f"  killed {k.point:<40} rows copied {rows:<22} lock free after "
            f"{k.lock_wait:6.2f}s, session gone after {k.session_gone:6.2f}s"
        )


def test_sigkilled_loader_leaves_exactly_the_previous_version(db_url, versions):
    started = time.monotonic()
    with connect(db_url) as conn:
        replace_rows(conn, HCPS, [versions.hcps])
    previous = _load_previous(db_url, versions)
    assert previous[0] == PREVIOUS_ROWS
    with connect(db_url) as conn:
        assert read_table(conn, PATIENTS).equals(
            PATIENTS.validate(versions.previous).sort("patient_id")
        )
    kills: list[Kill] = []
    with psycopg.connect(db_url, autocommit=True) as mon:
        for seconds in KILL_AFTER_COPY_START:
            loader = _start_loader(db_url, versions)
            _poll(mon, COPY_PROGRESS, lambda row: row is not None, loader)
            copy_started = time.monotonic()
            time.sleep(max(0.0, copy_started + seconds - time.monotonic()))
            assert mon.execute(COPY_PROGRESS, (LOADER_APP,)).fetchone() is not None, (
                f"the COPY had finished before {seconds}s: raise SCALE"
            )
            kill = _kill_and_check(db_url, loader, f"{seconds}s into the COPY", previous)
            assert kill.rows_copied is not None and kill.rows_copied < len(versions.new)
            kills.append(kill)
            assert _load_previous(db_url, versions) == previous  # the next load succeeds

        # After the COPY, before commit: every row is in, the deferred checks are running.
        mon.execute(STALL_IN_DEFERRED_CHECK)
        for setting in (None, "client_connection_check_interval=1000"):
            mon.execute("ALTER SEQUENCE e2i_soak_rows RESTART")
            loader = _start_loader(db_url, versions, setting)
            _poll(mon, IN_DEFERRED_CHECK, lambda row: row[0] == 1, loader)
            point = "in the deferred check" + (" (check_interval 1s)" if setting else "")
            kill = _kill_and_check(db_url, loader, point, previous)
            assert kill.rows_copied is None
            kills.append(kill)
        mon.execute(DROP_STALL)

    # Unkilled, the next run commits the complete new version.
    loader = _start_loader(db_url, versions)
    out, err = loader.communicate(timeout=WAIT_LIMIT * 2)
    assert loader.returncode == 0 and b"committed" in out, err.decode()
    assert _state(db_url)[0] == len(versions.new)
    with connect(db_url) as conn:
        assert read_table(conn, PATIENTS).equals(PATIENTS.validate(versions.new).sort("patient_id"))
    _report(
        f"SIGKILL during a load of {len(versions.new):,} rows over {PREVIOUS_ROWS:,} "
        f"(soak runtime {time.monotonic() - started:.0f}s)",
        kills,
        len(versions.new),
    )
    # Our sessions set client_connection_check_interval (db/connection.py), so the server
    # notices the dead client within about a second and releases the table, long before the
    # stalled check would have ended.
    assert all(k.lock_wait < STALL_SECONDS / 2 for k in kills if k.rows_copied is None)


# --- the server crashes (immediate shutdown: no checkpoint, WAL recovery on restart) ---


def _crash_server(pgdata: Path) -> None:
    """pg_ctl stop -m immediate: the server exits at once, as on a power cut."""
    import pgserver

    pg_ctl = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_ctl"
    cmd = [str(pg_ctl), "-D", str(pgdata), "-m", "immediate", "-w", "stop"]
    if os.geteuid() == 0:  # the server runs as `pgserver` when we are root
        cmd = ["su", "pgserver", "-s", "/bin/sh", "-c", " ".join(cmd)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


@pytest.fixture
def own_server() -> Iterator[Path]:
    with dedicated_pgdata("e2i-soak-pg-") as pgdata:
        yield pgdata


def test_server_crash_during_copy_recovers_the_previous_version(own_server, versions):
    url = start_server(own_server)
    migrate(url)
    with connect(url) as conn:
        replace_rows(conn, HCPS, [versions.hcps])
    previous = _load_previous(url, versions)
    loader = _start_loader(url, versions)
    with psycopg.connect(url, autocommit=True) as mon:
        _poll(mon, COPY_PROGRESS, lambda row: row is not None, loader)
        time.sleep(1.0)
        rows = mon.execute(COPY_PROGRESS, (LOADER_APP,)).fetchone()[0]
        crashed = time.monotonic()
        _crash_server(own_server)
    _, err = loader.communicate(timeout=60)
    # The loader failed with a clear error: its server went away, nothing was committed.
    assert loader.returncode != 0
    assert b"LoadError: loading patient_journeys failed and was rolled back" in err
    assert start_server(own_server) == url
    recovered = time.monotonic() - crashed
    assert _state(url) == previous
    assert _load_previous(url, versions) == previous  # and loads work again
    print(
        f"\nserver crash {rows:,} rows into the COPY: previous version after restart and "
        f"recovery ({recovered:.1f}s)"
    )
