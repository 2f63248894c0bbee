"""The pure parts of pgq/triggers.py, against PgQ's C (stringutil.c, parsesql.c) and
PostgreSQL's record_out; the differential tests (tests/test_pgq_triggers.py) cover the rest."""

import pytest
from pg_message_queue.pgq import triggers as t


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('(1,"a b",,"")', ["1", "a b", None, ""]),
        ("(,)", [None, None]),
        ('("a""b\\\\c",x)', ['a"b\\c', "x"]),
        ('("",",")', ["", ","]),
        ("(1)", ["1"]),
        ('("(1,""x y"")",2)', ['(1,"x y")', "2"]),
    ],
)
def test_parse_record(text, expected):
    assert t.parse_record(text) == expected


def test_urlencode_is_pgqs():
    # lower-case hex, space as +, only [0-9A-Za-z_.-] kept (urllib would keep ~ and use upper case)
    assert t.urlencode("a b%&é~_.-") == "a+b%25%26%c3%a9%7e_.-"
    assert t.urlencode("plain_1.5-x") == "plain_1.5-x"


@pytest.mark.parametrize(
    ("liststr", "name", "found"),
    [
        ("a,b", "b", True),
        ("a, b", "b", True),
        ("ab,b", "a", False),
        ("xa, a", "a", True),
        ("a b", "a b", True),
        ("", "a", False),
        ("abc", "b", False),
    ],
)
def test_strlist_contains(liststr, name, found):
    assert t.strlist_contains(liststr, name) is found


def test_json_quote_is_escape_json():
    assert t.json_quote('a"b\\c\n\x01é') == '"a\\"b\\\\c\\n\\u0001é"'


def tokens(sql):
    out, pos = [], 0
    while pos < len(sql):
        tok, n = t.sql_token(sql, pos)
        if tok < 0:
            return None
        out.append((tok, sql[pos : pos + n]))
        pos += n
    return out


def test_tokenizer_words_strings_comments():
    got = tokens("a > 1 and b.c = 'x''y' -- c\n/* /* n */ */ $1 $q$ s $q$")
    assert (t.T_WORD, "a") in got
    assert (t.T_WORD, "b.c") in got  # dotted plain words are one word (never a column)
    assert (t.T_STRING, "'x''y'") in got
    assert (t.T_WORD, "$1") in got
    assert (t.T_STRING, "$q$ s $q$") in got


@pytest.mark.parametrize("bad", ["'unterminated", "/* open", "$", ".", "E'\\"])
def test_tokenizer_errors(bad):
    assert tokens(bad) is None
