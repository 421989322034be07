"""What every table schema shares: the TableSpec, the polars-to-PostgreSQL type map, validation.

A table's pandera model is the only list of its columns in the code. Everything else (the COPY
column list, the types used to read it back, the Dagster column schema, the migration test)
is derived here from the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import pandera.polars as pa
import polars as pl
from pandera.errors import SchemaError, SchemaErrors


class FrameValidationError(ValueError):
    """A frame that does not match its table's model; nothing was written."""

    def __init__(self, table: str, failure_cases: pl.DataFrame, message: str):
        self.table = table
        self.failure_cases = failure_cases
        super().__init__(message)


@dataclass(frozen=True)
class TableSpec:
    name: str
    model: type[pa.DataFrameModel]
    primary_key: tuple[str, ...]
    description: str
    # Column whose value places a row in a time partition (None: the table is replaced whole).
    partition_column: str | None = None
    # Columns stored as JSONB in PostgreSQL; they travel as JSON text in polars.
    json_columns: tuple[str, ...] = field(default=())

    @cached_property
    def schema(self) -> pa.DataFrameSchema:
        return self.model.to_schema()

    @property
    def columns(self) -> list[str]:
        return list(self.schema.columns)

    @property
    def polars_schema(self) -> dict[str, pl.DataType]:
        return {name: col.dtype.type for name, col in self.schema.columns.items()}

    @property
    def descriptions(self) -> dict[str, str]:
        return {name: col.description or "" for name, col in self.schema.columns.items()}

    @property
    def nullable(self) -> dict[str, bool]:
        return {name: bool(col.nullable) for name, col in self.schema.columns.items()}

    def pg_type(self, column: str) -> str:
        if column in self.json_columns:
            return "jsonb"
        return pg_type_for(self.polars_schema[column])

    def validate(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The frame in model column order, or FrameValidationError naming table and fields."""
        _reject_non_finite(self.name, frame)
        try:
            validated = self.model.validate(frame, lazy=True)
        except SchemaErrors as exc:
            raise FrameValidationError(
                self.name, exc.failure_cases, _summarise(self.name, exc.failure_cases)
            ) from None
        except SchemaError as exc:  # raised eagerly for some structural problems
            cases = pl.DataFrame({"check": [str(exc.check)], "failure_case": [str(exc)]})
            raise FrameValidationError(self.name, cases, f"{self.name}: {exc}") from None
        return validated.select(self.columns)


def _reject_non_finite(table: str, frame: pl.DataFrame) -> None:
    """inf and NaN are never data here; pandera lets NaN pass as null in nullable columns, and
    PostgreSQL would store them as 'Infinity' / 'NaN'."""
    floats = [c for c, t in frame.schema.items() if t.is_float()]
    bad = frame.select(
        (pl.col(c).is_not_null() & ~pl.col(c).is_finite()).sum().alias(c) for c in floats
    )
    counts = {c: bad[c][0] for c in floats if bad[c][0]}
    if counts:
        cases = pl.DataFrame(
            {
                "column": list(counts),
                "check": ["is_finite"] * len(counts),
                "failure_case": [f"{n} non-finite value(s)" for n in counts.values()],
            }
        )
        raise FrameValidationError(table, cases, _summarise(table, cases))


def _summarise(table: str, cases: pl.DataFrame) -> str:
    cols = [c for c in ("column", "check", "failure_case") if c in cases.columns]
    head = cases.select(cols).head(10).with_columns(pl.all().cast(pl.String))
    lines = [" | ".join(str(v) for v in row) for row in head.iter_rows()]
    return (
        f"table {table}: {cases.height} failure case(s) against its schema; nothing was written\n  "
        + "\n  ".join(lines)
    )


_PG_TYPES: dict[type[pl.DataType], str] = {
    pl.String: "text",
    pl.Int16: "smallint",
    pl.Int32: "integer",
    pl.Int64: "bigint",
    pl.Float32: "real",
    pl.Float64: "double precision",
    pl.Boolean: "boolean",
    pl.Date: "date",
}


def pg_type_for(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Datetime):
        return "timestamp with time zone" if dtype.time_zone else "timestamp without time zone"
    for polars_type, pg_type in _PG_TYPES.items():
        if dtype == polars_type:
            return pg_type
    raise TypeError(f"no PostgreSQL type for polars {dtype}")
