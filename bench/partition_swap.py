"""Does PostgreSQL declarative partitioning pay for replacing a window? (issue #16)

    python -m bench.partition_swap                      # 30 months of 100,000 rows
    python -m bench.partition_swap --months 30 --rows-per-month 40000

On a temporary embedded PostgreSQL, one table of MONTHS x ROWS_PER_MONTH prediction-like rows
(a text key, a timestamp, an entity, a score with a CHECK, a flag; indexes on the key, the
timestamp and the entity) is loaded twice: as a plain table, and as a table partitioned by
month (its key must then include the timestamp: PostgreSQL enforces uniqueness per partition
only). Then, REPEATS times each, one window is replaced, in one transaction as db/copy.py does:

  month, plain       DELETE the month + COPY its new rows (what e2i-synth does today)
  month, partitioned the same on the partitioned table
  month, swapped     COPY into a fresh table, build its indexes and a CHECK of the bound (so
                     ATTACH needs no scan), DETACH the old partition, ATTACH the new, DROP
  day, plain / day, partitioned   DELETE + COPY of one day (feature_values' window)

and prints the median seconds and each one's ratio to "month, plain". The rows are synthetic
(not a bundled table) so that the shape can be varied; only ratios within one run mean
anything. It is a benchmark: nothing asserts.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pgserver
import psycopg

COLUMNS = (
    "(id text NOT NULL, ts timestamptz NOT NULL, entity text NOT NULL, "
    "score float8 NOT NULL CHECK (score BETWEEN 0 AND 1), label bool NOT NULL)"
)
FIRST_MONTH = datetime(2024, 1, 1, tzinfo=UTC)


def month_start(m: int) -> datetime:
    year, month = divmod(FIRST_MONTH.month - 1 + m, 12)
    return datetime(FIRST_MONTH.year + year, month + 1, 1, tzinfo=UTC)


def month_rows(m: int, n: int, version: str) -> list[str]:
    """n CSV lines dated in month m, in time order."""
    lo, hi = month_start(m), month_start(m + 1)
    rng = np.random.default_rng([m, ord(version)])
    seconds = np.sort(rng.integers(0, int((hi - lo).total_seconds()), n))
    scores = rng.random(n)
    return [
        f"P{version}-{m:03d}-{i:07d},{(lo + timedelta(seconds=int(s))).isoformat()},"
        f"E{i % 5000},{scores[i]:.4f},{i % 2 == 0}\n"
        for i, s in enumerate(seconds)
    ]


def copy_in(conn: psycopg.Connection, table: str, lines: list[str]) -> None:
    with conn.cursor().copy(f"COPY {table} FROM STDIN (FORMAT csv)") as copy:
        copy.write("".join(lines))


def build(conn: psycopg.Connection, months: int, rows: dict[int, list[str]]) -> None:
    conn.execute(f"CREATE TABLE plain {COLUMNS}")
    conn.execute("ALTER TABLE plain ADD PRIMARY KEY (id)")
    conn.execute(f"CREATE TABLE part {COLUMNS} PARTITION BY RANGE (ts)")
    conn.execute("ALTER TABLE part ADD PRIMARY KEY (id, ts)")
    for table in ("plain", "part"):
        conn.execute(f"CREATE INDEX ON {table} (ts)")
        conn.execute(f"CREATE INDEX ON {table} (entity)")
    for m in range(months):
        conn.execute(
            f"CREATE TABLE part_{m} PARTITION OF part FOR VALUES FROM "
            f"('{month_start(m).isoformat()}') TO ('{month_start(m + 1).isoformat()}')"
        )
        copy_in(conn, "plain", rows[m])
        copy_in(conn, "part", rows[m])
    for table in ("plain", "part"):
        conn.execute(f"VACUUM ANALYZE {table}")


def delete_and_copy(
    conn: psycopg.Connection, table: str, lo: datetime, hi: datetime, lines: list[str]
) -> float:
    started = time.perf_counter()
    with conn.transaction():
        conn.execute(f"DELETE FROM {table} WHERE ts >= %s AND ts < %s", (lo, hi))
        copy_in(conn, table, lines)
    return time.perf_counter() - started


def swap_partition(conn: psycopg.Connection, m: int, version: int, lines: list[str]) -> float:
    lo, hi = month_start(m).isoformat(), month_start(m + 1).isoformat()
    name = f"part_{m}_v{version}"
    started = time.perf_counter()
    with conn.transaction():
        conn.execute(f"CREATE TABLE {name} (LIKE part INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        copy_in(conn, name, lines)
        conn.execute(f"ALTER TABLE {name} ADD PRIMARY KEY (id, ts)")
        conn.execute(f"CREATE INDEX ON {name} (ts)")
        conn.execute(f"CREATE INDEX ON {name} (entity)")
        conn.execute(f"ALTER TABLE {name} ADD CHECK (ts >= '{lo}' AND ts < '{hi}')")
        old = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'part'::regclass "
            "AND pg_get_expr(c.relpartbound, c.oid) LIKE %s",
            (f"%FROM ('{month_start(m):%Y-%m-%d}%",),
        ).fetchone()[0]
        conn.execute(f"ALTER TABLE part DETACH PARTITION {old}")
        conn.execute(
            f"ALTER TABLE part ATTACH PARTITION {name} FOR VALUES FROM ('{lo}') TO ('{hi}')"
        )
        conn.execute(f"DROP TABLE {old}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--months", type=int, default=30)
    parser.add_argument("--rows-per-month", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="e2i-partition-bench-"))
    scratch.chmod(0o755)  # as root, pgserver runs postgres as user `pgserver`
    server = pgserver.get_server(scratch, cleanup_mode="delete")
    rows = {m: month_rows(m, args.rows_per_month, "a") for m in range(args.months)}
    m = args.months // 2
    lo, hi = month_start(m), month_start(m + 1)
    fresh = month_rows(m, args.rows_per_month, "b")
    day = (lo + timedelta(days=10), lo + timedelta(days=11))
    day_lines = [line for line in fresh if line.split(",")[1][:10] == f"{day[0]:%Y-%m-%d}"]
    times: dict[str, list[float]] = {}
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        build(conn, args.months, rows)
        for k in range(args.repeats):
            times.setdefault("month, plain", []).append(
                delete_and_copy(conn, "plain", lo, hi, fresh)
            )
            times.setdefault("month, partitioned", []).append(
                delete_and_copy(conn, "part", lo, hi, fresh)
            )
            times.setdefault("month, swapped", []).append(swap_partition(conn, m, k, fresh))
            times.setdefault("day, plain", []).append(
                delete_and_copy(conn, "plain", *day, day_lines)
            )
            times.setdefault("day, partitioned", []).append(
                delete_and_copy(conn, "part", *day, day_lines)
            )
    server.cleanup()
    print(
        f"table of {args.months * args.rows_per_month:,} rows; a month window holds "
        f"{len(fresh):,} rows, a day {len(day_lines):,}; median of {args.repeats}"
    )
    reference = statistics.median(times["month, plain"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:20s} {median:7.3f} s   {median / reference:5.2f} x month, plain")


if __name__ == "__main__":
    main()
