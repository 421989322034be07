"""Bounded lock waits: no load or migration waits forever, and a timeout names who holds the lock.

Every session of ours runs with `lock_timeout` ($E2I_LOCK_TIMEOUT seconds, default 600), so a
lock held by anyone else (the read-only agent role can take any advisory lock, since
`pg_advisory_lock` is open to every role, and its open transactions block TRUNCATE) fails the
waiting statement instead of hanging it. `advisory_lock` turns that failure into an error naming
the sessions that hold the lock (pid, role, application, state), from pg_locks and
pg_stat_activity.
"""

from __future__ import annotations

import os

import psycopg

from e2i_synth.db.connection import DatabaseUnavailable

LOCK_TIMEOUT_ENV = "E2I_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT_S = 600.0  # longer than any legitimate wait measured (a scale-1000 table)


class LockTimeout(DatabaseUnavailable):
    """A lock was not granted within the lock timeout; the message names its holders."""


def lock_timeout_s() -> float:
    """Seconds any statement of ours waits for a lock ($E2I_LOCK_TIMEOUT, default 600)."""
    text = os.environ.get(LOCK_TIMEOUT_ENV)
    if not text:
        return DEFAULT_LOCK_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 86_400:  # also refuses NaN
        raise DatabaseUnavailable(
            f"{LOCK_TIMEOUT_ENV}={text[:50]!r} must be a number of seconds in (0, 86400]"
        )
    return value


_HOLDERS = """
SELECT a.pid, a.usename, a.application_name, a.state, a.backend_start
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((l.classid::bigint << 32) | l.objid::bigint) = %s
  AND l.pid <> pg_backend_pid()
ORDER BY a.backend_start
"""


def holders(conn: psycopg.Connection, key: int) -> str:
    """Who holds the (single bigint) advisory lock `key`, in words."""
    rows = conn.execute(_HOLDERS, (key,)).fetchall()
    if not rows:
        return "a session that has released it since"
    return "; ".join(
        f"pid {pid} (role {role}, application {app or '-'!r}, {state or 'state unknown'}, "
        f"connected since {since:%Y-%m-%d %H:%M:%S %Z})"
        for pid, role, app, state, since in rows
    )


def advisory_lock(conn: psycopg.Connection, key: int, what: str) -> None:
    """pg_advisory_lock(key) on an autocommit connection, waiting at most the lock timeout."""
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
    except psycopg.errors.LockNotAvailable:
        raise LockTimeout(
            f"{what}: waited {lock_timeout_s():g} s ({LOCK_TIMEOUT_ENV}) for advisory lock "
            f"{key}, held by {holders(conn, key)}; end that session "
            "(pg_terminate_backend) or wait for it"
        ) from None
