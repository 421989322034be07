"""Gap Analyzer queries: monthly series of business_metrics with target and achievement."""

from datetime import date

import polars as pl
from psycopg import sql

from e2i_synth.db.resource import Database

SERIES_COLUMNS = ("metric_date", "value", "target", "achievement_rate", "mom_change", "yoy_change")


def get_time_series(
    database: Database,
    brand: str,
    region: str,
    metric_name: str,
    start: date | None = None,
    end: date | None = None,
) -> pl.DataFrame:
    """The series' months in [start, end) (all months when omitted), oldest first."""
    query = sql.SQL(
        "SELECT {cols} FROM business_metrics WHERE brand = %s AND region = %s "
        "AND metric_name = %s AND metric_date >= %s AND metric_date < %s ORDER BY metric_date"
    ).format(cols=sql.SQL(", ").join(map(sql.Identifier, SERIES_COLUMNS)))
    params = (brand, region, metric_name, start or date.min, end or date.max)
    with database.connect() as conn:
        rows = conn.execute(query, params).fetchall()
    return pl.DataFrame(
        rows,
        schema={
            "metric_date": pl.Date,
            **{c: pl.Float64 for c in SERIES_COLUMNS[1:]},
        },
        orient="row",
    )


def achievement_by_series(database: Database) -> pl.DataFrame:
    """Every (brand, region, metric_name, month) and its achievement rate, as a gap scan reads."""
    with database.connect() as conn:
        rows = conn.execute(
            "SELECT brand, region, metric_name, metric_date, achievement_rate "
            "FROM business_metrics ORDER BY brand, region, metric_name, metric_date"
        ).fetchall()
    return pl.DataFrame(
        rows,
        schema={
            "brand": pl.String,
            "region": pl.String,
            "metric_name": pl.String,
            "metric_date": pl.Date,
            "achievement_rate": pl.Float64,
        },
        orient="row",
    )
