"""Which database to use, and how to connect to it.

E2I_DATABASE_URL selects an existing PostgreSQL (14+); without it the embedded server is used.
Credentials only ever come from the environment, and URLs are masked before they are shown.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import psycopg

from e2i_synth.db import embedded

URL_ENV = "E2I_DATABASE_URL"


def resolve_url(url: str | None = None, home: Path | None = None) -> str:
    """The explicit URL, else $E2I_DATABASE_URL, else the (started) embedded server's URL."""
    url = url or os.environ.get(URL_ENV)
    if url:
        return url
    return embedded.start_embedded(embedded.data_dir(home))


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***."""
    masked = re.sub(r"(://[^:/@]*:)[^@]*(@)", r"\1***\2", url)
    return re.sub(r"(password=)[^&\s]*", r"\1***", masked)


def connect(url: str, **kwargs) -> psycopg.Connection:
    """A psycopg connection; connection errors are re-raised without the password."""
    try:
        # UTC sessions: partition windows and timestamps compare the same way everywhere.
        return psycopg.connect(url, connect_timeout=10, options="-c TimeZone=UTC", **kwargs)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot connect to {mask_url(url)}: {_scrub(str(exc), url)}"
        ) from None


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached."""


def _scrub(message: str, url: str) -> str:
    password = re.search(r"://[^:/@]*:([^@]*)@", url)
    if password and password.group(1):
        message = message.replace(password.group(1), "***")
    return message
