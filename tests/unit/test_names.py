from pg_message_queue.names import MAX_CHANNEL_BYTES, channel_problem, table_name


def test_hostile_but_printable_names_are_accepted():
    for name in ['x"; DROP TABLE victim; --', "With Space", "Capital", "semi;colon", "'quote", "ünïcødé"]:
        assert channel_problem(name) is None, name


def test_null_empty_and_control_characters_are_refused():
    assert channel_problem(None).sqlstate == "22004"
    assert channel_problem("").sqlstate == "22023"
    problem = channel_problem("a\nb")
    assert problem.sqlstate == "22023"
    assert "U+000A" in problem.message


def test_c1_controls_separators_and_bidi_overrides_are_refused():
    for name, code in [
        ("a\u0085b", "U+0085"),
        ("a\x9bb", "U+009B"),
        ("a\u2028b", "U+2028"),
        ("abc\u202egpj.exe", "U+202E"),
    ]:
        problem = channel_problem(name)
        assert problem is not None and problem.sqlstate == "22023", name
        assert code in problem.message
    assert channel_problem("emoji \U0001f600 and zwj \u200d ok") is None


def test_length_limit_counts_utf8_bytes_of_the_table_name():
    assert MAX_CHANNEL_BYTES == 51
    assert channel_problem("a" * 51) is None
    too_long = channel_problem("a" * 52)
    assert too_long.sqlstate == "42622"
    assert "52 bytes" in too_long.message
    # 26 two-byte characters = 52 bytes: refused although only 26 characters.
    assert channel_problem("é" * 26).sqlstate == "42622"
    assert channel_problem("é" * 25) is None
    assert len(table_name("é" * 25).encode()) == 62
