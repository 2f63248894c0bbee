"""Payload types: resolve a type by name, and refuse one a non-superuser controls.

Queue tables belong to the extension's owner (a superuser). PostgreSQL runs some
functions of a column's type as the table owner (ANALYZE and autovacuum call a
range's subtype_diff, a type's analyze function, its default btree/hash operators),
and the owner of a type can drop it with CASCADE, taking the payload column along.
"""

from __future__ import annotations

from . import _db


def resolve(type_name: str | None) -> tuple[int, str]:
    """(oid, SQL spelling) of a payload type given by name; errors name the culprit."""
    if type_name is None:
        _db.fail("22004", "payload type must not be NULL")
    rows = None
    try:
        with _db.subtransaction():
            rows = _db.run(
                "SELECT t.oid, t.typtype, t.typisdefined,"
                " pg_catalog.format_type(t.oid, NULL) AS type_sql"
                " FROM pg_catalog.pg_type t WHERE t.oid = pg_catalog.to_regtype($1)",
                ("text",),
                (type_name,),
            )
    except _db.SPIError:
        rows = None
    if not rows:
        _db.fail("42704", f'payload type "{type_name}" does not exist')
    row = rows[0]
    if row["typtype"] == "p" or not row["typisdefined"]:
        _db.fail("42P16", f'payload type "{type_name}" is a pseudo-type or shell type')
    check_trusted(int(row["oid"]), row["type_sql"])
    return int(row["oid"]), row["type_sql"]


# One type of a payload type's closure: whether it is temporary, who owns it, and
# the types it is made of (array element, domain base, range subtype, the range of
# a multirange, composite members).
_TYPE_PARTS = """
SELECT pg_catalog.format_type(t.oid, NULL) AS name, r.rolname AS owner, r.rolsuper AS trusted,
    n.nspname ~ '^pg_(toast_)?temp_' AS temp,
    ARRAY(
        SELECT x FROM pg_catalog.unnest(ARRAY[
            t.typelem, t.typbasetype,
            (SELECT g.rngsubtype FROM pg_catalog.pg_range g WHERE g.rngtypid = t.oid),
            (SELECT g.rngtypid FROM pg_catalog.pg_range g WHERE g.rngmultitypid = t.oid)
        ]::pg_catalog.oid[]) AS x WHERE x <> 0
        UNION
        SELECT a.atttypid FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
    )::pg_catalog.int8[] AS parts
FROM pg_catalog.pg_type t
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
JOIN pg_catalog.pg_roles r ON r.oid = t.typowner
WHERE t.oid = $1
"""

# Functions that run on a type's values with the rights of whoever touches them
# (ANALYZE and autovacuum run them as the table owner): its support functions,
# a range's canonical and subtype_diff, what a domain's constraints call, and the
# operators and support functions of its default btree and hash operator classes.
# Returns the ones a superuser does not own, or that live in a temporary schema.
_UNTRUSTED_FUNCTIONS = """
WITH fns(fn, role) AS (
    SELECT f, w FROM pg_catalog.pg_type t, LATERAL (VALUES
        (t.typinput::pg_catalog.oid, 'input function'), (t.typoutput::pg_catalog.oid, 'output function'),
        (t.typreceive::pg_catalog.oid, 'receive function'), (t.typsend::pg_catalog.oid, 'send function'),
        (t.typmodin::pg_catalog.oid, 'typmod_in function'), (t.typmodout::pg_catalog.oid, 'typmod_out function'),
        (t.typanalyze::pg_catalog.oid, 'analyze function'), (t.typsubscript::pg_catalog.oid, 'subscript function')
    ) AS v(f, w) WHERE t.oid = $1
    UNION ALL
    SELECT g.rngcanonical::pg_catalog.oid, 'canonical function' FROM pg_catalog.pg_range g WHERE g.rngtypid = $1
    UNION ALL
    SELECT g.rngsubdiff::pg_catalog.oid, 'subtype_diff function' FROM pg_catalog.pg_range g WHERE g.rngtypid = $1
    UNION ALL
    SELECT CASE d.refclassid WHEN 'pg_catalog.pg_proc'::pg_catalog.regclass THEN d.refobjid
        ELSE (SELECT o.oprcode::pg_catalog.oid FROM pg_catalog.pg_operator o WHERE o.oid = d.refobjid) END,
        'domain constraint ' || pg_catalog.quote_ident(c.conname)
    FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_depend d
        ON d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.objid = c.oid
        AND d.refclassid IN ('pg_catalog.pg_proc'::pg_catalog.regclass, 'pg_catalog.pg_operator'::pg_catalog.regclass)
    WHERE c.contypid = $1
    UNION ALL
    SELECT p.amproc::pg_catalog.oid, 'default ' || am.amname || ' operator class'
    FROM pg_catalog.pg_opclass oc JOIN pg_catalog.pg_am am ON am.oid = oc.opcmethod
    JOIN pg_catalog.pg_amproc p ON p.amprocfamily = oc.opcfamily AND p.amproclefttype = $1
    WHERE oc.opcdefault AND oc.opcintype = $1 AND am.amname IN ('btree', 'hash')
    UNION ALL
    SELECT o.oprcode::pg_catalog.oid, 'default ' || am.amname || ' operator class'
    FROM pg_catalog.pg_opclass oc JOIN pg_catalog.pg_am am ON am.oid = oc.opcmethod
    JOIN pg_catalog.pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amoplefttype = $1
    JOIN pg_catalog.pg_operator o ON o.oid = ao.amopopr
    WHERE oc.opcdefault AND oc.opcintype = $1 AND am.amname IN ('btree', 'hash')
)
SELECT fns.role, p.oid::pg_catalog.regprocedure::text AS fn, r.rolname AS owner,
    n.nspname ~ '^pg_(toast_)?temp_' AS temp
FROM fns JOIN pg_catalog.pg_proc p ON p.oid = fns.fn
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
WHERE NOT r.rolsuper OR n.nspname ~ '^pg_(toast_)?temp_'
ORDER BY 1, 2 LIMIT 1
"""

_TRUST_HINT = (
    "Queue tables belong to the extension's owner, a superuser, who runs these functions"
    " (ANALYZE, autovacuum, pg_dump). Use a type owned by a superuser, or jsonb."
)


def check_trusted(type_oid: int, type_sql: str) -> None:
    """Refuse a payload type that a non-superuser could use to run code as the table
    owner, or to drop the payload column (DROP TYPE ... CASCADE, a temporary type)."""
    seen: set[int] = set()
    todo = [type_oid]
    while todo:
        oid = todo.pop()
        if oid in seen:
            continue
        seen.add(oid)
        part = _db.run(_TYPE_PARTS, ("oid",), (oid,))[0]
        within = "" if oid == type_oid else f" (part of {type_sql})"
        if part["temp"]:
            _db.fail("42P16", f'payload type "{part["name"]}"{within} is a temporary type', hint=_TRUST_HINT)
        if not part["trusted"]:
            _db.fail(
                "42501",
                f'payload type "{part["name"]}"{within} belongs to role "{part["owner"]}", who is not a superuser',
                hint=_TRUST_HINT,
            )
        bad = _db.run(_UNTRUSTED_FUNCTIONS, ("oid",), (oid,))
        if bad:
            fn = bad[0]
            whose = "a temporary function" if fn["temp"] else f'owned by role "{fn["owner"]}", not a superuser'
            _db.fail(
                "42501",
                f'payload type "{part["name"]}"{within} uses {fn["role"]} {fn["fn"]}, {whose}',
                hint=_TRUST_HINT,
            )
        todo.extend(int(x) for x in part["parts"])
