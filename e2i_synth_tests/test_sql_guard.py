"""SQL built from strings: no SQL text in e2i_synth interpolates Python values."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "e2i_synth"


SQL_WORDS = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|TRUNCATE|GRANT|WHERE|FROM|JOIN|VALUES"
    r"|SET|CASE|WHEN|THEN)\b"
)
SQL_SINKS = {"execute", "executemany", "copy", "stream", "SQL"}

# SQL text that interpolates Python values, reviewed and allowed: (file, the interpolated
# expressions) -> why it is safe. Everything else that builds SQL from strings fails the test;
# values go in as parameters (%s) or psycopg.sql.Literal, names as psycopg.sql.Identifier.
ALLOWED_INTERPOLATIONS: dict[tuple[str, tuple[str, ...]], str] = {
    ("db/migrate.py", ("LEDGER",)): "module constant: the ledger table's name",
    ("db/dump_schema.py", ("name",)): "database name made here from uuid4().hex (CREATE/DROP "
    "DATABASE take no parameters); sql.Identifier would be better",
    ("db/dump_schema.py", ("LEDGER", "m.version", "m.name", "m.checksum")): "text written to "
    "sql/schema.sql, not run here: version is an int, name matches [a-z0-9_]+ (discover's "
    "file-name pattern), checksum is hex",
    ("db/dump_schema.py", ("DEFAULT_READER_ROLE", "DEFAULT_READER_ROLE")): "module constant "
    "role name, written to sql/schema.sql",
    ("db/dump_schema.py", ("DEFAULT_SCORER_ROLE", "DEFAULT_SCORER_ROLE")): "module constant "
    "role name, written to sql/schema.sql",
}


def _module_strings(tree: ast.Module) -> dict[str, str]:
    """Module-level NAME = "string" assignments (SQL kept in constants)."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            if isinstance(node.value.value, str):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        found[target.id] = node.value.value
    return found


def _sql_built_from_strings(path: Path) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """(line, how, interpolated expressions) for each SQL text built with f-strings, % or
    str.format, or by concatenating a string into an execute()/SQL() argument."""
    tree = ast.parse(path.read_text())
    constants = _module_strings(tree)

    def sql_text(node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name) and node.id in constants:
            return constants[node.id]
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = [v.value for v in node.values if isinstance(v, ast.Constant)]
            values = tuple(
                ast.unparse(v.value) for v in node.values if isinstance(v, ast.FormattedValue)
            )
            if values and SQL_WORDS.search("".join(parts)):
                yield node.lineno, "f-string", values
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            text = sql_text(node.left)
            if text and SQL_WORDS.search(text):
                yield node.lineno, "% formatting", (ast.unparse(node.right),)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            text = sql_text(node.func.value) if node.func.attr == "format" else None
            if text and SQL_WORDS.search(text):
                yield node.lineno, "str.format", tuple(ast.unparse(a) for a in node.args)
        if isinstance(node, ast.Call) and node.args:
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            arg = node.args[0]
            if name in SQL_SINKS and isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Add):
                if any(sql_text(side) is not None for side in (arg.left, arg.right)):
                    yield node.lineno, f"string concatenated into {name}()", (ast.unparse(arg),)


def test_no_sql_is_built_by_interpolating_values_into_strings():
    offending, used = [], set()
    for path in sorted(SOURCE.rglob("*.py")):
        relative = path.relative_to(SOURCE).as_posix()
        for line, how, values in _sql_built_from_strings(path):
            key = (relative, values)
            if key in ALLOWED_INTERPOLATIONS:
                used.add(key)
            else:
                offending.append(f"e2i_synth/{relative}:{line}: {how} with {', '.join(values)}")
    assert offending == [], "SQL built from strings (use parameters or psycopg.sql):\n" + "\n".join(
        offending
    )
    assert set(ALLOWED_INTERPOLATIONS) - used == set(), "stale ALLOWED_INTERPOLATIONS entries"


def test_the_sql_scan_catches_interpolated_values(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "QUERY = 'SELECT * FROM t WHERE id = %s'\n"
        "def f(conn, user, table):\n"
        "    conn.execute(f\"SELECT * FROM t WHERE name = '{user}'\")\n"
        "    conn.execute(QUERY % user)\n"
        "    conn.execute('DELETE FROM {} WHERE x = 1'.format(table))\n"
        "    conn.execute('SELECT * FROM t WHERE name = ' + user)\n"
        "    conn.execute('SELECT * FROM t WHERE name = %s', (user,))\n"
    )
    found = sorted((line, how) for line, how, _ in _sql_built_from_strings(sample))
    assert found == [
        (3, "f-string"),
        (4, "% formatting"),
        (5, "str.format"),
        (6, "string concatenated into execute()"),
    ]
