"""The walls of the house (../shared/ARCHITECTURE.md), read from the source's imports:
- core/ imports nothing else of ours; core/, world/, stats/ and every table's model and
  generator import neither dagster nor the database code (a notebook can call them);
- a table family reads core/ (and world/), never another family's module; the answer key,
  which states what every table planted, is the one family that reads the others;
- nothing but db/ opens a connection; no module imports the CLI."""

import ast
import shutil
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "e2i_synth"
PURE = ("core", "world", "stats")
NOT_PURE = {"assets.py", "checks.py", "scorecard.py"}  # a family's Dagster and database side
IMPURE_IMPORTS = (
    "dagster",
    "psycopg",
    "sqlalchemy",
    "pgserver",
    "e2i_synth.db",
    "e2i_synth.pipeline",
)
CONNECTS = {("psycopg", "connect"), ("sqlalchemy", "create_engine"), ("pgserver", "get_server")}
READS_EVERY_FAMILY = "answer_key"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import, including those inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def _connections(path: Path) -> list[int]:
    """Lines calling psycopg.connect, sqlalchemy.create_engine or pgserver.get_server."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Name) and (owner.id, node.func.attr) in CONNECTS:
                lines.append(node.lineno)
    return lines


def _is(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def wall_violations(package: Path) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).parts
        where = "/".join(parts)
        top = parts[0] if len(parts) > 1 else None
        family = parts[1] if top == "tables" and len(parts) > 2 else None
        pure = top in PURE or (family is not None and parts[-1] not in NOT_PURE)
        for line, module in _imports(path):
            if _is(module, "e2i_synth.cli"):
                found.append(f"{where}:{line} imports the CLI ({module})")
            if top == "core" and _is(module, "e2i_synth") and not _is(module, "e2i_synth.core"):
                found.append(f"{where}:{line} core imports {module}")
            if pure and any(_is(module, m) for m in IMPURE_IMPORTS):
                found.append(f"{where}:{line} pure module imports {module}")
            if family and family != READS_EVERY_FAMILY and _is(module, "e2i_synth.tables"):
                other = module.split(".")[2] if module.count(".") >= 2 else None
                if other and other != family and (package / "tables" / other).is_dir():
                    found.append(f"{where}:{line} family {family} imports family {other}")
        if top != "db":
            found += [
                f"{where}:{line} opens a connection outside db/" for line in _connections(path)
            ]
    return found


def test_the_house_keeps_its_walls():
    assert wall_violations(PACKAGE) == []


def test_each_wall_catches_a_breach(tmp_path):
    package = tmp_path / "e2i_synth"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__", "*.json"))
    breaches = {
        "core/vocabulary.py": "from e2i_synth.tables import TABLES",
        "core/seeds.py": "import dagster",
        "tables/metrics/business_metrics.py": "from e2i_synth.tables.entities import hcp_profiles",
        "tables/entities/patient_journeys.py": "from e2i_synth.db.copy import replace_rows",
        "pipeline/jobs.py": "from e2i_synth.cli import main",
        "export.py": "import psycopg\npsycopg.connect('')",
    }
    for where, line in breaches.items():
        path = package / where
        path.write_text(path.read_text() + "\n" + line + "\n")
    reported = {v.split(":")[0] for v in wall_violations(package)}
    assert reported == set(breaches)
