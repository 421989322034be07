"""Every CHECK (... IN (...)) list of the migrated schema equals the vocabulary in code.

Read from the catalog of a migrated database: a single-column list must equal the `isin` of
that column in the table's pandera model (the models take them from core/vocabulary.py and
their own constants); the lists inside multi-column rules must equal the constants named
below. The test fails when either side changes alone (shown with an edited copy of each).
The trigger lifecycle is one rule too: the constraint and the model's STATUS_TIMESTAMPS agree.
"""

import itertools
import re
import shutil
from pathlib import Path

import psycopg
import pytest

from e2i_synth.db.migrate import migrate, sql_dir
from e2i_synth.tables import TABLES
from e2i_synth.tables.activity.treatment_events_model import (
    DISPENSING_EVENT_TYPES,
    MEDICAL_EVENT_TYPES,
    TREATMENT_EVENT_TYPES,
)
from e2i_synth.tables.activity.triggers_model import STATUS_TIMESTAMPS, STATUSES, TRIGGER_TYPES
from e2i_synth.tables.feature_store.features_model import VALUE_TYPES
from e2i_synth.tables.metrics.business_metrics_model import UNIT_INTERVAL_METRICS, WORLD_METRICS

Vocabularies = dict[tuple[str, str], list[frozenset[str]]]

# The IN lists of multi-column rules, in the order they appear in the constraint.
RULE_LISTS: Vocabularies = {
    ("treatment_events", "treatment_events_claim_type_of_event"): [
        frozenset(MEDICAL_EVENT_TYPES),
        frozenset(DISPENSING_EVENT_TYPES),
    ],
    ("treatment_events", "treatment_events_procedure_iff_medical"): [
        frozenset(MEDICAL_EVENT_TYPES)
    ],
    ("treatment_events", "treatment_events_product_iff_treatment"): [
        frozenset(TREATMENT_EVENT_TYPES)
    ],
    ("treatment_events", "treatment_events_dispensing_iff_pharmacy"): [
        frozenset(DISPENSING_EVENT_TYPES)
    ]
    * 3,
    ("triggers", "triggers_patient_iff_patient_type"): [
        frozenset(t for t, about_patient in TRIGGER_TYPES.items() if about_patient)
    ],
    ("business_metrics", "business_metrics_within_scale"): [frozenset(UNIT_INTERVAL_METRICS)],
    ("business_metrics", "business_metrics_count_iff_world"): [frozenset(WORLD_METRICS)],
    ("features", "features_range_only_numeric"): [
        frozenset(v for v in VALUE_TYPES if v in ("float", "int"))
    ],
}

_CATALOG = """
SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid),
       array(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey) ORDER BY a.attnum)
FROM pg_constraint c
WHERE c.contype = 'c' AND c.connamespace = 'public'::regnamespace
ORDER BY 1, 2
"""
_IN_LIST = re.compile(r"= ANY \(ARRAY\[(.*?)\]\)")


def code_vocabularies() -> Vocabularies:
    """(table, column or constraint) -> the IN lists code says it has."""
    found: Vocabularies = dict(RULE_LISTS)
    for name, spec in TABLES.items():
        for column, schema in spec.model.to_schema().columns.items():
            for check in schema.checks:
                if check.name == "isin":
                    found[(name, column)] = [frozenset(check.statistics["allowed_values"])]
    return found


def catalog_vocabularies(conn: psycopg.Connection) -> Vocabularies:
    """(table, column) -> IN list of each single-column CHECK, (table, constraint) -> the IN
    lists of a multi-column one, from the catalog."""
    found: Vocabularies = {}
    for table, name, definition, columns in conn.execute(_CATALOG):
        lists = [frozenset(re.findall(r"'([^']*)'::text", m)) for m in _IN_LIST.findall(definition)]
        if lists:
            found[(table, columns[0] if len(columns) == 1 else name)] = lists
    return found


