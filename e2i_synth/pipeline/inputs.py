"""Upstream tables read column-projected: an asset loads only the columns its generator uses."""

from collections.abc import Sequence

import dagster as dg


def reading(**columns: Sequence[str]) -> dict[str, dg.AssetIn]:
    """ins= for an asset: each upstream table with the columns to read (PostgresIOManager
    honours `columns` in the input's metadata, as Dagster's DbIOManager does)."""
    return {table: dg.AssetIn(metadata={"columns": list(cols)}) for table, cols in columns.items()}
