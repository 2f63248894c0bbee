"""The hand-rolled Basic.Publish frames are byte for byte what pika marshals."""

from __future__ import annotations

import decimal

import pika
import pytest
from pg_message_queue import amqp_link
from pika import frame, spec


def pika_frames(channel: int, body_max: int, m: amqp_link.Message) -> bytes:
    body = m.body.encode() if isinstance(m.body, str) else m.body
    method = spec.Basic.Publish(exchange=m.exchange, routing_key=m.routing_key, mandatory=m.mandatory)
    out = [frame.Method(channel, method).marshal(), frame.Header(channel, len(body), m.properties).marshal()]
    out += [frame.Body(channel, body[i : i + body_max]).marshal() for i in range(0, len(body), body_max)]
    return b"".join(out)


@pytest.mark.parametrize(
    "message",
    [
        amqp_link.Message("", "q", "hello", pika.BasicProperties(message_id="m1")),
        amqp_link.Message("ex", "rk", "", pika.BasicProperties(), mandatory=True),
        amqp_link.Message(
            "amqp.direct",
            "føø",
            "ünïcode ✓" * 50,
            pika.BasicProperties(
                delivery_mode=2,
                content_type="application/json",
                reply_to="",
                correlation_id="INSERT",
                headers={"x-pg-txid": "123", "n": 3, "nested": {"a": [1, "b"]}},
                message_id="id",
                expiration="60000",
                priority=5,
            ),
        ),
        amqp_link.Message("", "q", b"\x00\x01" * 5000, pika.BasicProperties()),
    ],
)
def test_encode_publish_matches_pika(message: amqp_link.Message) -> None:
    for body_max in (4096 - 8, 131072 - 8):
        assert amqp_link.encode_publish(7, body_max, message) == pika_frames(7, body_max, message)


def test_names_longer_than_255_bytes_are_refused() -> None:
    with pytest.raises(ValueError, match="255"):
        amqp_link.encode_publish(1, 1000, amqp_link.Message("", "é" * 200, "x", pika.BasicProperties()))


@pytest.mark.parametrize(
    "props",
    [
        {},
        {"message_id": "m1"},
        {"message_id": "m1", "headers": {"x-pg-txid": "42"}},
        {
            "content_type": "application/json",
            "headers": {"n": 3, "nested": {"a": [1, "b"]}, "x-pg-txid": "123"},
            "delivery_mode": 2,
            "priority": 9,
            "correlation_id": "INSERT",
            "reply_to": "",
            "expiration": "60000",
            "message_id": "ünï",
        },
        {"delivery_mode": 1, "reply_to": "r", "message_id": "m"},
    ],
)
def test_encode_properties_matches_pika(props: dict) -> None:
    table = props.get("headers")
    ours = amqp_link.encode_properties(
        **{k: v for k, v in props.items() if k != "headers"},
        headers=None if table is None else amqp_link.encode_table(table),
    )
    assert ours == b"".join(pika.BasicProperties(**props).encode())
    message = amqp_link.Message("", "q", "body", ours, message_id=props.get("message_id"))
    assert amqp_link.encode_publish(3, 4088, message) == pika_frames(
        3, 4088, amqp_link.Message("", "q", "body", pika.BasicProperties(**props))
    )


def test_property_longer_than_255_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="255"):
        amqp_link.encode_properties(correlation_id="x" * 256)


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        (None, {}),
        ('[2, "application/json", null, null, null, null, null]',
         {"delivery_mode": 2, "content_type": "application/json"}),
        (
            '[1, "text/plain", "r", "c", {"tenant": "a", "n": 1.5}, "60000", 7]',
            {"delivery_mode": 1, "content_type": "text/plain", "reply_to": "r", "correlation_id": "c",
             "headers": {"tenant": "a", "n": decimal.Decimal("1.5")}, "expiration": "60000", "priority": 7},
        ),
    ],
)  # fmt: skip
def test_outbox_row_properties_cached_per_batch_match_pika(props: str | None, expected: dict) -> None:
    from pg_message_queue import amqp

    for message_id in ("m1", "ünï-" + "x" * 200, "m3"):  # the cached prefix, then each message_id
        row = {"props": props, "txid": "4711", "message_id": message_id}
        headers = {**expected.get("headers", {}), "x-pg-txid": "4711"}
        pika_props = pika.BasicProperties(**{**expected, "headers": headers, "message_id": message_id})
        assert amqp._properties(row) == b"".join(pika_props.encode())
    with pytest.raises(ValueError, match="255"):
        amqp._properties({"props": props, "txid": "4711", "message_id": "x" * 256})


def test_publish_frames_reuse_the_method_frame_per_exchange_and_key() -> None:
    methods: dict = {}
    a = amqp_link.Message("ex", "rk", "one", pika.BasicProperties(message_id="1"))
    b = amqp_link.Message("ex", "rk", "two", pika.BasicProperties(message_id="2"), mandatory=True)
    for m in (a, b, a, b):
        assert amqp_link.encode_publish(5, 4088, m, methods) == pika_frames(5, 4088, m)
    assert len(methods) == 2
