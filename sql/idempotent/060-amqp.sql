-- AMQP publishing from SQL, pg_amqp's API, with on-commit semantics through an
-- outbox (see docs/architecture.md): publish() only inserts
-- into amqp.outbox; a deferred constraint trigger sends the transaction's rows
-- at commit with publisher confirms; what could not be confirmed stays in the
-- outbox and commits, for amqp.flush() / CALL amqp.relay() to deliver later.

-- The commit hook. Only the first row a transaction inserts queues a trigger
-- event (the trigger's WHEN arms a transaction-local setting; see below).
-- A deferred trigger fires at commit, but also at SET CONSTRAINTS ... IMMEDIATE
-- and, after that, at the end of each statement: the firing first probes which
-- it is, by inserting a row into amqp._commit_probe, whose trigger (same name,
-- hence same mode) runs during that INSERT only when the mode is immediate. The
-- probe runs in a subtransaction that is rolled back, taking the row and its
-- queued event with it; the exception carries the answer out.
-- Immediate (not the commit): nothing is sent; the trigger is deferred again
-- and a row in amqp._commit_probe carrying the first id queues the event that
-- sends at the real commit. Commit: send every row of the transaction from its
-- id on, record how far it got (a later event returns at once) and disarm, so
-- rows inserted after it (by another deferred trigger) queue an event of their own.
CREATE OR REPLACE FUNCTION amqp._outbox_on_commit()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    immediate boolean;
BEGIN
    IF NEW.id IS NULL THEN
        -- a probe row, firing during its INSERT: the mode is immediate
        PERFORM set_config('pg_message_queue.amqp_probe', 'fired', true);
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = '_commit_probe' THEN
        -- the row the immediate branch below left to defer this hook again: done
        DELETE FROM amqp._commit_probe AS p WHERE p.id = NEW.id;
    END IF;
    IF NEW.id <= coalesce(nullif(current_setting('pg_message_queue.amqp_sent_upto', true), '')::bigint, 0) THEN
        RETURN NULL;
    END IF;
    BEGIN
        PERFORM set_config('pg_message_queue.amqp_probe', 'deferred', true);
        INSERT INTO amqp._commit_probe (id) VALUES (null);
        RAISE EXCEPTION USING ERRCODE = 'PMQ01', MESSAGE = current_setting('pg_message_queue.amqp_probe');
    EXCEPTION WHEN SQLSTATE 'PMQ01' THEN
        immediate := sqlerrm = 'fired';
    END;
    IF immediate THEN
        SET CONSTRAINTS amqp.outbox_on_commit DEFERRED;
        INSERT INTO amqp._commit_probe (id) VALUES (NEW.id);
        RETURN NULL;
    END IF;
    -- PREPARE TRANSACTION fires deferred triggers too, but the transaction may
    -- still roll back (ROLLBACK PREPARED, or at once when prepared transactions
    -- are disabled). Nothing tells a trigger which statement ends the transaction
    -- but the client's query text: when it holds PREPARE TRANSACTION, the messages
    -- stay in the outbox for the relay, like strict ones.
    IF coalesce(current_query(), '') ~* '\mprepare(\s|/\*.*\*/|--[^\n]*(\n|$))+transaction\M' THEN
        RAISE NOTICE 'pg_message_queue: amqp: PREPARE TRANSACTION: the messages stay in amqp.outbox until the relay sends them (after COMMIT PREPARED)';
        PERFORM set_config('pg_message_queue.amqp_sent_upto', '9223372036854775807', true);
        RETURN NULL;
    END IF;
    PERFORM
        set_config('pg_message_queue.amqp_sent_upto', amqp._send_transaction(NEW.id)::text, true),
        set_config('pg_message_queue.amqp_armed', '', true);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION amqp._outbox_on_commit() IS
'Internal: deferred constraint trigger of amqp.outbox (and amqp._commit_probe); the first firing at commit sends the transaction''s messages, a firing before the commit (SET CONSTRAINTS ... IMMEDIATE) sends nothing and defers again.';

-- Python half of the commit hook: send rows id >= first_id of this transaction,
-- delete the confirmed ones, keep the rest with a WARNING. Returns the last id seen.
CREATE OR REPLACE FUNCTION amqp._send_transaction(first_id bigint)
RETURNS bigint
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.amqp.send_transaction(first_id)
$python$;
COMMENT ON FUNCTION amqp._send_transaction(bigint) IS
'Internal: publish this transaction''s outbox rows from first_id on with confirms; delete the confirmed ones.';

-- Queue a message for publication when the calling transaction commits.
-- PL/pgSQL rather than PL/Python: it runs once per message and only inserts.
CREATE OR REPLACE FUNCTION amqp.publish(
    broker_id integer,
    exchange varchar,
    routing_key varchar,
    message varchar,
    delivery_mode integer DEFAULT null,
    content_type varchar DEFAULT null,
    reply_to varchar DEFAULT null,
    correlation_id varchar DEFAULT null,
    headers jsonb DEFAULT null,
    message_id varchar DEFAULT null,
    expiration varchar DEFAULT null,
    priority integer DEFAULT null,
    mandatory boolean DEFAULT null
)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key bigint;
    flags bigint;
    strict_row boolean;
BEGIN
    -- One expression on the fast path; _check_message says what is wrong.
    IF
        publish.broker_id IS null OR publish.exchange IS null OR publish.routing_key IS null
        OR publish.message IS null OR octet_length(publish.exchange) > 255
        OR octet_length(publish.routing_key) > 255 OR publish.delivery_mode NOT IN (1, 2)
        OR publish.priority NOT BETWEEN 0 AND 255 OR publish.expiration !~ '^[0-9]+$'
        OR jsonb_typeof(publish.headers) <> 'object'
        THEN
        PERFORM amqp._check_message(
            publish.broker_id, publish.exchange, publish.routing_key, publish.message,
            publish.delivery_mode, publish.priority, publish.expiration, publish.headers
        );
    END IF;
    -- Headers are judged by the encoder that will send them (a fraction, an integer
    -- beyond 64 bits, a long key, deep nesting would otherwise fail at send time).
    IF publish.headers IS NOT null THEN
        PERFORM amqp._check_headers(publish.headers);
    END IF;
    -- The broker's flags, looked up once per transaction and broker, then kept in
    -- this session's value of sequence amqp._broker_flags (currval): only the
    -- extension's own code can set it (publishers have no rights on the sequence),
    -- so no setting a publisher can change skips the broker check or weakens the flags.
    -- Key: transaction id (low 40 bits), broker_id (21 bits), then mandatory, strict.
    key := CASE WHEN publish.broker_id BETWEEN 0 AND 2097151 THEN
        (pg_current_xact_id()::text::bigint % 1099511627776) * 8388608 + publish.broker_id * 4
    END;
    flags := CASE WHEN current_setting('pg_message_queue.amqp_flags_cached', true) = 'on' THEN
        currval('amqp._broker_flags') - key
    END;
    IF flags IS null OR flags NOT BETWEEN 0 AND 3 THEN
        SELECT bool_or(br.mandatory)::integer * 2 + bool_or(br.strict)::integer
        INTO flags
        FROM amqp.broker AS br
        WHERE br.broker_id = publish.broker_id;
        IF flags IS null THEN
            RAISE EXCEPTION 'pg_message_queue: no AMQP broker with broker_id %', publish.broker_id
                USING ERRCODE = '42704', HINT = 'Add it with INSERT INTO amqp.broker (host, port, vhost, username, password) ...';
        END IF;
        IF key IS NOT null THEN
            PERFORM
                setval('amqp._broker_flags', key + flags),
                set_config('pg_message_queue.amqp_flags_cached', 'on', false);
        END IF;
    END IF;
    -- the session setting can only make messages stricter: anything but "off" counts as on
    strict_row := flags % 2 = 1 OR lower(coalesce(current_setting('pg_message_queue.amqp_strict', true), ''))
        NOT IN ('', 'off', 'of', 'false', 'f', 'no', 'n', '0');
    -- Only the transaction's first non-strict row goes where the commit-time trigger
    -- is (its WHEN arms pg_message_queue.amqp_armed); the others need no event and go
    -- to amqp._outbox_rest, a child of amqp.outbox without the trigger, whose WHEN
    -- PostgreSQL would otherwise read back at every INSERT. Setting amqp_armed by
    -- hand only keeps one's own messages for the relay, as it does on amqp.outbox.
    IF strict_row OR current_setting('pg_message_queue.amqp_armed', true) = 'on' THEN
        INSERT INTO amqp._outbox_rest (
            broker_id, exchange, routing_key, message, delivery_mode, content_type,
            reply_to, correlation_id, headers, message_id, expiration, priority, mandatory, strict
        )
        VALUES (
            publish.broker_id, publish.exchange, publish.routing_key, publish.message,
            publish.delivery_mode, publish.content_type, publish.reply_to, publish.correlation_id,
            publish.headers, coalesce(publish.message_id, gen_random_uuid()::text),
            publish.expiration, publish.priority, coalesce(publish.mandatory, flags >= 2), strict_row
        );
    ELSE
        INSERT INTO amqp.outbox (
            broker_id, exchange, routing_key, message, delivery_mode, content_type,
            reply_to, correlation_id, headers, message_id, expiration, priority, mandatory, strict
        )
        VALUES (
            publish.broker_id, publish.exchange, publish.routing_key, publish.message,
            publish.delivery_mode, publish.content_type, publish.reply_to, publish.correlation_id,
            publish.headers, coalesce(publish.message_id, gen_random_uuid()::text),
            publish.expiration, publish.priority, coalesce(publish.mandatory, flags >= 2), false
        );
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION amqp.publish(integer, varchar, varchar, varchar, integer, varchar, varchar, varchar, jsonb, varchar, varchar, integer, boolean) IS
'Publish message to exchange with routing_key on broker broker_id if, and only if, the calling transaction commits (confirmed by the broker at commit; kept in amqp.outbox with a WARNING when it cannot be, for amqp.relay). Optional: delivery_mode (1 transient, 2 persistent), content_type, reply_to, correlation_id, headers, message_id (default a UUID), expiration (ms), priority, mandatory. Every message carries header x-pg-txid. Returns true.';

-- Argument checks shared by publish and autonomous_publish.
CREATE OR REPLACE FUNCTION amqp._check_message(
    broker_id integer, exchange varchar, routing_key varchar, message varchar,
    delivery_mode integer, priority integer, expiration varchar, headers jsonb
)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF broker_id IS NULL OR exchange IS NULL OR routing_key IS NULL OR message IS NULL THEN
        RAISE EXCEPTION 'pg_message_queue: amqp: % must not be NULL',
            CASE WHEN broker_id IS NULL THEN 'broker_id' WHEN exchange IS NULL THEN 'exchange'
                 WHEN routing_key IS NULL THEN 'routing_key' ELSE 'message' END
            USING ERRCODE = '22004', HINT = 'The default exchange and an empty routing key are written ''''.';
    END IF;
    IF octet_length(exchange) > 255 OR octet_length(routing_key) > 255 THEN
        RAISE EXCEPTION 'pg_message_queue: amqp: % is longer than 255 bytes',
            CASE WHEN octet_length(exchange) > 255 THEN 'exchange' ELSE 'routing_key' END
            USING ERRCODE = '22023';
    END IF;
    IF delivery_mode NOT IN (1, 2) THEN
        RAISE EXCEPTION 'pg_message_queue: amqp: delivery_mode must be 1 (transient) or 2 (persistent), not %', delivery_mode
            USING ERRCODE = '22023';
    END IF;
    IF priority NOT BETWEEN 0 AND 255 THEN
        RAISE EXCEPTION 'pg_message_queue: amqp: priority must be between 0 and 255, not %', priority
            USING ERRCODE = '22023';
    END IF;
    IF expiration !~ '^[0-9]+$' THEN
        RAISE EXCEPTION 'pg_message_queue: amqp: expiration must be a number of milliseconds, not "%"', expiration
            USING ERRCODE = '22023';
    END IF;
    IF jsonb_typeof(headers) <> 'object' THEN
        RAISE EXCEPTION 'pg_message_queue: amqp: headers must be a JSON object, not %', jsonb_typeof(headers)
            USING ERRCODE = '22023';
    END IF;
END
$$;
COMMENT ON FUNCTION amqp._check_message(integer, varchar, varchar, varchar, integer, integer, varchar, jsonb) IS
'Internal: argument checks of amqp.publish and amqp.autonomous_publish.';

-- publish()'s check of headers: the send-time encoder (amqp_link.encode_table) judges.
CREATE OR REPLACE FUNCTION amqp._check_headers(headers jsonb)
RETURNS void
LANGUAGE plpython3u
IMMUTABLE
STRICT
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
pgmq.amqp.check_headers(headers)
$python$;
COMMENT ON FUNCTION amqp._check_headers(jsonb) IS
'Internal: raise 22023 naming the culprit when headers cannot travel as an AMQP field table.';

-- Publish at once, whatever the calling transaction does later.
CREATE OR REPLACE FUNCTION amqp.autonomous_publish(
    broker_id integer,
    exchange varchar,
    routing_key varchar,
    message varchar,
    delivery_mode integer DEFAULT null,
    content_type varchar DEFAULT null,
    reply_to varchar DEFAULT null,
    correlation_id varchar DEFAULT null,
    headers jsonb DEFAULT null,
    message_id varchar DEFAULT null,
    expiration varchar DEFAULT null,
    priority integer DEFAULT null,
    mandatory boolean DEFAULT null
)
RETURNS boolean
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.amqp.autonomous_publish(
    broker_id, exchange, routing_key, message, delivery_mode, content_type, reply_to,
    correlation_id, headers, message_id, expiration, priority, mandatory,
)
$python$;
COMMENT ON FUNCTION amqp.autonomous_publish(integer, varchar, varchar, varchar, integer, varchar, varchar, varchar, jsonb, varchar, varchar, integer, boolean) IS
'Publish a message now and wait for the broker''s confirm, whatever the calling transaction does later. Same arguments as amqp.publish. Returns true, or raises an error (broker unreachable, refused, unroutable with mandatory).';

-- pg_amqp's exchange_declare.
CREATE OR REPLACE FUNCTION amqp.exchange_declare(
    broker_id integer,
    exchange varchar,
    exchange_type varchar,
    passive boolean,
    durable boolean,
    auto_delete boolean DEFAULT false
)
RETURNS boolean
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.amqp.exchange_declare(broker_id, exchange, exchange_type, passive, durable, auto_delete)
$python$;
COMMENT ON FUNCTION amqp.exchange_declare(integer, varchar, varchar, boolean, boolean, boolean) IS
'Declare exchange (broker_id, exchange, exchange_type, passive, durable, auto_delete) at once. passive only checks that it exists. Returns true or raises an error naming the problem.';

-- pg_amqp's disconnect.
CREATE OR REPLACE FUNCTION amqp.disconnect(broker_id integer)
RETURNS void
LANGUAGE plpython3u
STRICT
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.amqp.disconnect(broker_id)
$python$;
COMMENT ON FUNCTION amqp.disconnect(integer) IS
'Close this session''s cached connection to broker broker_id, if any. The next publish reconnects.';

-- Deliver kept messages once, in order; the deletions commit with the caller.
CREATE OR REPLACE FUNCTION amqp.flush(
    broker_id integer DEFAULT null,
    max_messages integer DEFAULT 10000,
    quiet boolean DEFAULT false
)
RETURNS bigint
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.amqp.flush(broker_id, max_messages, quiet)
$python$;
COMMENT ON FUNCTION amqp.flush(integer, integer, boolean) IS
'Publish up to max_messages committed messages kept in amqp.outbox (of broker_id, or all brokers), oldest first, deleting each after its confirm. Returns how many were delivered; WARNING (unless quiet) when some could not be.';

-- The relay's flush: what amqp.flush does, plus what the relay must know.
CREATE OR REPLACE FUNCTION amqp._flush_batch(
    broker_id integer,
    max_messages integer,
    OUT delivered bigint,
    OUT pending boolean,
    OUT last_error text
)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#PROLOGUE#
return pgmq.amqp.flush_batch(broker_id, max_messages, True)
$python$;
COMMENT ON FUNCTION amqp._flush_batch(integer, integer) IS
'Internal, for amqp.relay: flush quietly; returns how many were delivered, whether deliverable messages remain, and the first error met.';

-- Make failed (returned, nacked, refused) messages eligible for delivery again.
CREATE OR REPLACE FUNCTION amqp.retry_failed(broker_id integer DEFAULT null)
RETURNS bigint
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
WITH retried AS (
    UPDATE amqp.outbox AS o SET failed = false
    WHERE o.failed AND (retry_failed.broker_id IS NULL OR o.broker_id = retry_failed.broker_id)
    RETURNING 1
)
SELECT count(*) FROM retried
$$;
COMMENT ON FUNCTION amqp.retry_failed(integer) IS
'Clear the failed flag of kept messages (of broker_id, or all) so that flush and relay try them again. Returns how many.';

-- The relay: flush, COMMIT, repeat; sleeps poll_interval when there is nothing
-- to do (or the broker is down). No SECURITY DEFINER and no SET clause: both
-- forbid COMMIT in a procedure; it only calls amqp._flush_batch.
CREATE OR REPLACE PROCEDURE amqp.relay(
    broker_id integer DEFAULT null,
    batch_size integer DEFAULT 1000,
    poll_interval double precision DEFAULT 1,
    run_for interval DEFAULT null,
    exit_when_empty boolean DEFAULT false
)
LANGUAGE plpython3u
AS $python$
#PROLOGUE#
pgmq.amqp.relay(broker_id, batch_size, poll_interval, run_for, exit_when_empty)
$python$;
COMMENT ON PROCEDURE amqp.relay (integer, integer, double precision, interval, boolean) IS
'Deliver messages kept in amqp.outbox, in order, committing after every batch; runs until cancelled, for run_for, or (exit_when_empty) until the outbox is empty. For psql, cron or a systemd unit.';

-- Outbox depth, oldest kept message and last error, per broker.
CREATE OR REPLACE VIEW amqp.status AS
WITH ids AS (
    SELECT b.broker_id FROM amqp.broker AS b
    UNION
    SELECT o.broker_id FROM amqp.outbox AS o
)

SELECT
    ids.broker_id,
    (
        SELECT string_agg(b.host || ':' || b.port, ', ' ORDER BY b.failover_order, b.host, b.port)
        FROM amqp.broker AS b
        WHERE b.broker_id = ids.broker_id
    ) AS hosts,
    count(o.id) AS outbox_depth,
    count(o.id) FILTER (WHERE o.failed) AS failed,
    min(o.created_at) AS oldest_kept_at,
    now() - min(o.created_at) AS oldest_kept_age,
    (array_agg(o.last_error ORDER BY o.last_attempt_at DESC) FILTER (WHERE o.last_error IS NOT null))[1] AS last_error,
    max(o.last_attempt_at) AS last_attempt_at
FROM ids
LEFT JOIN amqp.outbox AS o ON ids.broker_id = o.broker_id
GROUP BY ids.broker_id;
COMMENT ON VIEW amqp.status IS
'Per broker: hosts, messages kept in the outbox (and how many failed), the oldest one, and the last error met delivering them.';
