"""Change events: the statements a watch's trigger runs. The cheaper ones (no second sort
by seq, an UPDATE's "old" made as text, for a jsonb queue the members in jsonb's order)
must send byte for byte the events the earlier ones sent (events.LEGACY_STATEMENTS, kept
for tools/bench_events.py), in the same order."""

from __future__ import annotations

import itertools
import json
import re

import psycopg
import pytest
from helpers import wait_notifies

# Column names whose order jsonb decides ("old" prints its keys shortest first, then in
# byte order), quoted, with spaces, a quote, a backslash, a newline and unicode.
COLUMNS = """
    "Id" int,
    k2 text,
    bb bigint,
    a numeric,
    "B" double precision,
    "é" text,
    "x""y" boolean,
    "sp ace" jsonb,
    "back\\slash" json,
    "new
line" timestamptz,
    "ünï" int[],
    zz text[],
    "A_very_long_column_name_that_is_exactly_sixty_three_bytes_long_x" bytea,
    d date
"""
INSERT = """
INSERT INTO {t} VALUES
 (1, 'a', 10, 1.50, 1e20, 'é"\\ x', true, '{{"b": 1, "a": [1, 2]}}', '{{"z" : 1,  "a":2}}',
  '2026-01-02 03:04:05.678+00',
  '{{1,NULL,3}}', '{{"q\\"", NULL}}', '\\x00ff', '2026-11-27'),
 (2, 'b', NULL, 'NaN', 'Infinity', NULL, NULL, 'null', 'null', NULL, NULL, NULL, NULL, NULL),
 (3, 'c', -5, -0.000001, 'NaN', E'tab\\there\\nnl \\u0001', false, '"s"', '[]', 'infinity', '{{}}', '{{}}',
  '\\x', NULL),
 (4, 'd', 7, 0, -0.0, '', true, '{{}}', '{{}}', '2026-01-01', '{{4}}', '{{"é"}}', NULL, '2026-01-01')
"""
STATEMENTS = [
    # every column changed, to and from NULL
    """UPDATE {t} SET bb = COALESCE(bb, 0) + 1, a = NULL, "B" = 2.5, "é" = 'new', "x""y" = NOT COALESCE("x""y", false),
       "sp ace" = '{{"c": {{"d": [true, null]}}}}', "back\\slash" = '{{"k" : "v"}}', "new
line" = '2020-02-29 00:00:00+00', "ünï" = '{{9}}', zz = '{{x}}',
       "A_very_long_column_name_that_is_exactly_sixty_three_bytes_long_x" = '\\x01', d = NULL WHERE "Id" IN (1, 2)""",
    # one column changed; then nothing changed
    """UPDATE {t} SET "é" = 'again' WHERE "Id" = 3""",
    """UPDATE {t} SET "é" = "é" WHERE "Id" = 4""",
    # a changed key: DELETE and INSERT events, the DELETEs first
    """UPDATE {t} SET "Id" = "Id" + 10, k2 = k2 || '!' WHERE "Id" >= 3""",
    """DELETE FROM {t} WHERE "Id" IN (1, 13)""",
]

_VOLATILE = [  # json_build_object's spacing ("k" : v) or jsonb's ("k": v)
    (re.compile(r'"event_id"( ?): "\d+:'), r'"event_id"\1: "X:'),
    (re.compile(r'"txid"( ?): "\d+"'), r'"txid"\1: "X"'),
    (re.compile(r'"ts"( ?): "[^"]+"'), r'"ts"\1: "X"'),
]


def _stable(text: str) -> str:
    for pattern, fixed in _VOLATILE:
        text = pattern.sub(fixed, text)
    return text


