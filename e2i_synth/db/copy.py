"""Atomic table loads with COPY, and reads back into polars.

replace_rows() deletes the rows being replaced (the whole table, or one time window of a
partitioned table) and COPYs the new ones in the same transaction: readers see the old version
until commit, a failure anywhere rolls back to it, and a rerun never doubles rows.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import polars as pl
import psycopg
from psycopg import sql

from e2i_synth.tables import TableSpec

COPY_CHUNK_ROWS = 100_000


class LoadError(RuntimeError):
    """A load that PostgreSQL refused; the previous version of the table is intact."""


def _window_filter(
    spec: TableSpec, window: tuple[datetime, datetime] | None, inline: bool = False
) -> sql.Composable:
    """WHERE clause selecting one partition window: parameters, or quoted literals for COPY
    (which takes no parameters)."""
    if window is None:
        return sql.SQL("")
    return sql.SQL(" WHERE ") + _in_window(spec, window, inline)


def _in_window(
    spec: TableSpec, window: tuple[datetime, datetime], inline: bool, alias: str | None = None
) -> sql.Composable:
    """The condition of one partition window, on the column of `alias` if given."""
    if spec.partition_column is None:
        raise ValueError(f"{spec.name} is not partitioned, but a partition window was given")
    start, end = (
        (sql.Literal(window[0]), sql.Literal(window[1]))
        if inline
        else (sql.Placeholder("start"), sql.Placeholder("end"))
    )
    column = sql.Identifier(*(alias, spec.partition_column) if alias else (spec.partition_column,))
    return sql.SQL("{col} >= {start} AND {col} < {end}").format(col=column, start=start, end=end)


def _serialise_replacements(cur: psycopg.Cursor, spec: TableSpec) -> None:
    """Every load of a table, of the whole table or of any window, waits for the table's
    previous load to commit, so it deletes that load's rows instead of adding to them.

    One lock per table, not per window: two overlapping windows (a backfill over a range and
    a nightly run of one day inside it) would otherwise both insert the shared day's keys and
    the second to commit would fail on a duplicate key. Loads of disjoint windows of one table
    now wait for each other too; generating their frames (most of a run) still runs in
    parallel, only the DELETE + COPY of one table is serialised. SHARE ROW EXCLUSIVE conflicts
    with itself and with every writer but not with readers (ACCESS SHARE), who are never
    blocked; and unlike an advisory lock, a role without write privileges cannot take it."""
    lock = sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(sql.Identifier(spec.name))
    cur.execute(lock)


@dataclass(frozen=True)
class ForeignKey:
    name: str
    table: str  # referencing table, as regclass text (quoted where needed)
    columns: tuple[str, ...]
    ref_table: str  # referenced table, as regclass text
    ref_columns: tuple[str, ...]
    on_delete: str  # pg_constraint.confdeltype: a = no action, r = restrict, c = cascade...


_FOREIGN_KEYS = """
SELECT c.conname, c.conrelid::regclass::text, c.confrelid::regclass::text,
       array(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i),
       array(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i),
       c.confdeltype::text
FROM pg_constraint c
WHERE c.contype = 'f' AND %s::regclass IN (c.conrelid, c.confrelid)
ORDER BY c.conname"""


def _set_based_foreign_keys(cur: psycopg.Cursor, spec: TableSpec) -> list[ForeignKey]:
    """The foreign keys from and to the table, when a load may check them in one query each
    instead of one trigger call per row: the session may set session_replication_role
    (superuser, or PG15+ GRANT SET ON PARAMETER). Else []."""
    return foreign_keys(cur, spec.name) if may_turn_row_triggers_off(cur) else []


def _lock_tables(cur: psycopg.Cursor, spec: TableSpec, fks: list[ForeignKey]) -> None:
    """The load's locks, until commit: its own table's (_serialise_replacements), and SHARE on
    the tables on the other side of `fks`, so nobody writes them while the keys are checked
    set-based (readers never wait). Taken in one order, by table name, for every load: two
    loads of tables that reference each other (a window of triggers and all of
    patient_journeys) would otherwise each hold one lock and wait for the other's."""
    others = {fk.table for fk in fks} | {fk.ref_table for fk in fks}
    for name in sorted(others | {spec.name}):
        if name == spec.name:
            _serialise_replacements(cur, spec)
        else:
            cur.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.SQL(name)))


