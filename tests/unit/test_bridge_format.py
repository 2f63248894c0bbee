"""The bridge's pure rules, checked against pg-amqp-bridge's own unit tests (src/lib.rs)."""

from __future__ import annotations

import pytest
from pg_message_queue.bridge_format import (
    Binding,
    ConfigError,
    fold_identifier,
    parse_bridge_channels,
    parse_payload,
)


def test_parse_payload_as_pg_amqp_bridge():
    assert parse_payload("my_key|A message") == ("my_key", "A message", None)
    assert parse_payload("  my_key  |  A message  ") == ("my_key", "A message", None)
    assert parse_payload("my_key##A message") == ("", "my_key##A message", None)
    assert parse_payload("A message") == ("", "A message", None)
    assert parse_payload("") == ("", "", None)
    assert parse_payload("mý_kéý|A mésságé") == ("mý_kéý", "A mésságé", None)
    assert parse_payload(
        "my_key|Content-Type: application/json, application/octet-stream; X-My-Header: my-value|A message"
    ) == (
        "my_key",
        "A message",
        {"Content-Type": ["application/json", "application/octet-stream"], "X-My-Header": ["my-value"]},
    )
    assert parse_payload("k|headers without colon|m|with|bars") == ("k", "m|with|bars", {})


def test_parse_bridge_channels_as_pg_amqp_bridge():
    assert parse_bridge_channels("pgchannel1:exchange1") == [("pgchannel1", "exchange1")]
    assert parse_bridge_channels(" pgchannel1 : exchange1 , pgchannel2 : exchange2 , pgchannel3 : exchange3, ") == [
        ("pgchannel1", "exchange1"),
        ("pgchannel2", "exchange2"),
        ("pgchannel3", "exchange3"),
    ]
    for bad in ("   ", ":", "pgchannel1", ":exchange1", "pgchannel1:", "pgchannel1, pgchannel1:, :exchange3,,"):
        with pytest.raises(ConfigError, match="no bindings"):
            parse_bridge_channels(bad)
    for bad in ("pgchannel1,pgchannel1:exchange2,pgchannel1:exchange3,", "a:x,A:y"):
        with pytest.raises(ConfigError, match="appears twice"):
            parse_bridge_channels(bad)


def test_channels_are_folded_as_an_unquoted_listen_folds_them():
    assert fold_identifier("PgChannel") == "pgchannel"
    assert fold_identifier("ÜberChannel") == "Überchannel"  # only ASCII letters fold
    assert fold_identifier('"MixedCase"') == "MixedCase"
    assert fold_identifier('"a""b"') == 'a"b'


def test_binding_message():
    assert Binding("c", 1, "ex", "fixed").message("k|body") == ("ex", "fixed", "k|body", None)
    assert Binding("c", 1, "ex").message("k|body") == ("ex", "k", "body", None)
    assert Binding("c", 1, "q", to_queue="q").message("k|body") == ("", "q", "body", None)


def test_the_bridge_imports_outside_the_server_without_plpy():
    import subprocess
    import sys
    from pathlib import Path

    plpython = Path(__file__).resolve().parents[2] / "plpython"
    code = (
        "import sys, pg_message_queue, pg_message_queue.bridge as b; "
        "assert 'plpy' not in sys.modules and 'pg_message_queue._db' not in sys.modules, sorted(sys.modules); "
        "assert callable(b.main) and pg_message_queue.bridge is b"
    )
    env = {"PYTHONPATH": str(plpython)}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
