"""Settling delivery tags from Basic.Ack/Nack (multiple) and Basic.Return."""

from __future__ import annotations

from types import SimpleNamespace

import pika
from pg_message_queue import amqp_link
from pika import frame as pika_frame
from pika import spec


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


# ---- confirm_reader: Basic.Ack/Nack frames read in place, everything else to pika, in order ----


def confirm_frame(channel: int, tag: int, multiple: bool = False, nack: bool = False) -> bytes:
    method = spec.Basic.Nack(tag, multiple) if nack else spec.Basic.Ack(tag, multiple)
    return pika_frame.Method(channel, method).marshal()


def reader(channel: int = 1) -> tuple[amqp_link.Link, SimpleNamespace, list[bytes], object]:
    link = amqp_link.Link(1, {}, None, SimpleNamespace(_impl=SimpleNamespace(channel_number=channel)))
    impl = SimpleNamespace(_frame_buffer=b"", bytes_received=0, frames_received=0)
    passed: list[bytes] = []
    return link, impl, passed, amqp_link.confirm_reader(link, impl, passed.append)


def test_reader_settles_acks_and_nacks_without_pika_and_counts_them() -> None:
    link, impl, passed, received = reader()
    data = confirm_frame(1, 1) + confirm_frame(1, 2, nack=True) + confirm_frame(1, 5, multiple=True)
    assert len(confirm_frame(1, 1)) == amqp_link._ACK_FRAME
    received(data)
    assert link.settled == {1: "ack", 2: "nack", 3: "ack", 4: "ack", 5: "ack"}
    assert link.floor == 5
    assert passed == []
    assert (impl.bytes_received, impl.frames_received) == (len(data), 3)


def test_reader_completes_a_confirm_split_across_reads() -> None:
    link, _impl, passed, received = reader()
    data = confirm_frame(1, 1) + confirm_frame(1, 2)
    for cut in (25, 30, 41):
        link.settled.clear()
        link.floor = 0
        received(data[:cut])
        received(data[cut:])
        assert link.settled == {1: "ack", 2: "ack"}, cut
    assert passed == []


def test_reader_hands_other_frames_and_all_after_them_to_pika_in_order() -> None:
    link, _impl, passed, received = reader()
    returned = pika_frame.Method(1, spec.Basic.Return(312, "NO_ROUTE", "", "nowhere")).marshal()
    received(confirm_frame(1, 1) + returned + confirm_frame(1, 2))
    assert link.settled == {1: "ack"}  # the ack after the Return is pika's (it calls _on_confirm)
    assert passed == [returned + confirm_frame(1, 2)]


def test_reader_leaves_other_channels_and_pikas_partial_frames_to_pika() -> None:
    link, impl, passed, received = reader(channel=2)
    received(confirm_frame(1, 1))
    assert passed == [confirm_frame(1, 1)] and link.settled == {}
    link, impl, passed, received = reader()
    impl._frame_buffer = b"\x01\x00"  # pika holds the start of a frame: what follows is its
    received(confirm_frame(1, 1))
    assert passed == [confirm_frame(1, 1)] and link.settled == {}


def test_reader_passes_a_corrupt_confirm_on_for_pika_to_reject() -> None:
    link, _impl, passed, received = reader()
    bad = confirm_frame(1, 1)[:-1] + b"\x00"  # no frame-end octet
    received(bad)
    assert passed == [bad] and link.settled == {}


# ---- finish: waits for every confirm of the batch, in whatever order they come ----


class OutOfOrderChannel:
    """A channel whose broker confirms the batch's tags in the order given, one per poll."""

    def __init__(self, link: amqp_link.Link, order: list[int]) -> None:
        self.link, self.order, self.polls = link, list(order), 0

    def _flush_output(self, done: object) -> None:
        while not done():  # type: ignore[operator]
            if not self.order:
                raise AssertionError("finish waited for a confirm the broker never sends")
            self.polls += 1
            self.link._on_confirm(frame("Basic.Ack", self.order.pop(0), False))


def test_finish_waits_for_every_confirm_when_the_last_one_comes_first() -> None:
    """RabbitMQ confirms an unroutable message at once and a persistent one routed to a
    durable queue only once it is written, so a batch's last tag can be confirmed first.
    finish() stopped at the last tag and called the others unconfirmed ("no confirm within
    10s", at once): they stayed in amqp.outbox to be sent again, and the link was dropped."""
    conn = SimpleNamespace(
        _impl=SimpleNamespace(_adapter_call_later=lambda *_a: object(), _adapter_remove_timeout=lambda _t: None)
    )
    link = amqp_link.Link(1, {"host": "h", "port": 1}, conn, None)
    link.floor = link.published = 7  # tags 8, 9, 10 are this batch's
    link.channel = OutOfOrderChannel(link, [10, 8, 9])
    msgs = [amqp_link.Message("x", k, "b", pika.BasicProperties(message_id=k)) for k in ("a", "b", "c")]
    pending = amqp_link.Pending(link, msgs, [amqp_link.Outcome() for _ in msgs], [8, 9, 10])
    outcomes = amqp_link.finish(pending, 10.0)
    assert [o.status for o in outcomes] == ["ack", "ack", "ack"]
    assert link.channel.polls == 3 and not link.timed_out
