"""The constraints the migrations declare for a table, and those the catalog holds.

A rule a constraint enforces is stated once, as the constraint: PostgreSQL refuses every row
that breaks it, so a check scanning for such rows cannot fail. What can go wrong is the
constraint itself (dropped, NOT VALID, its foreign-key triggers disabled), and that the catalog
says without reading a row. sql/schema.sql (the migrations' result, proven equal by a test) is
the declaration; the catalog is read for the table `search_path` finds (the staging clone
during a scenario change, which has public's names too; definitions, not names, are compared).
"""

import re
from functools import cache
from pathlib import Path

import psycopg

from e2i_synth.db.migrate import sql_dir

Signature = tuple[str, str]  # (kind: p, u, f, c; definition with whitespace collapsed)

_CHECK = re.compile(
    r"^    CONSTRAINT (\w+) (CHECK \(.*?\)),?\n(?=    CONSTRAINT |\);)", re.DOTALL | re.MULTILINE
)
_ALTER = re.compile(
    r"^ALTER TABLE ONLY public\.(\w+)\n    ADD CONSTRAINT (\w+) (.*?);$", re.MULTILINE
)
_TABLE = re.compile(r"^CREATE TABLE public\.(\w+) \(\n(.*?)\n\);$", re.DOTALL | re.MULTILINE)
_KINDS = {"PRIMARY KEY": "p", "UNIQUE": "u", "FOREIGN KEY": "f", "CHECK": "c"}


def normalise(definition: str) -> str:
    """A constraint's definition without schema qualifiers and with single spaces."""
    return re.sub(r"\s+", " ", re.sub(r"\b(public|e2i_next)\.", "", definition)).strip()


def _kind(definition: str) -> str:
    return next(k for prefix, k in _KINDS.items() if definition.startswith(prefix))


@cache
def declared_constraints(schema_file: Path | None = None) -> dict[str, dict[str, Signature]]:
    """table -> constraint name -> signature, as sql/schema.sql declares them."""
    text = (schema_file or sql_dir() / "schema.sql").read_text()
    found: dict[str, dict[str, Signature]] = {}
    for table, body in _TABLE.findall(text):
        for name, definition in _CHECK.findall(body + "\n);"):
            found.setdefault(table, {})[name] = ("c", normalise(definition))
    for table, name, definition in _ALTER.findall(text):
        found.setdefault(table, {})[name] = (_kind(definition), normalise(definition))
    return found


_CATALOG = """
SELECT c.conname, c.contype::text, pg_get_constraintdef(c.oid), c.convalidated,
       coalesce(bool_and(t.tgenabled <> 'D'), true) AS triggers_enabled
FROM pg_constraint c
LEFT JOIN pg_trigger t ON t.tgconstraint = c.oid
WHERE c.conrelid = to_regclass(%s)
GROUP BY c.oid, c.conname, c.contype
ORDER BY c.conname
"""
_NOT_NULL = """
SELECT attname FROM pg_attribute
WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped AND attnotnull
"""


def constraint_report(
    conn: psycopg.Connection, table: str, not_null: set[str]
) -> dict[str, list[str]]:
    """What differs between the declaration and the catalog for `table` (the one search_path
    finds), by kind of difference; empty lists when they agree. No row of the table is read."""
    declared = declared_constraints().get(table, {})
    present: dict[Signature, str] = {}
    invalid, disabled = [], []
    for name, kind, definition, validated, triggers_enabled in conn.execute(_CATALOG, (table,)):
        present[(kind, normalise(definition))] = name
        if not validated:
            invalid.append(name)
        if not triggers_enabled:  # a foreign key whose triggers were disabled checks nothing
            disabled.append(name)
    expected = {signature: name for name, signature in declared.items()}
    null_allowed = not_null - {r[0] for r in conn.execute(_NOT_NULL, (table,))}
    return {
        "missing": sorted(name for sig, name in expected.items() if sig not in present),
        "undeclared": sorted(name for sig, name in present.items() if sig not in expected),
        "not_validated": sorted(invalid),
        "triggers_disabled": sorted(disabled),
        "nullable_but_declared_not_null": sorted(null_allowed),
    }
