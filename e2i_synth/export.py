"""`e2i-synth export`: every table of the database's active scenario to Parquet or CSV files.

Layout of DIR:
- data/<table>.parquet|csv: each data table (what an agent may read)
- answer_key/ground_truth.parquet|csv: the answer key, apart, so it is easy not to hand it over
- manifest.json: scenario name and hash, package version, format, and per file its table, rows
  and column types (polars dtypes, as the pandera models declare them)

Parquet files also carry the scenario hash in their key-value metadata (e2i.scenario_hash,
e2i.table, e2i.scenario, e2i.package_version). Tables are read in key-order pages
(db.copy.iter_table) inside one read-only REPEATABLE READ transaction: memory is bounded by a
page, and the files are one consistent snapshot even while a materialization runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from e2i_synth.db.copy import READ_PAGE_ROWS, iter_table
from e2i_synth.tables import TABLES, TableSpec

FORMATS = ("parquet", "csv")
ANSWER_KEY_TABLES = ("ground_truth",)
MANIFEST = "manifest.json"
METADATA_PREFIX = "e2i."


class ExportError(RuntimeError):
    """Nothing (more) was written: no active scenario, a non-empty folder, a stale answer key."""


@dataclass(frozen=True)
class ExportedFile:
    table: str
    path: str  # relative to the export folder
    rows: int
    columns: dict[str, str]


def relative_path(table: str, fmt: str) -> str:
    folder = "answer_key" if table in ANSWER_KEY_TABLES else "data"
    return f"{folder}/{table}.{fmt}"


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("e2i-synth")
    except PackageNotFoundError:
        return "unknown"


def _active(conn: psycopg.Connection) -> tuple[str, str]:
    """(scenario_hash, scenario name) of the active scenario."""
    exists = conn.execute("SELECT to_regclass('e2i_active_scenario') IS NOT NULL").fetchone()[0]
    row = exists and conn.execute("SELECT scenario_hash, scenario_yaml FROM e2i_active_scenario")
    row = row and row.fetchone()
    if not row:
        raise ExportError("the database has no active scenario: run `e2i-synth materialize` first")
    import yaml

    return row[0], str((yaml.safe_load(row[1]) or {}).get("name", "unnamed"))


def check_target(folder: Path, force: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{folder} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise ExportError(
            f"{folder} is not empty: choose an empty or new folder, or --force to overwrite "
            "the export's own files there (data/, answer_key/, manifest.json)"
        )


def _arrow_schema(spec: TableSpec, metadata: dict[str, str]) -> pa.Schema:
    empty = pl.DataFrame(schema=spec.polars_schema).to_arrow(compat_level=pl.CompatLevel.oldest())
    return empty.schema.with_metadata(metadata)


def _write_parquet(pages, path: Path, spec: TableSpec, metadata: dict[str, str]) -> int:
    schema = _arrow_schema(spec, metadata)
    rows = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for page in pages:
            table = page.to_arrow(compat_level=pl.CompatLevel.oldest())
            writer.write_table(table.cast(schema))  # the page's types, with the file metadata
            rows += page.height
    return rows


def _write_csv(pages, path: Path, spec: TableSpec) -> int:
    rows = 0
    with path.open("wb") as out:
        header = True
        for page in pages:
            page.write_csv(out, include_header=header)
            header, rows = False, rows + page.height
        if header:  # an empty table: the header alone
            pl.DataFrame(schema=spec.polars_schema).write_csv(out)
    return rows


def export(
    conn: psycopg.Connection,
    folder: Path,
    fmt: str = "parquet",
    force: bool = False,
    page_rows: int = READ_PAGE_ROWS,
    progress: Callable[[str], None] = lambda line: None,
) -> dict:
    """Write every table of the active scenario under `folder`; return the manifest."""
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    check_target(folder, force)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    files: list[ExportedFile] = []
    with conn.transaction():
        scenario_hash, scenario_name = _active(conn)
        stale = conn.execute(
            "SELECT DISTINCT scenario_hash FROM ground_truth WHERE scenario_hash <> %s",
            (scenario_hash,),
        ).fetchall()
        if stale:
            raise ExportError(
                f"ground_truth holds rows of another scenario ({stale[0][0]}) than the active "
                f"{scenario_hash}: the last materialization did not finish; run it again"
            )
        for sub in ("data", "answer_key"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for name, spec in TABLES.items():
            relative = relative_path(name, fmt)
            path = folder / relative
            partial = path.with_name(path.name + ".partial")
            pages = iter_table(conn, spec, page_rows=page_rows)
            if fmt == "parquet":
                metadata = {
                    f"{METADATA_PREFIX}scenario_hash": scenario_hash,
                    f"{METADATA_PREFIX}scenario": scenario_name,
                    f"{METADATA_PREFIX}table": name,
                    f"{METADATA_PREFIX}package_version": _package_version(),
                }
                rows = _write_parquet(pages, partial, spec, metadata)
            else:
                rows = _write_csv(pages, partial, spec)
            os.replace(partial, path)
            # An export in the other format, overwritten with --force, leaves no stale twin.
            for other in FORMATS:
                if other != fmt:
                    (folder / relative_path(name, other)).unlink(missing_ok=True)
            columns = {c: str(t) for c, t in spec.polars_schema.items()}
            files.append(ExportedFile(name, relative, rows, columns))
            progress(f"{relative}: {rows} rows")
    manifest = {
        "scenario": scenario_name,
        "scenario_hash": scenario_hash,
        "package_version": _package_version(),
        "format": fmt,
        "files": [f.__dict__ for f in files],
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
