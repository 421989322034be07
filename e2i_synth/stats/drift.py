"""Drift statistics between the monitoring windows, as the Drift Monitor computes them.

Per feature: PSI of the current window against the baseline, and a two-sample
Kolmogorov-Smirnov test (scipy.stats.ks_2samp).

Numeric features (float, int): PSI over PSI_BINS bins cut at the baseline's quantiles
(duplicate cut points of discrete features merge bins), KS on the values.
Bool and category features: PSI over the categories, KS on the category codes (categories in
sorted order; false = 0, true = 1). For a bool the KS statistic is the difference of the two
shares of true; for more categories the code order is arbitrary, but any change of the category
distribution changes the codes' distribution, so KS still tests it. The Drift Monitor does the
same, which keeps this module its reference implementation.

The KS p-value is taken at the windows' effective sizes: feature values are repeated
observations of entities (a patient, an HCP), so a window of n rows holds fewer independent
draws. Kish's effective size over the entities (n^2 / sum of squared rows per entity) stands in
for n, in Smirnov's limit (which does not need whole sizes); with every row its own entity it is
the plain asymptotic two-sample KS test. Without it the test reads two windows of different
patients as drift (about one run in three at full scale, 3-month windows).

A feature is flagged (drifted) when psi >= PSI_THRESHOLD or ks_pvalue < KS_ALPHA.
"""

from datetime import UTC, date, datetime

import numpy as np
import polars as pl
from scipy.stats import kstwobign

from e2i_synth.core.scenario import MonitoringWindows

PSI_BINS = 10
PSI_THRESHOLD = 0.2
KS_ALPHA = 0.01
# Share given to an empty bin, so PSI stays finite.
PSI_FLOOR = 1e-4
# The columns of feature_values the statistics read.
OBSERVED_COLUMNS = ("feature_id", "entity_values", "value", "event_timestamp")


def utc_day(day: date) -> datetime:
    """Midnight UTC of `day`: where a window of feature_values event timestamps starts."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins."""
    e = np.maximum(expected / max(expected.sum(), 1), PSI_FLOOR)
    a = np.maximum(actual / max(actual.sum(), 1), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def _numeric(values: pl.Series) -> np.ndarray:
    return values.cast(pl.Float64).to_numpy()


def kish_size(entities: pl.Series) -> float:
    """Kish's effective sample size of rows clustered by entity: n^2 / sum(k^2)."""
    k = entities.value_counts()["count"].cast(pl.Float64).to_numpy()
    return float(k.sum() ** 2 / (k**2).sum())


def ks_statistic(b: np.ndarray, c: np.ndarray) -> float:
    """The two-sample KS statistic: the largest gap of the empirical CDFs."""
    points = np.concatenate([b, c])
    cdf_b = np.searchsorted(np.sort(b), points, side="right") / len(b)
    cdf_c = np.searchsorted(np.sort(c), points, side="right") / len(c)
    return float(np.max(np.abs(cdf_b - cdf_c)))


def ks_pvalue(statistic: float, sizes: tuple[float, float]) -> float:
    """Smirnov's limit of the two-sample KS p-value at (effective) sizes."""
    pairs = sizes[0] * sizes[1] / (sizes[0] + sizes[1])
    return float(kstwobign.sf(statistic * np.sqrt(pairs)))


def feature_statistics(
    baseline: pl.Series,
    current: pl.Series,
    value_type: str,
    sizes: tuple[float, float] | None = None,
) -> tuple[float | None, float | None, float | None]:
    """PSI, KS statistic and KS p-value of two windows' values; the p-value at `sizes`, the
    windows' effective sizes (kish_size), else at their row counts."""
    if value_type in ("float", "int"):
        b, c = _numeric(baseline), _numeric(current)
        cuts = np.unique(np.quantile(b, np.linspace(0, 1, PSI_BINS + 1)[1:-1]))
        bins = len(cuts) + 1
        b_counts = np.bincount(np.searchsorted(cuts, b, side="right"), minlength=bins)
        c_counts = np.bincount(np.searchsorted(cuts, c, side="right"), minlength=bins)
    else:
        # JSON scalars: "tier_1" (with quotes), true, false; codes in sorted order.
        categories = sorted(set(baseline.to_list()) | set(current.to_list()))
        index = {v: i for i, v in enumerate(categories)}
        b = baseline.replace_strict(index, return_dtype=pl.Int64).to_numpy()
        c = current.replace_strict(index, return_dtype=pl.Int64).to_numpy()
        b_counts = np.bincount(b, minlength=len(categories))
        c_counts = np.bincount(c, minlength=len(categories))
    statistic = ks_statistic(b, c)
    pvalue = ks_pvalue(statistic, sizes or (len(b), len(c)))
    return psi(b_counts, c_counts), statistic, pvalue


def is_flagged(psi_value: float, ks_pvalue: float) -> bool:
    """The Drift Monitor's rule for one feature."""
    return psi_value >= PSI_THRESHOLD or ks_pvalue < KS_ALPHA


def window_masks(windows: MonitoringWindows) -> dict[str, pl.Expr]:
    """event_timestamp in the baseline and in the current window, [start, end)."""
    return {
        "baseline": pl.col("event_timestamp").is_between(
            utc_day(windows.baseline_start), utc_day(windows.baseline_end), closed="left"
        ),
        "current": pl.col("event_timestamp").is_between(
            utc_day(windows.current_start), utc_day(windows.current_end), closed="left"
        ),
    }


def drift_statistics(
    feature_values: pl.DataFrame, features: pl.DataFrame, windows: MonitoringWindows
) -> pl.DataFrame:
    """One row per feature (in feature_id order): the baseline and current window sizes, PSI,
    KS statistic and p-value, and whether the Drift Monitor's thresholds flag it.

    `feature_values` needs feature_id, entity_values, value (JSON text, as generated or as
    read from jsonb) and event_timestamp; `features` needs feature_id, name and value_type.
    """
    in_window = window_masks(windows)
    observed = feature_values.select(OBSERVED_COLUMNS)
    rows = []
    for feature in features.sort("feature_id").iter_rows(named=True):
        own = observed.filter(pl.col("feature_id") == feature["feature_id"])
        baseline_rows, current_rows = (
            own.filter(in_window["baseline"]),
            own.filter(in_window["current"]),
        )
        baseline, current = baseline_rows["value"], current_rows["value"]
        if baseline.is_empty() or current.is_empty():
            stats = (None, None, None)  # nothing to compare: null statistics, drifted null
        else:
            sizes = (
                kish_size(baseline_rows["entity_values"]),
                kish_size(current_rows["entity_values"]),
            )
            stats = feature_statistics(baseline, current, feature["value_type"], sizes)
        rows.append(
            {
                "feature": feature["name"],
                "value_type": feature["value_type"],
                "n_baseline": baseline.len(),
                "n_current": current.len(),
                "psi": stats[0],
                "ks_statistic": stats[1],
                "ks_pvalue": stats[2],
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "feature": pl.String,
            "value_type": pl.String,
            "n_baseline": pl.Int64,
            "n_current": pl.Int64,
            "psi": pl.Float64,
            "ks_statistic": pl.Float64,
            "ks_pvalue": pl.Float64,
        },
    ).with_columns(drifted=(pl.col("psi") >= PSI_THRESHOLD) | (pl.col("ks_pvalue") < KS_ALPHA))
