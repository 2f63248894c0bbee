-- pg_mq_send_batch runs the INSERT on the typed array itself (PL/pgSQL executing
-- the statement _pg_mq_send_batch_sql builds): the Python half that took the
-- payloads as text[] is gone.
DROP FUNCTION IF EXISTS _pg_mq_send_batch(text, oid, text[], interval, integer, jsonb);
