"""The embedded PostgreSQL (pgserver) used when no E2I_DATABASE_URL is given.

Its data lives under <home>/.e2i/pgdata and the server keeps running between processes, so the
CLI, `dagster` commands and the UI all share it. `e2i-synth db down` stops it.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from functools import cache
from pathlib import Path


def project_home() -> Path:
    """Folder that holds .e2i/: $E2I_HOME, else the current folder."""
    return Path(os.environ.get("E2I_HOME") or Path.cwd()).resolve()


def data_dir(home: Path | None = None) -> Path:
    return (home or project_home()) / ".e2i" / "pgdata"


def _import_pgserver():
    """pgserver, imported only where the embedded server is used."""
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pgserver
    return pgserver


@cache
def start_embedded(pgdata: Path) -> str:
    """Start (or reuse) the embedded server for `pgdata` and return its URL."""
    pgserver = _import_pgserver()

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # As root, pgserver runs postgres as a `pgserver` user, which must traverse the folders.
    if os.geteuid() == 0:
        for folder in (pgdata.parent, *pgdata.parent.parents):
            if not folder.stat().st_mode & 0o001:
                folder.chmod(folder.stat().st_mode | 0o001)
    # pgserver caches one handle per pgdata and get_server() returns it without checking that
    # its server still runs: after `stop_embedded` in this process, start that handle's server.
    from pgserver.postgres_server import PostgresServer

    cached = PostgresServer._instances.get(pgdata.resolve())
    if cached is not None and not is_running(pgdata):
        with cached._lock:
            cached.ensure_postgres_running()
        return cached.get_uri()
    server = pgserver.get_server(str(pgdata), cleanup_mode=None)
    return server.get_uri()


def stop_embedded(pgdata: Path) -> bool:
    """Stop the embedded server if it runs; True if it was running."""
    if not (pgdata / "postmaster.pid").exists():
        return False
    pgserver = _import_pgserver()

    pg_ctl = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_ctl"
    cmd = [str(pg_ctl), "-D", str(pgdata), "-m", "fast", "-w", "stop"]
    if os.geteuid() == 0:
        cmd = ["su", "pgserver", "-s", "/bin/sh", "-c", " ".join(cmd)]
    subprocess.run(cmd, check=True, capture_output=True)
    start_embedded.cache_clear()
    return True


def is_running(pgdata: Path) -> bool:
    return (pgdata / "postmaster.pid").exists()
