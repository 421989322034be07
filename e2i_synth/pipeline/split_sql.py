"""The SQL form of the data_split rule (core/split.py owns it: cutoffs and order), for checks:
core stays free of database code, and this is the one place the rule is written in SQL."""

from datetime import date

from psycopg import sql

from e2i_synth.core.scenario import Scenario
from e2i_synth.core.split import split_cutoffs
from e2i_synth.core.vocabulary import DATA_SPLITS


def utc_day_sql(timestamp: sql.Composable) -> sql.Composable:
    """The UTC calendar day of a timestamptz expression: the date a row's split follows."""
    return sql.SQL("({} AT TIME ZONE 'UTC')::date").format(timestamp)


def split_sql(day: sql.Composable) -> sql.Composable:
    """split_for_dates in SQL: the data_split of a date expression, the cutoffs as named
    placeholders that split_params binds."""
    cases = sql.SQL(" ").join(
        sql.SQL("WHEN {} < {} THEN {}").format(
            day, sql.Placeholder(f"split_cutoff_{i}"), sql.Literal(split)
        )
        for i, split in enumerate(DATA_SPLITS[:-1])
    )
    return sql.SQL("(CASE {} ELSE {} END)").format(cases, sql.Literal(DATA_SPLITS[-1]))


def split_params(scenario: Scenario) -> dict[str, date]:
    """The parameters split_sql names: the scenario's cutoffs."""
    return {f"split_cutoff_{i}": cutoff for i, cutoff in enumerate(split_cutoffs(scenario))}
