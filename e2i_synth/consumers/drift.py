"""Drift Monitor queries: baseline and current windows of feature_values, scored.

Scoring uses e2i_synth.stats.drift (PSI over baseline quantile bins, scipy's two-sample KS),
the same code that computed the answer key at generation time.
"""

from datetime import date

import polars as pl

from e2i_synth.core.scenario import MonitoringWindows
from e2i_synth.db.resource import Database
from e2i_synth.stats.drift import drift_statistics, utc_day

_WINDOW_QUERY = """
SELECT f.feature_id, f.name, f.value_type, v.value::text, v.event_timestamp
FROM feature_values v JOIN features f USING (feature_id)
WHERE v.event_timestamp >= %(start)s AND v.event_timestamp < %(end)s
  AND (%(names)s::text[] IS NULL OR f.name = ANY(%(names)s::text[]))
ORDER BY f.feature_id, v.event_timestamp
"""


def window_values(
    database: Database, start: date, end: date, features: list[str] | None = None
) -> pl.DataFrame:
    """feature_values with event_timestamp in [start, end), with their feature's name and type."""
    params = {"start": utc_day(start), "end": utc_day(end), "names": features}
    with database.connect() as conn:
        rows = conn.execute(_WINDOW_QUERY, params).fetchall()
    return pl.DataFrame(
        rows,
        schema={
            "feature_id": pl.String,
            "name": pl.String,
            "value_type": pl.String,
            "value": pl.String,
            "event_timestamp": pl.Datetime("us", "UTC"),
        },
        orient="row",
    )


def drift_windows(
    database: Database, windows: MonitoringWindows, features: list[str] | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(baseline, current) feature values of the given features (all when omitted)."""
    return (
        window_values(database, windows.baseline_start, windows.baseline_end, features),
        window_values(database, windows.current_start, windows.current_end, features),
    )


def drift_report(
    database: Database, windows: MonitoringWindows, features: list[str] | None = None
) -> pl.DataFrame:
    """Per feature: window sizes, PSI, KS statistic and p-value, and whether it is flagged."""
    baseline, current = drift_windows(database, windows, features)
    values = pl.concat([baseline, current])
    with database.connect() as conn:
        rows = conn.execute(
            "SELECT feature_id, name, value_type FROM features "
            "WHERE %(names)s::text[] IS NULL OR name = ANY(%(names)s::text[])",
            {"names": features},
        ).fetchall()
    catalogue = pl.DataFrame(
        rows,
        schema={"feature_id": pl.String, "name": pl.String, "value_type": pl.String},
        orient="row",
    )
    return drift_statistics(values, catalogue, windows)
