"""The data_split rule, stated once: a row's split follows its date (a journey's start, a
prediction's or metric's or feature value's date), by fixed shares of the scenario window.
Generators use the polars form (split_for_dates); the checks its SQL form
(pipeline/split_sql.py, the cutoffs bound as parameters): both read the cutoffs and the order
from here."""

from datetime import date, timedelta

import polars as pl

from e2i_synth.core.scenario import Scenario
from e2i_synth.core.vocabulary import DATA_SPLITS

# Cumulative share of the date window given to each split, in time order.
SPLIT_BOUNDS = (0.60, 0.80, 0.95, 1.00)


def split_cutoffs(scenario: Scenario) -> list[date]:
    """Dates at which train, validation, test and holdout end (exclusive), by journey start."""
    span = (scenario.end_date - scenario.start_date).days
    return [scenario.start_date + timedelta(days=round(span * b)) for b in SPLIT_BOUNDS[:-1]]


def split_for_dates(start_dates: pl.Expr, scenario: Scenario) -> pl.Expr:
    """data_split of a journey from its start date; shared by every table that carries a split."""
    expr = pl.lit(DATA_SPLITS[-1])
    for cutoff, split in reversed(list(zip(split_cutoffs(scenario), DATA_SPLITS, strict=False))):
        expr = pl.when(start_dates < cutoff).then(pl.lit(split)).otherwise(expr)
    return expr
