"""Test helper: a dedicated embedded PostgreSQL started in a fresh process.

A fresh process, as `e2i-synth db up` does: pgserver caches its server handle per process, so
a second start in the same process would not restart a stopped server.
"""

import subprocess
import sys
from pathlib import Path

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
