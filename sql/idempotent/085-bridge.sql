-- The NOTIFY -> AMQP bridge (see plpython/pg_message_queue/bridge_map.py and the
-- client command bridge.py): the channel map, and pg_mq_notify, the lossless
-- drop-in for pg_notify.

-- Bridge channel to (broker_id, exchange, routing_key); running bridges reload
-- their map when the transaction commits.
CREATE OR REPLACE FUNCTION pg_mq_bridge_map(
    channel text,
    broker_id integer,
    exchange text,
    routing_key text DEFAULT null,
    delivery_mode integer DEFAULT 2
)
RETURNS void
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
pgmq.bridge_map.bridge_map(channel, broker_id, exchange, routing_key, delivery_mode)
$python$;
COMMENT ON FUNCTION pg_mq_bridge_map(text, integer, text, text, integer) IS
'Bridge NOTIFY channel to exchange on broker broker_id: the bridge publishes every notification (and pg_mq_notify records it in amqp.outbox). routing_key NULL: the payload gives it (routing_key|message, as pg-amqp-bridge). Mapping again replaces. Administrators only.';

-- Stop bridging a channel.
CREATE OR REPLACE FUNCTION pg_mq_bridge_unmap(channel text)
RETURNS boolean
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.bridge_map.bridge_unmap(channel)
$python$;
COMMENT ON FUNCTION pg_mq_bridge_unmap(text) IS
'Stop bridging NOTIFY channel to AMQP. Returns whether it was mapped. Administrators only.';

-- pg_notify(channel, payload), and for a mapped channel amqp.publish of the same
-- message in the caller's transaction: nothing committed is lost while the bridge
-- or the broker is down. SECURITY DEFINER so callers need no rights on schema amqp:
-- like a NOTIFY on a mapped channel, it sends only what the map says, where it says.
CREATE OR REPLACE FUNCTION pg_mq_notify(channel text, payload text)
RETURNS void
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
pgmq.bridge_map.notify(channel, payload)
$python$;
COMMENT ON FUNCTION pg_mq_notify(text, text) IS
'Drop-in for pg_notify(channel, payload): notifies, and for a channel in pg_mq_bridge_channel also records the message in amqp.outbox in this transaction (message_id pg_mq_notify:<txid>:<md5>), so it reaches the broker even while the bridge or the broker is down. The bridge skips these notifications.';
