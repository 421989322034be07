"""The partitioned tables backfilled on Dagster's celery executor, proven identical to an
in-process run, with a worker killed mid-write.

On one embedded PostgreSQL: `e2i-synth materialize --scale small --live-days 0` in one process
(the reference: per-table digests), then the four partitioned tables are emptied and backfilled
by `python -m e2i_synth.pipeline.distributed backfill` in 120-day chunks through a redis broker
(Debian's redis-server on a loopback port) and two `dagster-celery` worker processes. While one
worker is inside a COPY into feature_values (its transaction open: checked with pg_xact_status after
freezing the worker with SIGSTOP), it is SIGKILLed with its pool process (a lost machine): the
transaction must end aborted and the table's committed rows must not change, the broker must
hand the step to the other worker (late acknowledgement, visibility timeout), the backfill
must succeed, and
every table must come out with the reference digests: the same seeds and windows whatever the
executor.

Needs redis-server (`apt-get install -y redis-server`; .ci/run installs it) and the
`distributed` extra (`make soak` installs it), else skipped. Only with E2I_SOAK=1.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from e2i_synth_tests.celery_cluster import (
    PARTITIONED,
    redis_available,
    redis_server,
    workers,
)
from e2i_synth_tests.pipeline import fingerprints

pytestmark = pytest.mark.soak

ROOT = Path(__file__).resolve().parents[2]
VISIBILITY_TIMEOUT = 45  # seconds: above any step at scale small, so no step runs twice
TIMEOUT = 900
VICTIM = "feature_values"  # the table whose loading worker is killed


@pytest.fixture
def dagster_db_url(server_url: str) -> str:
    name = f"t_dagster_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    from e2i_synth.db.connection import with_database

    return with_database(server_url, name)


def _python(args: list[str], env: dict[str, str], cwd: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


# The fault's timing, made certain: the STALL_AT-th row COPY writes into the victim table (in
# its first chunk) waits in a row trigger, so the worker is inside an open transaction that has
# written rows when the test finds it; a sequence (not transactional) makes it happen once, so
# the retry on the other worker does not wait. The server checks the client's socket while it
# waits, so the killed worker's transaction ends as soon as its socket closes. The trigger
# changes no row: the digests compare data only. ENABLE ALWAYS: loads run with the row triggers
# off (session_replication_role = replica, for set-based foreign-key checks: db/copy.py).
STALL_AT = 2_000
STALL_ONCE = sql.SQL(
    """CREATE SEQUENCE e2i_test_rows;
    CREATE FUNCTION e2i_test_stall() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF nextval('e2i_test_rows') = {at} THEN
            PERFORM set_config('client_connection_check_interval', '200', true);
            PERFORM pg_sleep(120);
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER e2i_test_stall BEFORE INSERT ON {victim}
        FOR EACH ROW EXECUTE FUNCTION e2i_test_stall();
    ALTER TABLE {victim} ENABLE ALWAYS TRIGGER e2i_test_stall"""
).format(at=sql.Literal(STALL_AT), victim=sql.Identifier(VICTIM))


def _write_in_flight(url: str) -> tuple[str, str] | None:
    """(worker name, transaction id) of a COPY into the victim table that a celery worker is
    running now, once it has written rows (STALL_ONCE holds it there)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT application_name, backend_xid::text FROM pg_stat_activity "
            "WHERE state = 'active' AND application_name LIKE 'e2i-w%%' "
            "AND query ILIKE %s AND backend_xid IS NOT NULL LIMIT 1",
            (f'COPY "{VICTIM}"%',),
        ).fetchone()
    return None if row is None else (row[0].removeprefix("e2i-"), row[1])


def _status(url: str, xid: str) -> str:
    # A fresh server: transaction ids are still in epoch 0, so the 32-bit xid is the xid8.
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT pg_xact_status(%s::xid8)", (xid,)).fetchone()[0]


def _sessions(url: str, worker: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (f"e2i-{worker}",)
        ).fetchone()[0]


def _count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