def may_turn_row_triggers_off(cur: psycopg.Cursor) -> bool:
    """The session may set session_replication_role (superuser, or PG15+ GRANT SET ON
    PARAMETER), so foreign keys can be checked set-based instead of by per-row triggers."""
    if cur.execute("SELECT current_setting('is_superuser')").fetchone()[0] == "on":
        return True
    if cur.connection.info.server_version < 150000:
        return False
    query = "SELECT has_parameter_privilege('session_replication_role', 'SET')"
    return cur.execute(query).fetchone()[0]


def foreign_keys(cur: psycopg.Cursor, table: str) -> list[ForeignKey]:
    """Every foreign key from or to `table`, from the catalog."""
    cur.execute(_FOREIGN_KEYS, (table,))
    return [ForeignKey(n, t, tuple(c), r, tuple(rc), d) for n, t, r, c, rc, d in cur]


def delete_with_triggers_off(
    cur: psycopg.Cursor,
    spec: TableSpec,
    fks: list[ForeignKey],
    delete: sql.Composable,
    params: dict[str, object] | None = None,
) -> list[ForeignKey]:
    """Run `delete`, leaving the row triggers off (session_replication_role = replica) for it
    and the COPY that follows, when `fks` are to be checked set-based; the keys to check.

    The DELETE's own checks (keys still referenced?) are set-based too when every key into the
    table only forbids (NO ACTION / RESTRICT); else its triggers stay on for the DELETE and only
    the table's own keys are checked. The caller holds the locks (_lock_tables)."""
    inbound = [fk for fk in fks if fk.ref_table == spec.name]
    skip_delete_triggers = all(fk.on_delete in ("a", "r") for fk in inbound)
    if not skip_delete_triggers:
        fks = [fk for fk in fks if fk.table == spec.name]
    if fks and skip_delete_triggers:
        cur.execute("SET LOCAL session_replication_role = replica")
    cur.execute(delete, params)
    if fks and not skip_delete_triggers:
        cur.execute("SET LOCAL session_replication_role = replica")
    return fks


def check_foreign_keys(
    cur: psycopg.Cursor,
    spec: TableSpec,
    fks: list[ForeignKey],
    window: tuple[datetime, datetime] | None = None,
) -> None:
    """One anti-join per foreign key (MATCH SIMPLE: rows with a null key column pass), over
    the loaded `window`'s rows for the table's own keys; the error reads like PostgreSQL's."""
    for fk in fks:
        rows = sql.SQL("")
        if window is not None and fk.table == spec.name:
            rows = sql.SQL(" AND ") + _in_window(spec, window, inline=True, alias="t")
        query = sql.SQL(
            "SELECT count(*), min(concat_ws(', ', {key})) FROM {t} AS t WHERE {not_null}{rows} "
            "AND NOT EXISTS (SELECT 1 FROM {ref} AS r WHERE {match})"
        ).format(
            rows=rows,
            key=sql.SQL(", ").join(
                sql.SQL("t.{}::text").format(sql.Identifier(c)) for c in fk.columns
            ),
            t=sql.SQL(fk.table),
            ref=sql.SQL(fk.ref_table),
            not_null=sql.SQL(" AND ").join(
                sql.SQL("t.{} IS NOT NULL").format(sql.Identifier(c)) for c in fk.columns
            ),
            match=sql.SQL(" AND ").join(
                sql.SQL("r.{} = t.{}").format(sql.Identifier(r), sql.Identifier(c))
                for c, r in zip(fk.columns, fk.ref_columns, strict=True)
            ),
        )
        missing, key = cur.execute(query).fetchone()
        if not missing:
            continue
        if fk.table == spec.name:
            problem = (
                f'insert or update on table "{fk.table}" violates foreign key constraint '
                f'"{fk.name}" Key ({", ".join(fk.columns)})=({key}) is not present in table '
                f'"{fk.ref_table}"'
            )
        else:
            problem = (
                f'update or delete on table "{fk.ref_table}" violates foreign key constraint '
                f'"{fk.name}" on table "{fk.table}" Key ({", ".join(fk.ref_columns)})=({key}) '
                f'is still referenced from table "{fk.table}"'
            )
        raise LoadError(
            f"loading {spec.name} failed and was rolled back; the previous rows are intact: "
            f"{problem} ({missing} rows)"
        )


