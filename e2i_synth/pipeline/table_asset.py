"""What every table asset declares beyond its function: owners, tags, code version, and the
column schema from its pandera model (so the UI shows the columns before the first run).

code_version is a digest of the source that produces the table's rows: the generator module
and, transitively, every e2i_synth module it imports (the schema, scenario, seeds, domain,
answer-key code...). It changes exactly when the rows of a given scenario could change, so
Dagster marks the asset "code version changed" after such an edit and not after an edit to the
CLI, the checks or the docs. The package version would not do: it stays 0.x through every
change made in a checkout.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from functools import cache
from pathlib import Path

from e2i_synth.db.metadata import column_schema
from e2i_synth.tables import TABLES

OWNERS = ["team:e2i-synth"]
PACKAGE = "e2i_synth"

# The module whose functions generate each table's rows.
GENERATORS = {
    "hcp_profiles": "e2i_synth.tables.entities.hcp_profiles",
    "patient_journeys": "e2i_synth.tables.entities.patient_journeys",
    "treatment_events": "e2i_synth.tables.activity.treatment_events",
    "ml_predictions": "e2i_synth.tables.activity.ml_predictions",
    "triggers": "e2i_synth.tables.activity.triggers",
    "business_metrics": "e2i_synth.tables.metrics.business_metrics",
    "feature_groups": "e2i_synth.tables.feature_store.catalog",
    "features": "e2i_synth.tables.feature_store.catalog",
    "feature_values": "e2i_synth.tables.feature_store.feature_values",
    "ground_truth": "e2i_synth.tables.answer_key.ground_truth",
}


@cache
def _module_file(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(spec.origin) if spec is not None and spec.origin else None


@cache  # the generators share most of their modules: each source is parsed once
def _imports(name: str, path: Path) -> frozenset[str]:
    """The e2i_synth modules `path` imports (a `from package import module` counts the module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative import
                parts = name.split(".")[: -node.level]
                base = ".".join([*parts, node.module])
            if base.split(".")[0] != PACKAGE:
                continue
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if _is_module(f"{base}.{a.name}"))
    return frozenset(found)


@cache
def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # `from module import function`: the parent is no package
        return False


@cache
def source_modules(module: str) -> dict[str, Path]:
    """`module` and every e2i_synth module it imports, transitively: name -> source file."""
    seen: dict[str, Path] = {}
    pending = [module]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None or path.suffix != ".py":
            continue
        seen[name] = path
        pending.extend(_imports(name, path) - seen.keys())
    return seen


def source_digest(module: str) -> str:
    """sha256 (12 hex digits) over the source of source_modules(module), in name order."""
    modules = source_modules(module)
    digest = hashlib.sha256()
    for name in sorted(modules):
        digest.update(name.encode())
        digest.update(modules[name].read_bytes())
    return digest.hexdigest()[:12]


def table_asset(table: str, group: str, partitioning: str = "none") -> dict[str, object]:
    """Keyword arguments for `@dg.asset` of the table `table` (its name is the asset's)."""
    spec = TABLES[table]
    return {
        "group_name": group,
        "kinds": {"polars", "postgres"},
        "description": spec.description,
        "owners": OWNERS,
        "tags": {"domain": group, "partitioning": partitioning, "storage": "postgres"},
        "code_version": source_digest(GENERATORS[table]),
        "metadata": {
            "dagster/column_schema": column_schema(spec),
            "dagster/table_name": f"public.{spec.name}",
        },
    }
