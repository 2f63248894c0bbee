"""PgQ 3's public SQL API, extracted from the real extension, as JSON.

Starts a private PostgreSQL 15 (tools/servers.py), runs ``CREATE EXTENSION pgq``
(Debian's ``postgresql-15-pgq3``) and writes every function of schema ``pgq``
(name, arguments with names/modes/types/defaults, return type, set-returning,
OUT columns, volatility, strictness, security definer, EXECUTE grants), the
tables/sequences of schema ``pgq`` with their columns and grants, and the roles
``pgq_reader``/``pgq_writer``/``pgq_admin`` with their memberships, in a stable
order. ``tests/fixtures/pgq3_api.json`` is this script's output; the API tests
of the companion extension compare ``pgq`` against it.

    python3 tools/pgq_api.py [--out tests/fixtures/pgq3_api.json] [--dsn DSN]

With ``--dsn`` it reads a database that already has schema ``pgq`` instead (for
example ours, to see a difference: ``diff`` the two files).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import Postgres

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "pgq3_api.json"
ROLES = ("pgq_reader", "pgq_writer", "pgq_admin")

_MODES = {"i": "IN", "o": "OUT", "b": "INOUT", "v": "VARIADIC", "t": "TABLE"}
_VOLATILITY = {"i": "immutable", "s": "stable", "v": "volatile"}

# One row per function: the catalog's own renderings, so the comparison sees
# what psql's \df and a client's introspection see.
_FUNCTIONS = """
SELECT p.oid, p.proname, p.prokind, pg_get_function_identity_arguments(p.oid),
       pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
       p.proretset, p.provolatile, p.proisstrict, p.prosecdef,
       p.proargnames, p.proargmodes::text[],
       ARRAY(SELECT format_type(t, NULL) FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) t),
       p.pronargdefaults,
       CASE WHEN p.proargdefaults IS NULL THEN NULL ELSE pg_get_expr(p.proargdefaults, 0) END,
       format_type(p.prorettype, NULL),
       (SELECT array_agg(x ORDER BY x) FROM (
            SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END AS x
            FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
            WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner) s)
FROM pg_proc p
WHERE p.pronamespace = 'pgq'::regnamespace
ORDER BY p.proname, pg_get_function_identity_arguments(p.oid)
"""

_RELATIONS = """
SELECT c.relname, c.relkind,
       (SELECT array_agg(x ORDER BY x) FROM (
            SELECT (CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END)
                   || ':' || a.privilege_type AS x
            FROM aclexplode(coalesce(c.relacl, acldefault(
                     CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a
            WHERE a.grantee <> c.relowner) s)
FROM pg_class c
WHERE c.relnamespace = 'pgq'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
ORDER BY c.relname
"""

_COLUMNS = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid)
FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE c.relnamespace = 'pgq'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
ORDER BY c.relname, a.attnum
"""

_ROLES = """
SELECT r.rolname, r.rolcanlogin, r.rolinherit,
       ARRAY(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
             WHERE m.member = r.oid ORDER BY g.rolname)
FROM pg_roles r WHERE r.rolname = ANY(%s) ORDER BY r.rolname
"""


def _split_defaults(text: str | None) -> list[str]:
    """``pg_get_expr`` of proargdefaults is a comma list of expressions; PgQ's are
    literals and casts (no commas inside), which this split relies on and checks."""
    if text is None:
        return []
    parts = [p.strip() for p in text.split(", ")]
    for p in parts:
        if "(" in p or ("'" in p and p.count("'") % 2):
            raise ValueError(f"default expression not understood: {text!r}")
    return parts


def extract(conn: psycopg.Connection) -> dict[str, Any]:
    """The API of schema ``pgq`` in the database of ``conn``."""
    ext = conn.execute("SELECT extname, extversion FROM pg_extension WHERE extname = 'pgq'").fetchone()
    version = conn.execute("SELECT pgq.version()").fetchone()[0]
    functions = []
    for row in conn.execute(_FUNCTIONS).fetchall():
        (
            _,
            name,
            kind,
            identity,
            arguments,
            result,
            retset,
            volatility,
            strict,
            secdef,
            argnames,
            argmodes,
            argtypes,
            ndefaults,
            defaults,
            rettype,
            grants,
        ) = row
        modes = argmodes or ["i"] * len(argtypes)
        names = argnames or [""] * len(argtypes)
        args = [{"name": n, "mode": _MODES[m], "type": t} for n, m, t in zip(names, modes, argtypes, strict=True)]
        ins = [a for a in args if a["mode"] in ("IN", "INOUT", "VARIADIC")]
        defs = _split_defaults(defaults)
        if len(defs) != ndefaults:
            raise ValueError(f"pgq.{name}: {ndefaults} defaults, parsed {defs!r}")
        for a, d in zip(ins[len(ins) - len(defs) :], defs, strict=True):
            a["default"] = d
        functions.append(
            {
                "name": name,
                "kind": {"f": "function", "p": "procedure", "a": "aggregate", "w": "window"}[kind],
                "identity_arguments": identity,
                "arguments": arguments,
                "args": args,
                "result": result,
                "return_type": rettype,
                "returns_set": retset,
                "out_columns": [a["name"] for a in args if a["mode"] in ("OUT", "INOUT", "TABLE")],
                "volatility": _VOLATILITY[volatility],
                "strict": strict,
                "security_definer": secdef,
                "execute_granted_to": grants or [],
            }
        )
    columns: dict[str, list[dict[str, Any]]] = {}
    for rel, col, typ, notnull, default in conn.execute(_COLUMNS).fetchall():
        columns.setdefault(rel, []).append({"name": col, "type": typ, "not_null": notnull, "default": default})
    relations = []
    for rel, kind, grants in conn.execute(_RELATIONS).fetchall():
        relations.append(
            {
                "name": rel,
                "kind": {"r": "table", "p": "table", "v": "view", "m": "materialized view", "S": "sequence"}[kind],
                "columns": columns.get(rel, []),
                "grants": grants or [],
            }
        )
    roles = [
        {"name": n, "login": login, "inherit": inherit, "member_of": list(member_of)}
        for n, login, inherit, member_of in conn.execute(_ROLES, (list(ROLES),)).fetchall()
    ]
    return {
        "source": "Debian postgresql-15-pgq3, CREATE EXTENSION pgq; regenerate with tools/pgq_api.py",
        "extension_version": ext[1] if ext else None,
        "pgq_version": version,
        "functions": functions,
        "relations": relations,
        "roles": roles,
    }


def from_private_server() -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="pgq-api-"))
    root.chmod(0o755)
    pg = Postgres(root / "pg")
    try:
        pg.start()
        with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE pgq_api")
        with psycopg.connect(pg.dsn("pgq_api"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pgq")
            return extract(conn)
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=FIXTURE)
    ap.add_argument("--dsn", help="read this database's schema pgq instead of a fresh real PgQ")
    args = ap.parse_args()
    if args.dsn:
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            api = extract(conn)
    else:
        api = from_private_server()
    args.out.write_text(json.dumps(api, indent=1, sort_keys=False) + "\n")
    print(f"{args.out}: {len(api['functions'])} functions, {len(api['relations'])} relations, PgQ {api['pgq_version']}")


if __name__ == "__main__":
    main()