def replace_rows(
    conn: psycopg.Connection,
    spec: TableSpec,
    chunks: Iterable[pl.DataFrame],
    window: tuple[datetime, datetime] | None = None,
) -> int:
    """Replace the table (or the rows of `window`) with `chunks`, in one transaction."""
    table = sql.Identifier(spec.name)
    columns = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
    params = {"start": window[0], "end": window[1]} if window else {}
    rows = 0
    try:
        with conn.transaction(), conn.cursor() as cur:
            # A load checks its foreign keys set-based (one anti-join each, over the window's
            # rows for a window load) instead of one trigger call per row (~7 us a row, 40% of
            # a 1M-row load): the row triggers are off for the DELETE and COPY, and writers of
            # the tables on the other side of each key wait until commit (readers never do). A
            # key into this table with an ON DELETE action keeps its triggers for the DELETE.
            fks = _set_based_foreign_keys(cur, spec)
            _lock_tables(cur, spec, fks)
            delete = sql.SQL("DELETE FROM {table}").format(table=table) + _window_filter(
                spec, window
            )
            fks = delete_with_triggers_off(cur, spec, fks, delete, params)
            copy_sql = sql.SQL("COPY {table} ({columns}) FROM STDIN (FORMAT csv)").format(
                table=table, columns=columns
            )
            with cur.copy(copy_sql) as copy:
                for chunk in chunks:
                    for piece in chunk.select(spec.columns).iter_slices(COPY_CHUNK_ROWS):
                        buffer = io.BytesIO()
                        piece.write_csv(buffer, include_header=False)
                        copy.write(buffer.getvalue())
                        rows += piece.height
            if fks:
                cur.execute("SET LOCAL session_replication_role = origin")
            # Every copied row must land inside the replaced window: a row outside it would
            # survive the next replacement of its own window and be doubled.
            count = sql.SQL("SELECT count(*) FROM {table}").format(table=table)
            cur.execute(count + _window_filter(spec, window), params)
            in_window = cur.fetchone()[0]
            if in_window != rows:
                where = f"partition window {window[0]} .. {window[1]}" if window else "table"
                raise LoadError(
                    f"loading {spec.name}: copied {rows} rows but the {where} holds {in_window}; "
                    "rolled back, the previous rows are intact"
                )
            # Deferred foreign keys are checked here, still inside the transaction.
            check_foreign_keys(cur, spec, fks, window)
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    except psycopg.Error as exc:
        raise LoadError(
            f"loading {spec.name} failed and was rolled back; the previous rows are intact: "
            f"{exc.diag.message_primary or exc} {exc.diag.message_detail or ''}".strip()
        ) from exc
    return rows


READ_PAGE_ROWS = 500_000


