"""Settling delivery tags from Basic.Ack/Nack (multiple) and Basic.Return."""

from __future__ import annotations

from types import SimpleNamespace

import pika
from pg_message_queue import amqp_link


def frame(name: str, tag: int, multiple: bool) -> SimpleNamespace:
    return SimpleNamespace(method=SimpleNamespace(NAME=name, delivery_tag=tag, multiple=multiple))


def test_multiple_ack_settles_every_earlier_open_tag_only() -> None:
    link = amqp_link.Link(1, {}, None, None)
    link._on_confirm(frame("Basic.Nack", 2, False))
    link._on_confirm(frame("Basic.Ack", 4, True))
    assert link.settled == {1: "ack", 2: "nack", 3: "ack", 4: "ack"}


def test_settle_maps_returns_and_nacks_to_messages() -> None:
    link = amqp_link.Link(1, {"host": "h", "port": 1}, None, None)
    msgs = [
        amqp_link.Message("", "q", "a", pika.BasicProperties(message_id="a")),
        amqp_link.Message("", "nowhere", "b", pika.BasicProperties(message_id="b"), mandatory=True),
        amqp_link.Message("", "q", "c", pika.BasicProperties(message_id="c")),
        amqp_link.Message("", "q", "d", pika.BasicProperties(message_id="d")),
    ]
    link._on_return(
        None,
        SimpleNamespace(reply_code=312, reply_text="NO_ROUTE", exchange="", routing_key="nowhere"),
        msgs[1].properties,
        b"b",
    )
    for tag, name in [(11, "Basic.Ack"), (12, "Basic.Ack"), (13, "Basic.Nack")]:
        link._on_confirm(frame(name, tag, False))
    outcomes = [amqp_link.Outcome() for _ in msgs]
    amqp_link._settle(link, msgs, outcomes, 10)
    assert [o.status for o in outcomes] == ["ack", "returned", "nack", "unconfirmed"]
    assert "NO_ROUTE" in (outcomes[1].error or "")
