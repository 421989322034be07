"""Drift Monitor queries: baseline and current windows of feature_values, scored.

Scoring uses e2i_synth.stats.drift (PSI over baseline quantile bins, the two-sample KS test at
the windows' effective sizes), the same code that computed the answer key at generation time.

The monitor refuses to judge a feature whose window holds fewer than MIN_WINDOW_VALUES values:
below it PSI over 10 bins crosses its 0.2 threshold by chance alone (two independent samples
of 56 values each are flagged about 80% of the time, of 250 about 1%, KS's own level). Such a
feature gets null statistics, drifted null, and a `refusal` saying how many values it has and
needs. The seed's 7-day window holds enough at full scale (about 500 values of an HCP feature,
750 of a patient feature), not at scale small.
"""

from datetime import date

import polars as pl

from e2i_synth.core.scenario import MonitoringWindows, Scenario
from e2i_synth.db.resource import Database
from e2i_synth.stats.drift import drift_statistics, utc_day
from e2i_synth.world.drift import downstream_of

# Values a window needs before the monitor judges a feature (see the module docstring).
MIN_WINDOW_VALUES = 250

_WINDOW_QUERY = """
SELECT f.feature_id, f.name, f.value_type, v.entity_values::text, v.value::text,
       v.event_timestamp
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
            "entity_values": pl.String,
            "value": pl.String,
            "event_timestamp": pl.Datetime("us", "UTC"),
        },
        orient="row",
    )


def expected_flags(scenario: Scenario) -> tuple[set[str], set[str]]:
    """(must, may): the planted features the monitor must flag, and the features it may flag
    besides them: downstream of a planted drift of a patient attribute (world.drift), which
    moves them in the world. Any other flag is a false alarm."""
    must = {d.feature for d in scenario.drifts}
    return must, {f for d in scenario.drifts for f in downstream_of(d.feature)} - must


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
    """Per feature: window sizes, PSI, KS statistic and p-value, and whether it is flagged; or,
    for a window too thin to judge, null statistics and the refusal."""
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
    return refuse_thin_windows(drift_statistics(values, catalogue, windows))


def refusal(n_baseline: int, n_current: int, needed: int = MIN_WINDOW_VALUES) -> str | None:
    """Why a feature's windows are too thin to judge, or None when they are not."""
    thin = [
        f"{n} values in the {name} window"
        for name, n in (("baseline", n_baseline), ("current", n_current))
        if n < needed
    ]
    if not thin:
        return None
    return f"too thin to judge: {' and '.join(thin)}; a drift test needs at least {needed}"


def refuse_thin_windows(report: pl.DataFrame, needed: int = MIN_WINDOW_VALUES) -> pl.DataFrame:
    """drift_statistics' report with a `refusal` column; a refused feature's statistics and
    drifted are null."""
    reasons = [
        refusal(b, c, needed)
        for b, c in zip(report["n_baseline"], report["n_current"], strict=True)
    ]
    refused = pl.Series("refusal", reasons, dtype=pl.String)
    judged = refused.is_null()
    return report.with_columns(
        *(
            pl.when(judged).then(pl.col(c)).otherwise(None).alias(c)
            for c in ("psi", "ks_statistic", "ks_pvalue", "drifted")
        ),
        refused,
    )
