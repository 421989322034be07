"""What the catalog says about a schema's tables, as comparable text, and exact clones of them.

A scenario change loads into a staging schema and renames its tables into public
(db/active_scenario.py): the staging tables become the public ones, so they must be exact
clones of them. clone_tables() builds them from the catalog (pg_get_constraintdef,
pg_get_indexdef, pg_get_triggerdef, pg_policies, the ACL): the same column, constraint, index,
trigger and policy NAMES (names are unique per schema, so they can repeat in staging), the same
foreign keys between the cloned tables, grants, row-level security, comments and owner.
describe() is the catalog of a schema's tables with the schema's name taken out of every
definition: swap_in() refuses staging unless describe(staging) == describe(public), and a test
compares describe() of a swapped-in public schema with a freshly migrated one, so a future
migration that adds something the clone misses fails that test instead of being lost at the
next scenario change. What clone_tables() cannot reproduce (sequences or identity columns,
views or foreign keys of tables outside the set, inheritance, partitions, column grants,
grants by another grantor than the owner) it refuses, naming it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import psycopg
from psycopg import sql

# Every query here runs with search_path = pg_catalog (in a transaction, SET LOCAL), so that
# the pg_get_*def functions qualify every table name with its schema.
_TABLES = """
SELECT c.oid, c.relname, c.relkind::text, c.relpersistence::text, c.relrowsecurity,
       c.relforcerowsecurity, c.relreplident::text, coalesce(c.reloptions, '{}')::text[],
       pg_get_userbyid(c.relowner), obj_description(c.oid, 'pg_class'),
       c.relispartition, EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid
                                 OR i.inhparent = c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = ANY(%s)
ORDER BY c.relname
"""
_ACL = """
SELECT pg_get_userbyid(a.grantor),
       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
       a.privilege_type, a.is_grantable
FROM pg_class c, aclexplode(c.relacl) a
WHERE c.oid = %s
ORDER BY 2, 3
"""
_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text,
       coll.collname, a.attacl::text, col_description(a.attrelid, a.attnum),
       a.attstattarget, a.attstorage::text, a.attcompression::text
FROM pg_attribute a
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_collation coll ON coll.oid = a.attcollation AND a.attcollation <> 100
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
_CONSTRAINTS = """
SELECT c.conname, c.contype::text, pg_get_constraintdef(c.oid), c.condeferrable,
       c.condeferred, c.convalidated, c.connoinherit,
       obj_description(c.oid, 'pg_constraint'), c.confrelid::regclass::text
FROM pg_constraint c
WHERE c.conrelid = %s
ORDER BY c.conname
"""
_INDEXES = """
SELECT ic.relname, pg_get_indexdef(i.indexrelid), i.indisclustered, i.indisreplident,
       obj_description(i.indexrelid, 'pg_class'),
       EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid
               AND c.conrelid = i.indrelid)
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = %s
ORDER BY ic.relname
"""
_TRIGGERS = """
SELECT t.tgname, pg_get_triggerdef(t.oid), t.tgenabled::text,
       obj_description(t.oid, 'pg_trigger')
FROM pg_trigger t
WHERE t.tgrelid = %s AND NOT t.tgisinternal
ORDER BY t.tgname
"""
_POLICIES = """
SELECT p.polname, p.polpermissive, p.polcmd::text,
       array(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r) END
             FROM unnest(p.polroles) r ORDER BY 1),
       pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid),
       obj_description(p.oid, 'pg_policy')
FROM pg_policy p
WHERE p.polrelid = %s
ORDER BY p.polname
"""
# Objects depending on the table that a rename would leave pointing at the old one: views and
# rules (pg_rewrite), sequences owned by a column, extended statistics.
_DEPENDENTS = """
SELECT DISTINCT CASE d.classid
         WHEN 'pg_rewrite'::regclass THEN
             'view or rule ' || (SELECT r.ev_class::regclass::text FROM pg_rewrite r
                                 WHERE r.oid = d.objid)
         WHEN 'pg_class'::regclass THEN 'sequence ' || d.objid::regclass::text
         ELSE 'statistics ' || (SELECT s.stxname FROM pg_statistic_ext s WHERE s.oid = d.objid)
       END