def iter_table(
    conn: psycopg.Connection,
    spec: TableSpec,
    window: tuple[datetime, datetime] | None = None,
    page_rows: int = READ_PAGE_ROWS,
    columns: Sequence[str] | None = None,
) -> Iterator[pl.DataFrame]:
    """The table (or one window of it) in key order, a page of frames at a time; only
    `columns` (and the key) when given.

    Keyset pages (`WHERE key > last key ORDER BY key LIMIT n`, through the primary key index)
    keep memory bounded by the page, whatever the table's size.
    """
    schema = _read_schema(spec, columns)
    pk = sql.SQL(", ").join(map(sql.Identifier, spec.primary_key))
    base = sql.SQL("SELECT {columns} FROM {table}").format(
        columns=sql.SQL(", ").join(map(sql.Identifier, schema)),
        table=sql.Identifier(spec.name),
    ) + _window_filter(spec, window, inline=True)
    last: tuple | None = None
    while True:
        query = base
        if last is not None:
            after = sql.SQL("({pk}) > ({values})").format(
                pk=pk, values=sql.SQL(", ").join(map(sql.Literal, last))
            )
            query += sql.SQL(" AND " if window else " WHERE ") + after
        query += sql.SQL(" ORDER BY {pk} LIMIT {n}").format(pk=pk, n=sql.Literal(page_rows))
        page = _copy_out(conn, schema, query)
        if page.height:
            yield page
        if page.height < page_rows:
            return
        last = page.select(spec.primary_key).row(-1)


def read_table(
    conn: psycopg.Connection,
    spec: TableSpec,
    window: tuple[datetime, datetime] | None = None,
    columns: Sequence[str] | None = None,
) -> pl.DataFrame:
    """The table (or one window of it) as a polars frame typed by its model, in key order;
    only `columns` (and the key) when given."""
    pages = list(iter_table(conn, spec, window, columns=columns))
    return pl.concat(pages) if pages else pl.DataFrame(schema=_read_schema(spec, columns))


def _read_schema(spec: TableSpec, columns: Sequence[str] | None) -> dict[str, pl.DataType]:
    """The model's types of the columns to read, in model order; the key always among them."""
    if columns is None:
        return spec.polars_schema
    unknown = sorted(set(columns) - set(spec.columns))
    if unknown:
        raise KeyError(f"{spec.name} has no column(s) {', '.join(unknown)}")
    wanted = set(columns) | set(spec.primary_key)
    return {c: t for c, t in spec.polars_schema.items() if c in wanted}


def _copy_out(
    conn: psycopg.Connection, schema: dict[str, pl.DataType], query: sql.Composable
) -> pl.DataFrame:
    copy_sql = sql.SQL("COPY ({query}) TO STDOUT (FORMAT csv, HEADER)").format(query=query)
    buffer = io.BytesIO()
    with conn.cursor() as cur, cur.copy(copy_sql) as copy:
        for block in copy:
            buffer.write(block)
    buffer.seek(0)
    frame = pl.read_csv(buffer, schema=_csv_schema(schema))
    return frame.with_columns(
        [pl.col(c) == "t" for c, t in schema.items() if t == pl.Boolean]
        + [pl.col(c).str.to_date() for c, t in schema.items() if t == pl.Date]
        + [
            pl.col(c).str.to_datetime(time_zone=t.time_zone, time_unit=t.time_unit)
            for c, t in schema.items()
            if isinstance(t, pl.Datetime)
        ]
    )


def _csv_schema(schema: dict[str, pl.DataType]) -> dict[str, pl.DataType]:
    # Parsed after reading: PostgreSQL writes booleans as t/f, and polars 2 no longer casts
    # strings to dates or timestamps.
    return {
        c: (pl.String() if t in (pl.Date, pl.Boolean) or isinstance(t, pl.Datetime) else t)
        for c, t in schema.items()
    }


def count_rows(
    conn: psycopg.Connection,
    table: str,
    window: tuple[datetime, datetime] | None = None,
    column: str | None = None,
) -> int:
    """Rows in the table, or in [start, end) of its partition column."""
    query = sql.SQL("SELECT count(*) FROM {t}").format(t=sql.Identifier(table))
    if window is None:
        return conn.execute(query).fetchone()[0]
    query += sql.SQL(" WHERE {c} >= %s AND {c} < %s").format(c=sql.Identifier(column))
    return conn.execute(query, window).fetchone()[0]