def _legacy(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pg_mq_unwatch('pg_class')")  # loads the package in this backend
    conn.execute(
        "DO $$\nimport sys\nsys.modules['pg_message_queue.events'].LEGACY_STATEMENTS = True\n$$ LANGUAGE plpython3u"
    )


def _run(conn: psycopg.Connection, table: str, key: str) -> list[str]:
    """The events of the statements (one transaction each), as the queue holds them."""
    with conn.transaction():
        conn.execute(INSERT.format(t=table))
    for sql in STATEMENTS:
        with conn.transaction():
            conn.execute(sql.format(t=table))
    rows = conn.execute("DELETE FROM pg_mq_queue_evq RETURNING msg_id, payload::text").fetchall()
    conn.execute(f"TRUNCATE {table}")
    return [_stable(p) for _i, p in sorted(rows)]


@pytest.mark.parametrize("queue_type", ["text", "jsonb"])
@pytest.mark.parametrize(
    ("key", "options"),
    [
        ("PRIMARY KEY", ""),
        ("", ", key_columns => ARRAY['Id', 'k2']"),
        ("", ""),
        ("PRIMARY KEY", ", ignore_columns => ARRAY['bb'], columns => ARRAY['Id', 'a', 'é', 'zz', 'x\"y']"),
        ("text key", ""),  # k2 text PRIMARY KEY: paired by a collatable key (compared as "C")
    ],
    ids=["primary-key", "key-columns", "no-key", "include-ignore", "text-key"],
)
def test_cheaper_statements_send_the_same_events(db, connect, key, options, queue_type):
    db.execute(f"SELECT pg_mq_create_queue('evq', '{queue_type}')")
    if key == "text key":
        columns = COLUMNS.replace("k2 text", "k2 text PRIMARY KEY")
    else:
        columns = COLUMNS.replace('"Id" int', f'"Id" int {key}')
    db.execute(f"CREATE TABLE w ({columns})")
    db.execute(f"SELECT pg_mq_watch_queue('w', 'evq', operations => '{{INSERT,UPDATE,DELETE}}'{options})")
    before = connect()
    _legacy(before)
    after = connect()
    old = _run(before, "w", key)
    new = _run(after, "w", key)
    assert len(old) >= 10
    assert new == old
    if queue_type == "jsonb":  # printed by jsonb: its spacing, its order of keys
        assert '"event_id": "X:' in new[0] and new[0].startswith('{"op": ')
    events = [json.loads(e) for e in new]
    updates = [e for e in events if e["op"] == "UPDATE"]
    assert updates and all("old" in e and "changed" in e for e in updates)
    if not options.startswith(", ignore"):
        assert len(updates[0]["old"]) >= 10  # the first UPDATE changed (nearly) every column
    # the UPDATE whose only change is "é" (old 'c' with tab, newline and \u0001)
    assert any(e["old"] == {"é": "tab\there\nnl \u0001"} for e in updates) or options.startswith(", ignore")


def test_events_keep_seq_order_in_every_target(db, connect):
    """No second sort: the queue's msg_id, the outbox's id and NOTIFY's order follow seq."""
    db.execute("CREATE TABLE big (id int PRIMARY KEY, v int)")
    db.execute("SELECT pg_mq_create_queue('evq', 'jsonb')")
    db.execute("SELECT pg_mq_watch_queue('big', 'evq')")
    db.execute("SELECT pg_mq_watch_notify('big', 'evn')")
    broker = db.execute(
        "INSERT INTO amqp.broker (host, port, vhost, username, password, strict)"
        " VALUES ('127.0.0.1', 1, '/', 'guest', 'guest', true) RETURNING broker_id"
    ).fetchone()[0]
    db.execute("SELECT pg_mq_watch_amqp('big', %s, 'amq.topic')", (broker,))
    ln = connect()
    ln.execute("LISTEN evn")
    with db.transaction():
        db.execute("INSERT INTO big SELECT g, g FROM generate_series(1, 30000) g ORDER BY random()")
        # key changes (DELETE + INSERT, the DELETEs first) and plain UPDATEs in one statement
        db.execute("UPDATE big SET id = id + 100000, v = -v WHERE id % 7 = 0")
        db.execute("UPDATE big SET v = v + 1 WHERE id % 3 = 0")
    # each watch numbers its events from the transaction's counter: increasing, not contiguous
    seqs = [r[0] for r in db.execute("SELECT (payload ->> 'seq')::int FROM pg_mq_queue_evq ORDER BY msg_id")]
    assert len(seqs) > 40000 and all(a < b for a, b in itertools.pairwise(seqs))
    out = [int(r[0].rsplit(":", 1)[1]) for r in db.execute("SELECT message_id FROM amqp.outbox ORDER BY id")]
    assert len(out) == len(seqs) and all(a < b for a, b in itertools.pairwise(out))
    notified = [json.loads(n.payload)["seq"] for n in wait_notifies(ln, len(seqs), timeout=30)]
    assert len(notified) == len(seqs) and all(a < b for a, b in itertools.pairwise(notified))
    ops = [r[0] for r in db.execute("SELECT payload ->> 'op' FROM pg_mq_queue_evq ORDER BY msg_id")]
    moved = 30000 // 7
    assert ops[:30000] == ["INSERT"] * 30000
    assert ops[30000 : 30000 + moved] == ["DELETE"] * moved
    assert ops[30000 + moved : 30000 + 2 * moved] == ["INSERT"] * moved
    assert set(ops[30000 + 2 * moved :]) == {"UPDATE"}


@pytest.mark.parametrize("queue_type", ["text", "jsonb"])
def test_a_wide_table_sends_the_same_events(db, connect, queue_type):
    """More columns than a function takes arguments (100): "old" is joined in chunks."""
    cols = ", ".join(f'"c {i}" int DEFAULT {i}' for i in range(150))
    db.execute(f"CREATE TABLE w (id int PRIMARY KEY, {cols})")
    db.execute(f"SELECT pg_mq_create_queue('evq', '{queue_type}')")
    db.execute("SELECT pg_mq_watch_queue('w', 'evq', operations => '{INSERT,UPDATE}')")
    before = connect()
    _legacy(before)
    after = connect()
    got = []
    for conn in (before, after):
        for sql in (
            "INSERT INTO w (id) VALUES (1), (2)",
            'UPDATE w SET "c 3" = NULL, "c 77" = -1, "c 149" = 0 WHERE id = 1',
            'UPDATE w SET "c 120" = 5',  # one column, in the last chunk only
        ):
            with conn.transaction():
                conn.execute(sql)
        rows = conn.execute("DELETE FROM pg_mq_queue_evq RETURNING msg_id, payload::text").fetchall()
        conn.execute("DELETE FROM w")
        got.append([_stable(p) for _i, p in sorted(rows)])
    assert got[1] == got[0]
    upd = [json.loads(e) for e in got[1] if json.loads(e)["op"] == "UPDATE"]
    assert upd[0]["old"] == {"c 3": 3, "c 77": 77, "c 149": 149}
    assert [u["old"] for u in upd[1:]] == [{"c 120": 120}] * 2


def test_a_changed_table_gets_new_statements_in_the_same_session(db):
    """Plans are cached per session by their text: renaming the table, adding, dropping and
    retyping columns between two statements of one session must still give right events."""
    db.execute("CREATE TABLE t (id int PRIMARY KEY, note text, n int, gone text)")
    db.execute("SELECT pg_mq_create_queue('evq', 'jsonb')")
    db.execute("SELECT pg_mq_watch_queue('t', 'evq')")
    db.execute("INSERT INTO t VALUES (1, 'a', 1, 'x')")
    db.execute("UPDATE t SET n = 2")
    db.execute("ALTER TABLE t RENAME TO t2")
    db.execute("ALTER TABLE t2 ADD COLUMN extra text DEFAULT 'e'")
    db.execute("ALTER TABLE t2 DROP COLUMN gone")
    db.execute("ALTER TABLE t2 ALTER COLUMN note TYPE jsonb USING pg_catalog.to_jsonb(note)")
    db.execute("ALTER TABLE t2 ALTER COLUMN n TYPE numeric")
    db.execute("""INSERT INTO t2 (id, note, n) VALUES (2, '{"k": [1]}', 2.5)""")
    db.execute("UPDATE t2 SET n = n + 1, note = '[]' WHERE id = 2")
    got = [r[0] for r in db.execute("SELECT payload FROM pg_mq_queue_evq ORDER BY msg_id")]
    assert [(e["op"], e["table"]) for e in got] == [
        ("INSERT", "t"),
        ("UPDATE", "t"),
        ("INSERT", "t2"),
        ("UPDATE", "t2"),
    ]
    assert got[1]["old"] == {"n": 1} and got[1]["row"] == {"id": 1, "note": "a", "n": 2, "gone": "x"}
    assert got[2]["row"] == {"id": 2, "note": {"k": [1]}, "n": 2.5, "extra": "e"}
    assert got[3]["changed"] == ["note", "n"] and got[3]["old"] == {"n": 2.5, "note": {"k": [1]}}
    assert got[3]["row"] == {"id": 2, "note": [], "n": 3.5, "extra": "e"}


def _trigger_statement(conn: psycopg.Connection, sql: str) -> str:
    """The text of the statement the watch's trigger runs for ``sql`` (through auto_explain)."""
    texts: list[str] = []
    conn.add_notice_handler(lambda d: texts.append(d.message_primary or ""))
    conn.execute("LOAD 'auto_explain'")
    for setting in ("log_min_duration = 0", "log_nested_statements = on", "log_level = notice"):
        conn.execute(f"SET auto_explain.{setting}")
    conn.execute(sql)
    conn.execute("SET auto_explain.log_min_duration = -1")
    found = [t for t in texts if "INSERT INTO public.pg_mq_queue_" in t]
    assert len(found) == 1, texts
    return found[0]


def _member_order(statement: str, names: list[str]) -> list[str]:
    """The names in the order the statement writes them as members ("name" : ...)."""
    missing = [n for n in names if f'"{n}" : ' not in statement]
    assert not missing, (missing, statement)
    return sorted(names, key=lambda n: statement.index(f'"{n}" : '))


@pytest.mark.parametrize("queue_type", ["text", "json", "jsonb"])
def test_a_jsonb_queue_gets_its_events_with_the_keys_in_jsonb_order(db, queue_type):
    """jsonb sorts the keys of every object it parses (shortest first, then in byte order),
    and its sort swaps the pairs byte by byte: a third of parsing an event. Into a jsonb
    queue the trigger writes the members already in that order (the parser then only checks
    it), and an UPDATE's "old" of to_json's text (no jsonb made to be printed and parsed
    again); json and text queues keep the order json_build_object gives."""
    db.execute("CREATE TABLE o (id int PRIMARY KEY, zeta text, b int, aa text)")
    db.execute(f"SELECT pg_mq_create_queue('evq', '{queue_type}')")
    db.execute("SELECT pg_mq_watch_queue('o', 'evq')")
    stmt = _trigger_statement(db, "INSERT INTO o VALUES (1, 'z', 2, 'a')")
    head = ["event_id", "op", "schema", "table", "txid", "seq", "ts", "pk", "row"]
    row = ["id", "zeta", "b", "aa"]
    if queue_type == "jsonb":
        assert _member_order(stmt, head) == ["op", "pk", "ts", "row", "seq", "txid", "table", "schema", "event_id"]
        assert _member_order(stmt[stmt.index(" AS pk, ") :], row) == ["b", "aa", "id", "zeta"]
    else:
        assert _member_order(stmt, head) == head
        assert _member_order(stmt[stmt.index(" AS pk, ") :], row) == row
    stmt = _trigger_statement(db, "UPDATE o SET b = 3, zeta = 'y'")
    if queue_type == "jsonb":  # the UPDATE event (the CASE's last branch), then a moved key's DELETE
        expected = ["op", "pk", "ts", "old", "row", "seq", "txid", "table", "schema", "changed", "event_id"]
        update = stmt[stmt.index(""" ELSE ('{"op" : """) : stmt.index(" END AS event")]
        assert _member_order(update, [*head, "changed", "old"]) == expected
        assert stmt.index('"key_changed" : ') > stmt.index('"event_id" : ')
    # "old" made of to_json's text, which parses into the same jsonb as to_jsonb's, unmade
    assert ("to_jsonb(" in stmt) == (queue_type != "jsonb")
    got = db.execute("SELECT payload::text FROM pg_mq_queue_evq ORDER BY msg_id").fetchall()
    events = [json.loads(r[0]) for r in got]
    assert [e["op"] for e in events] == ["INSERT", "UPDATE"]
    assert events[0]["row"] == {"id": 1, "zeta": "z", "b": 2, "aa": "a"}
    assert events[1]["old"] == {"b": 2, "zeta": "z"} and events[1]["changed"] == ["zeta", "b"]


def test_a_text_key_pairs_old_and_new_rows_compared_as_c(db, connect):
    """An UPDATE pairs old and new rows by primary key in a merge join, whose sorts cost half
    its time with strcoll; a deterministic collation's = is byte equality, so the pairs are
    the same sorted as "C". A key of a nondeterministic collation keeps its own."""
    db.execute("CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
    db.execute('CREATE TABLE tk (k text PRIMARY KEY, v int, "Ü" text COLLATE ci UNIQUE NOT NULL)')
    db.execute("CREATE TABLE tc (k text COLLATE ci PRIMARY KEY, v int)")
    db.execute("SELECT pg_mq_create_queue('evq', 'jsonb')")
    db.execute("SELECT pg_mq_watch_queue('tk', 'evq')")
    db.execute("SELECT pg_mq_watch_queue('tc', 'evq')")
    db.execute("INSERT INTO tk VALUES ('b', 1, 'x'), ('a', 2, 'y'), ('é', 3, 'z'), ('B', 4, 'w')")
    db.execute("INSERT INTO tc VALUES ('b', 1), ('A', 2)")
    stmt = _trigger_statement(db, "UPDATE tk SET v = v + 10, k = CASE k WHEN 'B' THEN 'C' ELSE k END")
    assert 'o.c0 COLLATE pg_catalog."C" = n.c0 COLLATE pg_catalog."C"' in stmt
    stmt = _trigger_statement(db, "UPDATE tc SET v = v + 10, k = CASE k WHEN 'A' THEN 'a' ELSE k END")
    assert "COLLATE" not in stmt and "o.c0 = n.c0" in stmt
    got = [json.loads(r[0]) for r in db.execute("SELECT payload::text FROM pg_mq_queue_evq ORDER BY msg_id")]
    updates = [(e["table"], e["op"], e["pk"], e.get("old"), e.get("key_changed")) for e in got[6:]]
    assert updates == [
        ("tk", "DELETE", {"k": "B"}, None, True),
        ("tk", "UPDATE", {"k": "b"}, {"v": 1}, None),
        ("tk", "UPDATE", {"k": "a"}, {"v": 2}, None),
        ("tk", "UPDATE", {"k": "é"}, {"v": 3}, None),
        ("tk", "INSERT", {"k": "C"}, None, True),
        # 'A' to 'a' is no change of key in a case-insensitive collation: an UPDATE
        ("tc", "UPDATE", {"k": "b"}, {"v": 1}, None),
        ("tc", "UPDATE", {"k": "a"}, {"k": "A", "v": 2}, None),
    ]