FROM pg_depend d
WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = %s
  AND (d.classid = 'pg_statistic_ext'::regclass
       OR (d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
           AND (SELECT relkind FROM pg_class WHERE oid = d.objid) = 'S')
       OR (d.classid = 'pg_rewrite'::regclass
           AND (SELECT r.ev_class FROM pg_rewrite r WHERE r.oid = d.objid) <> %s))
ORDER BY 1
"""
# Foreign keys from or to the table, with the other end outside the cloned set.
_FOREIGN_KEYS_OUT = """
SELECT c.conname, c.conrelid::regclass::text, c.confrelid::regclass::text
FROM pg_constraint c
WHERE c.contype = 'f' AND (c.conrelid = %s OR c.confrelid = %s)
  AND NOT (c.conrelid = ANY(%s) AND c.confrelid = ANY(%s))
"""


class CloneError(RuntimeError):
    """A table the scenario change swaps has something an exact clone cannot reproduce."""


def _pg_catalog_path(cur: psycopg.Cursor) -> None:
    cur.execute("SET LOCAL search_path = pg_catalog")


def _unqualify(text: object, schema: str, tables: Iterable[str]) -> object:
    """`text` (a definition) with the schema's qualifier taken off the names of `tables`
    ("public.t" -> "t"; a function's "public.f()" is kept)."""
    if not isinstance(text, str):
        return text
    quoted = re.escape(_quoted(schema))
    names = "|".join(re.escape(_quoted(t)) for t in sorted(tables, key=len, reverse=True))
    return re.sub(rf'(?<![\w."]){quoted}\.(?=(?:{names})(?![\w$]))', "", text)


def _quoted(name: str) -> str:
    """`name` as PostgreSQL prints it: bare when it can be, else in double quotes."""
    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else '"' + name.replace('"', '""') + '"'


def describe(
    conn: psycopg.Connection, schema: str = "public", tables: Iterable[str] | None = None
) -> dict[str, dict[str, object]]:
    """table -> its catalog (kind, persistence, RLS, owner, ACL, comment, columns, constraints,
    indexes, triggers, policies, dependents), every definition without `schema.`: equal for
    two schemas whose tables are indistinguishable by name. All tables when `tables` is None."""
    with conn.transaction(), conn.cursor() as cur:
        _pg_catalog_path(cur)
        if tables is None:
            tables = [
                r[0]
                for r in cur.execute(
                    """SELECT c.relname FROM pg_class c JOIN pg_namespace n
                       ON n.oid = c.relnamespace
                       WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')""",
                    (schema,),
                )
            ]
        tables = list(tables)
        found: dict[str, dict[str, object]] = {}
        for row in cur.execute(_TABLES, (schema, tables)).fetchall():
            oid, name = row[0], row[1]

            def rows(query: str, *args: object, oid=oid) -> list[tuple]:
                return [
                    tuple(_unqualify(v, schema, tables) for v in r)
                    for r in cur.execute(query, (oid, *args)).fetchall()
                ]

            found[name] = {
                "table": tuple(_unqualify(v, schema, tables) for v in row[2:]),
                "acl": rows(_ACL),
                "columns": rows(_COLUMNS),
                "constraints": rows(_CONSTRAINTS),
                "indexes": rows(_INDEXES),
                "triggers": rows(_TRIGGERS),
                "policies": rows(_POLICIES),
                "dependents": rows(_DEPENDENTS, oid),
            }
        return found


def _literal(value: str | None) -> sql.Composable:
    return sql.Literal(value) if value is not None else sql.SQL("NULL")


def _retarget(definition: str, source: str, target: str) -> str:
    """A pg_get_*def text naming tables `source.x` (search_path pg_catalog): naming `target.x`."""
    quoted = _quoted(target)
    src = re.escape(_quoted(source))
    return re.sub(
        rf"(?<=\bON ){src}\.|(?<=\bON ONLY ){src}\.|(?<=REFERENCES ){src}\.",
        quoted + ".",
        definition,
    )


def _refuse(problems: list[str]) -> None:
    if problems:
        raise CloneError(
            "a scenario change swaps tables by renaming them, and cannot clone: "
            + "; ".join(problems)
            + " (teach e2i_synth/db/catalog.py to clone it, or keep it off these tables)"
        )


def clone_tables(
    cur: psycopg.Cursor,
    names: Sequence[str],
    target: str,
    source: str = "public",
) -> None:
    """Create in schema `target` (which exists, empty) an exact clone of each of `source`'s
    tables `names`, empty; CloneError (before creating anything) on what it cannot clone.
    Runs in the caller's transaction; its search_path is pg_catalog until that ends."""
    _pg_catalog_path(cur)
    src, dst = sql.Identifier(source), sql.Identifier(target)
    described = describe(cur.connection, source, names)
    _pg_catalog_path(cur)  # describe's transaction was a savepoint: SET LOCAL ended with it
    oids = {r[1]: r[0] for r in cur.execute(_TABLES, (source, list(names))).fetchall()}
    problems = [f"no table {source}.{n}" for n in names if n not in described]
    oid_list = list(oids.values())
    for name in names:
        if name not in described:
            continue
        about = described[name]
        kind, _persistence, *_rest = about["table"]
        ispartition, inherits = about["table"][-2:]
        if kind != "r" or ispartition or inherits:
            problems.append(f"{name} is partitioned, a partition or inherits")
        problems += [f"{name}: {d} depends on it" for d in about["dependents"]]
        for column in about["columns"]:
            if column[4] or "nextval(" in (column[3] or ""):
                problems.append(f"{name}.{column[0]} takes its values from a sequence")
            if column[7] is not None:
                problems.append(f"{name}.{column[0]} has column privileges")
        owner = about["table"][6]
        problems += [
            f"{name}: {grantee} got {privilege} from {grantor}, not the owner"
            for grantor, grantee, privilege, _ in about["acl"]
            if grantor != owner
        ]
        for fk, child, parent in cur.execute(
            _FOREIGN_KEYS_OUT, (oids[name], oids[name], oid_list, oid_list)
        ).fetchall():
            problems.append(f"foreign key {fk} of {child} to {parent} leaves the set")
    _refuse(problems)

    for name in names:
        table = sql.Identifier(name)
        about = described[name]
        _kind, _persistence, rls, force_rls, replident, options, owner, comment = about["table"][:8]
        cur.execute(
            sql.SQL(
                "CREATE TABLE {d}.{t} (LIKE {s}.{t} INCLUDING DEFAULTS INCLUDING "
                "CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMPRESSION "
                "INCLUDING COMMENTS)"
            ).format(d=dst, s=src, t=table)
        )
        target_table = sql.SQL("{}.{}").format(dst, table)
        if options:
            cur.execute(
                sql.SQL("ALTER TABLE {} SET ({})").format(
                    target_table, sql.SQL(", ").join(map(sql.SQL, options))
                )
            )
        if comment is not None:
            cur.execute(
                sql.SQL("COMMENT ON TABLE {} IS {}").format(target_table, _literal(comment))
            )
        # Keys first (their indexes take the constraint's name), then the other indexes.
        for conname, contype, definition, *_ in about["constraints"]:
            if contype not in ("p", "u", "x"):
                continue
            cur.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    target_table, sql.Identifier(conname), sql.SQL(definition)
                )
            )
        for index, _definition, clustered, _replident, ix_comment, backs in about["indexes"]:
            if not backs:
                full = cur.execute(
                    "SELECT pg_get_indexdef(%s::regclass)",
                    (sql.SQL("{}.{}").format(src, sql.Identifier(index)).as_string(cur),),
                ).fetchone()[0]
                cur.execute(_retarget(full, source, target))
            if ix_comment is not None:
                cur.execute(
                    sql.SQL("COMMENT ON INDEX {}.{} IS {}").format(
                        dst, sql.Identifier(index), _literal(ix_comment)
                    )
                )
            if clustered:
                cur.execute(
                    sql.SQL("ALTER TABLE {} CLUSTER ON {}").format(
                        target_table, sql.Identifier(index)
                    )
                )
        if replident != "d":
            cur.execute(
                sql.SQL("ALTER TABLE {} REPLICA IDENTITY {}").format(
                    target_table,
                    {"n": sql.SQL("NOTHING"), "f": sql.SQL("FULL")}.get(replident)
                    or sql.SQL("USING INDEX {}").format(
                        sql.Identifier(next(i[0] for i in about["indexes"] if i[3]))
                    ),
                )
            )
        if rls:
            cur.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(target_table))
        if force_rls:
            cur.execute(sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(target_table))
        for polname, permissive, cmd, roles, qual, check, pol_comment in about["policies"]:
            policy = sql.SQL("CREATE POLICY {p} ON {t} AS {kind} FOR {cmd} TO {roles}").format(
                p=sql.Identifier(polname),
                t=target_table,
                kind=sql.SQL("PERMISSIVE" if permissive else "RESTRICTIVE"),
                cmd=sql.SQL(
                    {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "*": "ALL"}[cmd]
                ),
                roles=sql.SQL(", ").join(
                    sql.SQL("PUBLIC") if r == "public" else sql.Identifier(r) for r in roles
                ),
            )
            if qual is not None:
                policy += sql.SQL(" USING ({})").format(sql.SQL(qual))
            if check is not None:
                policy += sql.SQL(" WITH CHECK ({})").format(sql.SQL(check))
            cur.execute(policy)
            if pol_comment is not None:
                cur.execute(
                    sql.SQL("COMMENT ON POLICY {} ON {} IS {}").format(
                        sql.Identifier(polname), target_table, _literal(pol_comment)
                    )
                )
        if owner != cur.execute("SELECT current_user").fetchone()[0]:
            cur.execute(
                sql.SQL("ALTER TABLE {} OWNER TO {}").format(target_table, sql.Identifier(owner))
            )
        if about["acl"]:
            # Exactly the source's ACL: the owner's implicit privileges revoked, then each
            # entry granted (every grantor is the owner, checked above).
            cur.execute(
                sql.SQL("REVOKE ALL ON {} FROM {}").format(target_table, sql.Identifier(owner))
            )
            for _grantor, grantee, privilege, grantable in about["acl"]:
                cur.execute(
                    sql.SQL("GRANT {} ON {} TO {}{}").format(
                        sql.SQL(privilege),
                        target_table,
                        sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee),
                        sql.SQL(" WITH GRANT OPTION" if grantable else ""),
                    )
                )
    # Foreign keys and triggers once every table exists (a key names another clone).
    for name in names:
        table = sql.Identifier(name)
        target_table = sql.SQL("{}.{}").format(dst, table)
        about = described[name]
        for conname, contype, _d, *_, con_comment, _ref in about["constraints"]:
            if contype == "f":
                full = cur.execute(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = %s AND conname = %s",
                    (oids[name], conname),
                ).fetchone()[0]
                cur.execute(
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                        target_table,
                        sql.Identifier(conname),
                        sql.SQL(_retarget(full, source, target)),
                    )
                )
            if con_comment is not None and contype != "c":  # CHECKs' came with LIKE
                cur.execute(
                    sql.SQL("COMMENT ON CONSTRAINT {} ON {} IS {}").format(
                        sql.Identifier(conname), target_table, _literal(con_comment)
                    )
                )
        for tgname, _definition, enabled, tg_comment in about["triggers"]:
            full = cur.execute(
                "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = %s AND tgname = %s",
                (oids[name], tgname),
            ).fetchone()[0]
            cur.execute(_retarget(full, source, target))
            state = {"D": "DISABLE", "R": "ENABLE REPLICA", "A": "ENABLE ALWAYS"}.get(enabled)
            if state:
                cur.execute(
                    sql.SQL("ALTER TABLE {} {} TRIGGER {}").format(
                        target_table, sql.SQL(state), sql.Identifier(tgname)
                    )
                )
            if tg_comment is not None:
                cur.execute(
                    sql.SQL("COMMENT ON TRIGGER {} ON {} IS {}").format(
                        sql.Identifier(tgname), target_table, _literal(tg_comment)
                    )
                )
