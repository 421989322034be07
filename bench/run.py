"""Loading benchmark: the pipeline against the server-side COPY ceiling and pandas to_sql.

    python -m bench.run                      # patient_journeys, ~1,000,000 rows, 3 repeats
    python -m bench.run --scale 4 --sample 5000 --repeat 1   # smoke run (10,000 rows)

In one run, against one freshly migrated database (a temporary embedded pgserver, or a
temporary database created on the $E2I_DATABASE_URL server), for the same rows, it measures:

  ceiling   server-side COPY table (cols) FROM 'file.csv' (FORMAT csv) of a CSV written before
            timing, into the emptied table, in one transaction (PK, CHECKs, indexes and the
            deferred foreign keys of the migrated table; FKs are checked at COMMIT)
  pipeline  the generator call + TableSpec.validate + replace_rows, each stage timed;
            rows/s = rows / (generate + validate + load)
  to_sql    pandas DataFrame.to_sql (SQLAlchemy + psycopg 3) of a sample, method=None and
            method="multi", into the emptied table, reported per row

Each measurement is repeated --repeat times; the median is reported. Results are printed and
written to bench/out/latest.json. When the pipeline misses 0.7x of the ceiling (or with
--profile always) the load is broken down and candidate improvements are measured.
Nothing here asserts on speed: it is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import queue
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.copy import QueuedLibpqWriter

from e2i_synth.core.sampling import padded_ids
from e2i_synth.core.scenario import Scenario, load_scenario
from e2i_synth.db import embedded
from e2i_synth.db.connection import URL_ENV, connect, mask_url
from e2i_synth.db.copy import (
    COPY_CHUNK_ROWS,
    check_foreign_keys,
    delete_with_triggers_off,
    foreign_keys,
    replace_rows,
)
from e2i_synth.db.migrate import migrate
from e2i_synth.tables import TABLES, TableSpec
from e2i_synth.tables.activity.ml_predictions import generate_ml_predictions
from e2i_synth.tables.activity.treatment_events import generate_treatment_events
from e2i_synth.tables.activity.triggers import generate_triggers
from e2i_synth.tables.entities import hcp_profiles as hcp_profiles_module
from e2i_synth.tables.entities import patient_journeys as patient_journeys_module
from e2i_synth.tables.entities.hcp_profiles import generate_hcp_profiles
from e2i_synth.tables.entities.patient_journeys import generate_patient_journeys

OUT = Path(__file__).resolve().parent / "out" / "latest.json"
TARGET_VS_CEILING = 0.7
TARGET_VS_TO_SQL = 5.0
DEFAULT_ROWS = 1_000_000
MULTI_CHUNKSIZE = 1_000
LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1"}


# --- what to generate -------------------------------------------------------------------------


def _whole_range(scenario: Scenario) -> tuple[date, date]:
    """Every day of the scenario as [start, end), as the activity assets ask for it."""
    return scenario.start_date, scenario.end_date + timedelta(days=1)


@dataclass(frozen=True)
class Generator:
    upstream: tuple[str, ...]  # tables generated and loaded (untimed) before this one
    make: Callable[[Scenario, dict[str, pl.DataFrame]], pl.DataFrame]


GENERATORS: dict[str, Generator] = {
    "hcp_profiles": Generator((), lambda s, up: generate_hcp_profiles(s)),
    "patient_journeys": Generator(
        ("hcp_profiles",), lambda s, up: generate_patient_journeys(s, up["hcp_profiles"])
    ),
    "treatment_events": Generator(
        ("hcp_profiles", "patient_journeys"),
        lambda s, up: generate_treatment_events(s, up["patient_journeys"]),
    ),
    "ml_predictions": Generator(
        ("hcp_profiles", "patient_journeys"),
        lambda s, up: generate_ml_predictions(
            s, up["hcp_profiles"], up["patient_journeys"], *_whole_range(s)
        ),
    ),
    "triggers": Generator(
        ("hcp_profiles", "patient_journeys"),
        lambda s, up: generate_triggers(
            s, up["hcp_profiles"], up["patient_journeys"], *_whole_range(s)
        ),
    ),
}


def generate_upstream(table: str, scenario: Scenario) -> dict[str, pl.DataFrame]:
    frames: dict[str, pl.DataFrame] = {}
    for name in GENERATORS[table].upstream:
        frames[name] = TABLES[name].validate(GENERATORS[name].make(scenario, frames))
    return frames


def scale_for_rows(table: str, rows: int) -> float:
    """The scale giving about `rows` rows of `table`, from a probe at scale 1 (tables grow
    linearly with scale; exact for hcp_profiles and patient_journeys)."""
    probe = load_scenario(scale=1.0)
    height = GENERATORS[table].make(probe, generate_upstream(table, probe)).height
    return rows / max(height, 1)


# --- the database -----------------------------------------------------------------------------


@dataclass
class Database:
    url: str
    description: str
    csv_dir: Path  # readable by the server process (mode 755)
    server_side_copy: str | None  # None: possible; else why (1) is skipped


@contextmanager
def bench_database() -> Iterator[Database]:
    """A fresh, migrated database: a temporary embedded server, or a temporary database on the
    $E2I_DATABASE_URL server (never the user's own database: the benchmark empties tables)."""
    scratch = Path(tempfile.mkdtemp(prefix="e2i-bench-"))
    # As root, pgserver runs postgres as user `pgserver`: it must read the CSV in here.
    scratch.chmod(0o755)
    server_url = os.environ.get(URL_ENV)
    try:
        if not server_url:
            pgdata = scratch / "pgdata"
            try:
                url = embedded.start_embedded(pgdata)
                migrate(url)
                yield Database(url, "temporary embedded pgserver", scratch, None)
            finally:
                embedded.stop_embedded(pgdata)
        else:
            name = f"e2i_bench_{uuid.uuid4().hex[:8]}"
            with connect(server_url, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            try:
                url = make_conninfo(server_url, dbname=name)
                migrate(url)
                host = str(conninfo_to_dict(server_url).get("host") or "")
                local = host in LOCAL_HOSTS or host.startswith("/")
                skip = None if local else f"server {host} is not local: it cannot read {scratch}"
                description = f"temporary database {name} on {mask_url(server_url)}"
                yield Database(url, description, scratch, skip)
            finally:
                with connect(server_url, autocommit=True) as conn:
                    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                    conn.execute(drop.format(sql.Identifier(name)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def sqlalchemy_url(conninfo: str) -> Any:
    """SQLAlchemy URL (psycopg 3 driver) for a libpq URL or DSN; a unix-socket host (pgserver's
    postgresql://postgres:@/postgres?host=/path) goes into the query string."""
    from sqlalchemy.engine import URL

    params = conninfo_to_dict(conninfo)
    host = str(params.pop("host", "") or "")
    port = params.pop("port", None)
    query = {k: str(v) for k, v in params.items() if k not in ("user", "password", "dbname")}
    if host.startswith("/") or "," in host:
        query["host"] = host
        host = ""
    return URL.create(
        "postgresql+psycopg",
        username=params.get("user") or None,
        password=params.get("password") or None,
        host=host or None,
        port=int(port) if port else None,
        database=params.get("dbname") or None,
        query=query,
    )


def checkpoint(conn: psycopg.Connection) -> None:
    """CHECKPOINT on an autocommit connection, so no checkpoint of a previous load's pages
    lands inside the next timed one (not allowed on managed servers: a little more noise)."""
    try:
        conn.execute("CHECKPOINT")
    except psycopg.Error:
        pass


def empty_table(url: str, table: str) -> None:
    """TRUNCATE and CHECKPOINT (untimed), so every timed load starts from the same state."""
    with connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(sql.Identifier(table)))
        checkpoint(conn)


def fresh_table_rows(url: str, table: str) -> int:
    with connect(url) as conn:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        return conn.execute(query).fetchone()[0]


# --- the three measurements -------------------------------------------------------------------


def columns_sql(spec: TableSpec) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, spec.columns))


def measure_ceiling(url: str, spec: TableSpec, csv_path: Path) -> float:
    copy = sql.SQL("COPY {} ({}) FROM {} (FORMAT csv)").format(
        sql.Identifier(spec.name), columns_sql(spec), sql.Literal(str(csv_path))
    )
    with connect(url) as conn:
        start = time.perf_counter()
        with conn.transaction():
            conn.execute(copy)
        return time.perf_counter() - start


def measure_pipeline(
    url: str, spec: TableSpec, scenario: Scenario, upstream: dict[str, pl.DataFrame]
) -> dict[str, float]:
    generator = GENERATORS[spec.name]
    with connect(url) as conn:
        t0 = time.perf_counter()
        frame = generator.make(scenario, upstream)
        t1 = time.perf_counter()
        validated = spec.validate(frame)
        t2 = time.perf_counter()
        rows = replace_rows(conn, spec, [validated])
        t3 = time.perf_counter()
    if rows != frame.height:
        raise RuntimeError(f"replace_rows loaded {rows} rows of {frame.height}")
    return {"generate": t1 - t0, "validate": t2 - t1, "load": t3 - t2, "total": t3 - t0}


def measure_to_sql(engine: Any, spec: TableSpec, sample: Any, method: str | None) -> float:
    start = time.perf_counter()
    sample.to_sql(
        spec.name,
        engine,
        if_exists="append",
        index=False,
        method=method,
        chunksize=MULTI_CHUNKSIZE if method == "multi" else None,
    )
    return time.perf_counter() - start


# --- profile: where the pipeline's time goes, and what candidate changes gain -----------------


def csv_blocks(frame: pl.DataFrame, chunk_rows: int = COPY_CHUNK_ROWS) -> Iterator[bytes]:
    """CSV of `frame` in blocks of chunk_rows rows, exactly as replace_rows serialises it."""
    for piece in frame.iter_slices(chunk_rows):
        buffer = io.BytesIO()
        piece.write_csv(buffer, include_header=False)
        yield buffer.getvalue()


def csv_blocks_in_thread(
    frame: pl.DataFrame, chunk_rows: int = COPY_CHUNK_ROWS, depth: int = 2
) -> Iterator[bytes]:
    """csv_blocks serialised by a background thread (polars releases the GIL), `depth` blocks
    ahead of the consumer, so serialising block n+1 overlaps sending block n."""
    blocks: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for block in csv_blocks(frame, chunk_rows):
                while not stop.is_set():
                    try:
                        blocks.put(block, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            blocks.put(done)
        except BaseException as exc:  # handed to the consumer
            blocks.put(exc)

    worker = threading.Thread(target=produce, name="csv-serialiser", daemon=True)
    worker.start()
    try:
        while (item := blocks.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def instrumented_load(
    conn: psycopg.Connection,
    spec: TableSpec,
    frame: pl.DataFrame,
    *,
    blocks: Callable[[pl.DataFrame], Iterator[bytes]] = csv_blocks,
    queued_writer: bool = False,
    count_check: bool = True,
    set_based_fk: bool = False,
) -> dict[str, float]:
    """replace_rows (whole table) step by step with a clock between steps; the options are the
    candidate changes. Raises if the rows do not all land.

    set_based_fk: the row-by-row foreign-key triggers are switched off for the DELETE and the
    COPY (session_replication_role = replica: superuser, or PG15+ GRANT SET ON PARAMETER), the
    tables on the other side of each foreign key are locked against writers (SHARE) until
    commit, and every foreign key from or to the table is checked by one anti-join instead.
    If a foreign key into the table has an ON DELETE action, the DELETE keeps its triggers."""
    table = sql.Identifier(spec.name)
    times: dict[str, float] = {}
    t = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal t
        now = time.perf_counter()
        times[step] = now - t
        t = now

    start = t
    rows = 0
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(table))
        fks = foreign_keys(cur, spec.name) if set_based_fk else []
        # The loader's own DELETE with the row triggers off where set-based checks replace them.
        fks = delete_with_triggers_off(cur, spec, fks, sql.SQL("DELETE FROM {}").format(table))
        lap("lock_delete")
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(table, columns_sql(spec))
        writer = QueuedLibpqWriter(cur) if queued_writer else None
        with cur.copy(copy_sql, writer=writer) as copy:
            for block in blocks(frame.select(spec.columns)):
                copy.write(block)
            rows = frame.height
        copied = cur.rowcount  # the COPY command tag: rows the server stored
        if fks:
            cur.execute("SET LOCAL session_replication_role = origin")
        lap("copy")
        if count_check:
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
            landed = cur.fetchone()[0]
        else:
            landed = copied
        lap("count")
        if landed != rows:
            raise RuntimeError(f"copied {rows} rows but {landed} landed")
        check_foreign_keys(cur, spec, fks)  # the loader's own set-based check
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        lap("fk_check")
    lap("commit")
    times["total"] = time.perf_counter() - start
    return times


def load_prebuilt(conn: psycopg.Connection, spec: TableSpec, blocks: list[bytes]) -> float:
    """COPY FROM STDIN of CSV serialised beforehand, commit included: the load without the
    client's serialisation."""
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        sql.Identifier(spec.name), columns_sql(spec)
    )
    start = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
        for block in blocks:
            copy.write(block)
    return time.perf_counter() - start


@contextmanager
def polars_ids() -> Iterator[None]:
    """The generators that use sampling.padded_ids, with polars_padded_series instead."""
    modules = (patient_journeys_module, hcp_profiles_module)
    for module in modules:
        module.padded_ids = polars_padded_series
    try:
        yield
    finally:
        for module in modules:
            module.padded_ids = padded_ids


def polars_padded_series(prefix: str, count: int, width: int) -> pl.Series:
    """The same ids as a polars Series: no Python list of a million str objects at all."""
    return prefix + pl.int_range(1, count + 1, eager=True).cast(pl.String).str.zfill(width)


def median(values: list[float]) -> float:
    return statistics.median(values)


def can_skip_triggers(url: str) -> bool:
    """May this session set session_replication_role (superuser, or PG15+ granted)?"""
    with connect(url) as conn:
        if conn.execute("SELECT current_setting('is_superuser')").fetchone()[0] == "on":
            return True
        if conn.info.server_version < 150000:
            return False
        query = "SELECT has_parameter_privilege('session_replication_role', 'SET')"
        return bool(conn.execute(query).fetchone()[0])


def shape_copy(
    conn: psycopg.Connection, spec: TableSpec, csv_path: Path, like: str, build_indexes: bool
) -> float:
    """Server-side COPY of the CSV into a fresh copy of the table (LIKE ... `like`, no foreign
    keys); with build_indexes the real table's indexes are built after the COPY, in the same
    transaction."""
    shape = sql.Identifier("bench_shape")
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(shape))
    create = sql.SQL("CREATE TABLE {} (LIKE {} {})").format(
        shape, sql.Identifier(spec.name), sql.SQL(like)
    )
    conn.execute(create)
    index_defs = [
        re.sub(r"^CREATE (UNIQUE )?INDEX \S+ ON \S+ ", r"CREATE \1INDEX ON bench_shape ", d)
        for (d,) in conn.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass",
            (spec.name,),
        )
    ]
    checkpoint(conn)
    copy = sql.SQL("COPY {} ({}) FROM {} (FORMAT csv)").format(
        shape, columns_sql(spec), sql.Literal(str(csv_path))
    )
    start = time.perf_counter()
    with conn.transaction():
        conn.execute(copy)
        for index_def in index_defs if build_indexes else ():
            conn.execute(index_def)
    seconds = time.perf_counter() - start
    conn.execute(sql.SQL("DROP TABLE {}").format(shape))
    return seconds


