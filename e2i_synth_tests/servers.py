"""Test helpers: a dedicated embedded PostgreSQL, in a folder of its own, started in a fresh
process; a server URL with a password put in.

A fresh process, as `e2i-synth db up` does: start_embedded caches the URL per process (cleared
only by stop_embedded), so after a crash or a stop from outside, a start in the same process
would return the URL of a server that is not running.
"""

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from e2i_synth.db import embedded

START_SERVER = """
import sys
from pathlib import Path
from e2i_synth.db.embedded import start_embedded
print(start_embedded(Path(sys.argv[1])))
"""


def start_server(pgdata: Path) -> str:
    """Start (or restart) the server of `pgdata`; its URL."""
    done = subprocess.run(
        [sys.executable, "-c", START_SERVER, str(pgdata)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout.strip().splitlines()[-1]


@contextmanager
def dedicated_pgdata(prefix: str) -> Iterator[Path]:
    """pgdata in a new temporary folder; its server (if started) is stopped and the folder
    deleted afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)  # as root the server runs as `pgserver`, which must enter the folder
    pgdata = folder / "pgdata"
    try:
        yield pgdata
    finally:
        if embedded.is_running(pgdata):
            embedded.stop_embedded(pgdata)
        shutil.rmtree(folder, ignore_errors=True)


def with_password(url: str, password: str, user: str = "postgres") -> str:
    return re.sub(r"://[^@/]*@", f"://{user}:{password}@", url, count=1)
