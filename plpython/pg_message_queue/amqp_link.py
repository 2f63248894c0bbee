"""Broker connections of one backend, and pipelined publishing with confirms.

No ``plpy`` here: the SQL side (``amqp.py``) reads the broker rows and hands
them in as dicts, so this module is testable without a server.

pika's ``BlockingChannel.basic_publish`` in confirm mode waits for every
message's confirm (one round trip each). We drive the channel's underlying
``pika.channel.Channel`` instead: :func:`start` encodes the batch and writes it
to the socket in chunks as it goes (so the broker works while we encode), the
caller may do its own work meanwhile (the outbox DELETE), and :func:`finish`
processes I/O until every delivery tag is settled (``Basic.Ack``/``Basic.Nack``,
with ``multiple``), a ``Basic.Return`` marks a mandatory message unroutable, the
channel or connection closes, or the confirm timeout passes. Confirms are
parsed from the received bytes by :func:`confirm_reader` (installed as the
transport's ``data_received``); every other frame goes through pika as before.
Everything runs in the calling backend: no threads, timers only inside pika's
own poll loop.
"""

from __future__ import annotations

import decimal
import logging
import re
import select
import struct
import time
from dataclasses import dataclass, field
from typing import Any

# Outcomes of one message.
ACK = "ack"  # confirmed: safe to delete
NACK = "nack"  # the broker refused it (Basic.Nack)
RETURNED = "returned"  # mandatory and unroutable (Basic.Return)
REFUSED = "refused"  # the broker closed the channel on this message (e.g. 404 no exchange)
UNCONFIRMED = "unconfirmed"  # no answer: connection lost or timeout; try again later
INVALID = "invalid"  # cannot be encoded (e.g. a property longer than 255 bytes): never sent

FINAL_FAILURES = (NACK, RETURNED, REFUSED, INVALID)
# Messages encoded per socket write: the broker starts on a chunk while we encode the next.
# Later chunks grow (each write is a system call, and a wake-up of the broker).
WRITE_CHUNK = 32
WRITE_GROWTH = 2
WRITE_CHUNK_MAX = 512
# A cached link used within this many seconds skips the full liveness check
# (process_data_events) unless input is waiting on its socket.
IDLE_RECHECK = 1.0