def test_celery_backfill_matches_in_process_and_survives_a_killed_worker(
    empty_db_url, dagster_db_url, tmp_path
):
    pytest.importorskip(
        "dagster_celery", reason="the distributed extra: pip install -e .[distributed]"
    )
    if not redis_available():
        pytest.skip("no redis-server: apt-get install -y redis-server")
    started = time.monotonic()
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "E2I_DATABASE_URL": empty_db_url,
        "E2I_DAGSTER_DATABASE_URL": dagster_db_url,
        "DAGSTER_HOME": str(home),
    }
    for name in ("E2I_SCENARIO", "E2I_SCALE"):
        env.pop(name, None)

    # The reference: every table in one process.
    t0 = time.monotonic()
    ref = _python(
        ["-m", "e2i_synth.cli", "materialize", "--scale", "small", "--live-days", "0"], env, home
    )
    out = ref.communicate(timeout=TIMEOUT)[0]
    in_process_seconds = time.monotonic() - t0
    assert ref.returncode == 0, out
    reference = fingerprints(empty_db_url)
    assert all(rows > 0 for rows, _ in reference.values()), reference

    with psycopg.connect(empty_db_url) as conn:
        conn.execute(f"TRUNCATE {', '.join(PARTITIONED)}")
        conn.execute(STALL_ONCE)
    assert all(_count(empty_db_url, t) == 0 for t in PARTITIONED)

    with redis_server(tmp_path) as broker:
        config_yaml = home / "celery.yaml"
        cfg = subprocess.run(
            [sys.executable, "-m", "e2i_synth.pipeline.distributed", "config", "--broker", broker]
            + ["--visibility-timeout", str(VISIBILITY_TIMEOUT)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        config_yaml.write_text(cfg.stdout)
        import yaml

        config = yaml.safe_load(cfg.stdout)["execution"]["config"]
        with workers(["w1", "w2"], config_yaml, config, env, home) as pool:
            t0 = time.monotonic()
            # One chunk run at a time: the killed table then has no other writer, so its
            # committed row count before and after the kill must be equal.
            backfill = _python(
                ["-m", "e2i_synth.pipeline.distributed", "backfill", "-y", str(config_yaml)]
                + ["--live-days", "0", "--chunk-days", "120", "--concurrent-runs", "1"],
                env,
                home,
            )
            # Freeze a worker inside a COPY into the victim table (SIGSTOP: its transaction can
            # neither commit nor go on), make sure the transaction is still open, then SIGKILL.
            victim = None
            while victim is None and backfill.poll() is None:
                found = _write_in_flight(empty_db_url)
                if found:
                    pool[found[0]].signal(signal.SIGSTOP)
                    time.sleep(0.5)  # the server finishes whatever the client had already sent
                    if _status(empty_db_url, found[1]) == "in progress":
                        victim = found
                    else:  # committed between the two queries: let it go, wait for the next
                        pool[found[0]].signal(signal.SIGCONT)
                time.sleep(0.05)
            assert victim is not None, "no COPY by a worker was seen: " + backfill.stdout.read()
            worker, xid = victim
            committed = _count(empty_db_url, VICTIM)
            pool[worker].kill()
            killed_at = time.monotonic() - t0
            # The server rolls the dead client's transaction back once it sees the socket close.
            deadline = time.monotonic() + 60
            while _sessions(empty_db_url, worker) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _status(empty_db_url, xid) == "aborted"
            assert _count(empty_db_url, VICTIM) == committed, "rows of a killed COPY"
            out = backfill.communicate(timeout=TIMEOUT)[0]
            celery_seconds = time.monotonic() - t0
            survivor = next(w for w in pool if w != worker)
            survivor_log = pool[survivor].log.read_text()
    print(
        f"\nin-process materialize --scale small: {in_process_seconds:.1f}s; celery backfill of "
        f"{', '.join(PARTITIONED)} on 2 workers: {celery_seconds:.1f}s, worker {worker} "
        f"SIGKILLed at {killed_at:.1f}s inside COPY into {VICTIM} (transaction {xid} "
        f"aborted, {committed} rows committed before and after); "
        f"whole test {time.monotonic() - started:.1f}s\n{out}"
    )
    assert backfill.returncode == 0, out + survivor_log
    assert "backfill succeeded" in out, out
    after = fingerprints(empty_db_url)
    differ = {t: (reference[t], after[t]) for t in after if after[t] != reference[t]}
    assert not differ, differ
