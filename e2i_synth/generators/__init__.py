"""Pure generators: functions of (scenario, upstream frames) returning polars frames.

They import neither dagster nor the database code, so they run in a notebook as well.
"""