def profile(
    db: Database,
    spec: TableSpec,
    scenario: Scenario,
    upstream: dict[str, pl.DataFrame],
    frame: pl.DataFrame,
    csv_path: Path | None,
    repeat: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Where the pipeline's time goes, and what candidate changes to it gain: every variant is
    run once per repeat, interleaved, on the same rows; medians are reported."""
    url = db.url
    rows = frame.height
    runs: dict[str, list[Any]] = {}

    def record(name: str, value: Any) -> None:
        runs.setdefault(name, []).append(value)

    say("profile: client-side CSV serialisation and validation")
    framed = frame.select(spec.columns)
    for _ in range(repeat):
        t = time.perf_counter()
        for _block in csv_blocks(framed):
            pass
        record("csv_serialise_slices", time.perf_counter() - t)
        t = time.perf_counter()
        framed.write_csv(io.BytesIO(), include_header=False)
        record("csv_serialise_whole", time.perf_counter() - t)
        t = time.perf_counter()
        spec.validate(frame)
        record("validate", time.perf_counter() - t)

    set_based = can_skip_triggers(url)
    variants: dict[str, dict[str, Any]] = {
        "replace_rows_as_is": {},
        "queued_writer": {"queued_writer": True},
        "thread_serialiser": {"blocks": csv_blocks_in_thread},
        "no_count_check": {"count_check": False},
    }
    if set_based:
        variants["set_based_fk"] = {"set_based_fk": True}
    variants["proposed"] = {"count_check": False, "set_based_fk": set_based}
    prebuilt = list(csv_blocks(framed))
    shapes = {
        "bare": ("INCLUDING DEFAULTS", False),  # NOT NULL only
        "checks": ("INCLUDING DEFAULTS INCLUDING CONSTRAINTS", False),
        "checks_pk_indexes": ("INCLUDING ALL", False),  # indexes maintained row by row
        "checks_then_build_indexes": ("INCLUDING DEFAULTS INCLUDING CONSTRAINTS", True),
    }
    server_side = csv_path is not None and db.server_side_copy is None
    for i in range(repeat):
        say(f"profile repeat {i + 1}/{repeat}: loaders {', '.join(variants)}")
        for name, options in variants.items():
            empty_table(url, spec.name)
            with connect(url) as conn:
                record(f"load:{name}", instrumented_load(conn, spec, frame, **options))
        empty_table(url, spec.name)
        with connect(url) as conn:
            record("load:prebuilt_csv_stdin", {"total": load_prebuilt(conn, spec, prebuilt)})
        # The pipeline end to end with the proposed changes: ids built by polars in the
        # generators, set-based foreign-key check, no count query for a whole-table load.
        empty_table(url, spec.name)
        with connect(url) as conn, polars_ids():
            t0 = time.perf_counter()
            generated = GENERATORS[spec.name].make(scenario, upstream)
            t1 = time.perf_counter()
            validated = spec.validate(generated)
            t2 = time.perf_counter()
            instrumented_load(conn, spec, validated, **variants["proposed"])
            t3 = time.perf_counter()
        record(
            "pipeline_proposed",
            {"generate": t1 - t0, "validate": t2 - t1, "load": t3 - t2, "total": t3 - t0},
        )
        # A rerun replaces a full table: DELETE of the previous rows in the same transaction.
        empty_table(url, spec.name)
        with connect(url) as conn:
            instrumented_load(conn, spec, frame)  # the previous version of the table
            with connect(url, autocommit=True) as other:
                checkpoint(other)
            record("load:over_existing_rows", instrumented_load(conn, spec, frame))
        if set_based:
            empty_table(url, spec.name)
            with connect(url) as conn:
                instrumented_load(conn, spec, frame)
                with connect(url, autocommit=True) as other:
                    checkpoint(other)
                record(
                    "load:over_existing_set_based_fk",
                    instrumented_load(conn, spec, frame, set_based_fk=True),
                )
        if server_side:
            say(f"profile repeat {i + 1}/{repeat}: server-side COPY by table shape")
            with connect(url, autocommit=True) as conn:
                for name, (like, build) in shapes.items():
                    record(f"server_copy:{name}", shape_copy(conn, spec, csv_path, like, build))
            empty_table(url, spec.name)
            record("server_copy:real_table", measure_ceiling(url, spec, csv_path))

    if spec.name == "patient_journeys":
        say("profile: generator with padded_ids built by polars (same rows, checked)")
        reference = GENERATORS[spec.name].make(scenario, upstream)
        for _ in range(repeat):
            t = time.perf_counter()
            padded_ids("PAT", rows, 7)
            record("padded_ids_python", time.perf_counter() - t)
            t = time.perf_counter()
            polars_padded_series("PAT", rows, 7)
            record("padded_ids_polars", time.perf_counter() - t)
            t = time.perf_counter()
            GENERATORS[spec.name].make(scenario, upstream)
            record("generate_as_is", time.perf_counter() - t)
            with polars_ids():
                t = time.perf_counter()
                generated = GENERATORS[spec.name].make(scenario, upstream)
                record("generate_polars_ids", time.perf_counter() - t)
            if not generated.equals(reference):
                raise RuntimeError("polars ids: rows differ from the generator's")

    result: dict[str, Any] = {"set_based_fk_allowed": set_based, "samples": runs, "median_s": {}}
    for name, values in runs.items():
        if isinstance(values[0], dict):
            result["median_s"][name] = {k: median([v[k] for v in values]) for k in values[0]}
        else:
            result["median_s"][name] = median(values)
    return result


# --- driver -----------------------------------------------------------------------------------


@dataclass
class Measured:
    rows: int
    samples: list[float] = field(default_factory=list)
    skipped: str | None = None

    @property
    def median_s(self) -> float:
        return median(self.samples)

    @property
    def rows_per_s(self) -> float | None:
        if self.skipped or not self.samples:
            return None
        return self.rows / self.median_s

    def as_json(self) -> dict[str, Any]:
        if self.skipped:
            return {"rows": self.rows, "skipped": self.skipped}
        return {
            "rows": self.rows,
            "seconds": self.samples,
            "median_s": self.median_s,
            "rows_per_s": self.rows_per_s,
        }


def ratio(numerator: float | None, denominator: float | None, target: float) -> dict[str, Any]:
    if not numerator or not denominator:
        return {"value": None, "target": target, "status": "n/a"}
    value = numerator / denominator
    return {"value": value, "target": target, "status": "PASS" if value >= target else "MISS"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--table", default="patient_journeys", choices=sorted(GENERATORS))
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--scale", type=float, help="scenario scale (400 = 1,000,000 patients)")
    size.add_argument("--rows", type=int, help=f"about this many rows (default {DEFAULT_ROWS:,})")
    parser.add_argument("--sample", type=int, default=50_000, help="rows given to to_sql")
    parser.add_argument(
        "--multi-sample",
        type=int,
        default=10_000,
        help='rows given to to_sql method="multi" (at most --sample; it is ~40x slower)',
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: --scale 4 --sample 5000 --repeat 1"
    )
    parser.add_argument(
        "--profile",
        choices=("auto", "always", "never"),
        default="auto",
        help="break the load down (auto: only when the pipeline misses 0.7x the ceiling)",
    )
    parser.add_argument("--out", type=Path, default=OUT, help="JSON results file")
    args = parser.parse_args(argv)
    if args.quick:
        if args.scale is None and args.rows is None:
            args.scale = 4.0
        args.sample = min(args.sample, 5_000)
        args.multi_sample = min(args.multi_sample, 2_000)
        args.repeat = 1
    if min(args.repeat, args.sample, args.multi_sample) < 1:
        parser.error("--repeat, --sample and --multi-sample must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

    def say(message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)

    spec = TABLES[args.table]
    scale = args.scale or scale_for_rows(args.table, args.rows or DEFAULT_ROWS)
    scenario = load_scenario(scale=scale)
    say(f"{args.table} at scale {scale:g}: generating upstream {GENERATORS[args.table].upstream}")
    upstream = generate_upstream(args.table, scenario)
    frame = spec.validate(GENERATORS[args.table].make(scenario, upstream))
    rows = frame.height
    sample_rows = min(args.sample, rows)
    multi_rows = min(args.multi_sample, sample_rows)
    say(
        f"{rows:,} rows of {args.table}; to_sql sample {sample_rows:,} "
        f"(method=multi {multi_rows:,}); repeat {args.repeat}"
    )

    with bench_database() as db:
        say(f"database: {db.description} (migrated)")
        with connect(db.url) as conn:
            for name, upstream_frame in upstream.items():
                replace_rows(conn, TABLES[name], [upstream_frame])
            server_version = conn.execute("SHOW server_version").fetchone()[0]

        csv_path: Path | None = db.csv_dir / f"{args.table}.csv"
        frame.select(spec.columns).write_csv(csv_path, include_header=False)
        csv_path.chmod(0o644)

        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        engine = create_engine(sqlalchemy_url(db.url), poolclass=NullPool)
        pandas_sample = frame.head(sample_rows).to_pandas()

        ceiling = Measured(rows, skipped=db.server_side_copy)
        pipeline: list[dict[str, float]] = []
        to_sql = Measured(sample_rows)
        to_sql_multi = Measured(multi_rows)
        sample_frame = frame.head(sample_rows)
        sample_load = Measured(sample_rows)
        with connect(db.url) as conn:  # warm-up, untimed: caches, catalog, file system
            replace_rows(conn, spec, [frame])
        for i in range(args.repeat):
            say(f"repeat {i + 1}/{args.repeat}")
            if not ceiling.skipped:
                empty_table(db.url, spec.name)
                try:
                    ceiling.samples.append(measure_ceiling(db.url, spec, csv_path))
                except psycopg.Error as exc:
                    ceiling.skipped = f"server-side COPY refused: {exc}"
                    say(f"skipping the ceiling: {ceiling.skipped}")
            empty_table(db.url, spec.name)
            pipeline.append(measure_pipeline(db.url, spec, scenario, upstream))
            if fresh_table_rows(db.url, spec.name) != rows:
                raise RuntimeError("the pipeline did not load every row")
            empty_table(db.url, spec.name)
            to_sql.samples.append(measure_to_sql(engine, spec, pandas_sample, None))
            empty_table(db.url, spec.name)
            with connect(db.url) as conn:
                start = time.perf_counter()
                replace_rows(conn, spec, [sample_frame])
                sample_load.samples.append(time.perf_counter() - start)
            empty_table(db.url, spec.name)
            multi = pandas_sample.head(multi_rows)
            to_sql_multi.samples.append(measure_to_sql(engine, spec, multi, "multi"))
            if fresh_table_rows(db.url, spec.name) != multi_rows:
                raise RuntimeError("to_sql did not load every sample row")
        if ceiling.skipped:
            say(f"ceiling skipped: {ceiling.skipped}")
            csv_path = None
        engine.dispose()

        stages = {k: median([p[k] for p in pipeline]) for k in pipeline[0]}
        pipeline_rate = rows / stages["total"]
        load_rate = rows / stages["load"]
        ratios = {
            "pipeline/ceiling": ratio(pipeline_rate, ceiling.rows_per_s, TARGET_VS_CEILING),
            "pipeline/to_sql": ratio(pipeline_rate, to_sql.rows_per_s, TARGET_VS_TO_SQL),
            "pipeline/to_sql_multi": ratio(
                pipeline_rate, to_sql_multi.rows_per_s, TARGET_VS_TO_SQL
            ),
            "load_only/ceiling": ratio(load_rate, ceiling.rows_per_s, TARGET_VS_CEILING),
            "sample_load/to_sql": ratio(
                sample_load.rows_per_s, to_sql.rows_per_s, TARGET_VS_TO_SQL
            ),
        }
        missed = ratios["pipeline/ceiling"]["status"] == "MISS"
        profiled = None
        if args.profile == "always" or (args.profile == "auto" and missed):
            profiled = profile(db, spec, scenario, upstream, frame, csv_path, args.repeat, say)
            proposed = rows / profiled["median_s"]["pipeline_proposed"]["total"]
            profiled["proposed_rows_per_s"] = proposed
            profiled["ratios_proposed"] = {
                "proposed/ceiling": ratio(proposed, ceiling.rows_per_s, TARGET_VS_CEILING),
                "proposed/to_sql": ratio(proposed, to_sql.rows_per_s, TARGET_VS_TO_SQL),
            }

    result = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": ["python", "-m", "bench.run", *(sys.argv[1:] if argv is None else argv)],
        "config": {
            "table": args.table,
            "scale": scale,
            "rows": rows,
            "sample": sample_rows,
            "multi_sample": multi_rows,
            "repeat": args.repeat,
            "database": db.description,
            "copy_chunk_rows": COPY_CHUNK_ROWS,
            "to_sql_multi_chunksize": MULTI_CHUNKSIZE,
        },
        "environment": {
            "python": platform.python_version(),
            "postgres": server_version,
            "polars": pl.__version__,
            "psycopg": psycopg.__version__,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        },
        "measurements": {
            "ceiling_server_copy": ceiling.as_json(),
            "pipeline": {
                "rows": rows,
                "stages_s": {k: [p[k] for p in pipeline] for k in pipeline[0]},
                "median_s": stages,
                "rows_per_s": pipeline_rate,
                "load_rows_per_s": load_rate,
            },
            "sample_load_replace_rows": sample_load.as_json(),
            "to_sql": to_sql.as_json(),
            "to_sql_multi": to_sql_multi.as_json(),
        },
        "ratios": ratios,
        "profile": profiled,
    }
    print(render(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    say(f"wrote {args.out}")
    return 0


def render(result: dict[str, Any]) -> str:
    m = result["measurements"]
    cfg = result["config"]
    lines = [
        "",
        f"{cfg['table']}: {cfg['rows']:,} rows (scale {cfg['scale']:g}), "
        f"median of {cfg['repeat']}; {cfg['database']}, "
        f"PostgreSQL {result['environment']['postgres']}",
        "",
        f"{'method':<46} {'rows':>10} {'median s':>9} {'rows/s':>10}",
    ]

    def row(label: str, rows: int, seconds: float | None, rate: float | None) -> None:
        secs = "-" if seconds is None else f"{seconds:.3f}"
        per = "-" if rate is None else f"{rate:,.0f}"
        lines.append(f"{label:<46} {rows:>10,} {secs:>9} {per:>10}")

    c = m["ceiling_server_copy"]
    if c.get("skipped"):
        lines.append(f"{'(1) ceiling: server-side COPY FROM file':<46} skipped: {c['skipped']}")
    else:
        row("(1) ceiling: server-side COPY FROM file", c["rows"], c["median_s"], c["rows_per_s"])
    p = m["pipeline"]
    row(
        "(2) pipeline: generate + validate + load",
        p["rows"],
        p["median_s"]["total"],
        p["rows_per_s"],
    )
    row("    load only (replace_rows)", p["rows"], p["median_s"]["load"], p["load_rows_per_s"])
    for key, label in (
        ("sample_load_replace_rows", "    load only, the to_sql sample"),
        ("to_sql", "(3) pandas to_sql, method=None"),
        ("to_sql_multi", f"(3) pandas to_sql, method=multi, chunk {cfg['to_sql_multi_chunksize']}"),
    ):
        t = m[key]
        row(label, t["rows"], t["median_s"], t["rows_per_s"])

    lines += ["", "stage breakdown of the pipeline (median s, share of the median total):"]
    total = p["median_s"]["total"]
    for stage in ("generate", "validate", "load"):
        s = p["median_s"][stage]
        lines.append(
            f"  {stage:<10} {s:8.3f}  {100 * s / total:5.1f}%  ({p['rows'] / s:,.0f} rows/s)"
        )
    lines.append(f"  {'total':<10} {total:8.3f}")

    lines += ["", "ratios (rows/s over rows/s):"]
    for name, r in result["ratios"].items():
        value = "-" if r["value"] is None else f"{r['value']:.2f}x"
        lines.append(f"  {name:<24} {value:>8}  target >= {r['target']:g}  {r['status']}")

    if result["profile"]:
        lines += ["", *render_profile(result["profile"], p["rows"])]
    return "\n".join(lines)


SHAPE_LABELS = {
    "bare": "bare (NOT NULL only)",
    "checks": "+ CHECK constraints",
    "checks_pk_indexes": "+ PK and indexes, maintained per row",
    "checks_then_build_indexes": "+ CHECKs, indexes built after COPY",
    "real_table": "real table (+ deferred FK): the ceiling",
}


def render_profile(profiled: dict[str, Any], rows: int) -> list[str]:
    med = profiled["median_s"]
    lines = ["profile (median s; same rows, variants interleaved):"]
    for key in ("csv_serialise_slices", "csv_serialise_whole", "validate"):
        if key in med:
            lines.append(f"  {key:<40} {med[key]:8.3f}")
    steps = ("lock_delete", "copy", "count", "fk_check", "commit", "total")
    header = "  " + f"{'loader':<26}" + "".join(f"{s:>12}" for s in steps) + f"{'rows/s':>11}"
    lines += ["", header]
    for key, value in med.items():
        if not key.startswith("load:"):
            continue
        cells = "".join(f"{value[s]:12.3f}" if s in value else f"{'-':>12}" for s in steps)
        lines.append(f"  {key[5:]:<26}{cells}{rows / value['total']:11,.0f}")
    if not profiled["set_based_fk_allowed"]:
        lines.append("  (set-based FK check not measured: session_replication_role not allowed)")
    shapes = [k for k in med if k.startswith("server_copy:")]
    if shapes:
        lines += ["", "  server-side COPY of the same CSV by table shape:"]
        for key in shapes:
            label = SHAPE_LABELS.get(key[12:], key[12:])
            lines.append(f"    {label:<40} {med[key]:8.3f}  {rows / med[key]:10,.0f} rows/s")
    if "pipeline_proposed" in med:
        prop = med["pipeline_proposed"]
        lines += [
            "",
            "  pipeline with the proposed changes (polars ids, set-based FK, no count query):",
            "    "
            + ", ".join(f"{k} {prop[k]:.3f}" for k in ("generate", "validate", "load", "total"))
            + f"  ->  {rows / prop['total']:,.0f} rows/s",
        ]
        for name, r in profiled.get("ratios_proposed", {}).items():
            value = "-" if r["value"] is None else f"{r['value']:.2f}x"
            lines.append(f"    {name:<22} {value:>8}  target >= {r['target']:g}  {r['status']}")
    gen = [k for k in med if k.startswith(("padded_ids", "generate_"))]
    if gen:
        lines += ["", "  generator hot spot (padded_ids of the patient ids):"]
        for key in gen:
            lines.append(f"    {key:<40} {med[key]:8.3f}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
