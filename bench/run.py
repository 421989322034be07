"""Whole-pipeline benchmark: `e2i-synth materialize` against the server-side COPY ceiling.

    python -m bench.run                  # scale 100 (5.58M rows), every table and check
    python -m bench.run --scale 10       # what a busy 2-core machine manages in minutes

In one run, against one fresh database (a temporary embedded pgserver, or a temporary
database created on the $E2I_DATABASE_URL server), it measures:

  pipeline  runner.materialize() exactly as the CLI runs it (the first load of a fresh
            database: every table and every check, loaded aside and swapped in, Dagster's run
            history in the same server), timed per table and per stage from Dagster's own
            events and from timers around the IO manager's validation and stream
  ceiling   the very same rows (written to CSV by the server, untimed), loaded back with
            server-side `COPY table FROM 'file.csv' (FORMAT csv)` into copies of the tables
            with the same primary keys, indexes and CHECK constraints and no foreign keys, one
            transaction per table; and once more without any index, the indexes built after,
            to show what index maintenance costs

and reports ceiling seconds / pipeline seconds (1.0 = the pipeline loads as fast as the
database can take the rows; target 0.7) for the whole run and per table, with the stages.
Printed, and written to bench/out/pipeline.json. Only the ratios mean anything: the machine's
load moves absolute times a lot. Nothing here asserts: it is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from e2i_synth.core.scenario import load_scenario
from e2i_synth.db import embedded, io_manager
from e2i_synth.db.connection import URL_ENV, connect, mask_url
from e2i_synth.db.migrate import migrate
from e2i_synth.db.resource import Database
from e2i_synth.tables import TABLES

OUT = Path(__file__).resolve().parent / "out" / "pipeline.json"
TARGET_VS_CEILING = 0.7
LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1"}
CEILING = "bench_ceiling"  # schema of the ceiling's tables (indexes and CHECKs, no FKs)
BARE = "bench_bare"  # the same without indexes: COPY, then the indexes built
STAGES = ("generate", "validate", "copy", "checks")
DAGSTER_YAML = """\
storage:
  custom:
    module: e2i_synth.db.dagster_storage
    class: E2iDagsterStorage
telemetry:
  enabled: false
