"""The README, as a newcomer meets it: every ```sql block runs verbatim, in order, in psql
on a database set up as `make run` sets it up (the extension, broker_id 1 = a private
RabbitMQ); blocks marked ```sql template are fill-in-the-blanks and skipped. And every
function, named argument and type the README names matches the catalog, and every public
function and type is documented.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```\s*$", re.M | re.S)


def sql_blocks() -> list[tuple[int, str, str]]:
    """(line, info string, text) of every fenced block whose info starts with sql."""
    return [
        (README.count("\n", 0, m.start()) + 1, m.group("info").strip(), m.group("body"))
        for m in FENCE.finditer(README)
        if m.group("info").strip().startswith("sql")
    ]


@pytest.fixture
def make_run_database(pg_server, rabbit):
    """A database as `make run` prepares it; dropped with the roles the README creates."""
    name = f"readme_{uuid.uuid4().hex[:8]}"
    pg_server.admin(f"CREATE DATABASE {name}")
    dsn = pg_server.dsn_for(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_message_queue CASCADE")
        conn.execute(
            "INSERT INTO amqp.broker (host, port, vhost, username, password)"
            " VALUES ('127.0.0.1', %s, '/', 'guest', 'guest')",
            (rabbit.port,),
        )
        before = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles")}
    yield dsn
    pg_server.admin(f"DROP DATABASE {name} WITH (FORCE)")
    with psycopg.connect(pg_server.dsn_for("postgres"), autocommit=True) as conn:
        for (role,) in conn.execute("SELECT rolname FROM pg_roles").fetchall():
            if role not in before:
                conn.execute(f'DROP ROLE "{role}"')


def test_the_readme_has_runnable_sql_blocks():
    infos = {info for _line, info, _text in sql_blocks()}
    assert infos <= {"sql", "sql template"}, infos
    assert sum(info == "sql" for _l, info, _t in sql_blocks()) >= 5


def test_every_sql_block_of_the_readme_runs_verbatim_in_order(make_run_database):
    for line, info, text in sql_blocks():
        if info != "sql":
            continue
        run = subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", make_run_database, "-f", "-"],
            input=text,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, f"README.md line {line}: the block fails in psql:\n{run.stderr}"
        assert "ERROR" not in run.stderr, f"README.md line {line}:\n{run.stderr}"
        # Output the README shows (comment lines holding a psql table row) is what psql prints.
        printed = _normal(run.stdout)
        for shown in _shown_rows(text):
            assert shown in printed, f"README.md line {line}: shows {shown!r}, psql printed:\n{run.stdout}"


TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?[+-]\d\d")


def _normal(text: str) -> str:
    """Timestamps made alike, runs of blanks made one."""
    return re.sub(r"[ \t]+", " ", TIMESTAMP.sub("<ts>", text))


def _shown_rows(text: str) -> list[str]:
    """The psql table lines a block shows as ``--`` comments (they hold a `` | ``)."""
    return [_normal(m.strip()) for m in re.findall(r"^--(.*\|.*)$", text, re.M)]


# ---- names ---------------------------------------------------------------------------------

CATALOG = """
SELECT n.nspname AS schema, p.proname AS name, p.proargnames AS argnames, p.proargmodes AS modes,
    pg_catalog.pg_get_function_identity_arguments(p.oid) AS args
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_message_queue'
"""
TYPES = """
SELECT t.typname FROM pg_catalog.pg_type t
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e'
JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_message_queue'
WHERE t.typtype = 'c'
"""


def _functions(dsn: str) -> dict[str, set[str]]:
    """Qualified-as-written name (``pg_mq_x`` or ``amqp.x``) -> every argument name of its overloads."""
    found: dict[str, set[str]] = {}
    with psycopg.connect(dsn) as conn:
        for schema, name, argnames, _modes, _args in conn.execute(CATALOG).fetchall():
            key = f"amqp.{name}" if schema == "amqp" else name
            found.setdefault(key, set()).update(a for a in (argnames or []) if a)
    return found


def _calls(text: str):
    """(function, argument text) of every ``name(...)`` in ``text`` naming one of ours
    (string literals and SQL comments blanked out first; tables are not calls)."""
    text = re.sub(r"'[^'\n]*'", "''", text)
    text = re.sub(r"--[^\n]*", "", text)
    for m in re.finditer(r"\b((?:amqp\.)?_?pg_mq_\w+|amqp\.\w+)\(", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        if m.group(1) not in RELATIONS:
            yield m.group(1), text[m.end() : i - 1]


RELATIONS = {"pg_mq_config_catalog", "pg_mq_migration"}
# Words that open an argument without naming it: literals and the types of a signature list.
NOT_NAMES = {"true", "false", "null", "text", "name", "integer", "int", "bigint", "boolean", "jsonb", "interval"}
NOT_NAMES |= {"varchar", "anyelement", "anyarray", "oid", "bytea", "double", "smallint"}


def test_every_function_and_named_argument_the_readme_uses_exists(dsn):
    functions = _functions(dsn)
    wrong = []
    for fn, args in _calls(README):
        if fn not in functions:
            wrong.append(f"{fn}: no such function")
            continue
        for named in re.findall(r"\b(\w+)\s*=>", args):
            if named not in functions[fn]:
                wrong.append(f"{fn}: no argument {named} (it has {sorted(functions[fn])})")
        # A signature written out (`fn(in_channel text, n DEFAULT 1, ...)`): each argument's first word.
        for part in args.split(","):
            words = part.strip().split()
            if (
                words
                and re.fullmatch(r"[a-z_]+", words[0])
                and (len(words) == 1 or words[1] not in ("=>", "::"))
                and words[0] not in functions[fn]
                and words[0] not in NOT_NAMES
            ):
                wrong.append(f"{fn}: the README names argument {words[0]}, it has {sorted(functions[fn])}")
    assert wrong == [], "\n".join(sorted(set(wrong)))


def test_every_public_function_and_result_type_is_documented(dsn):
    with psycopg.connect(dsn) as conn:
        types = [r[0] for r in conn.execute(TYPES)]
    missing = [f for f in _functions(dsn) if not f.split(".")[-1].startswith("_") and f"`{f}" not in README]
    missing += [t for t in types if t not in README]
    assert missing == [], f"not in the README: {missing}"


def systemd_units() -> list[tuple[str, str]]:
    """(file name, text) of every ```ini block that starts with ``# /etc/systemd/system/<unit>``."""
    found = []
    for m in FENCE.finditer(README):
        first, _, rest = m.group("body").partition("\n")
        if m.group("info").strip() == "ini" and first.startswith("# /etc/systemd/system/"):
            found.append((first.rsplit("/", 1)[1], rest))
    return found


def test_the_readme_systemd_units_pass_systemd_analyze_verify(tmp_path):
    units = systemd_units()
    assert len(units) >= 2
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here: the units' syntax cannot be verified")
    for name, text in units:
        (tmp_path / name).write_text(text)
        run = subprocess.run(
            ["systemd-analyze", "verify", str(tmp_path / name)], capture_output=True, text=True, check=False
        )
        assert run.returncode == 0 and "Unknown" not in run.stderr, f"{name}:\n{run.stderr}"
