from pg_message_queue.names import MAX_CHANNEL_BYTES, channel_problem, table_name


def test_hostile_but_printable_names_are_accepted():
    for name in ['x"; DROP TABLE victim; --', "With Space", "Capital", "semi;colon", "'quote", "ünïcødé"]:
        assert channel_problem(name) is None, name


def test_null_empty_and_control_characters_are_refused():
    assert channel_problem(None).sqlstate == "22004"
    assert channel_problem("").sqlstate == "22023"
    problem = channel_problem("a\nb")
    assert problem.sqlstate == "22023"
    assert "0x0a" in problem.message


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