"""


@dataclass
class Server:
    url: str
    description: str
    scratch: Path  # readable by the server process (mode 755): the CSV files go here


@contextmanager
def bench_server() -> Iterator[Server]:
    """A fresh, migrated database: a temporary embedded server, or a temporary database on the
    $E2I_DATABASE_URL server (never the user's own database: the benchmark loads over it)."""
    scratch = Path(tempfile.mkdtemp(prefix="e2i-bench-"))
    scratch.chmod(0o755)  # as root, pgserver runs postgres as user `pgserver`: it reads the CSV
    server_url = os.environ.get(URL_ENV)
    try:
        if not server_url:
            pgdata = scratch / "pgdata"
            try:
                url = embedded.start_embedded(pgdata)
                migrate(url)
                yield Server(url, "temporary embedded pgserver", scratch)
            finally:
                embedded.stop_embedded(pgdata)
            return
        host = str(conninfo_to_dict(server_url).get("host") or "")
        if not (host in LOCAL_HOSTS or host.startswith("/")):
            raise SystemExit(f"server {host} is not local: it cannot read CSV files in {scratch}")
        name = f"e2i_bench_{uuid.uuid4().hex[:8]}"
        with connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            url = make_conninfo(server_url, dbname=name)
            migrate(url)
            yield Server(url, f"temporary database {name} on {mask_url(server_url)}", scratch)
        finally:
            with connect(server_url, autocommit=True) as conn:
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                conn.execute(drop.format(sql.Identifier(name)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# --- the pipeline -------------------------------------------------------------------------------


class Timers:
    """Seconds per table spent in the IO manager: in all of handle_output, in validation, and
    in drawing frames from a stream (a generator that yields month by month generates while
    the COPY runs). Installed around the real functions; nothing else changes."""

    def __init__(self) -> None:
        self.seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._table = ""

    @contextmanager
    def installed(self) -> Iterator[None]:
        manager = io_manager.PostgresIOManager
        originals = (manager.handle_output, io_manager._validate, io_manager.frames_of)

        def handle_output(this, context, obj):  # noqa: ANN001
            self._table = context.asset_key.path[-1]
            started = time.perf_counter()
            try:
                return originals[0](this, context, obj)
            finally:
                self.seconds[self._table]["load"] += time.perf_counter() - started

        def validate(spec, frame):  # noqa: ANN001
            started = time.perf_counter()
            try:
                return originals[1](spec, frame)
            finally:
                self.seconds[spec.name]["validate"] += time.perf_counter() - started

        def frames_of(obj):  # noqa: ANN001
            frames = iter(originals[2](obj))
            while True:
                started = time.perf_counter()
                try:
                    frame = next(frames)
                except StopIteration:
                    return
                finally:
                    self.seconds[self._table]["stream"] += time.perf_counter() - started
                yield frame

        manager.handle_output, io_manager._validate, io_manager.frames_of = (
            handle_output,
            validate,
            frames_of,
        )
        try:
            yield
        finally:
            manager.handle_output, io_manager._validate, io_manager.frames_of = originals


def step_seconds(instance: dg.DagsterInstance, run_ids: list[str]) -> dict[str, dict[str, float]]:
    """Per table, from the runs' events: `compute` (step start to its output: reading inputs
    and generating) of its asset steps, and `checks` (start to end) of its check steps."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for run_id in run_ids:
        starts: dict[str, float] = {}
        tables: dict[str, str] = {}  # check step -> the table it checks
        for record in instance.all_logs(run_id):
            event = record.dagster_event
            if event is None or event.step_key is None:
                continue
            kind, step = event.event_type_value, event.step_key
            if kind == "STEP_START":
                starts[step] = record.timestamp
            elif kind == "ASSET_CHECK_EVALUATION":
                tables[step] = event.event_specific_data.asset_key.path[-1]
            elif kind == "STEP_OUTPUT" and step in TABLES and step in starts:
                out[step]["compute"] += record.timestamp - starts[step]
            elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and step not in TABLES:
                table = tables.get(step)
                if table is not None and step in starts:
                    out[table]["checks"] += record.timestamp - starts[step]
    return out


def run_pipeline(server: Server, scale: float) -> dict[str, Any]:
    from e2i_synth.pipeline import runner

    scenario = load_scenario(scale=scale)
    home = server.scratch / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    # Run history in the bench server, as `make run` keeps it in the project's.
    os.environ[URL_ENV], os.environ["DAGSTER_HOME"] = server.url, str(home)
    timers = Timers()
    marks: dict[str, float] = {}

    def progress(line: str) -> None:
        print(f"  {line}", flush=True)
        if "swapping" in line:
            marks["swap_start"] = time.perf_counter()

    with timers.installed():
        started = time.perf_counter()
        summary = runner.materialize(
            scenario, Database(url=server.url), progress=progress, isolate=False
        )
        wall = time.perf_counter() - started
    if not summary.success:
        raise SystemExit("the pipeline failed:\n" + summary.render())
    swap = wall - (marks["swap_start"] - started) if "swap_start" in marks else 0.0
    with dg.DagsterInstance.get() as instance:
        steps = step_seconds(instance, summary.run_ids)
    tables = {}
    for t in summary.tables:
        io, ev = timers.seconds[t.table], steps[t.table]
        tables[t.table] = {
            "rows": t.rows or 0,
            "generate": ev["compute"] + io["stream"],
            "validate": io["validate"],
            # DELETE + COPY + the window's count and foreign-key checks, index maintenance
            # included (the ceiling below measures that part apart).
            "copy": io["load"] - io["validate"] - io["stream"],
            "checks": ev["checks"],
        }
    accounted = sum(v[s] for v in tables.values() for s in STAGES)
    return {
        "scale": scale,
        "seconds": wall,
        "runs": len(summary.run_ids),
        "tables": tables,
        "swap_in": swap,
        # Everything else: run creation and planning, Dagster's events and their storage,
        # resource setup, reading the scenario, the staging schema.
        "dagster_bookkeeping": wall - accounted - swap,
    }


# --- the ceiling ------------------------------------------------------------------------------


def _copy_in(conn: psycopg.Connection, schema: str, table: str, path: Path) -> float:
    columns = sql.SQL(", ").join(map(sql.Identifier, TABLES[table].columns))
    statement = sql.SQL("COPY {}.{} ({}) FROM {} (FORMAT csv)").format(
        sql.Identifier(schema), sql.Identifier(table), columns, sql.Literal(str(path))
    )
    started = time.perf_counter()
    with conn.transaction():
        conn.execute(statement)
    return time.perf_counter() - started


def _indexes(conn: psycopg.Connection, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass",
        (f"public.{table}",),
    ).fetchall()
    return [r[0] for r in rows]


def run_ceiling(server: Server) -> dict[str, Any]:
    """Server-side COPY of the pipeline's rows, per table, in dependency order."""
    out: dict[str, Any] = {}
    with connect(server.url, autocommit=True) as conn:
        for schema in (CEILING, BARE):
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for table in TABLES:
            path = server.scratch / f"{table}.csv"
            columns = sql.SQL(", ").join(map(sql.Identifier, TABLES[table].columns))
            # Written by this process (the server may not write here), read by the server.
            out_sql = sql.SQL("COPY public.{} ({}) TO STDOUT (FORMAT csv)").format(
                sql.Identifier(table), columns
            )
            with path.open("wb") as file, conn.cursor().copy(out_sql) as copy:
                for block in copy:
                    file.write(block)
            path.chmod(0o644)
            like = sql.SQL("CREATE TABLE {}.{} (LIKE public.{} {})")
            for schema, including in ((CEILING, "INCLUDING ALL"), (BARE, "INCLUDING DEFAULTS")):
                conn.execute(
                    like.format(
                        sql.Identifier(schema),
                        sql.Identifier(table),
                        sql.Identifier(table),
                        sql.SQL(including),
                    )
                )
            # The bare copy keeps the CHECKs (and NOT NULL): only the indexes are left out.
            checks = conn.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = %s::regclass AND contype = 'c'",
                (f"public.{table}",),
            ).fetchall()
            for name, definition in checks:
                conn.execute(
                    sql.SQL("ALTER TABLE {}.{} ADD CONSTRAINT {} {}").format(
                        sql.Identifier(BARE),
                        sql.Identifier(table),
                        sql.Identifier(name),
                        sql.SQL(definition),
                    )
                )
        conn.execute("CHECKPOINT")
        for table in TABLES:
            path = server.scratch / f"{table}.csv"
            with_indexes = _copy_in(conn, CEILING, table, path)
            bare = _copy_in(conn, BARE, table, path)
            started = time.perf_counter()
            for definition in _indexes(conn, table):
                conn.execute(re.sub(r" ON public\.", f" ON {BARE}.", definition, count=1))
            out[table] = {
                "copy": with_indexes,
                "copy_without_indexes": bare,
                "index_build": time.perf_counter() - started,
            }
        for schema in (CEILING, BARE):
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    return out


# --- the report -------------------------------------------------------------------------------


def report(pipeline: dict[str, Any], ceiling: dict[str, Any]) -> dict[str, Any]:
    tables = {}
    for name, p in pipeline["tables"].items():
        c = ceiling[name]
        spent = sum(p[s] for s in STAGES)
        tables[name] = {
            **{k: round(v, 3) for k, v in p.items()},
            "pipeline": round(spent, 3),
            "ceiling": round(c["copy"], 3),
            "ceiling_without_indexes": round(c["copy_without_indexes"], 3),
            "index_build": round(c["index_build"], 3),
            "ratio": round(c["copy"] / spent, 3) if spent else None,
        }
    ceiling_total = sum(c["copy"] for c in ceiling.values())
    stages = {s: round(sum(t[s] for t in pipeline["tables"].values()), 3) for s in STAGES}
    stages["swap_in"] = round(pipeline["swap_in"], 3)
    stages["dagster_bookkeeping"] = round(pipeline["dagster_bookkeeping"], 3)
    ratio = ceiling_total / pipeline["seconds"]
    return {
        "scale": pipeline["scale"],
        "rows": sum(t["rows"] for t in pipeline["tables"].values()),
        "pipeline_seconds": round(pipeline["seconds"], 3),
        "ceiling_seconds": round(ceiling_total, 3),
        "ratio": round(ratio, 3),
        "target": TARGET_VS_CEILING,
        "verdict": "PASS" if ratio >= TARGET_VS_CEILING else "MISS",
        "runs": pipeline["runs"],
        "stages": stages,
        "ceiling_stages": {
            "copy_without_indexes": round(
                sum(c["copy_without_indexes"] for c in ceiling.values()), 3
            ),
            "index_build": round(sum(c["index_build"] for c in ceiling.values()), 3),
        },
        "tables": tables,
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"scale {result['scale']:g}: {result['rows']:,} rows, {result['runs']} Dagster runs "
        f"({result['database']})",
        f"pipeline {result['pipeline_seconds']:.2f}s, ceiling {result['ceiling_seconds']:.2f}s: "
        f"ratio {result['ratio']:.2f} of the ceiling (target {result['target']}: "
        f"{result['verdict']})",
        "",
        f"{'table':<18} {'rows':>10} {'generate':>9} {'validate':>9} {'copy':>8} {'checks':>8}"
        f" {'pipeline':>9} {'ceiling':>8} {'no-index':>8} {'index':>7} {'ratio':>6}",
    ]
    for name, t in result["tables"].items():
        ratio = "-" if t["ratio"] is None else f"{t['ratio']:.2f}"
        lines.append(
            f"{name:<18} {t['rows']:>10,} {t['generate']:>9.2f} {t['validate']:>9.2f} "
            f"{t['copy']:>8.2f} {t['checks']:>8.2f} {t['pipeline']:>9.2f} {t['ceiling']:>8.2f} "
            f"{t['ceiling_without_indexes']:>8.2f} {t['index_build']:>7.2f} {ratio:>6}"
        )
    lines.append("")
    lines.append(
        "pipeline stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in result["stages"].items())
    )
    c = result["ceiling_stages"]
    lines.append(
        f"ceiling stages (s): copy with indexes {result['ceiling_seconds']:.2f}, without "
        f"{c['copy_without_indexes']:.2f}, then index build {c['index_build']:.2f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--scale", type=float, default=100.0, help="scenario scale (default 100)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON report (default {OUT})")
    args = parser.parse_args(argv)
    with bench_server() as server:
        print(f"pipeline at scale {args.scale:g} into {server.description}", flush=True)
        pipeline = run_pipeline(server, args.scale)
        print("ceiling: server-side COPY of the same rows", flush=True)
        ceiling = run_ceiling(server)
        result = report(pipeline, ceiling)
        result["database"] = server.description
    result["machine"] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    result["command"] = ["python", "-m", "bench.run", *(sys.argv[1:] if argv is None else argv)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