class LinkError(Exception):
    """A broker problem with the SQLSTATE to report it under."""

    def __init__(self, sqlstate: str, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.detail = detail


class EncodeError(ValueError):
    """A value that AMQP cannot carry; the message says which and why."""


def reason(exc: BaseException) -> str:
    """An exception in words, without Python class names (pika nests them in its texts)."""
    text = str(exc)
    for _ in range(3):
        text = _CLASS_CALL.sub(r"\1", _CLASS_PREFIX.sub("", text))
    text = text.strip(" :")
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if not text:
        return "timed out" if isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower() else "no answer"
    return text


_CLASS_PREFIX = re.compile(r"\b[A-Z][a-z]+(?:[A-Z][A-Za-z]*)+: ")
_CLASS_CALL = re.compile(r"\b[A-Z][A-Za-z]*(?:Error|Exception|Exit|Interrupt)\((.*?)\)")


@dataclass
class Message:
    exchange: str
    routing_key: str
    body: str | bytes
    properties: Any  # pika.BasicProperties, or its encoding (bytes from encode_properties)
    mandatory: bool = False
    message_id: str | None = None  # matches a Basic.Return; taken from properties when None


@dataclass
class Outcome:
    status: str = UNCONFIRMED
    error: str | None = None
    reply_code: int | None = None


@dataclass
class Link:
    """One cached connection: the host it reached, its confirm-mode channel."""

    broker_id: int
    host: dict[str, Any]
    connection: Any
    channel: Any  # BlockingChannel in confirm mode (we use its _impl)
    published: int = 0  # delivery tags used so far on the channel
    settled: dict[int, str] = field(default_factory=dict)
    floor: int = 0  # every tag up to here is settled
    returned: dict[str, str] = field(default_factory=dict)
    last_used: float = 0.0  # time.monotonic() of the last batch settled
    timed_out: bool = False  # confirms went unanswered: aborted, never retried

    def usable(self) -> bool:
        """The liveness check before a publish, cheap for a link in steady use.

        ``alive()`` costs a pass through pika's poll loop (~0.1 ms); a link used
        within IDLE_RECHECK seconds only needs it when input (a close frame, EOF)
        is waiting. A link that died unnoticed anyway is caught by ``send()``,
        which retries on a fresh connection.
        """
        if time.monotonic() - self.last_used > IDLE_RECHECK or _input_waiting(self.connection):
            return self.alive()
        return bool(self.connection.is_open and self.channel.is_open)

    def alive(self) -> bool:
        """Process pending input (a close frame, EOF, heartbeats); False if the link is dead."""
        try:
            if not (self.connection.is_open and self.channel.is_open):
                return False
            self.connection.process_data_events(0)
        except Exception:
            return False
        return self.connection.is_open and self.channel.is_open

    def close(self) -> None:
        try:
            if self.connection.is_open:
                self.connection.close()
        except Exception:
            pass

    def abort(self) -> None:
        """Close the socket at once. A broker that stopped answering (paused, behind a
        partition) would never acknowledge a graceful close, and close() waits for that."""
        try:
            transport = self.connection._impl._transport
            sock = transport._sock
            transport.abort()
            if sock is not None:
                sock.close()
        except Exception:
            pass

    def _confirm(self, tag: int, multiple: bool, status: str) -> None:
        """Settle ``tag`` (and, ``multiple``, every open tag before it) as ACK or NACK."""
        settled = self.settled
        if multiple:
            for t in range(self.floor + 1, tag + 1):
                settled.setdefault(t, status)
        else:
            settled[tag] = status
        floor = self.floor
        while floor + 1 in settled:
            floor += 1
        self.floor = floor

    # pika callbacks, invoked from inside its poll loop
    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        self._confirm(method.delivery_tag, method.multiple, ACK if method.NAME == "Basic.Ack" else NACK)

    def _on_return(self, _channel: Any, method: Any, properties: Any, _body: Any) -> None:
        key = properties.message_id or ""
        self.returned[key] = (
            f"unroutable: {method.reply_code} {method.reply_text}"
            f" (exchange {method.exchange!r}, routing key {method.routing_key!r})"
        )


def _input_waiting(connection: Any) -> bool:
    """True when the socket has input (or is not a plain one we can poll): check fully."""
    try:
        transport = connection._impl._transport
        if type(transport).__name__ != "_AsyncPlaintextTransport":
            return True  # TLS may hold decrypted bytes a poll cannot see
        return bool(select.select([transport._sock], [], [], 0)[0])
    except Exception:
        return True


_links: dict[int, Link] = {}
_preferred: dict[int, tuple[str, int]] = {}
logging.getLogger("pika").setLevel(logging.CRITICAL)


def describe(host: dict[str, Any]) -> str:
    scheme = "amqps" if host.get("tls") else "amqp"
    user = host.get("username") or "guest"
    vhost = host.get("vhost") or "/"
    return f"{scheme}://{user}@{host['host']}:{host['port']} vhost {vhost!r}"


def _parameters(host: dict[str, Any]) -> Any:
    import pika

    ssl_options = None
    if host.get("tls"):
        import ssl

        context = ssl.create_default_context(cafile=host.get("tls_ca_file") or None)
        ssl_options = pika.SSLOptions(context, host["host"])
    timeout = float(host.get("connect_timeout") or 3)
    return pika.ConnectionParameters(
        host=host["host"],
        port=int(host["port"]),
        virtual_host=host.get("vhost") or "/",
        credentials=pika.PlainCredentials(host.get("username") or "guest", host.get("password") or "guest"),
        heartbeat=host.get("heartbeat"),
        ssl_options=ssl_options,
        connection_attempts=1,
        socket_timeout=timeout,
        stack_timeout=timeout,
        blocked_connection_timeout=float(host.get("confirm_timeout") or 10),
        client_properties={"connection_name": "pg_message_queue"},
    )


def _connect_error(host: dict[str, Any], exc: BaseException) -> LinkError:
    import pika.exceptions as pe

    where = describe(host)
    if isinstance(exc, pe.ProbableAuthenticationError | pe.AuthenticationError) or (
        isinstance(exc, pe.ConnectionClosedByBroker) and exc.reply_code == 403
    ):
        return LinkError("28P01", f"AMQP broker {where} refused the credentials", reason(exc))
    if isinstance(exc, pe.ProbableAccessDeniedError) or (
        isinstance(exc, pe.ConnectionClosedByBroker) and exc.reply_code == 530
    ):
        return LinkError("42501", f"AMQP broker {where} denied access to the vhost", reason(exc))
    return LinkError("08001", f"cannot connect to AMQP broker {where}: {reason(exc)}")


def _open(broker_id: int, host: dict[str, Any]) -> Link:
    import pika

    connection = pika.BlockingConnection(_parameters(host))
    try:
        channel = connection.channel()
        link = Link(broker_id, host, connection, channel)
        selected: list[bool] = []
        channel._impl.confirm_delivery(link._on_confirm, callback=lambda _frame: selected.append(True))
        channel._impl.add_on_return_callback(link._on_return)
        channel._flush_output(lambda: bool(selected))
        shim = connection._impl._transport._protocol
        shim.data_received = confirm_reader(link, connection._impl, shim.data_received)
    except BaseException:
        connection.close()
        raise
    return link


_ACK_TAIL = struct.Struct(">QBB")  # delivery tag, bits (multiple = 1), frame end
_ACK_FRAME = 21  # method frame header (7) + class, method (4) + tag (8) + bits (1) + frame end (1)


def confirm_reader(link: Link, conn_impl: Any, received: Any) -> Any:
    """A ``data_received`` for the connection's transport that settles Basic.Ack /
    Basic.Nack frames on the link's channel itself and passes anything else on to
    pika's own ``received`` (``_on_data_available``), in order.

    A broker confirms a fast stream of messages one by one: 10,000 messages are
    10,000 Basic.Ack frames, and pika decodes each into objects, dispatches it
    through its callback registry and copies its whole input buffer once per
    frame. This reads the 21 bytes of each confirm in place. It steps aside while
    pika holds a partial frame of its own; the incomplete start of a confirm at the
    end of a read is kept for the next one. Counters that pika's heartbeat checker
    reads (bytes and frames received) are kept up to date.
    """
    channel = link.channel._impl.channel_number
    ack = _FRAME.pack(1, channel, 13) + b"\x00\x3c\x00\x50"
    nack = _FRAME.pack(1, channel, 13) + b"\x00\x3c\x00\x78"
    held = b""

    def data_received(data: bytes) -> None:
        nonlocal held
        if held:
            data, held = held + data, b""
        if conn_impl._frame_buffer:
            received(data)
            return
        pos, end, frames = 0, len(data), 0
        confirm = link._confirm
        while end - pos >= _ACK_FRAME:
            if data.startswith(ack, pos):
                status = ACK
            elif data.startswith(nack, pos):
                status = NACK
            else:
                break
            tag, bits, frame_end = _ACK_TAIL.unpack_from(data, pos + 11)
            if frame_end != 0xCE:
                break
            confirm(tag, bool(bits & 1), status)
            pos += _ACK_FRAME
            frames += 1
        if frames:
            conn_impl.bytes_received += pos
            conn_impl.frames_received += frames
        if pos == end:
            return
        rest = data[pos:] if pos else data
        if len(rest) < _ACK_FRAME and (ack.startswith(rest[:11]) or nack.startswith(rest[:11])):
            held = rest  # the start of a confirm: wait for its other bytes
            return
        received(rest)

    return data_received


def connect(broker_id: int, hosts: list[dict[str, Any]]) -> Link:
    """The cached link of ``broker_id`` if still alive, else a new one to the first host that answers.

    The host that worked last is tried first. Raises LinkError naming every host tried.
    """
    link = _links.get(broker_id)
    if link is not None:
        if link.usable():
            return link
        link.close()
        del _links[broker_id]
    if not hosts:
        raise LinkError("42704", f"no AMQP broker with broker_id {broker_id}")
    errors: list[LinkError] = []
    last = _preferred.get(broker_id)
    hosts = sorted(hosts, key=lambda h: (h["host"], h["port"]) != last)
    for host in hosts:
        try:
            link = _open(broker_id, host)
        except Exception as exc:
            errors.append(_connect_error(host, exc))
            continue
        _links[broker_id] = link
        _preferred[broker_id] = (host["host"], host["port"])
        return link
    if len(errors) == 1:
        raise errors[0]
    first = errors[0]
    auth = [e for e in errors if e.sqlstate != "08001"]
    raise LinkError(
        (auth[0] if auth else first).sqlstate,
        f"no host of AMQP broker {broker_id} accepted a connection: " + "; ".join(e.message for e in errors),
        "\n".join(e.detail or "" for e in errors),
    )


def disconnect(broker_id: int) -> bool:
    link = _links.pop(broker_id, None)
    if link is None:
        return False
    link.close()
    return True


def drop(link: Link, abort: bool = False) -> None:
    """Forget a link after a failure, so the next use reconnects; ``abort`` when the
    broker may not answer any more."""
    if _links.get(link.broker_id) is link:
        del _links[link.broker_id]
    if abort:
        link.abort()
    else:
        link.close()


@dataclass
class Pending:
    """A batch written by :func:`start` whose confirms :func:`finish` waits for."""

    link: Link
    messages: list[Message]
    outcomes: list[Outcome]
    tags: list[int | None]  # delivery tag of each message; None when it was not sent
    error: BaseException | None = None


def start(link: Link, messages: list[Message]) -> Pending:
    """Encode and write ``messages``, a chunk at a time; never raises for broker trouble.

    A message that cannot be encoded gets an INVALID outcome and is not sent.
    """
    outcomes = [Outcome() for _ in messages]
    tags: list[int | None] = [None] * len(messages)
    pending = Pending(link, messages, outcomes, tags)
    if not messages:
        return pending
    link.settled.clear()
    link.returned.clear()
    link.floor = link.published
    try:
        impl = link.channel._impl
        impl._raise_if_not_open()
        conn_impl = link.connection._impl
        number, body_max = impl.channel_number, conn_impl._body_max_length
        transport = conn_impl._transport
        # Plain TCP: push each chunk to the socket now rather than at the next poll.
        direct = type(transport).__name__ == "_AsyncPlaintextTransport"
        methods: dict[tuple[str, str, bool], bytes] = {}
        first, size = 0, WRITE_CHUNK
        while first < len(messages):
            parts = []
            last = min(first + size, len(messages))
            for i in range(first, last):
                try:
                    parts.append(encode_publish(number, body_max, messages[i], methods))
                except Exception as exc:
                    outcomes[i].status, outcomes[i].error = INVALID, f"cannot be encoded: {reason(exc)}"
                    continue
                link.published += 1
                tags[i] = link.published
            if parts:
                conn_impl._output_marshaled_frames([b"".join(parts)])
                if direct and transport._tx_buffers:
                    transport._on_socket_writable()
            first, size = last, min(size * WRITE_GROWTH, WRITE_CHUNK_MAX)
    except Exception as exc:
        pending.error = exc
    return pending


def finish(pending: Pending, timeout: float) -> list[Outcome]:
    """Wait up to ``timeout`` s for the confirms of a started batch; one Outcome per message.

    Never raises for broker trouble. A link that lost its connection or channel,
    or left confirms unanswered, is dropped from the cache.
    """
    link, messages, outcomes, tags = pending.link, pending.messages, pending.outcomes, pending.tags
    sent = [t for t in tags if t is not None]
    try:
        if pending.error is not None:
            raise pending.error
        if sent:
            # Every tag of the batch, not just the last: a broker confirms out of order
            # (an unroutable message at once, a persistent one routed to a durable queue
            # once it is written), and the batch's tags are consecutive, so the floor of
            # settled tags reaching the last one means all are settled.
            last = sent[-1]
            deadline = time.monotonic() + timeout
            timer = link.connection._impl._adapter_call_later(timeout, lambda: None)
            try:
                link.channel._flush_output(lambda: link.floor >= last or time.monotonic() >= deadline)
            finally:
                link.connection._impl._adapter_remove_timeout(timer)
            if not all(t in link.settled for t in sent):
                _settle(link, messages, outcomes, tags)
                for o in outcomes:
                    if o.status == UNCONFIRMED:
                        o.error = f"no confirm from {describe(link.host)} within {timeout:g}s"
                link.timed_out = True
                drop(link, abort=True)
                return outcomes
    except Exception as exc:
        _settle(link, messages, outcomes, tags)
        refused_reason = _channel_refusal(exc)
        open_ = [i for i, o in enumerate(outcomes) if o.status == UNCONFIRMED]
        if refused_reason is not None and open_:
            # The broker closed the channel on the message it refused; confirms of
            # earlier ones may not have come back yet, so find it by the exchange the
            # reason names (404 "no exchange 'x'"), else take the first unconfirmed.
            named = [i for i in open_ if f"'{messages[i].exchange}'" in refused_reason]
            culprit = named[0] if named else open_[0]
            outcomes[culprit].status, outcomes[culprit].error = REFUSED, refused_reason
            outcomes[culprit].reply_code = getattr(exc, "reply_code", None)
        for o in outcomes:
            if o.status == UNCONFIRMED:
                o.error = f"connection to {describe(link.host)} lost: {reason(exc)}"
        drop(link)
        return outcomes
    _settle(link, messages, outcomes, tags)
    link.last_used = time.monotonic()
    return outcomes


def publish(link: Link, messages: list[Message], timeout: float) -> list[Outcome]:
    """Publish all ``messages`` pipelined, then wait up to ``timeout`` s for their confirms."""
    return finish(start(link, messages), timeout)


def _shortstr(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 255:
        raise EncodeError(f"AMQP short string longer than 255 bytes: {text[:40]!r}...")
    return bytes((len(raw),)) + raw


def _frame(kind: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


def encode_publish(
    channel: int, body_max: int, m: Message, methods: dict[tuple[str, str, bool], bytes] | None = None
) -> bytes:
    """The Basic.Publish method, content header and body frames of ``m``, as pika
    would marshal them, in one bytes: pika's per-frame path (and its one send()
    per frame) costs more than the broker's work for small messages. ``methods``
    caches the method frame per (exchange, routing key, mandatory) for a batch."""
    body = m.body.encode() if isinstance(m.body, str) else m.body
    key = (m.exchange, m.routing_key, m.mandatory)
    method_frame = methods.get(key) if methods is not None else None
    if method_frame is None:
        method = b"\x00\x3c\x00\x28\x00\x00" + _shortstr(m.exchange) + _shortstr(m.routing_key)
        method += b"\x01" if m.mandatory else b"\x00"
        method_frame = _FRAME.pack(1, channel, len(method)) + method + b"\xce"
        if methods is not None:
            methods[key] = method_frame
    props = m.properties if isinstance(m.properties, bytes) else b"".join(m.properties.encode())
    if len(props) + 12 > body_max:
        raise EncodeError(f"its properties take {len(props)} bytes, more than the broker's frame size allows")
    frames = [
        method_frame,
        _CONTENT.pack(2, channel, len(props) + 12, 60, 0, len(body)),
        props,
        b"\xce",
    ]
    if len(body) <= body_max:
        if body:
            frames += [_FRAME.pack(3, channel, len(body)), body, b"\xce"]
    else:
        frames.extend(_frame(3, channel, body[i : i + body_max]) for i in range(0, len(body), body_max))
    return b"".join(frames)


_FRAME = struct.Struct(">BHI")
_CONTENT = struct.Struct(">BHIHHQ")  # content header frame's header, class, weight, body size

# Property flags of Basic content headers (AMQP 0-9-1), in encoding order.
_F_CONTENT_TYPE, _F_HEADERS, _F_DELIVERY_MODE, _F_PRIORITY = 1 << 15, 1 << 13, 1 << 12, 1 << 11
_F_CORRELATION_ID, _F_REPLY_TO, _F_EXPIRATION, _F_MESSAGE_ID = 1 << 10, 1 << 9, 1 << 8, 1 << 7


# Limits of a headers table: nesting (a JSON object or array is one level) and
# encoded size (the content header frame must fit in the broker's frame_max,
# 128 KiB by default, with the other properties).
MAX_TABLE_DEPTH = 100
MAX_TABLE_BYTES = 65536
_I32, _I64 = 2**31, 2**63


def encode_table(table: dict[str, Any]) -> bytes:
    """An AMQP field table, byte for byte as pika encodes it, for the JSON types
    (str, int, bool, None, list, dict) plus Decimal (AMQP decimal) for numbers
    with a fraction. Raises EncodeError naming the culprit for anything AMQP
    cannot carry: a key over 255 bytes, an integer outside 64 bits, a number
    with too many digits, nesting deeper than MAX_TABLE_DEPTH, more than
    MAX_TABLE_BYTES in all, a value of another type."""
    out = bytearray()
    _put_table(out, table, "", 1)
    if len(out) > MAX_TABLE_BYTES:
        raise EncodeError(f"headers take {len(out)} bytes encoded, more than the {MAX_TABLE_BYTES} allowed")
    return bytes(out)


def _where(path: str) -> str:
    return f"header {path[:80]!r}" if path else "headers"


def _put_table(out: bytearray, table: dict[str, Any], path: str, depth: int) -> None:
    if depth > MAX_TABLE_DEPTH:
        raise EncodeError(f"{_where(path)} nests deeper than {MAX_TABLE_DEPTH} levels")
    start = len(out)
    out += b"\0\0\0\0"
    for key, value in table.items():
        if not isinstance(key, str):
            raise EncodeError(f"{_where(path)}: keys must be strings")
        raw = key.encode()
        if len(raw) > 255:
            raise EncodeError(f"header key {key[:40]!r}... is longer than 255 bytes")
        out.append(len(raw))
        out += raw
        _put_value(out, value, f"{path}.{key}" if path else key, depth)
    _U32.pack_into(out, start, len(out) - start - 4)


def _put_value(out: bytearray, value: Any, path: str, depth: int) -> None:
    if isinstance(value, str):
        raw = value.encode()
        out += _STR.pack(b"S", len(raw))
        out += raw
    elif isinstance(value, bool):
        out += b"t\x01" if value else b"t\x00"
    elif isinstance(value, int):
        if -_I32 <= value < _I32:
            out += _INT.pack(b"I", value)
        elif -_I64 <= value < _I64:
            out += _LONG.pack(b"L" if value < 0 else b"l", value)
        else:
            raise EncodeError(f"{_where(path)}: integer {str(value)[:30]} does not fit AMQP's 64 bits")
    elif isinstance(value, float | decimal.Decimal):
        out += _decimal(value, path)
    elif isinstance(value, dict):
        out += b"F"
        _put_table(out, value, path, depth + 1)
    elif isinstance(value, list):
        if depth + 1 > MAX_TABLE_DEPTH:
            raise EncodeError(f"{_where(path)} nests deeper than {MAX_TABLE_DEPTH} levels")
        out += b"A\0\0\0\0"
        start = len(out)
        for item in value:
            _put_value(out, item, path, depth + 1)
        _U32.pack_into(out, start - 4, len(out) - start)
    elif value is None:
        out += b"V"
    else:
        raise EncodeError(f"{_where(path)}: AMQP cannot carry a value of this type")


def _decimal(value: float | decimal.Decimal, path: str) -> bytes:
    """AMQP decimal (scale, 32-bit unscaled value), exactly as pika encodes a Decimal."""
    number = decimal.Decimal(repr(value)) if isinstance(value, float) else value
    if not number.is_finite():
        raise EncodeError(f"{_where(path)}: AMQP cannot carry {value}")
    number = number.normalize()
    exponent = number.as_tuple().exponent
    scale = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    raw = int(number.scaleb(scale))
    if scale > 255 or not -_I32 <= raw < _I32:
        raise EncodeError(
            f"{_where(path)}: {str(value)[:30]} has too many digits for an AMQP decimal"
            " (at most 9 significant digits); send it as a string"
        )
    return _DEC.pack(b"D", scale, raw)


_U32 = struct.Struct(">I")
_STR = struct.Struct(">cI")
_INT = struct.Struct(">ci")
_LONG = struct.Struct(">cq")
_DEC = struct.Struct(">cBi")


def encode_properties(
    *,
    content_type: str | None = None,
    headers: bytes | None = None,
    delivery_mode: int | None = None,
    priority: int | None = None,
    correlation_id: str | None = None,
    reply_to: str | None = None,
    expiration: str | None = None,
    message_id: str | None = None,
) -> bytes:
    """The content header's property flags and list, byte for byte what
    ``pika.BasicProperties(...).encode()`` gives for these properties, at a
    fraction of its cost. ``headers`` is an encoded table (encode_table)."""
    flags = 0
    out = [b""]
    if content_type is not None:
        flags |= _F_CONTENT_TYPE
        out.append(_shortstr(content_type))
    if headers is not None:
        flags |= _F_HEADERS
        out.append(headers)
    if delivery_mode is not None:
        flags |= _F_DELIVERY_MODE
        out.append(bytes((delivery_mode,)))
    if priority is not None:
        flags |= _F_PRIORITY
        out.append(bytes((priority,)))
    if correlation_id is not None:
        flags |= _F_CORRELATION_ID
        out.append(_shortstr(correlation_id))
    if reply_to is not None:
        flags |= _F_REPLY_TO
        out.append(_shortstr(reply_to))
    if expiration is not None:
        flags |= _F_EXPIRATION
        out.append(_shortstr(expiration))
    if message_id is not None:
        flags |= _F_MESSAGE_ID
        out.append(_shortstr(message_id))
    out[0] = flags.to_bytes(2, "big")
    return b"".join(out)


def _settle(link: Link, messages: list[Message], outcomes: list[Outcome], tags: list[int | None] | int) -> None:
    """Outcomes from the settled delivery tags; ``tags`` per message, or the tag before the first."""
    if isinstance(tags, int):
        tags = list(range(tags + 1, tags + 1 + len(messages)))
    settled = link.settled
    for i, m in enumerate(messages):
        tag = tags[i]
        status = None if tag is None else settled.get(tag)
        if status is None:
            continue
        if status == ACK and not (m.mandatory and link.returned):
            outcomes[i].status = ACK
            continue
        mid = m.message_id if m.message_id is not None else (m.properties.message_id or "")
        if m.mandatory and mid in link.returned:
            outcomes[i].status, outcomes[i].error = RETURNED, link.returned.pop(mid)
        elif status == NACK:
            outcomes[i].status, outcomes[i].error = NACK, f"nacked by {describe(link.host)}"
        else:
            outcomes[i].status = ACK


def _channel_refusal(exc: BaseException) -> str | None:
    """The broker's reason when it closed the channel because of a message."""
    import pika.exceptions as pe

    if isinstance(exc, pe.ChannelClosedByBroker):
        return f"refused by the broker: {exc.reply_code} {exc.reply_text}"
    return None


def send(broker_id: int, hosts: list[dict[str, Any]], messages: list[Message], timeout: float) -> list[Outcome]:
    """Connect (or reuse) and publish; retry once on a fresh connection when a cached
    one turns out dead before anything was confirmed. Raises LinkError if no host answers."""
    return send_then(broker_id, hosts, messages, timeout, None)


def send_then(
    broker_id: int,
    hosts: list[dict[str, Any]],
    messages: list[Message],
    timeout: float,
    meanwhile: Any,
) -> list[Outcome]:
    """``send`` that calls ``meanwhile()`` (if given) once the batch is written,
    before waiting for the confirms: the caller's own work overlaps the broker's."""
    reused = broker_id in _links
    link = connect(broker_id, hosts)
    pending = start(link, messages)
    if meanwhile is not None:
        meanwhile()
    outcomes = finish(pending, timeout)
    lost = [i for i, o in enumerate(outcomes) if o.status == UNCONFIRMED]
    # Once more on a fresh connection only when the cached one turned out dead; after a
    # confirm timeout the broker may have the messages, and it may not answer again soon.
    retry = reused and lost and not link.timed_out and not any(o.status == ACK for o in outcomes)
    if retry and broker_id not in _links:
        try:
            link = connect(broker_id, hosts)
        except LinkError:
            return outcomes
        again = publish(link, [messages[i] for i in lost], timeout)
        for i, o in zip(lost, again, strict=True):
            outcomes[i] = o
    return outcomes
