-- pg_mq_send_message and pg_mq_send_batch call these directly (calls PL/pgSQL
-- plans once per backend) instead of looking a statement up and EXECUTEing it
-- on every send. Python regenerates their bodies whenever a queue is created or
-- dropped and in pg_mq_rebuild_triggers (queues.build_dispatch): they call the
-- queue's generated send functions by name. Until then (a fresh install, an
-- upgrade, a restore) they know no queue and return NULL, and the wrappers fall
-- back to send_call and to the Python path.
CREATE FUNCTION _pg_mq_send_dispatch(
    in_channel text, in_payload text, in_type oid, delay interval, priority integer, headers jsonb
)
RETURNS bigint
LANGUAGE plpgsql
AS $$BEGIN RETURN NULL; END$$;

CREATE FUNCTION _pg_mq_send_batch_dispatch(
    in_channel text, in_payloads anyarray, in_type oid, delay interval, priority integer, headers jsonb
)
RETURNS bigint[]
LANGUAGE plpgsql
AS $$BEGIN RETURN NULL; END$$;
