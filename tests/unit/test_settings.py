from pg_message_queue.settings import DEFAULTS, parse


def test_known_keys_parse_to_typed_values():
    assert parse("max_deliveries", " 5 ") == (5, None)
    assert parse("priority_ordering", "OFF") == (False, None)
    assert parse("priority_ordering", "yes") == (True, None)
    assert parse("retention", "2 days") == ("2 days", None)
    assert parse("fifo_group_header", "customer") == ("customer", None)


def test_null_resets_to_the_default():
    for key, default in DEFAULTS.items():
        assert parse(key, None) == (default, None)


def test_bad_values_name_key_and_value():
    for key, value in [("max_deliveries", "0"), ("max_deliveries", "-2"), ("max_deliveries", "1.5")]:
        _, problem = parse(key, value)
        assert problem.sqlstate == "22023" and repr(value) in problem.message
    _, problem = parse("colour", "red")
    assert problem.sqlstate == "22023" and "colour" in problem.message and "max_deliveries" in problem.message
    _, problem = parse("retention", "")
    assert "must not be empty" in problem.message


def test_settings_take_each_default_from_one_place_and_ignore_reset_keys():
    from pg_message_queue.settings import DEFAULTS, Settings

    assert Settings() == Settings.from_stored({})
    assert DEFAULTS["dedup_window"] == Settings().dedup_window == "1 hour"
    stored = Settings.from_stored({"max_deliveries": 3, "retention": None, "notify": False})
    assert (stored.max_deliveries, stored.retention, stored.notify) == (3, "0", False)
    assert stored.dlq_name("jobs") == "jobs_dlq"
    assert Settings.from_stored({"dead_letter_queue": "graveyard"}).dlq_name("jobs") == "graveyard"
