"""What the UI shows of each asset before and after a run: owners, tags, code version and column
schema on the definitions; per-partition numbers (the Plots tab) on partition materializations."""

from __future__ import annotations

import re

import dagster as dg
import polars as pl

from e2i_synth.db.copy import read_table
from e2i_synth.definitions import build_resources, defs
from e2i_synth.pipeline.partitions import range_tags
from e2i_synth.pipeline.table_asset import OWNERS, source_digest, source_modules
from e2i_synth.tables import TABLES
from e2i_synth.tables.entities import assets as entities
from e2i_synth.tables.feature_store import assets as feature_store
from e2i_synth.tables.metrics import assets as metrics


def test_every_asset_declares_owners_tags_code_version_and_column_schema():
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    assert {k.to_user_string() for k in keys} == set(TABLES)
    for key in keys:
        node = graph.get(key)
        spec = TABLES[key.to_user_string()]
        assert node.owners == OWNERS
        assert {"domain", "partitioning", "storage"} <= set(node.tags)
        assert re.fullmatch(r"[0-9a-f]{12}", node.code_version or ""), key
        schema = node.metadata["dagster/column_schema"]
        assert [c.name for c in schema.columns] == list(spec.columns)
        assert all(c.description for c in schema.columns)
        assert node.metadata["dagster/table_name"] == f"public.{spec.name}"
    assert graph.get(dg.AssetKey("feature_values")).tags["partitioning"] == "daily"
    assert graph.get(dg.AssetKey("business_metrics")).tags["partitioning"] == "monthly"


def test_code_version_covers_the_modules_the_generator_imports():
    modules = source_modules("e2i_synth.tables.feature_store.feature_values")
    # the schema, seeds and scenario shape the rows: an edit there changes the code version
    assert {
        "e2i_synth.tables.feature_store.feature_values_model",
        "e2i_synth.core.seeds",
        "e2i_synth.core.scenario",
    } <= set(modules)
    assert "e2i_synth.cli" not in modules
    assert source_digest("e2i_synth.tables.feature_store.feature_values") == source_digest(
        "e2i_synth.tables.feature_store.feature_values"
    )
    assert source_digest("e2i_synth.tables.feature_store.feature_values") != source_digest(
        "e2i_synth.tables.activity.triggers"
    )


def _partition_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, dict]:
    return {
        e.partition: dict(e.materialization.metadata)
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(asset)
    }


def test_partition_materializations_carry_numbers_for_the_plots_tab(database):
    assets = dg.load_assets_from_modules([entities, feature_store, metrics])
    resources = build_resources(database, scale="small")
    instance = dg.DagsterInstance.ephemeral()
    base = ["hcp_profiles", "patient_journeys", "feature_groups", "features"]
    assert dg.materialize(assets, selection=base, resources=resources, instance=instance).success

    # Three days around engagement_score's planted mean shift (2026-01-01), in one range run.
    days = dg.materialize(
        assets,
        selection=["feature_values"],
        resources=resources,
        instance=instance,
        tags=range_tags("2025-12-31", "2026-01-02"),
    )
    by_day = _partition_metadata(days, "feature_values")
    assert set(by_day) == {"2025-12-31", "2026-01-01", "2026-01-02"}
    with database.connect() as conn:
        stored = read_table(conn, TABLES["feature_values"])
        names = read_table(conn, TABLES["features"]).select("feature_id", "name")
    expected = (
        stored.join(names, on="feature_id")
        .with_columns(
            pl.col("event_timestamp").dt.strftime("%Y-%m-%d").alias("day"),
            pl.col("value").cast(pl.Float64, strict=False).alias("number"),
        )
        .drop_nulls("number")
        .group_by("day", "name")
        .agg(pl.col("number").mean())
    )
    assert expected.height > 0
    for day, name, mean in expected.iter_rows():
        value = by_day[day][f"mean {name}"]
        assert isinstance(value, dg.FloatMetadataValue)
        assert abs(value.value - mean) < 1e-9
    # each day its own numbers, not the range's
    assert by_day["2025-12-31"] != by_day["2026-01-02"]

    # Two months around Kisqali/northeast/trx's planted gap (an access shock from 2026-01 that
    # dispenses 78% of the refills).
    months = dg.materialize(
        assets,
        selection=["business_metrics"],
        resources=resources,
        instance=instance,
        tags=range_tags("2025-12-01", "2026-01-01"),
    )
    by_month = _partition_metadata(months, "business_metrics")
    assert set(by_month) == {"2025-12-01", "2026-01-01"}
    series = "achievement_rate Kisqali/northeast/trx"
    before, after = by_month["2025-12-01"][series].value, by_month["2026-01-01"][series].value
    assert after < before
    with database.connect() as conn:
        (stored,) = conn.execute(
            "SELECT achievement_rate FROM business_metrics "
            "WHERE metric_id = 'BM-Kisqali-northeast-trx-2026-01'"
        ).fetchone()
    assert after == stored
    assert "mean achievement_rate" in by_month["2026-01-01"]
