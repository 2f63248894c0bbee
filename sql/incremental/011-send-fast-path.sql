-- The common send (no dedup_key) runs without PL/Python: each queue gets a
-- generated PL/pgSQL send function (built by Python at create_queue, at every
-- settings change and by pg_mq_rebuild_triggers), and send_call holds the
-- statement pg_mq_send_message runs to call it. NULL: the Python path (queues
-- of an earlier release until pg_mq_rebuild_triggers() or a settings change).
ALTER TABLE pg_mq_config_catalog ADD COLUMN send_call text;
COMMENT ON COLUMN pg_mq_config_catalog.send_call IS
'Internal: the statement pg_mq_send_message runs for a send without dedup_key (written by the extension only).';
