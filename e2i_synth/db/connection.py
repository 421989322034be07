"""Which database to use, and how to connect to it.

E2I_DATABASE_URL selects an existing PostgreSQL (14+); without it the embedded server is used.
Credentials only ever come from the environment, and URLs are masked before they are shown.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import make_conninfo

from e2i_synth.db import embedded

URL_ENV = "E2I_DATABASE_URL"


def resolve_url(url: str | None = None, home: Path | None = None) -> str:
    """The explicit URL, else $E2I_DATABASE_URL, else the (started) embedded server's URL."""
    url = url or os.environ.get(URL_ENV)
    if url:
        return url
    return embedded.start_embedded(embedded.data_dir(home))


# libpq reads both spellings; hosted providers (Heroku, Render...) hand out postgres://.
URL_SCHEMES = ("postgresql", "postgres")


def with_database(url: str, dbname: str) -> str:
    """The same server (host, port, user, password, options) with another database: the one
    place the "other database on the same server" rewrite is done. Takes a postgres:// or
    postgresql:// URL, or a keyword DSN; a dbname in the query string is replaced too."""
    if "://" not in url:
        return make_conninfo(url, dbname=dbname)
    parts = urlsplit(url)
    # The query is kept as written (libpq decodes %xx but not +), minus any dbname parameter.
    query = "&".join(p for p in parts.query.split("&") if p and not p.startswith("dbname="))
    return urlunsplit(parts._replace(path="/" + quote(dbname, safe=""), query=query))


def sqlalchemy_url(url: str, driver: str = "psycopg2") -> str:
    """The URL for SQLAlchemy (Dagster's storage), which knows neither postgres:// (removed in
    SQLAlchemy 1.4) nor a driver-less scheme."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in URL_SCHEMES:
        raise DatabaseUnavailable(
            f"{mask_url(url)[:200]}: not a postgresql:// or postgres:// URL (Dagster's storage "
            "connects through SQLAlchemy, which needs a URL)"
        )
    return f"postgresql+{driver}://{rest}"


_DSN_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)")


def mask_url(url: str) -> str:
    """The URL (or keyword DSN) with any password replaced by ***."""
    masked = re.sub(r"(://[^:/@]*:)[^@]*(@)", r"\1***\2", url)
    return _DSN_PASSWORD.sub(r"\1***", masked)


def connect(url: str, **kwargs) -> psycopg.Connection:
    """A psycopg connection; connection errors are re-raised without the password."""
    try:
        # UTC sessions: partition windows and timestamps compare the same way everywhere.
        # The server checks every second that we are still there, so a killed loader's session
        # (and its locks) end at once instead of after its commit-time checks.
        # No lock is waited for forever (e2i_synth/db/locks.py).
        from e2i_synth.db.locks import lock_timeout_s

        timeout_ms = round(lock_timeout_s() * 1000)
        options = (
            f"-c TimeZone=UTC -c client_connection_check_interval=1000 -c lock_timeout={timeout_ms}"
        )
        return psycopg.connect(url, connect_timeout=10, options=options, **kwargs)
    except psycopg.Error as exc:  # also unparsable URLs, whose message quotes the bad token
        raise DatabaseUnavailable(
            f"cannot connect to {mask_url(url)}: {_scrub(str(exc), url)}"
        ) from None


class DatabaseTarget:
    """The database the Database resource would use, without Dagster: the CLI's `db` commands
    answer at once instead of importing Dagster, scipy and statsmodels first."""

    def __init__(self, url: str | None = None, home: Path | None = None) -> None:
        self.url, self.home = url, home

    def url_in_use(self) -> str:
        return resolve_url(self.url, self.home)

    def masked_url(self) -> str:
        return mask_url(self.url_in_use())

    def connect(self, **kwargs) -> psycopg.Connection:
        return connect(self.url_in_use(), **kwargs)

    def migrate(self) -> list:
        from e2i_synth.db.migrate import migrate  # imports this module

        return migrate(self.url_in_use())


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached."""


def _scrub(message: str, url: str) -> str:
    """The message without the URL's password, however the URL spells it."""
    secrets = [m.group(1) for m in re.finditer(r"://[^:/@]*:([^@]*)@", url)]
    for m in _DSN_PASSWORD.finditer(url):
        secrets += [m.group(2), m.group(2).strip("'")]
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message
