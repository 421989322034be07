"""The whole pipeline on a real PostgreSQL server (Debian's), as a production setup would have it.

A server is created in a temporary folder with initdb and started with pg_ctl on a free loopback
port (as the `postgres` user when the tests run as root: PostgreSQL refuses to run as root). Its
superuser is reachable only on the server's own unix socket; over TCP every login needs a
password (scram-sha-256). A DBA's setup follows: a non-superuser role `e2i_owner` with a password
owns the data database and Dagster's own (`e2i_dagster`, as dagster.yaml names it), and may not
create databases or roles (so the DBA also creates the agent's and the scorer's roles, which
the migrations would otherwise create). Then, with E2I_DATABASE_URL pointing at it and
DAGSTER_HOME holding the project's dagster.yaml, `e2i-synth db migrate` and `e2i-synth
materialize --scale small` run as a user would, and every check must pass.

Needs initdb and pg_ctl (Debian: `apt-get install -y postgresql`; .ci/run installs it), else
skipped with that reason. Slow (a full small run): only with E2I_SOAK=1 (`make soak`, .ci/run).
"""

from __future__ import annotations

import getpass
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from e2i_synth.tables import TABLES

pytestmark = pytest.mark.soak

ROOT = Path(__file__).resolve().parents[2]
OWNER, PASSWORD = "e2i_owner", "s3cret-e2i-pass"  # a test server on loopback, deleted after
READER_ROLES = ("e2i_reader", "e2i_scorer")  # created by the DBA
TIMEOUT = 1800  # seconds for the materialize run (about 1 to 3 minutes on 2 shared cores)


def _pg_bin() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, else Debian's newest /usr/lib/postgresql/*/bin."""
    found = shutil.which("initdb"), shutil.which("pg_ctl")
    if all(found):
        return Path(os.path.realpath(found[0])).parent
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4])
    )
    return Path(debian[-1]).parent if debian else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(argv: list[str]) -> list[str]:
    """argv run as `postgres` when we are root (the server refuses root), else as we are."""
    if os.geteuid() != 0:
        return argv
    runuser = shutil.which("runuser")
    return (
        [runuser, "-u", "postgres", "--", *argv]
        if runuser
        else ["su", "postgres", "-c", " ".join(argv)]
    )


@pytest.fixture(scope="module")
def real_server() -> Iterator[dict[str, object]]:
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install -y postgresql")
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a `postgres` user to run the server as")
    folder = Path(tempfile.mkdtemp(prefix="e2i-real-pg-"))
    folder.chmod(0o755)
    pgdata, sockets, log = folder / "pgdata", folder / "sockets", folder / "server.log"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(sockets, "postgres")
    port = _free_port()
    started = time.monotonic()
    subprocess.run(
        _as_server_user(
            [
                str(bindir / "initdb"),
                "-D",
                str(pgdata),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-instructions",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=300,
    )
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1"
    subprocess.run(
        _as_server_user(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(pgdata),
                "-l",
                str(log),
                "-o",
                options,
                "-w",
                "-t",
                "120",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=180,
    )
    version = subprocess.run(
        [str(bindir / "pg_ctl"), "--version"], capture_output=True, text=True
    ).stdout.strip()
    try:
        admin = f"postgresql://postgres@/postgres?host={sockets}&port={port}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                f"CREATE ROLE {OWNER} LOGIN PASSWORD '{PASSWORD}' "
                "NOSUPERUSER NOCREATEDB NOCREATEROLE"
            )
            # The owner may not create roles: the DBA creates the agent's and the scorer's
            # (migrations 005 and 007 create them only when missing).
            for role in READER_ROLES:
                conn.execute(f"CREATE ROLE {role} LOGIN")
            for db in ("e2i", "e2i_dagster"):
                conn.execute(f"CREATE DATABASE {db} OWNER {OWNER}")
        yield {
            "url": f"postgresql://{OWNER}:{PASSWORD}@127.0.0.1:{port}/e2i",
            "admin": admin,
            "version": version,
            "setup_seconds": time.monotonic() - started,
        }
    finally:
        subprocess.run(
            _as_server_user(
                [str(bindir / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"]
            ),
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(folder, ignore_errors=True)


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "e2i_synth.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_whole_pipeline_on_a_real_server_as_a_non_superuser_owner(real_server, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "E2I_DATABASE_URL": str(real_server["url"]),
        "DAGSTER_HOME": str(home),
    }
    for name in ("E2I_SCENARIO", "E2I_SCALE", "E2I_DAGSTER_DATABASE_URL"):
        env.pop(name, None)

    migrated = _cli(["db", "migrate"], env, home)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert PASSWORD not in migrated.stdout + migrated.stderr

    started = time.monotonic()
    run = _cli(["materialize", "--scale", "small"], env, home)
    seconds = time.monotonic() - started
    out = run.stdout + run.stderr
    print(
        f"\n{real_server['version']}: server set up in {real_server['setup_seconds']:.1f} s, "
        f"materialize --scale small in {seconds:.1f} s as {getpass.getuser()}"
    )
    assert run.returncode == 0, out
    assert "FAILED" not in out and "error:" not in out, out
    assert PASSWORD not in out

    with psycopg.connect(str(real_server["url"])) as conn:
        me = conn.execute(
            "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert me == (OWNER, False)
        for table in TABLES:
            owner, rows = conn.execute(
                f"SELECT tableowner, (SELECT count(*) FROM {table}) FROM pg_tables "
                "WHERE schemaname = 'public' AND tablename = %s",
                (table,),
            ).fetchone()
            assert owner == OWNER, table
            assert rows > 0, table
    # Dagster's run history went to the owner's e2i_dagster database on the same server.
    with psycopg.connect(str(real_server["admin"]).replace("/postgres?", "/e2i_dagster?")) as conn:
        runs = conn.execute("SELECT count(*) FROM runs WHERE status = 'SUCCESS'").fetchone()[0]
        assert runs >= 1