def differences(code: Vocabularies, catalog: Vocabularies) -> list[str]:
    out = []
    for key in sorted(code.keys() | catalog.keys()):
        ours, theirs = code.get(key), catalog.get(key)
        if ours != theirs:
            show = [sorted(x) for x in ours] if ours else None
            out.append(f"{key}: code {show} != catalog {[sorted(x) for x in theirs or []]}")
    return out


def test_every_in_list_of_the_schema_equals_the_vocabulary(db_url):
    with psycopg.connect(db_url) as conn:
        catalog = catalog_vocabularies(conn)
    assert differences(code_vocabularies(), catalog) == []
    # Every table's every isin column is covered, and the rules' lists too.
    assert ("hcp_profiles", "specialty") in catalog
    assert len(catalog) == len(code_vocabularies())


def test_a_migration_changing_a_list_alone_fails(empty_db_url, tmp_path: Path):
    folder = tmp_path / "migrations"
    shutil.copytree(sql_dir() / "migrations", folder)
    (folder / "900_new_region.sql").write_text(
        "ALTER TABLE hcp_profiles DROP CONSTRAINT hcp_profiles_region_check;\n"
        "ALTER TABLE hcp_profiles ADD CONSTRAINT hcp_profiles_region_check CHECK (region IN "
        "('northeast', 'south', 'midwest', 'west', 'pacific'));\n"
        "ALTER TABLE treatment_events DROP CONSTRAINT treatment_events_product_iff_treatment;\n"
        "ALTER TABLE treatment_events ADD CONSTRAINT treatment_events_product_iff_treatment "
        "CHECK ((product_name IS NOT NULL) = (event_type IN ('prescription', 'refill')));\n"
    )
    migrate(empty_db_url, folder)
    with psycopg.connect(empty_db_url) as conn:
        found = differences(code_vocabularies(), catalog_vocabularies(conn))
    assert [d.split(":")[0] for d in found] == [
        "('hcp_profiles', 'region')",
        "('treatment_events', 'treatment_events_product_iff_treatment')",
    ]


def test_code_changing_a_list_alone_fails(db_url):
    code = code_vocabularies()
    code[("patient_journeys", "insurance_type")] = [
        code[("patient_journeys", "insurance_type")][0] | {"tricare"}
    ]
    code[("business_metrics", "business_metrics_within_scale")] = [frozenset({"market_share"})]
    with psycopg.connect(db_url) as conn:
        found = differences(code, catalog_vocabularies(conn))
    assert [d.split(":")[0] for d in found] == [
        "('business_metrics', 'business_metrics_within_scale')",
        "('patient_journeys', 'insurance_type')",
    ]


@pytest.fixture
def status_rule(db_url) -> str:
    with psycopg.connect(db_url) as conn:
        definition = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conname = 'triggers_status_matches_timestamps'"
        ).fetchone()[0]
    return definition.removeprefix("CHECK ")


def test_trigger_lifecycle_constraint_is_the_models_status_timestamps(db_url, status_rule):
    """Every status and every set/unset pattern of (delivered_at, viewed_at, resolved_at): the
    constraint accepts exactly the patterns STATUS_TIMESTAMPS allows, for every status."""
    assert tuple(STATUS_TIMESTAMPS) == STATUSES
    cases = [
        (status, *pattern)
        for status in STATUS_TIMESTAMPS
        for pattern in itertools.product((True, False), repeat=3)
    ]
    values = ", ".join(
        f"('{s}', {', '.join('now()' if set_ else 'NULL::timestamptz' for set_ in p)})"
        for s, *p in cases
    )
    with psycopg.connect(db_url) as conn:
        accepted = conn.execute(
            f"SELECT coalesce({status_rule}, true) FROM (VALUES {values}) "  # noqa: S608 - ours
            "AS t(status, delivered_at, viewed_at, resolved_at)"
        ).fetchall()
    for (status, *pattern), (ok,) in zip(cases, accepted, strict=True):
        allowed = all(
            want is None or want == got
            for want, got in zip(STATUS_TIMESTAMPS[status], pattern, strict=True)
        )
        assert ok == allowed, (status, pattern)
